"""A tiny two-class tile store written through the real store writer, for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histobridge.tiling.store import GroupWriter

# Pink-ish (dermis-like) and purple-ish (epidermis-like) base colours.
COLORS = {"Purple": (120, 60, 160), "Pink": (230, 130, 170)}


def make_store(
    path: Path, *, tile_px: int = 16, tiles_per_region: int = 6, regions_per_class: int = 3,
    classes: tuple[str, ...] = ("Purple", "Pink"), tile_um: float = 32.0, seed: int = 0,
    striped: tuple[str, ...] = (), noise: float = 25.0,
) -> Path:
    """One image group: regions of noisy single-colour tiles per class, plus unlabelled tiles.

    Tiles of the ``striped`` classes have every other row darker: a form that survives recolouring.
    """
    rng = np.random.default_rng(seed)
    tiles, labels, regions = [], [], []
    region = 0
    for k, name in enumerate(classes):
        base = np.array(COLORS.get(name, (128, 128, 128)), dtype=np.float64)
        for _ in range(regions_per_class):
            for _ in range(tiles_per_region):
                tile = base + rng.normal(0, noise, size=(tile_px, tile_px, 3))
                if name in striped:
                    tile[::2] -= 50
                tiles.append(np.clip(tile, 0, 255).astype(np.uint8))
                labels.append(k)
                regions.append(region)
            region += 1
    for _ in range(3):  # tiles with no class: must be ignored
        tiles.append(rng.integers(0, 255, size=(tile_px, tile_px, 3), dtype=np.uint8))
        labels.append(-1)
        regions.append(region)
    n = len(tiles)
    attrs = {"entry_id": "1", "entry_name": "synthetic", "mpp": tile_um / tile_px / 2, "tile_px": tile_px,
             "tile_um": tile_um, "classes": list(classes), "regions": [], "slide_path": "synthetic"}
    writer = GroupWriter(path, "1", n, tile_px, attrs)
    writer.write_meta(np.zeros((n, 4)), np.array(labels), np.array(regions))
    writer.write_tiles(0, np.stack(tiles))
    writer.finish()
    return path
