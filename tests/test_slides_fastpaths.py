"""Resampling shortcuts: unit-scale copies and whole-factor reductions, checked pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _tiling_helpers import halve, write_pyramid
from PIL import Image

from histobridge.slides import open_slide
from histobridge.slides.slide import resample_image

W, H = 1600, 1200


def _noise(w: int, h: int) -> np.ndarray:
    """Independent random pixels: any shift or blur shows as a mismatch."""
    return np.random.default_rng(7).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth(w: int, h: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack(
        [128 + 100 * np.sin(xs / 37), 128 + 100 * np.cos(ys / 29), 128 + 60 * np.sin((xs + ys) / 53)], -1
    )
    return rgb.round().astype(np.uint8)


@pytest.fixture(scope="module")
def noise_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pyramid(tmp_path_factory.mktemp("noise") / "noise.tif", _noise(W, H), levels=1)


@pytest.fixture(scope="module")
def smooth_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pyramid(tmp_path_factory.mktemp("smooth") / "smooth.tif", _smooth(W, H), levels=1)


def _origin(start: float, size_l0: float, out: int) -> int:
    return int(np.floor(start + (size_l0 - out) / 2 + 0.5 + 1e-6))


def test_unit_scale_tiles_are_centred_copies(noise_slide: Path) -> None:
    """256.5 px -> 256 px (a 1.002x shrink) copies source pixels; no resize, at most 0.5 px off centre."""
    level0 = _noise(W, H)
    coords = np.array(
        [[10.3 + 256.5 * i, 20.8 + 256.5 * j, 256.5, 256.5] for j in range(3) for i in range(4)]
    )
    with open_slide(noise_slide) as s:
        tiles = s.read_scaled_batch(coords, 256)
        single = s.read_scaled(*coords[5], 256)
    for tile, (x, y, w, h) in zip(tiles, coords, strict=True):
        ox, oy = _origin(x, w, 256), _origin(y, h, 256)
        assert abs(ox - (x + (w - 256) / 2)) <= 0.5 and abs(oy - (y + (h - 256) / 2)) <= 0.5
        np.testing.assert_array_equal(tile, level0[oy : oy + 256, ox : ox + 256])
    np.testing.assert_array_equal(single, tiles[5])


def test_near_whole_factor_shrinks_are_exact_means(noise_slide: Path) -> None:
    """128.26 px -> 64 px (2.004x, the sample project's case) is a 2 x 2 mean of the centred window."""
    level0 = _noise(W, H)
    t = 128.257
    coords = np.array([[3.1 + t * i, 7.6 + t * j, t, t] for j in range(4) for i in range(5)])
    with open_slide(noise_slide) as s:
        tiles = s.read_scaled_batch(coords, 64)
    for tile, (x, y, w, h) in zip(tiles, coords, strict=True):
        ox, oy = _origin(x, w, 128), _origin(y, h, 128)
        np.testing.assert_array_equal(tile, halve(level0[oy : oy + 128, ox : ox + 128]))


def test_scales_beyond_the_tolerance_are_still_resampled(noise_slide: Path) -> None:
    """1.2x and 2.1x keep Pillow's area filter on the exact float box."""
    with open_slide(noise_slide) as s:
        block = Image.fromarray(s.read_region(0, 0, W, H))
        for size in (307.2, 268.8):
            coords = np.array([[11.5, 13.25, size, size], [11.5 + size, 13.25, size, size]])
            out_px = 256 if size > 300 else 128
            tiles = s.read_scaled_batch(coords, out_px)
            for tile, (x, y, w, h) in zip(tiles, coords, strict=True):
                ref = resample_image(block, (x, y, x + w, y + h), (out_px, out_px))
                assert np.abs(tile.astype(int) - ref).max() <= 1


@pytest.mark.parametrize(("size", "out_px"), [(256.5, 256), (128.257, 64)])
def test_shortcuts_stay_close_to_the_area_filter_on_smooth_content(
    smooth_slide: Path, size: float, out_px: int
) -> None:
    """On smooth tissue-like content the shortcut differs from the full resize by a few grey levels."""
    with open_slide(smooth_slide) as s:
        block = Image.fromarray(s.read_region(0, 0, W, H))
        coords = np.array([[5.7 + size * i, 9.2 + size * j, size, size] for j in range(3) for i in range(3)])
        tiles = s.read_scaled_batch(coords, out_px).astype(int)
    ref = np.stack([resample_image(block, (x, y, x + w, y + h), (out_px, out_px)) for x, y, w, h in coords])
    diff = np.abs(tiles - ref)
    assert diff.max() <= 6 and diff.mean() < 1.5
