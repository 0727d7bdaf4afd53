"""Files the readers would open wrongly: multichannel / 16-bit OME-TIFFs, Olympus VSI; OME-XML pixel sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from _tiling_helpers import pattern_image, write_pyramid

from histobridge.errors import SlideError
from histobridge.slides import open_slide

BACKENDS = ("tiffslide", "openslide")


def _ome_rgb(path: Path, size: float | None, unit: str | None) -> Path:
    meta: dict[str, object] = {"axes": "YXS"}
    if size is not None:
        meta.update(PhysicalSizeX=size, PhysicalSizeY=size)
    if unit is not None:
        meta.update(PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit)
    tifffile.imwrite(
        path, pattern_image(512, 384), ome=True, photometric="rgb", tile=(256, 256), metadata=meta
    )
    return path


@pytest.fixture(scope="module")
def multichannel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-channel uint16 immunofluorescence-like OME-TIFF (values up to 4000)."""
    path = tmp_path_factory.mktemp("ome") / "mif.ome.tif"
    data = np.random.default_rng(0).integers(0, 4000, (5, 384, 512), dtype=np.uint16)
    names = ["DAPI", "CD3", "CD8", "PanCK", "AF"]
    meta = {"axes": "CYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "Channel": {"Name": names}}
    tifffile.imwrite(path, data, ome=True, tile=(256, 256), metadata=meta)
    return path


@pytest.mark.parametrize("backend", ("auto", *BACKENDS))
def test_multichannel_16bit_ome_tiff_is_refused(multichannel: Path, backend: str) -> None:
    # Before: both readers opened it and tiles came out as clipped uint8 RGB of the first channels.
    with pytest.raises(SlideError, match=r"mif\.ome\.tif: 5 channels of 16-bit \(uint16\).*8-bit RGB"):
        open_slide(multichannel, backend=backend)


def test_16bit_rgb_and_8bit_gray_are_refused(tmp_path: Path) -> None:
    rgb16 = tmp_path / "rgb16.tif"
    tifffile.imwrite(rgb16, np.zeros((256, 256, 3), np.uint16), photometric="rgb", tile=(128, 128))
    with pytest.raises(SlideError, match=r"3 channels of 16-bit"):
        open_slide(rgb16)
    gray = tmp_path / "gray.tif"
    tifffile.imwrite(gray, np.zeros((256, 256), np.uint8), tile=(128, 128))
    with pytest.raises(SlideError, match=r"1 channel of 8-bit \(uint8\)"):
        open_slide(gray)


@pytest.mark.parametrize(("size", "unit"), [(0.25, "µm"), (250.0, "nm"), (0.25, None), (0.00025, "mm")])
def test_ome_physical_size_is_the_pixel_size(tmp_path: Path, size: float, unit: str | None) -> None:
    path = _ome_rgb(tmp_path / "rgb.ome.tif", size, unit)
    with open_slide(path, backend="tiffslide") as s:
        assert s.mpp == pytest.approx(0.25) and s.mpp_source == "slide"
        assert s.read_region(0, 0, 64, 64).shape == (64, 64, 3)


def test_ome_without_physical_size_has_no_pixel_size(tmp_path: Path) -> None:
    with open_slide(_ome_rgb(tmp_path / "bare.ome.tif", None, None)) as s:
        assert s.mpp_or_none is None and "no pixel size" in (s.mpp_problem or "")


def test_tiff_resolution_tags_still_win_for_plain_pyramids(tmp_path: Path) -> None:
    path = write_pyramid(tmp_path / "p.tif", pattern_image(512, 512), levels=2, mpp=0.5)
    with open_slide(path) as s:
        assert s.mpp == pytest.approx(0.5)


def _vsi(folder: Path, with_ets: bool) -> Path:
    """Olympus layout: Slide.vsi (label and overview only) beside _Slide_/stack1/frame_t.ets (the pyramid)."""
    vsi = folder / "Slide.vsi"
    tifffile.imwrite(vsi, np.full((212, 620, 3), 200, np.uint8), photometric="rgb")
    if with_ets:
        stack = folder / "_Slide_" / "stack1"
        stack.mkdir(parents=True)
        (stack / "frame_t.ets").write_bytes(b"SIS\x00" + bytes(60))
    return vsi


@pytest.mark.parametrize("backend", ("auto", *BACKENDS))
def test_olympus_vsi_is_refused_not_opened_as_its_label(tmp_path: Path, backend: str) -> None:
    # Before: it opened as a 620 x 212 image, the slide label photo.
    vsi = _vsi(tmp_path, with_ets=True)
    with pytest.raises(
        SlideError, match=r"Slide\.vsi: Olympus VSI is not supported.*_Slide_/stack1/frame_t\.ets"
    ):
        open_slide(vsi, backend=backend)


def test_vsi_without_its_folder_says_the_folder_is_missing(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match=r"_Slide_/ .* is missing"):
        open_slide(_vsi(tmp_path, with_ets=False))
