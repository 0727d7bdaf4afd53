"""Heatmap geometry on a generated slide: every tile's value is the known function of its own pixels.

The slide is a 2-level pyramidal TIFF with a green ramp and a red and a blue polygon; the model's
logits are the mean of each normalised channel (times a gain), so the expected probability of each
tile follows from the slide's level-0 pixels under the tile's rectangle, read here directly with
numpy. An offset, swapped axes, a wrong level or a truncated tile size all break the equality.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from shapely.geometry import box

from histobridge.heatmap.pipeline import heatmap_grid, predict_regions, tile_geometry
from histobridge.models.classifier import load_classifier
from histobridge.slides import open_slide
from histobridge.tiling.regions import Region
from tests._heatmap_helpers import (
    BLUE_POLY,
    RED_POLY,
    SLIDE_H,
    SLIDE_MPP,
    SLIDE_W,
    ColourNet,
    box_mean,
    config_dict,
    expected_probs,
    save_model,
    slide_pixels,
    write_slide,
)

GAIN = (3.0, 3.0, 6.0)
REGION_GAIN = (4.0, 0.0, 4.0)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hm")
    path = write_slide(tmp / "colours.tif")
    clf = load_classifier(save_model(tmp, ColourNet(GAIN), config_dict()), device="cpu")
    return path, clf


@pytest.fixture(scope="module")
def region_model(tmp_path_factory):
    """Red against blue only (green gain 0), so a tile's class follows the colour that covers it."""
    return load_classifier(save_model(tmp_path_factory.mktemp("rm"), ColourNet(REGION_GAIN), config_dict()))


def _mask(poly, shape, step, origin):
    """Polygon rasterised at the heatmap's cell centres."""
    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    cx = origin[0] + (xx + 0.5) * step
    cy = origin[1] + (yy + 0.5) * step
    img = Image.new("L", (SLIDE_W, SLIDE_H), 0)
    ImageDraw.Draw(img).polygon(poly, fill=1)
    m = np.asarray(img, bool)
    ix = np.clip(cx.astype(int), 0, SLIDE_W - 1)
    iy = np.clip(cy.astype(int), 0, SLIDE_H - 1)
    return m[iy, ix]


@pytest.mark.parametrize("stride_div", [1, 2])
def test_every_tile_matches_its_pixels(generated, stride_div):
    path, clf = generated
    pixels = slide_pixels()
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(SLIDE_MPP)
        assert slide.level_count == 2
        region = Region(box(0, 0, SLIDE_W, SLIDE_H), "Region", "whole", "whole")
        pred = predict_regions(slide, [region], clf, stride_div=stride_div, batch_size=16, workers=2)
    tile_l0, stride_l0 = tile_geometry(clf, SLIDE_MPP, stride_div)
    assert tile_l0 == pytest.approx(64.0) and stride_l0 == pytest.approx(64.0 / stride_div)
    # Only whole tiles inside the slide: (1024 - 64) / 32 + 1 = 31 columns, 23 rows at stride 32.
    assert len(pred) == {1: 16 * 12, 2: 31 * 23}[stride_div]
    means = np.array([box_mean(pixels, x, y, x + w, y + h) for x, y, w, h in pred.coords])
    expected = expected_probs(means[:, None, None, :], GAIN)
    err = np.abs(pred.probs - expected).max()
    assert err < 5e-3, f"largest per-tile error {err:.4f}"
    # The same check with the rectangle shifted by 1/8 tile fails: the test can see offsets.
    shifted = np.array([box_mean(pixels, x + 8, y, x + w + 8, y + h) for x, y, w, h in pred.coords])
    assert np.abs(pred.probs - expected_probs(shifted[:, None, None, :], GAIN)).max() > 5 * err


def test_fractional_tile_size_is_not_truncated(generated, tmp_path):
    """At 0.3 µm/px a 32 µm tile is 106.67 px: grids must stay float (Slideflow #440 drift)."""
    path, clf = generated
    pixels = slide_pixels()
    with open_slide(path, mpp=0.3) as slide:
        pred = predict_regions(slide, [Region(box(0, 0, SLIDE_W, SLIDE_H), None, "all", None)], clf)
    assert pred.tile_l0 == pytest.approx(32.0 / 0.3)
    assert np.allclose(pred.coords[:, 2], 32.0 / 0.3)
    last = pred.coords[np.argmax(pred.coords[:, 0] + pred.coords[:, 1])]
    assert last[0] == pytest.approx(round(last[0] / pred.tile_l0) * 32.0 / 0.3)
    means = np.array([box_mean(pixels, x, y, x + w, y + h) for x, y, w, h in pred.coords])
    # Resampling from level 1 at fractional positions blurs sharp edges slightly: looser bound.
    err = np.abs(pred.probs - expected_probs(means[:, None, None, :], GAIN)).max()
    assert err < 1.5e-2
    truncated = np.array([box_mean(pixels, x, y, x + 106, y + 106) for x, y in np.floor(pred.coords[:, :2])])
    assert np.abs(pred.probs - expected_probs(truncated[:, None, None, :], GAIN)).max() > 2 * err


@pytest.mark.parametrize("stride_div", [1, 2, 4])
def test_thresholded_heatmap_matches_regions(generated, region_model, stride_div):
    path, clf = generated[0], region_model
    # Threshold = the model's probability for a tile half covered by the colour, half grey.
    half = np.zeros((2, 2, 2, 3), np.uint8)
    half[:, :, 0] = 128
    half[0, 0], half[0, 1] = (255, 0, 0), (128, 0, 128)
    half[1, 0], half[1, 1] = (0, 0, 255), (128, 0, 128)
    thresholds = expected_probs(half, REGION_GAIN)[[0, 1], [0, 2]]
    with open_slide(path) as slide:
        region = Region(box(0, 0, SLIDE_W, SLIDE_H), None, "whole", None)
        pred = predict_regions(slide, [region], clf, stride_div=stride_div, batch_size=32)
    grid = heatmap_grid(pred)
    assert grid.step == pytest.approx(64.0 / stride_div)
    # Cells are stride-sized squares centred in their tiles.
    assert grid.origin == pytest.approx(((64.0 - grid.step) / 2,) * 2)
    rows, cols, _ = grid.values.shape
    # One tile per cell: every tile landed in its own cell, and the grid is full.
    assert rows * cols == len(pred) and not np.isnan(grid.values).any()
    for t, (k, poly) in enumerate(((0, RED_POLY), (2, BLUE_POLY))):
        # Half-covered tiles sit exactly on the threshold and count as hot; the margin keeps float32
        # rounding (the model's summation order) from flipping them.
        hot = grid.values[..., k] > thresholds[t] - 1e-6
        truth = _mask(poly, hot.shape, grid.step, grid.origin)
        iou = (hot & truth).sum() / (hot | truth).sum()
        assert iou >= 0.9 if stride_div == 1 else iou >= 0.93, f"class {k}: IoU {iou:.3f}"
        (ry, rx), (ty, tx) = np.argwhere(hot).mean(axis=0), np.argwhere(truth).mean(axis=0)
        shift = np.hypot(rx - tx, ry - ty) * grid.step
        assert shift < 64.0 / 4, f"class {k}: centroid offset {shift:.1f} px"


def test_annotations_limit_tiles_and_holes_count_as_outside(generated):
    path, clf = generated
    ring = box(128, 128, 640, 512).difference(box(256, 256, 512, 384))
    with open_slide(path) as slide:
        pred = predict_regions(slide, [Region(ring, "Tumor", "a1", "ring")], clf, batch_size=8)
    cx = pred.coords[:, 0] + pred.coords[:, 2] / 2
    cy = pred.coords[:, 1] + pred.coords[:, 3] / 2
    assert len(pred) == 8 * 6 - 4 * 2
    assert ((cx > 128) & (cx < 640) & (cy > 128) & (cy < 512)).all()
    assert not ((cx > 256) & (cx < 512) & (cy > 256) & (cy < 384)).any()
    grid = heatmap_grid(pred)
    assert np.isnan(grid.values[2:4, 2:6]).all() and np.isfinite(grid.values[0, :]).all()


def test_uncertainty_of_plain_model_is_zero(generated):
    path, clf = generated
    with open_slide(path) as slide:
        pred = predict_regions(slide, [Region(box(0, 0, 256, 256), None, "r", None)], clf, uncertainty=3)
    assert pred.std is not None and pred.std.shape == pred.probs.shape
    assert np.abs(pred.std).max() < 1e-6
    assert heatmap_grid(pred).std is not None


def test_overlapping_annotations_do_not_duplicate_tiles(generated):
    path, clf = generated
    big = Region(box(0, 0, 512, 512), "Region", "big", "big")
    inner = Region(box(128, 128, 384, 384), "Tumor", "inner", "inner")
    with open_slide(path) as slide:
        pred = predict_regions(slide, [big, inner], clf)
    assert len(pred) == 8 * 8
    assert len({(x, y) for x, y in pred.coords[:, :2].tolist()}) == 64
    assert set(pred.region.tolist()) == {0}
