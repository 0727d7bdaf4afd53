"""Tile grids: coverage with holes, slide bounds, float tile sizes, stride, TileSpec."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from histobridge.tiling import TileSpec, grid_for_geometry
from histobridge.tiling.grid import tile_coverage

BOUNDS = (0.0, 0.0, 10_000.0, 10_000.0)


def test_square_gives_the_expected_grid() -> None:
    tiles = grid_for_geometry(box(0, 0, 1000, 600), 100, None, 0.5, BOUNDS)
    assert tiles.shape == (60, 4) and tiles.dtype == np.float64
    assert set(tiles[:, 0]) == {float(100 * k) for k in range(10)}
    assert (tiles[:, 2:] == 100).all()
    # row-major: y outer, x inner
    assert tiles[0].tolist() == [0, 0, 100, 100] and tiles[10].tolist() == [0, 100, 100, 100]


def test_holes_count_as_outside() -> None:
    donut = box(0, 0, 1000, 1000).difference(box(300, 300, 700, 700))
    tiles = grid_for_geometry(donut, 100, None, 0.5, BOUNDS)
    assert len(tiles) == 100 - 16
    centres = tiles[:, :2] + 50
    in_hole = (centres > 300) & (centres < 700)
    assert not (in_hole[:, 0] & in_hole[:, 1]).any()


@pytest.mark.parametrize(
    ("min_cov", "expected"), [(0.0, 4), (0.3, 4), (0.5, 3), (0.55, 2), (0.7, 1), (1.0, 1)]
)
def test_min_coverage_threshold(min_cov: float, expected: int) -> None:
    """A 150x160 box at the origin covers tile (0,0) fully, (1,0) 50 %, (0,1) 60 %, (1,1) 30 %."""
    geom = box(0, 0, 150, 160)
    cover = tile_coverage(geom, np.array([0.0, 100, 0, 100]), np.array([0.0, 0, 100, 100]), 100)
    np.testing.assert_allclose(cover, [1.0, 0.5, 0.6, 0.3])
    assert len(grid_for_geometry(geom, 100, None, min_cov, BOUNDS)) == expected


def test_annotation_partly_outside_the_slide_is_clipped() -> None:
    geom = box(-500, -500, 250, 250)
    tiles = grid_for_geometry(geom, 100, None, 0.5, (0, 0, 1000, 1000))
    assert (tiles[:, :2] >= 0).all()
    # clipped to 0..250: a 3x3 grid where the last column/row is 50 % inside and the corner 25 %
    assert len(tiles) == 8 and [200, 200, 100, 100] not in tiles.tolist()
    right = grid_for_geometry(box(900, 0, 1400, 300), 100, None, 0.5, (0, 0, 1000, 1000))
    assert (right[:, 0] + right[:, 2] <= 1000).all() and len(right) == 3


def test_empty_and_non_area_geometries_give_no_tiles() -> None:
    for geom in (Polygon(), MultiPolygon(), Point(5, 5).buffer(0), LineString([(0, 0), (500, 500)])):
        tiles = grid_for_geometry(geom, 100, None, 0.5, BOUNDS)
        assert tiles.shape == (0, 4)
    outside = grid_for_geometry(box(20_000, 20_000, 21_000, 21_000), 100, None, 0.5, BOUNDS)
    assert outside.shape == (0, 4)


def test_float_tile_size_does_not_drift() -> None:
    """128 µm at 0.499 µm/px is 256.513 px: tile k starts at exactly k * 256.513..., even far away."""
    tile = 128 / 0.499
    tiles = grid_for_geometry(box(90_000, 0, 92_000, 300), tile, None, 0.5, (0, 0, 1e6, 1e6))
    k = np.round(tiles[:, 0] / tile)
    np.testing.assert_array_equal(tiles[:, 0], k * tile)
    assert (tiles[:, 2] == tile).all()


def test_stride_overlap() -> None:
    plain = grid_for_geometry(box(0, 0, 1000, 1000), 200, None, 1.0, BOUNDS)
    half = grid_for_geometry(box(0, 0, 1000, 1000), 200, 100, 1.0, BOUNDS)
    assert len(plain) == 25 and len(half) == 81
    assert set(np.diff(np.unique(half[:, 0]))) == {100.0}


def test_invalid_self_intersecting_polygon_is_repaired() -> None:
    bowtie = Polygon([(0, 0), (400, 400), (400, 0), (0, 400)])
    tiles = grid_for_geometry(bowtie, 100, None, 0.5, BOUNDS)
    assert len(tiles) > 0


def test_tile_spec() -> None:
    spec = TileSpec(256, 128)
    assert spec.um_per_px == 0.5
    tile_l0, stride_l0 = spec.level0(0.499)
    assert tile_l0 == pytest.approx(256.513, abs=1e-3) and stride_l0 == tile_l0
    assert TileSpec(256, 128, stride_px=128).level0(0.5) == (256.0, 128.0)
    for bad in (
        {"tile_px": 0, "tile_um": 1},
        {"tile_px": 8, "tile_um": 0},
        {"tile_px": 8, "tile_um": 1, "min_coverage": 2},
    ):
        with pytest.raises(ValueError):
            TileSpec(**bad)  # type: ignore[arg-type]


def test_tiles_never_reach_past_the_slide_edge() -> None:
    """A tile half inside the annotation but partly beyond the image is dropped, not padded."""
    tiles = grid_for_geometry(box(0, 0, 1050, 100), 100, None, 0.5, (0, 0, 1050, 1000))
    assert len(tiles) == 10 and tiles[:, 0].max() == 900
    unbounded = grid_for_geometry(box(0, 0, 1050, 100), 100, None, 0.5, None)
    assert len(unbounded) == 11
