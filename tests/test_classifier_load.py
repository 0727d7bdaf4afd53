"""Classifier config validation, the three model layouts, probabilities and MC-dropout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from histobridge.errors import ModelError
from histobridge.models.classifier import (
    ClassifierConfig,
    load_classifier,
    make_config,
    save_classifier,
)
from tests._heatmap_helpers import ColourNet, DropoutNet, config_dict, expected_probs


def _tiles(n: int = 6, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ config


def test_config_round_trip_keeps_extras_and_tile_um():
    cfg = ClassifierConfig.from_dict(config_dict(histobridge={"name": "colours", "epochs": 3}))
    assert cfg.tile_um == pytest.approx(32.0)
    assert cfg.name == "colours"
    assert cfg.class_names == ("Red", "Green", "Blue")
    again = ClassifierConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.to_dict()["histobridge"] == {"name": "colours", "epochs": 3}


def test_missing_keys_are_named(tmp_path):
    data = config_dict()
    del data["spacing_um_px"], data["transform"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"config\.json.*spacing_um_px, transform"):
        ClassifierConfig.from_file(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"class_names": ["A", "A", "B"]}, "unique; repeated: A"),
        ({"class_names": ["A", "B"]}, "2 names but num_classes is 3"),
        ({"num_classes": "3"}, "num_classes must be an integer"),
        ({"num_classes": True}, "num_classes must be an integer"),
        ({"patch_size_pixels": 0}, "patch_size_pixels must be an integer"),
        ({"spacing_um_px": -1}, "spacing_um_px must be a positive number"),
        ({"spacing_um_px": "0.5"}, "spacing_um_px must be a positive number"),
        ({"transform": [{"name": "ColorJitter"}]}, "'ColorJitter' is not one of"),
        ({"transform": [{"name": "Normalize", "arguments": {"mean": [0.5]}}]}, "mean, std must be lists"),
        ({"transform": [{"name": "Resize", "arguments": {"size": "big"}}]}, "size must be a positive"),
        ({"transform": [{"name": "ToTensor", "extra": 1}]}, "unknown key"),
        ({"architecture": ""}, "architecture must be a non-empty string"),
    ],
)
def test_invalid_values_are_explained(change, message):
    data = config_dict()
    data.update(change)
    with pytest.raises(ModelError, match=message):
        ClassifierConfig.from_dict(data, "cfg.json")


def test_not_an_object_is_refused():
    with pytest.raises(ModelError, match="must be a JSON object"):
        ClassifierConfig.from_dict([1, 2], "x.json")


def test_unreadable_json_names_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ModelError, match=r"config\.json: model config is not readable JSON"):
        ClassifierConfig.from_file(path)


# ------------------------------------------------------------------------------------------ layouts


def test_wsinfer_directory_predicts_known_function(tmp_path):
    model_dir = tmp_path / "wsinfer-model"
    model_dir.mkdir()
    torch.jit.script(ColourNet()).save(str(model_dir / "torchscript_model.pt"))
    (model_dir / "config.json").write_text(json.dumps(config_dict()))
    clf = load_classifier(model_dir, device="cpu")
    assert clf.name == "wsinfer-model"
    tiles = _tiles()
    np.testing.assert_allclose(clf.predict(tiles, batch_size=4), expected_probs(tiles), atol=1e-5)
    assert clf.logits(tiles).shape == (6, 3)


def test_sidecar_json_next_to_torchscript_file(tmp_path):
    torch.jit.script(ColourNet()).save(str(tmp_path / "colours.pt"))
    (tmp_path / "colours.json").write_text(json.dumps(config_dict()))
    for path in (tmp_path / "colours.pt", tmp_path / "colours.json"):
        clf = load_classifier(path, device="cpu")
        assert clf.name == "colours"
        tiles = _tiles(3)
        np.testing.assert_allclose(clf.predict(tiles), expected_probs(tiles), atol=1e-5)


def test_torchscript_without_config_is_refused(tmp_path):
    torch.jit.script(ColourNet()).save(str(tmp_path / "bare.pt"))
    with pytest.raises(ModelError, match=r"bare\.pt: no model config found.*bare\.json"):
        load_classifier(tmp_path / "bare.pt")


def test_pickled_state_dict_is_refused_without_loading(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config_dict()))
    (model_dir / "torchscript_model.pt").write_bytes(b"\x80\x04not a zip archive")
    with pytest.raises(ModelError, match="not a TorchScript archive"):
        load_classifier(model_dir)


def test_directory_without_weights_or_config(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ModelError, match=r"no config\.json"):
        load_classifier(tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text(json.dumps(config_dict()))
    with pytest.raises(ModelError, match=r"no torchscript_model\.pt"):
        load_classifier(tmp_path / "a")
    with pytest.raises(ModelError, match="model not found"):
        load_classifier(tmp_path / "missing.pt")


def test_save_classifier_writes_wsinfer_directory(tmp_path):
    cfg = make_config(["Red", "Green", "Blue"], 16, 2.0, architecture="colournet",
                      extras={"histobridge": {"name": "mine"}})
    out = save_classifier(ColourNet(), cfg, tmp_path / "trained")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "torchscript_model.pt"]
    written = json.loads((out / "config.json").read_text())
    assert written["histobridge"] == {"name": "mine"}
    assert all(set(step) <= {"name", "arguments"} for step in written["transform"])
    clf = load_classifier(out, device="cpu")
    assert clf.name == "mine" and clf.config == cfg
    # Saving again replaces the files in place and keeps unrelated files.
    (out / "train_log.csv").write_text("epoch\n")
    save_classifier(torch.jit.script(ColourNet((2.0, 1.0, 1.0))), cfg.to_dict(), out)
    assert (out / "train_log.csv").exists()
    tiles = _tiles(2)
    np.testing.assert_allclose(load_classifier(out).predict(tiles), expected_probs(tiles, (2.0, 1.0, 1.0)),
                               atol=1e-5)


def test_save_refuses_wrong_output_width(tmp_path):
    cfg = make_config(["A", "B"], 16, 1.0)
    with pytest.raises(ModelError, match="outputs 3 values but the config declares num_classes=2"):
        save_classifier(ColourNet(), cfg, tmp_path / "bad")
    assert not (tmp_path / "bad" / "config.json").exists()


def test_output_width_mismatch_detected_at_inference(tmp_path):
    shutil.rmtree(tmp_path, ignore_errors=True)
    tmp_path.mkdir()
    torch.jit.script(ColourNet()).save(str(tmp_path / "m.pt"))
    (tmp_path / "m.json").write_text(json.dumps(config_dict(classes=("A", "B"))))
    clf = load_classifier(tmp_path / "m.pt")
    with pytest.raises(ModelError, match="outputs 3 values per tile"):
        clf.predict(_tiles(2))


def test_single_output_uses_sigmoid(tmp_path):
    class One(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3)).unsqueeze(1) * 3.0

    cfg = make_config(["Tumor"], 8, 1.0)
    clf = load_classifier(save_classifier(One(), cfg, tmp_path / "one"))
    tiles = _tiles(4, 8)
    x = (tiles / 255.0 - 0.5) / 0.5
    expected = 1.0 / (1.0 + np.exp(-3.0 * x.mean(axis=(1, 2, 3))))
    np.testing.assert_allclose(clf.predict(tiles)[:, 0], expected, atol=1e-5)


def test_resize_step_changes_input_size(tmp_path):
    class Size(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 1), float(x.shape[-1]))

    cfg = make_config(["S"], 24, 1.0, resize=12)
    clf = load_classifier(save_classifier(Size(), cfg, tmp_path / "size"))
    assert clf.logits(_tiles(2, 24))[:, 0].tolist() == [12.0, 12.0]


def test_bad_tile_shape_and_device(tmp_path):
    clf = load_classifier(save_classifier(ColourNet(), config_dict(), tmp_path / "m"))
    with pytest.raises(ModelError, match=r"expected tiles as \(N, H, W, 3\)"):
        clf.predict(np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(ModelError, match="unknown device"):
        load_classifier(tmp_path / "m", device="warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            load_classifier(tmp_path / "m", device="cuda")


# ------------------------------------------------------------------------------------------ MC dropout


def test_mc_dropout_std_nonzero_for_dropout_model(tmp_path):
    torch.manual_seed(0)
    clf = load_classifier(save_classifier(DropoutNet(), make_config(["A", "B"], 16, 1.0), tmp_path / "d"))
    tiles = _tiles(5)
    mean, std = clf.predict_uncertainty(tiles, passes=12)
    assert mean.shape == std.shape == (5, 2)
    assert (std > 1e-4).all()
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-5)
    # Dropout is switched off again afterwards: plain predictions are deterministic.
    np.testing.assert_array_equal(clf.predict(tiles), clf.predict(tiles))
    assert not any(m.training for m in clf.module.modules())


def test_mc_dropout_std_zero_for_plain_model(tmp_path):
    clf = load_classifier(save_classifier(ColourNet(), config_dict(), tmp_path / "c"))
    tiles = _tiles(4)
    mean, std = clf.predict_uncertainty(tiles, passes=5)
    np.testing.assert_array_equal(std, 0.0)
    np.testing.assert_allclose(mean, clf.predict(tiles), atol=1e-6)


def test_mc_dropout_leaves_batchnorm_frozen(tmp_path):
    class BN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = torch.nn.BatchNorm2d(3)
            self.drop = torch.nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.drop(self.bn(x).mean(dim=(2, 3)))

    clf = load_classifier(save_classifier(BN().eval(), make_config(["a", "b", "c"], 8, 1.0), tmp_path / "bn"))
    before = {k: v.clone() for k, v in clf.module.state_dict().items()}
    with clf.mc_dropout() as n:
        assert n == 1
        clf.predict_batch(clf.preprocess(_tiles(4, 8)), passes=2)
    after = clf.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_autocast_fallback_keeps_results(tmp_path, monkeypatch):
    """If a model rejects float16 autocast, it runs once more in float32 and autocast stays off."""
    clf = load_classifier(save_classifier(ColourNet(), config_dict(), tmp_path / "m"), device="cpu")
    tiles = _tiles(3)
    want = clf.predict(tiles)

    class Refuses:
        def __enter__(self):
            raise RuntimeError("autocast not supported by this graph")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch, "autocast", lambda *a, **k: Refuses())
    clf._autocast = True  # as on a CUDA device
    np.testing.assert_allclose(clf.predict(tiles), want, atol=1e-6)
    assert clf._autocast is False
