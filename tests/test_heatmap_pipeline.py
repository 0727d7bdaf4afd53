"""The threaded read → model pipeline (order, bounded prefetch, errors), overlays and the lazy CLI."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from histobridge.errors import InputError, SlideError
from histobridge.heatmap.inference import infer_tiles
from histobridge.models.classifier import load_classifier
from histobridge.viz.overlay import HeatGrid, colour_lut, overlay_picture, write_overlays
from tests._heatmap_helpers import ColourNet, config_dict, expected_probs, save_model


class FakeSlide:
    """Tiles whose colour encodes their x coordinate; counts reads in flight; can fail on demand."""

    def __init__(self, fail_at: float | None = None, delay: float = 0.0) -> None:
        self.fail_at = fail_at
        self.delay = delay
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.reads = 0

    def read_scaled(self, x, y, w, h, out_px):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.reads += 1
        try:
            time.sleep(self.delay)
            if self.fail_at is not None and x == self.fail_at:
                raise SlideError(f"fake.tif: cannot read tile at x={x}")
            tile = np.zeros((out_px, out_px, 3), np.uint8)
            tile[..., 0] = int(x) % 256
            return tile
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    model = ColourNet((3.0, 0.0, 0.0))
    return load_classifier(save_model(tmp_path_factory.mktemp("m"), model, config_dict()))


def _coords(n: int) -> np.ndarray:
    c = np.zeros((n, 4))
    c[:, 0] = np.arange(n) * 3.0
    c[:, 2:] = 64.0
    return c


def test_results_keep_input_order(clf):
    coords = _coords(203)
    res = infer_tiles(FakeSlide(delay=0.0005), coords, clf, batch_size=16, workers=4)
    tiles = np.zeros((203, 16, 16, 3), np.uint8)
    tiles[..., 0] = (coords[:, 0].astype(int) % 256)[:, None, None]
    np.testing.assert_allclose(res.probs, expected_probs(tiles, (3.0, 0.0, 0.0)), atol=1e-5)
    assert res.std is None and res.wall_s > 0 and res.tiles_per_s > 0


def test_prefetch_bounds_reads_in_flight(clf):
    slide = FakeSlide(delay=0.002)
    seen = []

    def progress(n: int) -> None:
        seen.append(slide.reads)

    infer_tiles(slide, _coords(160), clf, batch_size=8, workers=2, prefetch=2, progress=progress)
    assert slide.max_active <= 2
    # Never more than (prefetch + 1) batches read ahead of the model.
    for i, reads in enumerate(seen):
        assert reads <= (i + 1 + 2 + 1) * 8


def test_reader_error_propagates_and_stops(clf):
    slide = FakeSlide(fail_at=30.0)
    with pytest.raises(SlideError, match="cannot read tile at x=30"):
        infer_tiles(slide, _coords(400), clf, batch_size=4, workers=2, prefetch=2)
    time.sleep(0.05)
    assert slide.reads < 400  # the remaining batches were cancelled


def test_empty_coordinates(clf):
    res = infer_tiles(FakeSlide(), np.zeros((0, 4)), clf, uncertainty=2)
    assert res.probs.shape == (0, 3) and res.std is not None and res.std.shape == (0, 3)


def test_overlay_places_cells_at_their_level0_position(tmp_path):
    thumb = np.full((100, 200, 3), 255, np.uint8)
    values = np.full((2, 3), np.nan)
    values[1, 2] = 1.0  # one hot cell: level-0 x 80+2·40 … 200+40, y 40+40 … 120 at downsample 2
    grid = HeatGrid(values, origin=(80.0, 40.0), step=40.0)
    pic = np.asarray(overlay_picture(thumb, 2.0, grid, title="t"))
    top = 22  # title band
    hot = pic[top + 40 : top + 60, 80:100]
    assert (np.abs(hot.astype(int) - hot[0, 0].astype(int)).max() <= 1)
    assert hot[0, 0, 2] < 200 and hot[0, 0, 0] > 200  # yellow end of the ramp blended on white
    assert (pic[top + 5, 5] == 255).all()  # NaN cells stay transparent
    assert (pic[top + 30, 90] == 255).all()  # just above the hot cell
    assert pic.shape[1] > 200  # room for the colour bar
    lut = colour_lut()
    assert lut.shape == (256, 3) and tuple(lut[0]) != tuple(lut[-1])
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    stack = HeatGrid(np.stack([values, values], -1), (80.0, 40.0), 40.0)
    assert stack.shape == (2, 3) and np.array_equal(stack.channel(1).values, values, equal_nan=True)
    write_overlays(thumb, 2.0, stack, ["A", "B"], paths)
    assert all(Image.open(p).size == Image.fromarray(pic).size for p in paths)
    with pytest.raises(InputError, match="does not match"):
        write_overlays(thumb, 2.0, stack, ["A"], paths[:1])
    with pytest.raises(InputError, match=r"one \(rows, cols\) map"):
        overlay_picture(thumb, 2.0, stack)
