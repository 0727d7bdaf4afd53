"""Resampling one colour plane at a time gives the pixels of resampling the RGB image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from histobridge.slides.slide import resample_image, resample_planes


@pytest.mark.parametrize(
    ("box", "size"),
    [
        ((0.0, 0.0, 240.0, 240.0), (200, 200)),  # the 1.2x shrink of the benchmark
        ((3.25, 1.5, 201.75, 177.0), (61, 47)),  # fractional box, other scales per axis
        ((10.0, 10.0, 60.0, 60.0), (90, 90)),  # enlarging (bicubic)
        ((7.0, 5.0, 207.0, 205.0), (200, 200)),  # whole-pixel same size: a crop
    ],
)
def test_planes_equal_rgb(box: tuple[float, float, float, float], size: tuple[int, int]) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (250, 260, 3), dtype=np.uint8)
    rgb[:, :, 1] //= 2  # channels that differ, so a swapped or shared plane shows
    expected = resample_image(Image.fromarray(rgb), box, size)
    got = resample_planes(rgb, box, size)
    assert got.shape == (size[1], size[0], 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
