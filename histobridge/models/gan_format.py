"""histobridge's own generator format: ``<name>.safetensors`` weights + ``<name>.json`` config.

Plain tensors plus a JSON description can be shared and loaded without any code execution. The
JSON is also embedded in the safetensors header, so the weights file alone is enough to rebuild
the model when the sidecar gets lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from histobridge._atomic import atomic_path, write_json
from histobridge.errors import CheckpointError, ModelError
from histobridge.models._gan_build import build_checked
from histobridge.models.stylegan2 import GanMeta, Generator, GeneratorConfig
from histobridge.models.training_options import load_json

FORMAT_NAME = "histobridge-stylegan2"
FORMAT_VERSION = 1
_HEADER_KEY = "histobridge"


def sidecar_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights, json) for a path given with either suffix or none."""
    p = Path(path)
    base = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def describe(G: Generator) -> dict[str, Any]:
    """The JSON document saved beside the weights."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": G.config.to_dict(),
        "meta": G.meta.to_dict(),
        "num_ws": G.num_ws,
    }


def save_generator(G: Generator, path: str | os.PathLike[str]) -> Path:
    """Write weights and JSON atomically; returns the ``.safetensors`` path."""
    from safetensors.torch import save_file

    weights, sidecar = sidecar_paths(path)
    doc = describe(G)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in G.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={_HEADER_KEY: json.dumps(doc)})
        os.chmod(tmp, 0o644)
    write_json(sidecar, doc)
    return weights


def _read_doc(weights: Path, sidecar: Path) -> tuple[dict[str, Any], Path]:
    """The description and where it came from (the sidecar, else the weights file's header)."""
    if sidecar.is_file():
        doc, source = load_json(sidecar, "generator JSON"), sidecar
    else:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as fh:
            header = (fh.metadata() or {}).get(_HEADER_KEY)
        if header is None:
            raise CheckpointError(f"{weights}: no {sidecar.name} beside it and no config in its header")
        source = weights
        try:
            doc = json.loads(header)
        except RecursionError:
            raise CheckpointError(f"{weights}: the config in the header is nested too deeply") from None
        except ValueError as err:
            raise CheckpointError(f"{weights}: unreadable config in the header: {err}") from err
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{source}: not a histobridge generator description (format {FORMAT_NAME!r})")
    version = doc.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{source}: format_version must be an integer, got {version!r:.40}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: format version {version} is newer than this histobridge"
            f" understands ({FORMAT_VERSION}); upgrade histobridge"
        )
    return doc, source


def load_safetensors_generator(path: str | os.PathLike[str], device: str = "cpu") -> Generator:
    """Rebuild a generator from our safetensors + JSON pair; everything is checked before building."""
    from safetensors.torch import load_file

    weights, sidecar = sidecar_paths(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: generator weights not found")
    try:
        doc, source = _read_doc(weights, sidecar)
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises its own error types for a corrupt header
        raise CheckpointError(f"{weights}: cannot read the generator: {err}") from err
    try:
        cfg = GeneratorConfig.from_dict(doc.get("config"))
        meta = GanMeta.from_dict(doc.get("meta", {}))
    except ModelError as err:
        raise CheckpointError(f"{source}: config: {err}") from err
    try:
        tensors = load_file(str(weights), device="cpu")
    except Exception as err:  # safetensors raises its own error types for a corrupt file
        raise CheckpointError(f"{weights}: cannot read the generator weights: {err}") from err
    G = build_checked(cfg, tensors, str(weights))
    G.meta = meta
    return G.eval().requires_grad_(False).to(device)
