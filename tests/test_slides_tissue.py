"""Tissue detection: the real CMU skin section, and synthetic masks with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from histobridge.slides import open_slide, tissue_geometry, tissue_mask
from histobridge.slides.tissue import mask_to_geometry, otsu_threshold, saturation


def test_cmu_tissue_fraction_in_documented_range(cmu_slide: Path) -> None:
    """test-data.md §3: about 27 % (gray Otsu) to 32-33 % (saturation > 0.10-0.15) is tissue."""
    with open_slide(cmu_slide) as s:
        thumb, ds = s.thumbnail(1024)
        geom = tissue_geometry(s)
    assert thumb.shape == (1024, 766, 3) and ds == pytest.approx(2967 / 1024, rel=1e-3)
    mask = tissue_mask(thumb)
    assert 0.25 <= mask.mean() <= 0.38
    w, h = 2220, 2967
    assert 0.25 <= geom.area / (w * h) <= 0.38
    minx, miny, maxx, maxy = geom.bounds
    assert minx >= 0 and miny >= 0 and maxx <= w + 1 and maxy <= h + 1  # level-0 pixels
    # the left third is mostly background, the centre strip mostly tissue
    left = geom.intersection(box(0, 0, w / 4, h)).area / (w / 4 * h)
    centre = geom.intersection(box(w * 0.45, 0, w * 0.75, h)).area / (w * 0.3 * h)
    assert left < 0.1 < 0.4 < centre


def test_blank_slide_has_no_tissue() -> None:
    rng = np.random.default_rng(0)
    glass = np.clip(rng.normal(245, 3, (200, 300, 3)), 0, 255).astype(np.uint8)
    assert tissue_mask(glass).mean() < 0.01


def test_stained_square_is_found_exactly() -> None:
    img = np.full((200, 300, 3), 245, np.uint8)
    img[50:150, 100:220] = (180, 90, 160)  # H&E-like pink/purple
    mask = tissue_mask(img)
    assert (
        not mask[:50].any() and not mask[150:].any() and not mask[:, :100].any() and not mask[:, 220:].any()
    )
    assert mask.sum() >= 100 * 120 - 4  # the 3x3 majority vote may shave the four corner pixels
    geom = mask_to_geometry(mask, scale=4.0)
    assert geom.area == pytest.approx(100 * 120 * 16, abs=4 * 16)
    assert geom.bounds == (400.0, 200.0, 880.0, 600.0)


def test_mask_vectorisation_keeps_holes_and_drops_specks() -> None:
    mask = np.zeros((100, 100), bool)
    mask[10:90, 10:90] = True
    mask[40:60, 40:60] = False  # a hole
    mask[95, 95] = True  # a one-pixel speck
    geom = mask_to_geometry(mask, min_area_px=4)
    assert geom.area == pytest.approx(80 * 80 - 20 * 20)
    assert len(geom.geoms) == 1 and len(geom.geoms[0].interiors) == 1


def test_otsu_splits_two_populations() -> None:
    values = np.r_[np.full(500, 0.05), np.full(500, 0.6)]
    assert 0.05 < otsu_threshold(values) <= 0.6


def test_tissue_mask_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="RGB"):
        tissue_mask(np.zeros((10, 10), np.uint8))


def he_texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """All-tissue H&E-like texture: pale eosin (saturation ~0.15) to dense haematoxylin (~0.6), in blobs."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 8 + 1, w // 8 + 1))
    mix = np.kron(coarse, np.ones((8, 8)))[:h, :w, None]  # 0 = pale pink, 1 = purple nuclei
    pale, dark = np.array([242.0, 205, 228]), np.array([110.0, 55, 150])
    rgb = pale * (1 - mix) + dark * mix + rng.normal(0, 3, (h, w, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_slide_that_is_all_tissue_is_all_tissue() -> None:
    """Before: Otsu on saturation split the tissue in two and kept ~69 % (the darker half)."""
    img = he_texture(300, 400)
    assert otsu_threshold(saturation(img)) > 0.25  # where a plain Otsu cut would have split it
    assert tissue_mask(img).mean() >= 0.95


def test_mostly_glass_slide_keeps_only_the_tissue() -> None:
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(238, 4, (300, 400, 3)), 0, 255).astype(np.uint8)  # glass with noise
    img[100:200, 150:250] = he_texture(100, 100, seed=2)  # 8 % of the slide is tissue
    mask = tissue_mask(img)
    assert mask[100:200, 150:250].mean() >= 0.95  # its pale half included
    outside = mask.copy()
    outside[100:200, 150:250] = False
    assert outside.mean() < 0.005  # glass excluded


def test_tinted_glass_is_still_glass() -> None:
    """Bluish glass (saturation ~0.09, above the fixed floor) is recognised as the glass population."""
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal((222, 232, 244), 2, (300, 400, 3)), 0, 255).astype(np.uint8)
    img[100:200, 150:250] = (200, 90, 170)
    mask = tissue_mask(img)
    assert mask[100:200, 150:250].mean() > 0.95 and mask.mean() < 0.1


def test_whole_tissue_on_the_real_slide_covers_the_annotated_area(cmu_slide: Path, tmp_path: Path) -> None:
    """The sample project's annotations cover the CMU section; whole-tissue mode must find at least as much.

    Before: the Otsu cut dropped pale dermis, 41 tissue tiles against 117 annotated ones.
    """
    from histobridge.qupath.project import Project
    from histobridge.qupath.sample import init_sample_project
    from histobridge.tiling import TileSpec, TilingOptions, tile_project

    project = Project.open(init_sample_project(tmp_path / "skin", offline=True))
    spec = TileSpec(64, 64)
    annotated = tile_project(project, tmp_path / "a.zarr", spec).images[0].count
    tissue = (
        tile_project(project, tmp_path / "t.zarr", spec, TilingOptions(whole_tissue=True)).images[0].count
    )
    assert annotated > 100 and tissue >= 0.95 * annotated
