"""``training_options.json`` beside a snapshot: tile size in px/µm and class names, each value checked.

The file is optional and written by other tools, so every value is checked for type and range; a
bad one is a :class:`CheckpointError` that names the file and the key, never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histobridge.errors import CheckpointError

if TYPE_CHECKING:
    from histobridge.models.stylegan2 import GanMeta, Generator

log = logging.getLogger(__name__)

MAX_OPTIONS_BYTES = 16 << 20
MAX_TILE_PX = 1 << 16


def load_json(path: Path, what: str) -> Any:
    """Parse a small JSON file; unreadable, too large or too deeply nested input is a CheckpointError."""
    try:
        size = path.stat().st_size
        if size > MAX_OPTIONS_BYTES:
            raise CheckpointError(f"{path}: {what} of {size} bytes is too large (limit {MAX_OPTIONS_BYTES})")
        return json.loads(path.read_text(encoding="utf-8"))
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"{path}: unreadable {what}: nested too deeply") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable {what}: {err}") from err


def _positive_int(value: Any, path: Path, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_TILE_PX:
        raise CheckpointError(f"{path}: {key} must be an integer in [1, {MAX_TILE_PX}], got {value!r:.60}")
    return value


def _names(value: Any, path: Path, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        keyed: list[tuple[int, str]] = []
        for k, v in value.items():
            if not (isinstance(k, str) and k.isdigit() and len(k) < 10 and isinstance(v, str)):
                found = f"{k!r:.30}: {v!r:.30}"
                raise CheckpointError(f"{path}: {key} must map class indices to names, found {found}")
            keyed.append((int(k), v))
        return tuple(v for _, v in sorted(keyed)) or None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value) or None
    raise CheckpointError(f"{path}: {key} must be a list of class names or an index→name object")


def _class_names_from(opts: dict[str, Any], sf: dict[str, Any], n: int, path: Path) -> tuple[str, ...] | None:
    for prefix, src in (("slideflow_kwargs.", sf), ("", opts)):
        for key in ("outcome_labels", "class_names", "outcome_names"):
            names = _names(src.get(key), path, prefix + key)
            if names is None:
                continue
            if len(names) == n:
                return names
            log.warning("%s: %s lists %d class names for %d classes; ignoring them", path, prefix + key,
                        len(names), n)
    return None


def read_training_options(path: Path, G: Generator) -> GanMeta:
    """Fill tile px/µm and class names from ``training_options.json`` beside the snapshot."""
    from histobridge.models.stylegan2 import GanMeta

    opts_path = path.parent / "training_options.json"
    meta = G.meta
    if not opts_path.is_file():
        return meta
    opts = load_json(opts_path, "training options")
    if not isinstance(opts, dict):
        raise CheckpointError(f"{opts_path}: training options are not a JSON object")
    sf = opts.get("slideflow_kwargs")
    if sf is None:
        sf = {}
    if not isinstance(sf, dict):
        raise CheckpointError(f"{opts_path}: slideflow_kwargs must be an object, got {type(sf).__name__}")
    tile_px = G.img_resolution
    order = (("slideflow_kwargs.", sf, "resize"), ("", opts, "resize"), ("slideflow_kwargs.", sf, "tile_px"),
             ("", opts, "tile_px"))
    for prefix, src, key in order:
        if src.get(key):  # the first one set wins, as the training tools resolve it
            tile_px = _positive_int(src[key], opts_path, prefix + key)
            break
    if tile_px != G.img_resolution:
        log.warning("%s: tile_px %s differs from the generator's %d px output", opts_path, tile_px,
                    G.img_resolution)
    n = 2 if G.config.interp_embed else G.c_dim
    names = _class_names_from(opts, sf, n, opts_path) or meta.class_names
    tile_um = sf.get("tile_um", opts.get("tile_um"))
    um = None
    if tile_um is not None:
        ok = isinstance(tile_um, int | float) and not isinstance(tile_um, bool)
        if not ok or not math.isfinite(tile_um) or not tile_um > 0:
            raise CheckpointError(f"{opts_path}: tile_um must be a positive number (µm), got {tile_um!r:.40}")
        um = float(tile_um)
    return GanMeta(
        class_names=names, tile_px=tile_px, tile_um=um, source=meta.source, variant=meta.variant
    )
