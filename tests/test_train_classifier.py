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


def test_config_rejects_unknown_normalisation_and_bad_probabilities() -> None:
    from histobridge.errors import InputError

    with pytest.raises(InputError, match="stain_norm must be one of none, reinhard"):
        ClassifierTrainConfig(stain_norm="macenko-ish")
    with pytest.raises(InputError, match="class_swap is a probability"):
        ClassifierTrainConfig(class_swap=1.5)


def test_class_swap_gives_tiles_the_other_class_statistics() -> None:
    from histobridge.models.train_classifier import swap_class_colours

    gen = torch.Generator().manual_seed(0)
    pattern = torch.zeros(1, 3, 8, 8)
    pattern[..., ::2, :] = 0.1
    x = torch.cat([pattern + 0.3, pattern + 0.6])  # class 0 dark, class 1 light, same stripes
    y = torch.tensor([0, 1])
    means = torch.tensor([[0.2, 0.2, 0.2], [0.7, 0.6, 0.5]])
    stds = torch.tensor([[0.02, 0.02, 0.02], [0.04, 0.04, 0.04]])
    out = swap_class_colours(x, y, (means, stds), 1.0, gen)
    assert torch.allclose(out.mean(dim=(2, 3)), means.flip(0), atol=1e-4)  # each took the other's
    assert torch.allclose(out.std(dim=(2, 3)), stds.flip(0), atol=1e-3)
    assert (out[:, :, ::2].mean() > out[:, :, 1::2].mean())  # the stripes are kept
    assert torch.equal(swap_class_colours(x, y, (means, stds), 0.0, gen), x)


def test_reinhard_model_reads_form_not_colour(tmp_path) -> None:
    """Striped purple against smooth pink: trained with per-tile Reinhard normalisation and stain
    jitter, the model keeps the class when tiles are recoloured to the other class's statistics and
    drops to chance when the pixels are shuffled (colours kept, stripes gone)."""
    from histobridge.models.stain import fit_reinhard, reinhard
    from histobridge.synthetic import controls as ctl

    store = make_store(tmp_path / "store.zarr", striped=("Purple",), noise=6.0, tiles_per_region=8)
    data = load_tiles(store)
    cfg = ClassifierTrainConfig(epochs=16, batch=8, width=6, lr=5e-3, stain_norm="reinhard",
                                stain_scale=0.3, stain_shift=0.05, grayscale=0.2)
    result = train_classifier(data, tmp_path / "model", cfg)
    clf = load_classifier(tmp_path / "model")
    steps = [s.name for s in clf.config.transform]
    assert steps == ["StainNormalize", "ToTensor", "Normalize"]
    held = np.isin(data.regions, result.metrics["regions"]["heldout"])
    ref = fit_reinhard(data.tiles[~held])  # the reference comes from the training tiles
    args = clf.config.transform[0].arguments
    assert args["method"] == "reinhard"
    assert np.allclose(args["target_means"], ref["target_means"]) and np.allclose(args["target_stds"],
                                                                                  ref["target_stds"])
    # the exported preprocessing is the normalisation the training applied
    x = torch.from_numpy(data.tiles[:3]).permute(0, 3, 1, 2).float() / 255
    expect = (reinhard(x, ref["target_means"], ref["target_stds"]) - 0.5) / 0.25
    assert torch.allclose(clf.preprocess(data.tiles[:3]), expect, atol=1e-4)
    assert result.metrics["balanced_accuracy"] >= 0.9
    keeps = ctl.recolour_keeps_class(clf, data.tiles, data.labels, data.class_names)
    assert min(keeps.values()) >= 0.8, keeps  # the sample models' bar (evaluation.MIN_RECOLOUR)
    assert ctl.shuffled_balanced_accuracy(clf, data.tiles, data.labels, 2) <= 0.65
    # a rule that sees only the mean colour is the opposite: recolouring fools it, shuffling does not
    base = ctl.ColourBaseline.fit(data.tiles, data.labels, data.class_names)
    assert max(ctl.recolour_keeps_class(base, data.tiles, data.labels, data.class_names).values()) == 0.0
    assert ctl.shuffled_balanced_accuracy(base, data.tiles, data.labels, 2) == 1.0
