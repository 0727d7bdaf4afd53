"""Animated blends, annotated layer grids and per-layer sensitivity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _synthetic_helpers import tiny_classifier, tiny_generator
from PIL import Image

from histobridge.errors import InputError
from histobridge.synthetic import annotate, blending, conditioning
from histobridge.synthetic.fov import classify_tiles


@pytest.fixture(scope="module")
def G():
    return tiny_generator(c_dim=2, res=16, tile_um=64.0, names=("a", "b"))


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    return tiny_classifier(tmp_path_factory.mktemp("clf"), ["a", "b"], px=12, um_px=4.0, gain=40.0)


@pytest.fixture(scope="module")
def sample():
    from histobridge.demo.run import DemoOptions, load_models

    return load_models(DemoOptions(out_dir="/nonexistent-demo-out", device="cpu"))


def test_window_frames_counts_the_open_interval() -> None:
    assert annotate.window_frames(np.array([0.0, 0.25, 0.3, 0.6, 0.75, 1.0])) == 2


def test_dense_blend_puts_several_frames_in_the_transition(sample) -> None:
    """A 9-step blend of the sample models leaves at most one frame where the classifier is undecided;
    the dense blend adds positions inside that window."""
    G, clf = sample.G, sample.classifier
    coarse = blending.class_blend(G, 1, "Epidermis", "Dermis", 9, classifier=clf)
    dense = annotate.dense_blend(G, 1, "Epidermis", "Dermis", clf, steps=9, extra=8)
    assert coarse.predictions is not None and dense.predictions is not None
    p_coarse, p_dense = coarse.predictions[:, 1], dense.predictions[:, 1]
    assert p_coarse[0] < 0.25 and p_coarse[-1] > 0.75  # seed 1 is a strong swap for these models
    assert annotate.window_frames(p_coarse) <= 1
    # the 8 extra positions sit between the coarse bracket (last below 0.25, first above 0.75); how
    # many land inside the window depends on how steep the crossing is (2 for the sample classifier)
    assert annotate.window_frames(p_dense) >= max(2, annotate.window_frames(p_coarse) + 1)
    assert len(dense.ts) == 9 + 8 and np.all(np.diff(dense.ts) > 0)
    lo = coarse.ts[np.flatnonzero(p_coarse <= 0.25)[-1]]
    hi = coarse.ts[np.flatnonzero(p_coarse >= 0.75)[0]]
    extra = np.setdiff1d(dense.ts, coarse.ts)
    assert len(extra) == 8 and np.all((extra > lo) & (extra < hi))


def test_dense_blend_without_a_crossing_is_the_coarse_blend(G, tmp_path) -> None:
    """A classifier that never leaves 0.5 has no transition window: nothing is added."""
    flat = tiny_classifier(tmp_path, ["a", "b"], px=12, um_px=4.0, gain=0.001)
    dense = annotate.dense_blend(G, 3, "a", "b", flat, steps=5)
    assert dense.predictions is not None and np.allclose(dense.predictions, 0.5, atol=0.01)
    np.testing.assert_array_equal(dense.ts, np.linspace(0, 1, 5))


def test_gif_has_a_captioned_frame_per_step(G, clf, tmp_path) -> None:
    blend = blending.class_blend(G, 2, "a", "b", 5, classifier=clf)
    path = annotate.write_blend_gif(blend, tmp_path / "b.gif", scale=4)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 2 * 5 - 2  # there and back
        assert im.width == 16 * 4 and im.height > 16 * 4
        im.seek(0)
        band = np.asarray(im.convert("RGB"))[16 * 4 :]
        assert len(np.unique(band.reshape(-1, 3), axis=0)) > 2  # text and the probability bar are drawn
    no_clf = blending.class_blend(G, 2, "a", "b", 3)
    with pytest.raises(InputError, match="needs the classifier"):
        annotate.write_blend_gif(no_clf, tmp_path / "c.gif")


def test_annotated_grid_predictions_match_the_cells(G, clf) -> None:
    grid = blending.layer_blend(G, [1, 2], "a", "b")
    ag = annotate.annotate_layer_grid(G, grid, clf)
    assert ag.predictions.shape == (G.num_ws + 1, 2, 2)
    # the last row takes every w from A: plain class-a images, classified the usual way
    plain = conditioning.to_uint8(blending.class_blend_images(G, 1, "a", "b", [0.0]))
    _, ref = classify_tiles(plain, 64.0, clf)
    np.testing.assert_allclose(ag.predictions[-1, 0], ref[0], atol=1e-5)
    recs = ag.records()
    assert len(recs) == (G.num_ws + 1) * 2 and {"pred_a", "pred_b", "top"} <= set(recs[0])
    pic = annotate.annotated_grid_picture(ag, "b")
    assert pic.width >= 2 * 32 and pic.height >= (G.num_ws + 1) * 32


def test_layer_sensitivity_swaps_one_w_vector(G, clf) -> None:
    rows = annotate.layer_sensitivity(G, clf, [1, 2], "a", "b")
    assert [r["layer"] for r in rows] == list(range(G.num_ws))
    # recompute layer 0 by hand: the A image with w_0 taken from B
    w_a, w_b = blending._class_ws(G, [1, 2], 0, 1, 1.0)
    mixed = w_a.clone()
    mixed[:, 0] = w_b[:, 0]
    with torch.no_grad():
        _, p_mixed = classify_tiles(conditioning.to_uint8(conditioning.render_ws(G, mixed)), 64.0, clf)
        _, p_base = classify_tiles(conditioning.to_uint8(conditioning.render_ws(G, w_a)), 64.0, clf)
    key = "dP(b) of a image, w_k from b"
    assert rows[0][key] == pytest.approx(float((p_mixed[:, 1] - p_base[:, 1]).mean()), abs=1e-6)
    with pytest.raises(InputError, match="at least one seed"):
        annotate.layer_sensitivity(G, clf, [], "a", "b")
