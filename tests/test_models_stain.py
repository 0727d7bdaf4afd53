"""Stain normalisation: CIELAB against published values, Reinhard statistics, Macenko on tiles made
from known stains, and the ``StainNormalize`` step in a classifier config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from histobridge.errors import ModelError
from histobridge.models import stain
from histobridge.models.classifier import ClassifierConfig, load_classifier, make_config, save_classifier


def _px(*rgb: float) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1)


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)), ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),
     ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)), ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))],
)
def test_lab_matches_published_values(rgb, lab) -> None:
    got = stain.rgb_to_lab(_px(*rgb)).flatten().tolist()
    assert got == pytest.approx(list(lab), abs=0.02)
    back = stain.lab_to_rgb(stain.rgb_to_lab(_px(*rgb))).flatten().tolist()
    assert back == pytest.approx(list(rgb), abs=1e-6)


def _he_tiles(stains: np.ndarray, n: int = 4, px: int = 24, seed: int = 0) -> np.ndarray:
    """uint8 tiles made by Beer–Lambert from known H and E vectors and random concentrations."""
    rng = np.random.default_rng(seed)
    c = rng.gamma(2.0, 0.3, (n, px, px, 2))
    od = c @ stains.T
    return np.clip(np.rint(255 * np.exp(-od)), 0, 255).astype(np.uint8)


def test_reinhard_moves_lab_statistics_to_the_target() -> None:
    tiles = _he_tiles(np.array(stain.MACENKO_STAINS))
    x = torch.as_tensor(tiles).permute(0, 3, 1, 2).double() / 255
    target = {"target_means": [70.0, 15.0, -8.0], "target_stds": [12.0, 6.0, 4.0]}
    lab = stain.rgb_to_lab(stain.reinhard(x, target["target_means"], target["target_stds"]))
    assert lab.mean(dim=(2, 3)).numpy() == pytest.approx(np.tile(target["target_means"], (4, 1)), abs=0.6)
    sds = lab.std(dim=(2, 3), unbiased=False).numpy()
    assert sds == pytest.approx(np.tile(target["target_stds"], (4, 1)), abs=0.6)
    fitted = stain.fit_reinhard(tiles)
    same = stain.reinhard(x, fitted["target_means"], fitted["target_stds"])
    assert float((same - x).abs().mean()) < 0.03  # normalising to one's own statistics changes little


def test_reinhard_leaves_a_grey_tile_grey() -> None:
    """A grey tile's a and b channels hold only rounding noise: it is shifted to the target's mean
    colour, not stretched into random colour (which an SD floor of 1e-6 used to do)."""
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(60, 220, (2, 16, 16, 1)), 3, axis=-1).astype(np.float32) / 255
    x = torch.as_tensor(grey).permute(0, 3, 1, 2)
    out = stain.reinhard(x, [60.0, 20.0, -10.0], [10.0, 5.0, 5.0])
    ab = stain.rgb_to_lab(out)[:, 1:]
    assert float(ab.std(dim=(2, 3)).max()) < 0.01  # one flat colour
    assert ab.mean(dim=(2, 3)).numpy() == pytest.approx(np.tile([20.0, -10.0], (2, 1)), abs=0.5)


def test_macenko_recovers_known_stains_and_maps_to_the_reference() -> None:
    known = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
    known /= np.linalg.norm(known, axis=0)
    tiles = _he_tiles(known)
    fit = stain.fit_macenko(tiles)
    got = np.array(fit["stain_matrix"])
    cos = (got * known).sum(axis=0)
    assert cos.min() > 0.98  # H first, E second, both found
    ref = np.array(stain.MACENKO_STAINS)
    x = torch.as_tensor(tiles).permute(0, 3, 1, 2).double() / 255
    out = stain.macenko(x, ref.tolist(), list(stain.MACENKO_MAX_C))
    refit = np.array(stain.fit_macenko((out.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
                     ["stain_matrix"])
    assert ((refit * (ref / np.linalg.norm(ref, axis=0))).sum(axis=0)).min() > 0.98
    glass = torch.ones(1, 3, 8, 8, dtype=torch.float64)
    assert torch.equal(stain.macenko(glass, ref.tolist(), list(stain.MACENKO_MAX_C)), glass)
    with pytest.raises(ModelError, match="too few stained pixels"):
        stain.fit_macenko(np.full((1, 8, 8, 3), 255, np.uint8))


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_classifier_config_runs_stain_normalisation_before_standardising(tmp_path) -> None:
    tiles = _he_tiles(np.array(stain.MACENKO_STAINS), n=2, px=16)
    target = {"method": "reinhard", "target_means": [60.0, 20.0, -10.0], "target_stds": [10.0, 5.0, 5.0]}
    cfg = make_config(["a", "b", "c"], 16, 1.0, stain=target)
    assert [s.name for s in cfg.transform] == ["StainNormalize", "ToTensor", "Normalize"]
    clf = load_classifier(save_classifier(Identity(), cfg, tmp_path / "m"))
    # the reference statistics are stored with the model
    assert clf.config.transform[0].arguments["target_means"] == target["target_means"]
    x = clf.preprocess(tiles)
    ref = stain.reinhard(torch.as_tensor(tiles).permute(0, 3, 1, 2).float() / 255,
                         target["target_means"], target["target_stds"])
    assert torch.allclose(x, (ref - 0.5) / 0.5, atol=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [({"method": "vahadane"}, "method must be one of"),
     ({"method": "reinhard", "target_means": [1, 2]}, "target_means, target_stds must be lists"),
     ({"method": "reinhard", "target_means": [1, 2, 3], "target_stds": [1, 0, 1]}, "not positive"),
     ({"method": "macenko", "stain_matrix": [[1, 2]], "max_concentrations": [1, 2]}, "stain_matrix")],
)
def test_bad_stain_arguments_are_named(args, message) -> None:
    data = make_config(["a", "b"], 16, 1.0).to_dict()
    data["transform"].insert(0, {"name": "StainNormalize", "arguments": args})
    with pytest.raises(ModelError, match=message):
        ClassifierConfig.from_dict(data, "cfg.json")


def test_stain_step_after_normalize_is_refused() -> None:
    data = make_config(["a", "b"], 16, 1.0).to_dict()
    data["transform"].append({"name": "StainNormalize", "arguments": {"method": "reinhard",
                              "target_means": [1, 2, 3], "target_stds": [1, 1, 1]}})
    with pytest.raises(ModelError, match="must come before Normalize"):
        ClassifierConfig.from_dict(data, "cfg.json")
