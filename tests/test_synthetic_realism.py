"""Realism measures on features with known geometry, and the blinded sheet."""

from __future__ import annotations

import numpy as np
import pytest

from histobridge.errors import InputError
from histobridge.synthetic import realism as rl


def test_identical_sets_score_full_marks_and_far_sets_none() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 4))
    same = rl.realism_from_features(real, real.copy(), k=3)
    assert same.precision == same.recall == same.coverage == 1.0
    assert same.density == pytest.approx(4 / 3)  # its own ball plus, on average, k neighbours' balls, over k
    assert np.allclose(same.nn_synthetic_to_real, 0.0, atol=1e-6)  # a copy: every tile memorised
    far = rl.realism_from_features(real, real + 100.0, k=3)
    assert far.precision == far.recall == far.coverage == far.density == 0.0


def test_mode_collapse_keeps_precision_and_loses_recall() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(200, 2))
    collapsed = rng.normal(scale=0.1, size=(200, 2))  # all near the centre of the real cloud
    res = rl.realism_from_features(real, collapsed, k=3)
    assert res.precision > 0.9 and res.recall < 0.3 and res.coverage < 0.5
    summary = res.summary()
    assert summary["nn_synthetic_to_real_median"] < summary["nn_real_to_real_median"] * 2


def test_features_and_checks_on_tiles() -> None:
    rng = np.random.default_rng(2)
    tiles = rng.integers(0, 255, (10, 16, 16, 3), dtype=np.uint8)
    f = rl.features(tiles)
    assert f.shape == (10, 224) and np.isfinite(f).all()
    np.testing.assert_array_equal(f, rl.features(tiles))  # fixed weights: reproducible
    with pytest.raises(InputError, match="more than k=3"):
        rl.realism(tiles[:3], tiles, k=3)


def test_blinded_sheet_key_matches_its_tiles() -> None:
    real = np.zeros((5, 8, 8, 3), np.uint8)
    syn = np.full((5, 8, 8, 3), 255, np.uint8)
    sheet, key = rl.blinded_sheet(real, syn, n=4, seed=3)
    assert len(key) == 8 and sorted(k["source"] for k in key) == ["real"] * 4 + ["synthetic"] * 4
    assert [k["number"] for k in key] != [] and key[0]["number"] == 1
    assert sheet.width > 6 * 8
