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


@dataclass(frozen=True)
class TileSpec:
    """Output tile size in pixels and micrometres; optional stride (overlap) and coverage rule."""

    tile_px: int
    tile_um: float
    stride_px: int | None = None
    min_coverage: float = 0.5

    def __post_init__(self) -> None:
        if self.tile_px <= 0 or not self.tile_um > 0:
            raise ValueError(f"tile size must be positive (tile_px={self.tile_px}, tile_um={self.tile_um})")
        if self.stride_px is not None and self.stride_px <= 0:
            raise ValueError(f"stride_px must be positive, got {self.stride_px}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError(f"min_coverage must lie in [0, 1], got {self.min_coverage}")

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


def grid_for_geometry(
    geometry: BaseGeometry,
    tile_l0: float,
    stride_l0: float | None = None,
    min_coverage: float = 0.5,
    bounds: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Tiles (N, 4) float64 x, y, w, h whose area inside ``geometry`` is at least ``min_coverage``.

    Holes count as outside. ``bounds`` (x0, y0, x1, y1), normally the slide, clips the geometry
    first, so the part of an annotation drawn beyond the image never counts as coverage, and only
    tiles lying wholly inside the bounds are kept (no tile is padded with made-up glass).
    ``min_coverage`` 0 keeps every tile that touches the geometry with a positive area.
    """
    if not tile_l0 > 0:
        raise ValueError(f"tile size must be positive, got {tile_l0}")
    stride = tile_l0 if stride_l0 is None else float(stride_l0)
    if not stride > 0:
        raise ValueError(f"stride must be positive, got {stride}")
    geom = area_parts(geometry)
    if bounds is not None and not geom.is_empty:
        geom = geom.intersection(box(*bounds))
        geom = area_parts(geom)
    if geom.is_empty or geom.area <= 0:
        return np.zeros((0, 4), np.float64)
    minx, miny, maxx, maxy = geom.bounds
    kx = np.arange(max(0, math.floor((minx - tile_l0) / stride)), math.floor(maxx / stride) + 1)
    ky = np.arange(max(0, math.floor((miny - tile_l0) / stride)), math.floor(maxy / stride) + 1)
    if bounds is None:  # negative coordinates are possible only without slide bounds
        kx = np.arange(math.floor((minx - tile_l0) / stride), math.floor(maxx / stride) + 1)
        ky = np.arange(math.floor((miny - tile_l0) / stride), math.floor(maxy / stride) + 1)
    xs = kx * stride
    ys = ky * stride
    xs = xs[(xs + tile_l0 > minx) & (xs < maxx)]
    ys = ys[(ys + tile_l0 > miny) & (ys < maxy)]
    if bounds is not None:  # whole tiles only: a tile never reaches past the image edge
        xs = xs[(xs >= bounds[0] - 1e-6) & (xs + tile_l0 <= bounds[2] + 1e-6)]
        ys = ys[(ys >= bounds[1] - 1e-6) & (ys + tile_l0 <= bounds[3] + 1e-6)]
    gx, gy = np.meshgrid(xs, ys)  # row-major: y outer, x inner
    gx, gy = gx.ravel(), gy.ravel()
    cover = tile_coverage(geom, gx, gy, tile_l0)
    keep = cover >= min_coverage - 1e-9 if min_coverage > 0 else cover > 0
    n = int(keep.sum())
    out = np.empty((n, 4), np.float64)
    out[:, 0], out[:, 1] = gx[keep], gy[keep]
    out[:, 2] = out[:, 3] = tile_l0
    return out


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
