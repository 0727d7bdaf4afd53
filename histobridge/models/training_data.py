"""Labelled tiles in memory for training, read from a ``histobridge tile`` Zarr store.

The sample stores are small (a few thousand 64-px tiles), so everything is loaded at once; the
region of every tile is kept so that held-out splits can leave out whole annotations.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histobridge.errors import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileArrays:
    """Tiles with labels indexing ``class_names`` and a global region id per tile."""

    tiles: np.ndarray  # uint8 (N, px, px, 3)
    labels: np.ndarray  # int64 (N,), 0..len(class_names)-1
    regions: np.ndarray  # int64 (N,), unique across images
    class_names: tuple[str, ...]
    tile_um: float | None
    source: str

    def __post_init__(self) -> None:
        n = len(self.tiles)
        if self.tiles.ndim != 4 or self.tiles.shape[-1] != 3 or self.tiles.dtype != np.uint8:
            raise StoreError(f"{self.source}: tiles must be uint8 (N, px, px, 3), got {self.tiles.shape}")
        if len(self.labels) != n or len(self.regions) != n:
            raise StoreError(f"{self.source}: tiles, labels and regions differ in length")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise StoreError(f"{self.source}: labels out of range for classes {list(self.class_names)}")

    @property
    def tile_px(self) -> int:
        return int(self.tiles.shape[1])

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}

    def subset(self, mask: np.ndarray) -> TileArrays:
        return dataclasses.replace(
            self, tiles=self.tiles[mask], labels=self.labels[mask], regions=self.regions[mask]
        )


def load_tiles(store_path: str | Path, classes: Sequence[str] | None = None) -> TileArrays:
    """Read every complete image group; keep tiles whose class is in ``classes`` (all when None).

    Class order follows ``classes`` (or first appearance across groups). Tiles labelled -1 are
    ignored. Raises :class:`StoreError` when nothing usable is left.
    """
    from histobridge.tiling.store import open_store

    store_path = Path(store_path)
    store = open_store(store_path)
    wanted = list(classes) if classes else None
    names: list[str] = list(wanted) if wanted else []
    tiles, labels, regions = [], [], []
    tile_um: float | None = None
    tile_px: int | None = None
    region_offset = 0
    for group in store.groups():
        attrs = dict(group.attrs)
        if not attrs.get("complete", True):
            log.warning("%s: skipping incomplete group %s", store_path, group.entry_id)
            continue
        group_classes = [str(c) for c in group.classes]
        lab = np.asarray(group.labels[:], dtype=np.int64)
        reg = np.asarray(group.regions[:], dtype=np.int64)
        mapping = np.full(len(group_classes) + 1, -1, dtype=np.int64)  # last slot: label -1
        for i, name in enumerate(group_classes):
            if wanted is None and name not in names:
                names.append(name)
            if name in names:
                mapping[i] = names.index(name)
        new = mapping[lab]
        keep = new >= 0
        if not keep.any():
            continue
        px = int(group.tiles.shape[1])
        if tile_px is not None and px != tile_px:
            raise StoreError(f"{store_path}: groups have different tile sizes ({tile_px} and {px} px)")
        tile_px = px
        um = attrs.get("tile_um")
        tile_um = float(um) if um is not None else tile_um
        tiles.append(np.asarray(group.tiles[:])[keep])
        labels.append(new[keep])
        regions.append(reg[keep] + region_offset)
        region_offset += int(reg.max(initial=-1)) + 1
    if not tiles:
        which = f" of classes {wanted}" if wanted else ""
        raise StoreError(f"{store_path}: the tile store holds no labelled tiles{which}")
    return TileArrays(
        np.concatenate(tiles).astype(np.uint8, copy=False),
        np.concatenate(labels),
        np.concatenate(regions),
        tuple(names),
        tile_um,
        str(store_path),
    )


__all__ = ["TileArrays", "load_tiles"]
