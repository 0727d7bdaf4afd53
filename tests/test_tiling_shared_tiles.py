"""Source tiles on the edges of batches are decoded once for both neighbours, pixels unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _tiling_helpers import write_pyramid

from histobridge.slides import open_slide
from histobridge.slides._tiffdirect import SharedTiles
from histobridge.tiling.tiler import read_batch, spatial_order, work_units


def _noise(w: int, h: int) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pyramid(tmp_path_factory.mktemp("edges") / "e.tif", _noise(1500, 1300), levels=1, tile=128)


@pytest.mark.parametrize(("tile_l0", "out_px"), [(120.4, 120), (144.0, 120)])  # a copy; a 1.2x shrink
def test_edge_tiles_are_decoded_once(slide_path: Path, tile_l0: float, out_px: int) -> None:
    """Units of a small image (and 8x8 cells of a big one) share the source tiles on their edges."""
    rows, cols = int(1300 // tile_l0), int(1500 // tile_l0)
    grid = [(c * tile_l0, r * tile_l0) for r in range(rows) for c in range(cols)]
    coords = np.array([[x, y, tile_l0, tile_l0] for x, y in grid])
    coords = coords[spatial_order(coords, np.zeros(len(coords), int), tile_l0)]  # as the tiler orders them
    units = work_units(len(coords), 64, 2)
    with open_slide(slide_path) as slide:
        reader = slide._backend._direct[0]  # type: ignore[attr-defined]
        assert reader is not None
        decoded: list[tuple[int, int]] = []
        real = reader.tile

        def counting(tx: int, ty: int, out: np.ndarray | None = None, scale: int = 1) -> np.ndarray | None:
            decoded.append((tx, ty))
            return real(tx, ty, out=out, scale=scale)

        reader.tile = counting
        results = []
        for shared in (None, SharedTiles()):
            decoded.clear()
            out = np.empty((len(coords), out_px, out_px, 3), np.uint8)
            for a, b in units:
                read_batch(slide, coords[a:b], out_px, tile_l0, out=out[a:b], shared=shared)
            results.append((out, len(decoded), len(set(decoded))))
    (plain, n_plain, distinct), (cached, n_cached, _) = results
    np.testing.assert_array_equal(cached, plain)
    assert n_plain > distinct  # without the shared tiles, edge tiles were decoded twice
    assert n_cached == distinct  # with them, each source tile once


def test_shared_tiles_stay_within_their_budget() -> None:
    shared = SharedTiles(max_bytes=3 * 1000)
    for i in range(10):
        shared.put((0, i, 0), np.zeros(1000, np.uint8))
    assert [shared.get((0, i, 0))[0] for i in range(10)] == [False] * 7 + [True] * 3
    shared.put((0, 99, 0), None)  # an empty tile of the file is remembered too
    assert shared.get((0, 99, 0)) == (True, None)
