"""``resample="fast"``: JPEG levels decoded at 1/2, 1/4, 1/8 by the decoder, against the exact path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _tiling_helpers import FakeClass, FakeEntry, FakeProject
from PIL import Image
from shapely.geometry import box

from histobridge.errors import InputError
from histobridge.qupath.annotations import Annotation
from histobridge.slides import open_slide
from histobridge.slides._tiffdirect import decode_scaled
from histobridge.testing import write_pyramid
from histobridge.tiling import TileSpec, TilingOptions, open_store, tile_project

W, H = 1500, 1100  # not whole tiles: the last column and row of source tiles are partial


def _smooth(w: int, h: int) -> np.ndarray:
    """Known content: low-frequency waves and a gradient (no detail finer than ~20 px)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 150 + 60 * np.sin(xs / 23.0) * np.cos(ys / 31.0)
    g = 90 + 0.08 * xs + 40 * np.cos((xs + ys) / 37.0)
    b = 170 + 50 * np.sin(ys / 19.0)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def jpeg_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("jpeg-scaled")
    return write_pyramid(folder / "smooth.tif", [_smooth(W, H)], compression="jpeg", compression_level=90)


@pytest.fixture(scope="module")
def zlib_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pyramid(tmp_path_factory.mktemp("zlib") / "smooth.tif", [_smooth(W, H)], compression="zlib")


def _grid(w: int, h: int, tile_l0: float) -> np.ndarray:
    xs = np.arange(0, w - tile_l0 / 2, tile_l0)  # the last column and row run off the image
    ys = np.arange(0, h - tile_l0 / 2, tile_l0)
    return np.array([[x, y, tile_l0, tile_l0] for y in ys for x in xs])


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b)


def test_the_reduction_is_the_whole_shrink_and_only_on_jpeg_levels(
    jpeg_slide: Path, zlib_slide: Path
) -> None:
    with open_slide(jpeg_slide) as s:
        assert [s.dct_scale(d) for d in (1.0, 1.2, 1.999, 2.0, 2.004, 2.4, 3.0, 4.0, 8.0, 16.0)] == [
            1, 1, 2, 2, 2, 1, 1, 4, 8, 1,  # 2.4x would need a second resize of the reduced pixels
        ]  # fmt: skip
    with open_slide(zlib_slide) as s:
        assert s.dct_scale(2.0) == 1


@pytest.mark.parametrize("k", [2, 4, 8])
def test_fast_matches_exact_on_known_content(jpeg_slide: Path, k: int) -> None:
    """Tiles on the reduced lattice, the image's edges included: within 1 grey level on average."""
    out_px = 64
    coords = _grid(W, H, out_px * k)
    with open_slide(jpeg_slide) as s:
        exact = s.read_scaled_batch(coords, out_px, resample="exact")
        fast = s.read_scaled_batch(coords, out_px, resample="fast")
    d = _diff(exact, fast)
    assert d.mean() < 1.0 and np.percentile(d, 99) <= 4, (d.mean(), np.percentile(d, 99), d.max())
    beyond = coords[:, 0] + coords[:, 2] > W  # the right column runs off the image: white there, in both
    right = W - int(coords[beyond][0, 0])  # level pixels inside the image
    assert (fast[beyond][:, :, (right + k - 1) // k + 1 :] == 255).all()
    assert (exact[beyond][:, :, (right + k - 1) // k + 1 :] == 255).all()


def test_exact_is_the_documented_area_mean(jpeg_slide: Path) -> None:
    """``exact`` (the default) is today's path: a 2x shrink is the 2 x 2 mean of the decoded pixels."""
    coords = _grid(1024, 1024, 128.0)
    with open_slide(jpeg_slide) as s:
        default = s.read_scaled_batch(coords, 64)
        exact = s.read_scaled_batch(coords, 64, resample="exact")
        full = s.read_region(0, 0, 1024, 1024)
    np.testing.assert_array_equal(default, exact)
    expected = np.asarray(Image.fromarray(full).reduce(2))
    for (x, y, _, _), tile in zip(coords.astype(int), exact, strict=True):
        np.testing.assert_array_equal(tile, expected[y // 2 : y // 2 + 64, x // 2 : x // 2 + 64])


def test_non_jpeg_sources_are_unaffected(zlib_slide: Path) -> None:
    coords = _grid(W, H, 128.26)
    with open_slide(zlib_slide) as s:
        np.testing.assert_array_equal(
            s.read_scaled_batch(coords, 64, resample="fast"),
            s.read_scaled_batch(coords, 64, resample="exact"),
        )


def test_rgb_in_jpeg_keeps_its_colours(cmu_slide: Path) -> None:
    """Aperio stores RGB in JPEG with no marker saying so: decoded as YCbCr the colours are ~47 off."""
    with open_slide(cmu_slide) as s:
        coords = np.array([[x, y, 480.0, 480.0] for x in (480, 960) for y in (480, 1440)])
        fast = s.read_scaled_batch(coords, 240, resample="fast")
        exact = s.read_scaled_batch(coords, 240, resample="exact")
    d = _diff(exact, fast)
    assert d.mean() < 0.2, d.mean()  # measured 0.02: the scaled IDCT is nearly a 2 x 2 mean


def test_a_truncated_tile_is_an_error(jpeg_slide: Path) -> None:
    import tifffile

    with tifffile.TiffFile(jpeg_slide) as tf:
        page = tf.pages[0]
        tf.filehandle.seek(page.dataoffsets[0])
        data = tf.filehandle.read(page.databytecounts[0])
        tables = page.jpegtables
    assert decode_scaled(data, tables, "", 2, (128, 128)).shape == (128, 128, 3)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        decode_scaled(data[: len(data) // 2], tables, "", 2, (128, 128))


def _project(slide: Path) -> FakeProject:
    return FakeProject([FakeEntry(3, "smooth", slide)], {3: [Annotation(box(0, 0, W, H), "Tumor")]},
                       [FakeClass("Tumor")])  # fmt: skip


def test_the_store_records_the_mode_and_a_change_of_mode_retiles(jpeg_slide: Path, tmp_path: Path) -> None:
    project, out, spec = _project(jpeg_slide), tmp_path / "t.zarr", TileSpec(64, 64.0)  # 128 px: 2x
    tile_project(project, out, spec)
    group = open_store(out).group(3)
    assert group.attrs["resample"] == "exact" and group.attrs["jpeg_scale"] == 1
    assert "resample" not in group.attrs["params"]  # groups made before the option stay up to date
    exact = np.asarray(group.tiles[:])
    report = tile_project(project, out, spec, TilingOptions(resample="fast"))
    assert not report.details[0].up_to_date  # other pixels: the group is made again
    group = open_store(out).group(3)
    assert group.attrs["resample"] == "fast" and group.attrs["jpeg_scale"] == 2
    assert group.attrs["params"]["resample"] == "fast-jpeg-1/2"
    assert _diff(exact, np.asarray(group.tiles[:])).mean() < 1.0
    again = tile_project(project, out, spec, TilingOptions(resample="fast"))
    assert again.details[0].up_to_date
    back = tile_project(project, out, spec, TilingOptions(resample="exact"))
    assert not back.details[0].up_to_date
    np.testing.assert_array_equal(np.asarray(open_store(out).group(3).tiles[:]), exact)


def test_fast_where_it_changes_nothing_keeps_the_group(zlib_slide: Path, tmp_path: Path) -> None:
    project, out, spec = _project(zlib_slide), tmp_path / "z.zarr", TileSpec(64, 64.0)
    tile_project(project, out, spec)
    again = tile_project(project, out, spec, TilingOptions(resample="fast"))
    assert again.details[0].up_to_date  # not JPEG: the same pixels, so the same group


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(InputError, match="--resample must be one of exact, fast"):
        TilingOptions(resample="quick")
