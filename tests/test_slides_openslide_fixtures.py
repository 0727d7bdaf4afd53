"""Reader edge cases on openslide-python's own synthetic fixtures (test-data.md §5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _tiling_helpers import openslide_test_fixtures

from histobridge.errors import CalibrationError, SlideError
from histobridge.slides import open_slide


@pytest.fixture(scope="module")
def fixtures() -> Path:
    try:
        return openslide_test_fixtures()
    except RuntimeError as err:
        pytest.skip(f"openslide-python test fixtures unavailable (no cache and no package index): {err}")


@pytest.mark.parametrize("backend", ["tiffslide", "openslide"])
def test_small_svs(fixtures: Path, backend: str) -> None:
    with open_slide(fixtures / "small.svs", backend=backend) as s:
        assert s.dimensions == (16, 16) and s.level_count == 1 and s.mpp == pytest.approx(0.499)
        assert s.read_region(0, 0, 16, 16).shape == (16, 16, 3)


def test_non_ascii_path(fixtures: Path, tmp_path: Path) -> None:
    face = tmp_path / "\N{NEUTRAL FACE}.svs"
    shutil.copy(fixtures / "small.svs", face)
    for backend in ("tiffslide", "openslide"):
        with open_slide(str(face), backend=backend) as s:
            assert s.dimensions == (16, 16)


@pytest.mark.parametrize("backend", ["tiffslide", "openslide"])
def test_unreadable_svs_opens_but_reading_names_the_file(fixtures: Path, backend: str) -> None:
    s = open_slide(fixtures / "unreadable.svs", backend=backend)
    with s, pytest.raises(SlideError, match=r"unreadable\.svs.*level 0"):
        s.read_region(0, 0, 16, 16)


def test_unopenable_tiff_is_unreadable_with_either_reader(fixtures: Path) -> None:
    with pytest.raises(SlideError, match=r"unopenable\.tiff.*(52479|compression)"):
        open_slide(fixtures / "unopenable.tiff", backend="openslide")
    s = open_slide(fixtures / "unopenable.tiff")  # tiffslide opens it; the read fails
    with s, pytest.raises(SlideError, match=r"unopenable\.tiff"):
        s.read_region(0, 0, 1, 1)


@pytest.mark.parametrize("backend", ["tiffslide", "openslide"])
def test_boxes_tiff_levels_and_bogus_dpi(fixtures: Path, backend: str) -> None:
    with open_slide(fixtures / "boxes.tiff", backend=backend) as s:
        assert s.dimensions == (300, 250) and s.level_count == 4
        assert s.level_downsamples[2] == pytest.approx(4.016, abs=2e-3)  # the reader's own, not 4
        assert s.level_downsamples[3] == pytest.approx(8.086, abs=2e-3)
        assert s.mpp_or_none is None
        with pytest.raises(CalibrationError, match=r"352\.8.*implausible"):
            _ = s.mpp
    with open_slide(fixtures / "boxes.tiff", backend=backend, mpp=0.5) as s:
        assert s.mpp == 0.5
        assert s.best_level(4.016) == 2 and s.best_level(4.0) == 2  # within the 0.5 % tolerance
        small = s.read_scaled(0, 0, 300, 250, (75, 62))
        full = s.read_region(0, 0, 300, 250).astype(float)
    assert small.shape == (62, 75, 3)
    assert abs(small.astype(float).mean() - full.mean()) < 3  # same picture, a quarter the size


def test_dicom_goes_to_openslide(fixtures: Path) -> None:
    with open_slide(fixtures / "boxes_0.dcm") as s:
        assert s.backend == "openslide" and s.dimensions == (16, 16) and s.mpp == pytest.approx(0.499)
        assert s.read_region(0, 0, 16, 16).dtype == np.uint8
    with pytest.raises(SlideError, match=r"boxes_0\.dcm"):
        open_slide(fixtures / "boxes_0.dcm", backend="tiffslide")
