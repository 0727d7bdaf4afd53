"""Projection of tiles into W+ and counterfactuals along the class direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _synthetic_helpers import tiny_classifier, tiny_generator

from histobridge.errors import InputError
from histobridge.synthetic import conditioning as cond
from histobridge.synthetic import invert
from histobridge.synthetic.fov import classify_tiles, crop_then_resize


@pytest.fixture(scope="module")
def G():
    return tiny_generator(c_dim=2, res=16, tile_um=64.0, names=("a", "b"))


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    return tiny_classifier(tmp_path_factory.mktemp("clf"), ["a", "b"], px=12, um_px=4.0, gain=40.0)


def test_projection_recovers_a_generated_tile_better_than_the_start(G) -> None:
    """A tile the generator itself drew can be found again: the loss falls and the image gets closer."""
    raw = cond.to_uint8(cond.render(G, cond.latents(G, [5]), cond.labels_for(G, cond.class_weights(2, 1, 1))))
    target = crop_then_resize(raw, 64.0, 48.0, 12)
    settings = invert.InvertSettings(steps=60, lr=0.05, mean_samples=64)
    means = invert.class_mean_ws(G, 64)
    ws, losses = invert.project(G, target, [1], 48.0, settings=settings, means=means)
    assert losses[-1] < 0.7 * losses[0]

    def err(w: torch.Tensor) -> float:
        img = crop_then_resize(cond.to_uint8(cond.render_ws(G, w)), 64.0, 48.0, 12)
        return float(np.abs(img.astype(float) - target.astype(float)).mean())

    assert err(ws) < 0.7 * err(means[[1]])


def test_counterfactuals_start_at_the_projection_and_move_to_the_other_class(G, clf) -> None:
    raw = cond.to_uint8(cond.render(G, cond.latents(G, [1, 2]), cond.labels_for(G, np.eye(2))))
    view, _ = classify_tiles(raw, 64.0, clf)
    settings = invert.InvertSettings(steps=10, mean_samples=32, blend_steps=3)
    items, losses = invert.counterfactuals(G, clf, view, ["a", "b"], settings=settings)
    assert len(losses) == 10 and [c.class_to for c in items] == ["b", "a"]
    for cf in items:
        assert cf.blend.shape == (3, 12, 12, 3) and np.array_equal(cf.blend[0], cf.reconstruction)
        np.testing.assert_allclose(cf.p_original, clf.predict(cf.original[None])[0], atol=1e-6)
        assert cf.mse == pytest.approx(((cf.reconstruction / 255.0 - cf.original / 255.0) ** 2).mean())
        rec = cf.record(["a", "b"])
        assert len(rec["p_blend_end_class"]) == 3 and rec["psnr_db"] > 0
    pic = invert.counterfactual_picture(items, ["a", "b"])
    assert pic.width > 4 * 12 and pic.height > 2 * 12


def test_bad_input_is_refused(G) -> None:
    with pytest.raises(InputError, match="one class each"):
        invert.project(G, np.zeros((2, 12, 12, 3), np.uint8), [0], 48.0)
    with pytest.raises(InputError, match="steps"):
        invert.InvertSettings(steps=0)
