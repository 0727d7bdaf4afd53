"""Slide reader: real CMU slide, generated pyramids with known pixel patterns, both backends."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from _tiling_helpers import BLOCK, halve, pattern_image, write_pyramid

from histobridge.errors import SlideError, SlideNotFoundError
from histobridge.slides import open_slide
from histobridge.slides._backends import rgba_to_rgb_on_white

BACKENDS = ("tiffslide", "openslide")


@pytest.fixture(scope="module")
def pattern_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2048 x 1536 lossless 3-level pyramid; each 64-px block coloured by its block coordinates."""
    path = tmp_path_factory.mktemp("pattern") / "pattern.tif"
    return write_pyramid(path, pattern_image(2048, 1536), levels=3, mpp=0.5)


def expected_block(x: int, y: int) -> tuple[int, int, int]:
    return ((x // BLOCK) * 8) % 256, ((y // BLOCK) * 8) % 256, 128


# -- the real CMU slide -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_cmu_properties(cmu_slide: Path, backend: str) -> None:
    with open_slide(cmu_slide, backend=backend) as s:
        assert s.backend == backend
        assert s.dimensions == (2220, 2967)
        assert s.level_count == 1 and s.level_downsamples == (1.0,)
        assert isinstance(s.mpp, float) and s.mpp == pytest.approx(0.499)
        assert s.offset == (0.0, 0.0) and s.reader_bounds is None


def test_cmu_read_scaled_equals_direct_reads(cmu_slide: Path) -> None:
    """A level-0 tile through read_scaled is exactly the reader's own pixels (no resampling)."""
    import openslide
    import tiffslide

    x, y = 1000, 1200
    with open_slide(cmu_slide) as s:
        tile = s.read_scaled(x, y, 256, 256, 256)
        assert tile.shape == (256, 256, 3) and tile.dtype == np.uint8
        np.testing.assert_array_equal(tile, s.read_region(x, y, 256, 256))
    ref_ts = np.asarray(tiffslide.TiffSlide(str(cmu_slide)).read_region((x, y), 0, (256, 256)))[..., :3]
    np.testing.assert_array_equal(tile, ref_ts)
    ref_os = np.asarray(openslide.OpenSlide(str(cmu_slide)).read_region((x, y), 0, (256, 256)).convert("RGB"))
    np.testing.assert_array_equal(tile, ref_os)


def test_cmu_backends_agree_on_level0(cmu_slide: Path) -> None:
    a = open_slide(cmu_slide, backend="tiffslide").read_region(0, 0, 2220, 2967)
    b = open_slide(cmu_slide, backend="openslide").read_region(0, 0, 2220, 2967)
    np.testing.assert_array_equal(a, b)


def test_cmu_padding_outside_is_white(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as s:
        region = s.read_region(2100, 2900, 256, 256)
        inside = s.read_region(2100, 2900, 120, 67)
    assert region.shape == (256, 256, 3)
    np.testing.assert_array_equal(region[:67, :120], inside)
    assert (region[67:] == 255).all() and (region[:, 120:] == 255).all()
    assert (inside != 255).any()


# -- generated pyramid with a known pattern -----------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_pattern_pixels_at_known_coordinates(pattern_slide: Path, backend: str) -> None:
    with open_slide(pattern_slide, backend=backend) as s:
        assert s.level_count == 3
        assert s.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
        assert s.mpp == pytest.approx(0.5)
        tile = s.read_region(640, 320, 64, 64)
        assert tuple(tile[10, 10]) == expected_block(640, 320) == (80, 40, 128)
        assert (tile == tile[0, 0]).all()  # exactly one block
        straddle = s.read_region(96, 96, 64, 64)
        assert tuple(straddle[0, 0]) == expected_block(96, 96)
        assert tuple(straddle[-1, -1]) == expected_block(159, 159)


def test_both_backends_agree_on_level0_pixels(pattern_slide: Path) -> None:
    a = open_slide(pattern_slide, backend="tiffslide").read_region(0, 0, 2048, 1536)
    b = open_slide(pattern_slide, backend="openslide").read_region(0, 0, 2048, 1536)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, pattern_image(2048, 1536))


def test_read_region_at_level_uses_level_pixels(pattern_slide: Path) -> None:
    level1 = halve(pattern_image(2048, 1536))
    with open_slide(pattern_slide) as s:
        out = s.read_region(512, 256, 512, 512, level=1)
    assert out.shape == (256, 256, 3)
    np.testing.assert_array_equal(out, level1[128:384, 256:512])


def test_read_scaled_picks_best_level_and_resamples_once(pattern_slide: Path) -> None:
    """2x reduction comes straight from level 1; 3x from level 1 resampled; block colours stay right."""
    level1 = halve(pattern_image(2048, 1536))
    with open_slide(pattern_slide) as s:
        assert s.best_level(2.0) == 1 and s.best_level(3.0) == 1 and s.best_level(1.9) == 0
        assert s.best_level(8.0) == 2
        np.testing.assert_array_equal(s.read_scaled(512, 256, 512, 512, 256), level1[128:384, 256:512])
        # 3x: a 768-px (384 µm at 0.5 µm/px) region to 256 px, i.e. 1.5 µm/px
        out = s.read_scaled(0, 0, 768, 768, 256)
    # centres of 64-px blocks land at output pixels (64 * k + 32) / 3
    for bx, by in [(1, 1), (5, 2), (10, 10)]:
        ox, oy = int((bx * 64 + 32) / 3), int((by * 64 + 32) / 3)
        assert tuple(out[oy, ox]) == expected_block(bx * 64, by * 64)


def test_read_scaled_float_region_is_consistent(pattern_slide: Path) -> None:
    """A float rectangle gives the same result alone and inside a batch of neighbours."""
    with open_slide(pattern_slide) as s:
        coords = np.array([[100.25 + 300.5 * i, 50.75, 300.5, 300.5] for i in range(4)])
        batch = s.read_scaled_batch(coords, 128)
        for i, (x, y, w, h) in enumerate(coords):
            single = s.read_scaled(x, y, w, h, 128)
            assert np.abs(batch[i].astype(int) - single).max() <= 1


def test_offset_and_crop_map_to_qupath_space(pattern_slide: Path) -> None:
    full = pattern_image(2048, 1536)
    with open_slide(pattern_slide, offset=(128, 64), size=(1024, 512)) as s:
        assert s.dimensions == (1024, 512)
        np.testing.assert_array_equal(s.read_region(0, 0, 256, 256), full[64:320, 128:384])
        edge = s.read_region(1000, 500, 64, 64)  # crosses the crop: white beyond it
        np.testing.assert_array_equal(edge[:12, :24], full[564:576, 1128:1152])
        assert (edge[12:] == 255).all() and (edge[:, 24:] == 255).all()
        thumb, ds = s.thumbnail(256)
    assert thumb.shape == (128, 256, 3) and ds == pytest.approx(4.0)


@pytest.mark.parametrize("direct", [True, False])
def test_concurrent_reads_match_sequential(
    pattern_slide: Path, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several threads on one Slide (direct decoding, or tiffslide's own per-thread handles)."""
    if not direct:
        monkeypatch.setenv("HISTOBRIDGE_NO_DIRECT_TIFF", "1")
    s = open_slide(pattern_slide)
    assert (s._backend._direct[0] is not None) == direct
    rng = np.random.default_rng(1)
    boxes = [(int(x), int(y)) for x, y in rng.integers(0, 1700, size=(40, 2))]
    expected = [s.read_scaled(x, y, 333, 333, 100) for x, y in boxes]
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        for i in range(k, len(boxes), 4):
            results[i] = s.read_scaled(*boxes[i], 333, 333, 100)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, e in enumerate(expected):
        np.testing.assert_array_equal(results[i], e)
    s.close()


def test_direct_tiff_decoding_matches_tiffslide(cmu_slide: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = open_slide(cmu_slide, backend="tiffslide")
    assert fast._backend._direct[0] is not None
    monkeypatch.setenv("HISTOBRIDGE_NO_DIRECT_TIFF", "1")
    slow = open_slide(cmu_slide, backend="tiffslide")
    assert slow._backend._direct[0] is None
    for x, y in [(0, 0), (239, 241), (1999, 2800)]:
        np.testing.assert_array_equal(fast.read_region(x, y, 300, 200), slow.read_region(x, y, 300, 200))


# -- errors -------------------------------------------------------------------------------------


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(SlideNotFoundError, match=r"nothere\.svs"):
        open_slide(tmp_path / "nothere.svs")


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_garbage_file_is_a_clean_slide_error(tmp_path: Path, backend: str) -> None:
    bad = tmp_path / "garbage.svs"
    bad.write_bytes(b"this is not a slide\n" * 50)
    with pytest.raises(SlideError, match=r"garbage\.svs") as info:
        open_slide(bad, backend=backend)
    assert not isinstance(info.value, SlideNotFoundError)


def test_unknown_backend(tmp_path: Path, pattern_slide: Path) -> None:
    with pytest.raises(SlideError, match="unknown slide backend"):
        open_slide(pattern_slide, backend="bioformats")


def test_corrupt_tile_data_raises_slide_error_on_read(tmp_path: Path, pattern_slide: Path) -> None:
    """Opening works, reading a damaged tile fails with the file and the region named."""
    import tifffile

    data = bytearray(pattern_slide.read_bytes())
    with tifffile.TiffFile(pattern_slide) as tf:
        page = tf.pages[0]
        off, count = page.dataoffsets[0], page.databytecounts[0]
    data[off : off + count] = b"\xff" * count
    bad = tmp_path / "damaged.tif"
    bad.write_bytes(bytes(data))
    s = open_slide(bad, backend="tiffslide")
    with pytest.raises(SlideError, match=r"damaged\.tif.*level 0"):
        s.read_region(0, 0, 100, 100)
    assert s.read_region(1024, 1024, 64, 64).shape == (64, 64, 3)  # other tiles still read


def test_rgba_composited_on_white() -> None:
    rgba = np.array([[[10, 20, 30, 255], [200, 100, 0, 0], [0, 0, 0, 128]]], np.uint8)
    out = rgba_to_rgb_on_white(rgba)
    assert out.shape == (1, 3, 3)
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert tuple(out[0, 2]) == (127, 127, 127)


@pytest.mark.parametrize("side", [256.0, 300.7, 513.03, 700.2, 1100.3])
def test_resampled_block_edges_land_where_the_geometry_says(pattern_slide: Path, side: float) -> None:
    """Across levels 0-2, each output pixel is the area average of the field it claims (±half a step)."""
    x0, y0 = 611.3, 377.9
    with open_slide(pattern_slide) as s:
        row = s.read_scaled(x0, y0, side, side, 256)[128, :, 0].astype(float)
    scale = side / 256
    expected = np.empty(256)
    for j in range(256):  # fine numerical integral of the block colour over the pixel's footprint
        xs = x0 + (j + (np.arange(400) + 0.5) / 400) * scale
        expected[j] = ((xs // BLOCK) * 8).mean()
    err = np.abs(row - expected)
    assert err.max() <= 4.0  # a colour step is 8: never off by a whole pixel
    assert err.mean() < 0.25


def test_auto_backend_routes_non_tiff_formats_to_openslide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DICOM/MRXS go to openslide first; both readers' refusals end up in one message naming the file."""
    from histobridge.slides import _backends

    tried: list[str] = []

    def refuse(name: str, path: Path) -> None:
        tried.append(name)
        raise RuntimeError(f"{name} says no")

    monkeypatch.setattr(_backends, "_open_one", refuse)
    for suffix, first in ((".dcm", "openslide"), (".mrxs", "openslide"), (".svs", "tiffslide")):
        tried.clear()
        f = tmp_path / f"slide{suffix}"
        f.write_bytes(b"x")
        with pytest.raises(SlideError, match=rf"slide\{suffix}.*tiffslide says no") as info:
            open_slide(f)
        assert tried[0] == first and len(tried) == 2 and "openslide says no" in str(info.value)


def test_oversized_blocks_are_read_tile_by_tile_then_refused(
    pattern_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose common block exceeds the read limit is read per tile (same pixels); one tile over
    the limit is a SlideError instead of a MemoryError (single-level slides at low magnification)."""
    from histobridge.slides import slide as slide_mod

    coords = np.array([[0, 0, 300, 300], [300, 0, 300, 300], [600, 300, 300, 300]], np.float64)
    with open_slide(pattern_slide) as s:
        whole = s.read_scaled_batch(coords, 64)
        # read at level 2: the batch block is 225 x 150 px, one tile 75 x 75 px
        monkeypatch.setattr(slide_mod, "MAX_READ_BYTES", 100 * 100 * 3)
        np.testing.assert_array_equal(s.read_scaled_batch(coords, 64), whole)
        monkeypatch.setattr(slide_mod, "MAX_READ_BYTES", 50 * 50 * 3)
        with pytest.raises(SlideError, match=r"pattern\.tif: one 300 x 300 px tile needs a .* read at level"):
            s.read_scaled_batch(coords, 64)
