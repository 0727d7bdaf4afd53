"""Classifier training: region-held-out split, export through save_classifier, metrics, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from histobridge.errors import StoreError
from histobridge.models.classifier import load_classifier
from histobridge.models.train_classifier import (
    ClassifierTrainConfig,
    SmallCNN,
    confusion,
    split_by_region,
    train_classifier,
)
from histobridge.models.training_data import load_tiles
from tests._train_helpers import make_store


def test_split_holds_out_whole_regions_per_class() -> None:
    labels = np.repeat([0, 0, 0, 0, 1, 1, 1], [10, 30, 5, 12, 8, 20, 9])
    regions = np.repeat(np.arange(7), [10, 30, 5, 12, 8, 20, 9])
    held = split_by_region(labels, regions, holdout=0.25, seed=3)
    for r in np.unique(regions):
        assert held[regions == r].all() or not held[regions == r].any(), f"region {r} is split"
    for k in (0, 1):
        assert held[labels == k].any() and not held[labels == k].all()
    assert np.array_equal(held, split_by_region(labels, regions, holdout=0.25, seed=3))


def test_split_keeps_single_region_class_in_training() -> None:
    labels = np.array([0, 0, 1, 1, 1, 1])
    regions = np.array([0, 0, 1, 1, 2, 2])
    held = split_by_region(labels, regions, holdout=0.5, seed=0)
    assert not held[labels == 0].any()
    assert held[labels == 1].sum() == 2


def test_confusion_rows_are_true_classes() -> None:
    cm = confusion(np.array([0, 0, 1]), np.array([0, 1, 1]), 2)
    assert cm.tolist() == [[1, 1], [0, 1]]


def test_smallcnn_output_shape() -> None:
    out = SmallCNN(3, width=4)(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 3)


def test_train_exports_loadable_model_with_metrics(tmp_path) -> None:
    store = make_store(tmp_path / "store.zarr")
    data = load_tiles(store)
    assert data.class_names == ("Purple", "Pink")
    assert len(data.tiles) == 36  # the three unlabelled tiles are ignored
    cfg = ClassifierTrainConfig(epochs=8, batch=8, width=4, lr=5e-3)
    result = train_classifier(data, tmp_path / "model", cfg)
    clf = load_classifier(tmp_path / "model")
    assert clf.class_names == ("Purple", "Pink")
    assert clf.config.patch_size_pixels == 16 and clf.config.tile_um == pytest.approx(32.0)
    probs = clf.predict(data.tiles[:4])
    assert probs.shape == (4, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert not set(metrics["regions"]["train"]) & set(metrics["regions"]["heldout"])
    cm = np.array(metrics["confusion_matrix"])
    assert cm.sum() == sum(metrics["counts"]["heldout"].values())
    # Two colours this far apart are easy: the held-out regions must be classified well.
    assert metrics["heldout_accuracy"] >= 0.9


def test_classes_option_selects_and_orders(tmp_path) -> None:
    store = make_store(tmp_path / "store.zarr")
    data = load_tiles(store, ["Pink", "Purple"])
    assert data.class_names == ("Pink", "Purple")
    assert (data.labels == 0).sum() == 18
    only = load_tiles(store, ["Pink"])
    assert set(only.labels.tolist()) == {0} and len(only.tiles) == 18


def test_empty_selection_is_a_store_error(tmp_path) -> None:
    store = make_store(tmp_path / "store.zarr")
    with pytest.raises(StoreError, match="no labelled tiles"):
        load_tiles(store, ["Tumor"])
    with pytest.raises(StoreError, match="not found"):
        load_tiles(tmp_path / "missing.zarr")


def test_cli_train_classifier(tmp_path) -> None:
    from typer.testing import CliRunner

    from histobridge.cli.train import app

    store = make_store(tmp_path / "store.zarr")
    res = CliRunner().invoke(app, ["classifier", str(store), "--out", str(tmp_path / "m"), "--epochs", "2",
                                   "--width", "4", "--batch", "8", "--classes", "Purple,Pink"])
    assert res.exit_code == 0, res.output
    assert "held-out accuracy" in res.output
    assert (tmp_path / "m" / "config.json").exists() and (tmp_path / "m" / "metrics.json").exists()


def test_stain_jitter_changes_stains_and_nothing_else() -> None:
    """HED jitter: identity at zero amounts, grey tiles on request, random but reproducible otherwise."""
    import torch

    from histobridge.models.augment import StainJitter, augment_batch, hed_jitter

    x = torch.rand(4, 3, 8, 8) * 0.8 + 0.1
    same = hed_jitter(x, StainJitter(scale=0.0, shift=0.0))
    assert torch.allclose(same, x, atol=1e-4)
    grey = hed_jitter(x, StainJitter(scale=0.0, shift=0.0, grayscale=1.0))
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    a = hed_jitter(x, StainJitter(0.3, 0.05), torch.Generator().manual_seed(1))
    b = hed_jitter(x, StainJitter(0.3, 0.05), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and (a - x).abs().mean() > 0.01 and a.min() >= 0 and a.max() <= 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        augment_batch(x * 2 - 1, None, stain=StainJitter())


def test_colour_mix_takes_another_tiles_colour_statistics() -> None:
    """With mix=1 every tile takes the channel means of some tile of the batch: the set of means is
    kept, but (for this seed) tiles change colour while keeping their pattern."""
    import torch

    from histobridge.models.augment import StainJitter, hed_jitter

    levels = torch.tensor([0.2, 0.4, 0.6, 0.8]).reshape(4, 1, 1, 1)
    pattern = torch.rand(1, 3, 8, 8) * 0.1
    x = levels + pattern
    out = hed_jitter(x, StainJitter(scale=0.0, shift=0.0, mix=1.0), torch.Generator().manual_seed(0))
    means_in, means_out = x.mean(dim=(1, 2, 3)), out.mean(dim=(1, 2, 3))
    assert torch.allclose(means_out.sort().values, means_in.sort().values, atol=0.01)
    assert not torch.allclose(means_out, means_in, atol=0.01)
    centred_in, centred_out = x - x.mean(dim=(2, 3), keepdim=True), out - out.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(centred_out, centred_in, atol=0.01)  # equal spreads here: the pattern is kept
