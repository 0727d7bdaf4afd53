"""Tile grids over annotation geometries, in level-0 pixels with float tile sizes.

The grid is anchored at the image origin, tile ``k`` starting at ``k * stride`` (multiplied, never
accumulated, so a 256.51-px tile does not drift over 100 000 px). Sharing one anchor keeps tiles of
neighbouring annotations from overlapping and lines tiles up with the file's own tiles, which is the
fast case for reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

from histobridge.errors import InputError

MAX_TILE_PX = 8192  # one 8192-px RGB tile is 192 MiB; larger ones cannot be batched, stored or trained on
PLAN_CHUNK = 1 << 18  # candidate tiles tested at once: planning memory stays ~50 MB at any tile count


@dataclass(frozen=True)
class TileSpec:
    """Output tile size in pixels and micrometres; optional stride (overlap) and coverage rule."""

    tile_px: int
    tile_um: float
    stride_px: int | None = None
    min_coverage: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.tile_px <= MAX_TILE_PX:
            raise InputError(f"tile size must be 1..{MAX_TILE_PX} px, got {self.tile_px}")
        if not (math.isfinite(self.tile_um) and self.tile_um > 0):
            raise InputError(f"tile size in µm must be a positive finite number, got {self.tile_um:g}")
        if self.stride_px is not None and not 0 < self.stride_px <= MAX_TILE_PX:
            raise InputError(f"stride must be 1..{MAX_TILE_PX} px, got {self.stride_px}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise InputError(f"min_coverage must lie in [0, 1], got {self.min_coverage}")

    @property
    def um_per_px(self) -> float:
        """Output resolution (µm per tile pixel)."""
        return self.tile_um / self.tile_px

    def level0(self, mpp: float) -> tuple[float, float]:
        """(tile size, stride) in level-0 pixels for a slide of ``mpp`` µm/px (floats, unrounded)."""
        tile_l0 = self.tile_um / mpp
        stride_l0 = tile_l0 if self.stride_px is None else self.stride_px * tile_l0 / self.tile_px
        return tile_l0, stride_l0


def area_parts(geometry: BaseGeometry | None) -> BaseGeometry:
    """Only the areal parts of a geometry (points and lines cannot hold tiles); repaired if invalid."""
    if geometry is None or geometry.is_empty:
        return MultiPolygon()
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    if isinstance(geometry, (Polygon, MultiPolygon)):
        return geometry
    polys = [g for g in shapely.get_parts(geometry) if isinstance(g, (Polygon, MultiPolygon))]
    return shapely.unary_union(polys) if polys else MultiPolygon()


def _axis(lo: float, hi: float, tile: float, stride: float, clip: tuple[float, float] | None) -> np.ndarray:
    """Origins ``k * stride`` of tiles overlapping (lo, hi) on one axis; whole tiles inside ``clip``."""
    k0 = math.floor((lo - tile) / stride)
    if clip is not None:
        k0 = max(0, k0)
    k = np.arange(k0, math.floor(hi / stride) + 1)
    xs = k * stride
    xs = xs[(xs + tile > lo) & (xs < hi)]
    if clip is not None:  # whole tiles only: a tile never reaches past the image edge
        xs = xs[(xs >= clip[0] - 1e-6) & (xs + tile <= clip[1] + 1e-6)]
    return xs


def candidate_count(
    bounds: tuple[float, float, float, float],
    tile_l0: float,
    stride_l0: float,
    clip: tuple[float, float, float, float] | None = None,
) -> int:
    """Number of grid positions over a bounding box (an upper bound on the tiles), without allocating them."""
    if clip is not None:
        bounds = (max(bounds[0], clip[0]), max(bounds[1], clip[1]), min(bounds[2], clip[2]),
                  min(bounds[3], clip[3]))  # fmt: skip
    w, h = bounds[2] - bounds[0], bounds[3] - bounds[1]
    if not (w > 0 and h > 0):
        return 0
    per_axis = [math.floor((span + tile_l0) / stride_l0) + 1 for span in (w, h)]
    return int(per_axis[0]) * int(per_axis[1])


def grid_for_geometry(
    geometry: BaseGeometry,
    tile_l0: float,
    stride_l0: float | None = None,
    min_coverage: float = 0.5,
    bounds: tuple[float, float, float, float] | None = None,
    *,
    max_tiles: int | None = None,
) -> np.ndarray:
    """Tiles (N, 4) float64 x, y, w, h whose area inside ``geometry`` is at least ``min_coverage``.

    Holes count as outside. ``bounds`` (x0, y0, x1, y1), normally the slide, clips the geometry
    first, so the part of an annotation drawn beyond the image never counts as coverage, and only
    tiles lying wholly inside the bounds are kept (no tile is padded with made-up glass).
    ``min_coverage`` 0 keeps every tile that touches the geometry with a positive area.
    Candidates are tested a band of rows at a time, so memory follows the tiles kept, and more
    than ``max_tiles`` grid positions over the geometry's bounding box raise :class:`InputError`
    before anything is allocated.
    """
    if not (math.isfinite(tile_l0) and tile_l0 > 0):
        raise InputError(f"tile size must be a positive finite number of pixels, got {tile_l0}")
    stride = tile_l0 if stride_l0 is None else float(stride_l0)
    if not (math.isfinite(stride) and stride > 0):
        raise InputError(f"stride must be a positive finite number of pixels, got {stride}")
    geom = area_parts(geometry)
    if bounds is not None and not geom.is_empty:
        geom = geom.intersection(box(*bounds))
        geom = area_parts(geom)
    if geom.is_empty or geom.area <= 0:
        return np.zeros((0, 4), np.float64)
    minx, miny, maxx, maxy = geom.bounds
    if max_tiles is not None:
        n = candidate_count((minx, miny, maxx, maxy), tile_l0, stride)
        if n > max_tiles:
            raise InputError(
                f"{n:,} tile positions over a {maxx - minx:.0f} x {maxy - miny:.0f} px region "
                f"({tile_l0:.4g}-px tiles) exceed the limit of {max_tiles:,}; "
                "use larger tiles or raise the limit"
            )
    xs = _axis(minx, maxx, tile_l0, stride, None if bounds is None else (bounds[0], bounds[2]))
    ys = _axis(miny, maxy, tile_l0, stride, None if bounds is None else (bounds[1], bounds[3]))
    rows_per_band = max(1, PLAN_CHUNK // max(1, len(xs)))
    shapely.prepare(geom)
    parts = [np.zeros((0, 4), np.float64)]
    for start in range(0, len(ys), rows_per_band):
        gx, gy = np.meshgrid(xs, ys[start : start + rows_per_band])  # row-major: y outer, x inner
        gx, gy = gx.ravel(), gy.ravel()
        cover = tile_coverage(geom, gx, gy, tile_l0)
        keep = cover >= min_coverage - 1e-9 if min_coverage > 0 else cover > 0
        band = np.empty((int(keep.sum()), 4), np.float64)
        band[:, 0], band[:, 1] = gx[keep], gy[keep]
        band[:, 2] = band[:, 3] = tile_l0
        parts.append(band)
    return np.concatenate(parts)


def tile_coverage(geom: BaseGeometry, xs: np.ndarray, ys: np.ndarray, size: float) -> np.ndarray:
    """Fraction of each square tile (x, y, size) inside ``geom`` (vectorised; interior tiles are cheap)."""
    if len(xs) == 0:
        return np.zeros(0, np.float64)
    tiles = shapely.box(xs, ys, xs + size, ys + size)
    shapely.prepare(geom)
    cover = np.zeros(len(xs), np.float64)
    touching = shapely.intersects(geom, tiles)
    inside = touching & shapely.contains_properly(geom, tiles)
    cover[inside] = 1.0
    edge = touching & ~inside
    if edge.any():
        cover[edge] = shapely.area(shapely.intersection(tiles[edge], geom)) / (size * size)
    return cover
