"""Reader edge cases from test-data.md §6, built at test time from the CMU slide (JPEG, 256-px tiles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _tiling_helpers import write_pyramid

from histobridge.errors import CalibrationError
from histobridge.slides import open_slide

CMU_MPP = 0.499


@pytest.fixture(scope="module")
def cmu_pixels(cmu_slide: Path) -> np.ndarray:
    with open_slide(cmu_slide) as s:
        return s.read_region(0, 0, 2220, 2967)


@pytest.fixture(scope="module")
def derived(cmu_pixels: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("derived")
    kw = {"levels": 5, "compression": "jpeg", "tile": 256}
    return {
        "pyramid": write_pyramid(folder / "pyramid.tif", cmu_pixels, mpp=CMU_MPP, **kw),
        "ome": write_pyramid(folder / "subifd.ome.tif", cmu_pixels, mpp=CMU_MPP, ome_subifds=True, **kw),
        "no_mpp": write_pyramid(folder / "nompp.tif", cmu_pixels, mpp=None, **kw),
        "dpi72": write_pyramid(folder / "dpi72.tif", cmu_pixels, dpi72=True, **kw),
    }


@pytest.mark.parametrize("backend", ["tiffslide", "openslide"])
def test_pyramid_tiff_levels_and_mpp(derived: dict[str, Path], backend: str) -> None:
    with open_slide(derived["pyramid"], backend=backend) as s:
        assert s.level_count == 5
        assert s.dimensions == (2220, 2967)
        assert s.level_dimensions[4] == (138, 185)
        assert s.level_downsamples[0] == 1.0
        assert 15.9 < s.level_downsamples[4] < 16.2  # the reader's own value, not 2**4
        assert s.mpp == pytest.approx(CMU_MPP, rel=1e-3)


def test_ome_subifd_pyramid_level_counts_differ(derived: dict[str, Path]) -> None:
    """openslide ignores SubIFDs (1 level) while tiffslide sees 5: never assume the readers agree."""
    ts = open_slide(derived["ome"], backend="tiffslide")
    osl = open_slide(derived["ome"], backend="openslide")
    assert ts.level_count == 5 and osl.level_count == 1
    assert ts.mpp == pytest.approx(CMU_MPP, rel=1e-3)
    np.testing.assert_array_equal(ts.read_region(300, 400, 512, 512), osl.read_region(300, 400, 512, 512))
    # a 4x-reduced tile: tiffslide reads it from level 2, openslide from level 0; same picture
    a = ts.read_scaled(512, 512, 1024, 1024, 256).astype(int)
    b = osl.read_scaled(512, 512, 1024, 1024, 256).astype(int)
    assert np.abs(a - b).mean() < 8  # JPEG noise of the reduced level
    assert np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))).max() < 2  # same field, same colour


@pytest.mark.parametrize("backend", ["tiffslide", "openslide"])
def test_missing_mpp_needs_an_override(derived: dict[str, Path], backend: str) -> None:
    with open_slide(derived["no_mpp"], backend=backend) as s:
        assert s.mpp_or_none is None
        with pytest.raises(CalibrationError, match="--mpp"):
            _ = s.mpp
    with open_slide(derived["no_mpp"], backend=backend, mpp=0.25) as s:
        assert s.mpp == 0.25


@pytest.mark.parametrize("backend", ["tiffslide", "openslide"])
def test_72_dpi_mpp_is_flagged_as_implausible(derived: dict[str, Path], backend: str) -> None:
    with open_slide(derived["dpi72"], backend=backend) as s:
        assert s.mpp_or_none is None
        with pytest.raises(CalibrationError, match=r"352\.8.*implausible.*--mpp"):
            _ = s.mpp
    with open_slide(derived["dpi72"], backend=backend, mpp=CMU_MPP) as s:
        assert s.mpp == CMU_MPP


def test_bad_override_is_rejected(derived: dict[str, Path]) -> None:
    with pytest.raises(CalibrationError, match="positive"):
        open_slide(derived["pyramid"], mpp=-1)


def test_um_per_px_resampling_across_levels(derived: dict[str, Path], cmu_pixels: np.ndarray) -> None:
    """The same 256 µm field at 1 µm/px reads from level 1 and matches a reduction of level 0."""
    from PIL import Image

    with open_slide(derived["pyramid"]) as s:
        side = 256 / s.mpp  # level-0 px for 256 µm
        assert s.best_level(side / 256) == 1
        tile = s.read_scaled(700, 900, side, side, 256).astype(int)
    box = (700, 900, 700 + side, 900 + side)
    ref = np.asarray(Image.fromarray(cmu_pixels).resize((256, 256), Image.Resampling.BOX, box=box))
    ref = ref.astype(int)

    # Sub-pixel differences between the two resampling routes are large on sharp tissue edges, so
    # compare 8x8-pixel means: the same field at the same scale agrees closely.
    def coarse(a: np.ndarray) -> np.ndarray:
        return a.reshape(32, 8, 32, 8, 3).mean(axis=(1, 3))

    assert np.abs(coarse(tile) - coarse(ref)).mean() < 4
