"""In-place preprocessing into reused buffers gives exactly what TileClassifier.preprocess gives; on the
CPU the model sees small channels-last chunks, and the probabilities match per-batch ``predict``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histobridge.errors import ModelError
from histobridge.heatmap.inference import (
    channels_last_buffer,
    cpu_chunk,
    in_place_steps,
    infer_tiles,
    iter_batches,
    iter_tiles,
    preprocess_into,
)
from histobridge.models.classifier import ClassifierConfig, TileClassifier, load_classifier
from tests._heatmap_helpers import ColourNet, config_dict, save_model

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


class NoiseSlide:
    """Random tiles, the same for the same rectangle (seeded by its x)."""

    def read_scaled(self, x, y, w, h, out_px):
        rng = np.random.default_rng(int(x))
        return rng.integers(0, 256, (out_px, out_px, 3), dtype=np.uint8)


def _clf(transform: list[dict], patch: int = 16) -> TileClassifier:
    cfg = ClassifierConfig.from_dict(config_dict(patch=patch, transform=transform), "<test>")
    return TileClassifier(torch.jit.script(ColourNet((2.0, -1.0, 0.5)).eval()), cfg, device="cpu")


NORMALISE = {"name": "Normalize", "arguments": {"mean": [0.7, 0.55, 0.6], "std": [0.21, 0.17, 0.19]}}
TRANSFORMS = [
    [{"name": "Resize", "arguments": {"size": 16}}, {"name": "ToTensor"}, NORMALISE],
    [{"name": "ToTensor"}, NORMALISE],
    [{"name": "ToTensor"}],
    [NORMALISE, {"name": "ToTensor"}],
    [{"name": "Resize", "arguments": {"size": [16, 16]}}, {"name": "ToTensor"}],
]


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_in_place_equals_generic_preprocess_bit_for_bit(transform):
    clf = _clf(transform)
    steps = in_place_steps(clf)
    assert steps is not None
    tiles = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    buf = torch.full((8, 3, 16, 16), float("nan"))
    got = preprocess_into(tiles, buf, steps)
    want = clf.preprocess(tiles)
    assert got.shape == want.shape == (5, 3, 16, 16) and got.is_contiguous()
    assert torch.equal(got, want)
    assert got.data_ptr() == buf.data_ptr()  # written into the buffer, not a copy
    last = channels_last_buffer(8, 16)
    got_cl = preprocess_into(tiles, last, steps)
    assert got_cl.is_contiguous(memory_format=torch.channels_last) and got_cl.data_ptr() == last.data_ptr()
    assert torch.equal(got_cl, want)  # the same values, only stored NHWC


def test_stain_normalisation_runs_per_chunk_as_the_generic_path_does():
    import json
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "sample_projects/skin/models/classifier/config.json"
    stain = next(t for t in json.loads(shipped.read_text())["transform"] if t["name"] == "StainNormalize")
    for transform in ([stain, {"name": "ToTensor"}, NORMALISE], [{"name": "ToTensor"}, stain, NORMALISE]):
        clf = _clf(transform)
        steps = in_place_steps(clf)
        assert steps is not None and [op for op, _ in steps].count("stain") == 1
        tiles = np.random.default_rng(2).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
        want = clf.preprocess(tiles)
        for buf in (torch.empty(8, 3, 16, 16), channels_last_buffer(8, 16)):
            whole = preprocess_into(tiles, buf, steps).clone()
            torch.testing.assert_close(whole, want, rtol=0, atol=1e-5)
            halves = torch.cat([preprocess_into(tiles[:3], buf, steps).clone(),
                                preprocess_into(tiles[3:], buf, steps).clone()])
            torch.testing.assert_close(halves, want, rtol=0, atol=1e-5)


def test_shape_changing_resize_uses_the_generic_path():
    clf = _clf([{"name": "Resize", "arguments": {"size": 8}}, {"name": "ToTensor"}])
    assert in_place_steps(clf) is None
    coords = np.array([[float(i), 0.0, 4.0, 4.0] for i in range(10)])
    res = infer_tiles(NoiseSlide(), coords, clf, batch_size=4, workers=2)
    tiles = np.stack([NoiseSlide().read_scaled(x, 0, 4, 4, 16) for x in coords[:, 0]])
    np.testing.assert_array_equal(res.probs, clf.predict(tiles, batch_size=4))


def test_preprocess_into_rejects_tiles_of_another_size():
    with pytest.raises(ModelError, match="expected tiles"):
        preprocess_into(np.zeros((2, 8, 8, 3), np.uint8), torch.empty(4, 3, 16, 16), [("div", 255.0)])


def test_pipeline_results_equal_per_batch_predict(tmp_path):
    clf = load_classifier(save_model(tmp_path, ColourNet((3.0, 0.0, -2.0)), config_dict()))
    coords = np.array([[float(i), 0.0, 4.0, 4.0] for i in range(37)])  # last batch is partial
    res = infer_tiles(NoiseSlide(), coords, clf, batch_size=8, workers=2, prefetch=3)
    tiles = np.stack([NoiseSlide().read_scaled(x, 0, 4, 4, 16) for x in coords[:, 0]])
    # The inputs are bit-equal (above); a channels-last mean sums in another order: float32 rounding.
    np.testing.assert_allclose(res.probs, clf.predict(tiles, batch_size=8), rtol=1e-6, atol=1e-7)


def test_reused_buffers_are_bounded_by_prefetch(tmp_path):
    clf = load_classifier(save_model(tmp_path, ColourNet(), config_dict()))
    coords = np.array([[float(i), 0.0, 4.0, 4.0] for i in range(80)])
    seen = {b.data_ptr() for _, b, _ in iter_batches(NoiseSlide(), coords, clf, batch_size=4, workers=2,
                                                      prefetch=2, reuse_buffers=True)}
    assert 1 < len(seen) <= 3  # prefetch + the one the model holds
    fresh = [b for _, b, _ in iter_batches(NoiseSlide(), coords, clf, batch_size=4, workers=2, prefetch=2)]
    assert len({b.data_ptr() for b in fresh}) == 20  # without reuse every batch is its own tensor


class Recorder(torch.nn.Module):
    """Logits = channel means; remembers each input's batch size and memory layout."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((len(x), x.is_contiguous(memory_format=torch.channels_last)))
        return x.mean(dim=(2, 3))


def test_cpu_model_runs_small_channels_last_chunks_of_each_batch():
    """A whole batch of 64 tiles through a ResNet-sized model held ~700 MiB of activations at once."""
    clf = _clf([{"name": "ToTensor"}, NORMALISE], patch=224)
    rec = Recorder()
    clf.module = rec
    chunk = cpu_chunk(clf, 64)
    assert chunk == 4 and cpu_chunk(clf, 3) == 3
    coords = np.array([[float(i), 0.0, 4.0, 4.0] for i in range(21)])
    res = infer_tiles(NoiseSlide(), coords, clf, batch_size=8, workers=2)
    assert [n for n, _ in rec.seen] == [4, 4, 4, 4, 4, 1]  # batches of 8, 8, 5 cut into chunks of 4
    assert all(last for _, last in rec.seen)
    tiles = np.stack([NoiseSlide().read_scaled(x, 0, 4, 4, 224) for x in coords[:, 0]])
    want = torch.softmax(clf.preprocess(tiles).mean(dim=(2, 3)), dim=1).numpy()
    np.testing.assert_allclose(res.probs, want, rtol=1e-6, atol=1e-7)


def test_generic_preprocessing_and_small_tiles_keep_whole_batches():
    clf = _clf([{"name": "Resize", "arguments": {"size": 8}}, {"name": "ToTensor"}])
    assert cpu_chunk(clf, 64) is None  # the shape changes: the readers preprocess whole batches
    small = _clf([{"name": "ToTensor"}], patch=16)
    assert cpu_chunk(small, 64) == 64  # 16 px tiles: a whole batch is fewer pixels than one chunk


def test_tile_buffers_are_recycled_and_bounded_by_prefetch():
    coords = np.array([[float(i), 0.0, 4.0, 4.0] for i in range(50)])
    seen = []
    for sl, tiles, _ in iter_tiles(NoiseSlide(), coords, 16, batch_size=8, workers=2, prefetch=2):
        assert tiles.dtype == np.uint8 and tiles.shape == (sl.stop - sl.start, 16, 16, 3)
        want = np.stack([NoiseSlide().read_scaled(x, 0, 4, 4, 16) for x in coords[sl, 0]])
        np.testing.assert_array_equal(tiles, want)
        seen.append(tiles.__array_interface__["data"][0])
    assert len(seen) == 7 and 1 < len(set(seen)) <= 3  # prefetch + the one being used
