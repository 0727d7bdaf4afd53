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
from histobridge.errors import CheckpointError
from histobridge.models.stylegan2 import GanMeta, Generator, GeneratorConfig

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


def _read_doc(weights: Path, sidecar: Path) -> dict[str, Any]:
    if sidecar.is_file():
        try:
            doc = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{sidecar}: unreadable generator JSON: {err}") from err
    else:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as fh:
            header = (fh.metadata() or {}).get(_HEADER_KEY)
        if header is None:
            raise CheckpointError(f"{weights}: no {sidecar.name} beside it and no config in its header")
        doc = json.loads(header)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{sidecar}: not a histobridge generator description (format {FORMAT_NAME!r})")
    if int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{sidecar}: format version {doc.get('format_version')} is newer than this histobridge"
            f" understands ({FORMAT_VERSION}); upgrade histobridge"
        )
    return doc


def load_safetensors_generator(path: str | os.PathLike[str], device: str = "cpu") -> Generator:
    """Rebuild a generator from our safetensors + JSON pair."""
    from safetensors.torch import load_file

    weights, sidecar = sidecar_paths(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: generator weights not found")
    try:
        doc = _read_doc(weights, sidecar)
        cfg = GeneratorConfig.from_dict(doc["config"])
        tensors = load_file(str(weights), device="cpu")
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"{weights}: cannot read the generator: {err}") from err
    G = Generator(cfg)
    missing, unexpected = G.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: weights do not fit the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    G.meta = GanMeta.from_dict(doc.get("meta", {}))
    return G.eval().requires_grad_(False).to(device)
