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
from typing import TYPE_CHECKING

import numpy as np

from histobridge.errors import InputError, StoreError

if TYPE_CHECKING:
    from histobridge.tiling.grid import TileSpec

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


def image_tiles(path: str | Path, class_name: str, mpp: float, spec: TileSpec) -> TileArrays:
    """Every tile of ``spec``'s grid inside a plain RGB image (JPEG, PNG) that has one label as a whole.

    Such images carry no pixel size, so ``mpp`` (µm per pixel) is the caller's declaration; tiles are
    resampled by the slide reader's rule (area averaging when shrinking), and all share region 0.
    """
    from PIL import Image

    from histobridge.slides.slide import resample_image

    path = Path(path)
    if not mpp > 0:
        raise InputError(f"{path}: the declared pixel size must be positive, got {mpp!r}")
    try:
        with Image.open(path) as im:
            image = im.convert("RGB")
    except OSError as err:
        raise InputError(f"{path}: cannot read the image: {err}") from err
    size, step = spec.level0(mpp)
    w, h = image.size
    if size > min(w, h):
        raise InputError(f"{path}: a {spec.tile_um:g}-µm tile is {size:.0f} px at {mpp:g} µm/px, larger "
                         f"than the {w}×{h} image")
    xs = np.arange(0.0, w - size + 1e-6, step)
    ys = np.arange(0.0, h - size + 1e-6, step)
    out = np.empty((len(xs) * len(ys), spec.tile_px, spec.tile_px, 3), np.uint8)
    for i, (y, x) in enumerate((y, x) for y in ys for x in xs):
        out[i] = resample_image(image, (x, y, x + size, y + size), (spec.tile_px, spec.tile_px))
    zeros = np.zeros(len(out), np.int64)
    return TileArrays(out, zeros, zeros.copy(), (class_name,), spec.tile_um, str(path))


def concat_tiles(parts: Sequence[TileArrays]) -> TileArrays:
    """One training set from several: class names in order of first appearance, regions kept apart."""
    if not parts:
        raise InputError("no tile sets to join")
    sizes = {(p.tile_px, p.tile_um) for p in parts if len(p.tiles)}
    if len(sizes) > 1:
        raise InputError(f"tile sets differ in size (px, µm): {sorted(sizes, key=str)} "
                         f"({', '.join(p.source for p in parts)})")
    names: list[str] = []
    labels, regions = [], []
    offset = 0
    for p in parts:
        for n in p.class_names:
            if n not in names:
                names.append(n)
        remap = np.array([names.index(n) for n in p.class_names], np.int64)
        labels.append(remap[p.labels] if len(p.labels) else p.labels)
        regions.append(p.regions + offset)
        offset += int(p.regions.max(initial=-1)) + 1
    return TileArrays(
        np.concatenate([p.tiles for p in parts]), np.concatenate(labels), np.concatenate(regions),
        tuple(names), parts[0].tile_um, " + ".join(p.source for p in parts),
    )


def save_npz(data: TileArrays, path: str | Path) -> None:
    """Write a training set as one ``.npz`` (train where the tile stores and their readers are not)."""
    from histobridge._atomic import atomic_open

    with atomic_open(Path(path), "wb") as fh:
        np.savez(fh, tiles=data.tiles, labels=data.labels, regions=data.regions,
                 class_names=np.array(data.class_names), tile_um=np.float64(data.tile_um or np.nan))


def load_npz(path: str | Path) -> TileArrays:
    """Read :func:`save_npz`'s file; object arrays are refused, so nothing in it is unpickled."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            um = float(f["tile_um"])
            names = tuple(str(n) for n in f["class_names"])
            return TileArrays(f["tiles"], f["labels"].astype(np.int64), f["regions"].astype(np.int64),
                              names, None if np.isnan(um) else um, str(path))
    except (OSError, KeyError, ValueError) as err:
        raise StoreError(f"{path}: not a training set written by save_npz: {err}") from err


__all__ = ["TileArrays", "concat_tiles", "image_tiles", "load_npz", "load_tiles", "save_npz"]
