"""Seed classification rules (binary and multi-class) and the end-to-end seed search."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from _synthetic_helpers import probe_classifier, probe_probs, tiny_classifier, tiny_generator
from PIL import Image

from histobridge.errors import InputError
from histobridge.synthetic import seeds as sd
from histobridge.synthetic import synthesis as syn

TH = sd.SwapThresholds()


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0.10, 0.90, "strong"),
        (0.24, 0.76, "strong"),
        (0.25, 0.90, "weak"),  # start not below low
        (0.10, 0.75, "weak"),  # end not above high
        (0.45, 0.55, "weak"),
        (0.50, 0.90, "none"),  # start not below mid
        (0.10, 0.50, "none"),
        (0.90, 0.10, "none"),  # reversed direction
    ],
)
def test_binary_rule(start, end, expected) -> None:
    assert sd.classify_binary(start, end, TH) == expected
    v = sd.classify_swap([1 - start, start], [1 - end, end], 0, 1, TH)
    assert (v.concordance, v.pred_start, v.pred_end) == (expected, start, end)
    assert v.reversed == (start > 0.75 and end < 0.25)


def test_binary_table_by_hand() -> None:
    p_start = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    p_end = np.array([[0.1, 0.9], [0.4, 0.6], [0.9, 0.1], [0.6, 0.4]])
    got = [sd.classify_swap(a, b, 0, 1).concordance for a, b in zip(p_start, p_end, strict=True)]
    assert got == ["strong", "weak", "none", "none"]
    assert sd.classify_swap(p_start[2], p_end[2], 0, 1).reversed is True  # 0.8 → 0.1: the other way
    assert sd.classify_swap(p_start[3], p_end[3], 0, 1).reversed is False


def test_multiclass_needs_top_class_with_margin() -> None:
    # start under class 0, end under class 2 (three classes)
    ok = sd.classify_swap([0.8, 0.1, 0.1], [0.05, 0.1, 0.85], 0, 2)
    assert ok.concordance == "strong"
    assert ok.margin_start == pytest.approx(0.7) and ok.margin_end == pytest.approx(0.75)
    # end-class probability is high enough but class 1 ties it: the top class does not follow
    tie = sd.classify_swap([0.8, 0.1, 0.1], [0.0, 0.48, 0.52], 0, 2)
    assert tie.concordance == "none" and tie.margin_end == pytest.approx(0.04)
    # the authors' binary rule, on the end-class output alone, is reported beside it, labelled
    assert tie.binary_rule == "weak" and ok.binary_rule == "strong"
    row = sd.SeedSwap(1, "a", "c", tie.pred_start, tie.pred_end, (0.25, 0.5, 0.75), tie.concordance,
                      tie.margin_start, tie.margin_end, tie.reversed, tie.binary_rule).to_row()
    assert (row["concordance"], row["concordance_binary_rule"]) == ("none", "weak")
    swap = sd.SeedSwap(**{k: v for k, v in row.items() if k not in ("delta", "concordance_binary_rule")},
                       binary_rule="weak")
    (table_row,) = sd.table_rows([swap])
    assert table_row[list(sd.TABLE_COLUMNS).index("concordance_binary_rule")] == "weak"
    # start image's top class is class 1, not the conditioning class 0
    wrong_start = sd.classify_swap([0.3, 0.6, 0.1], [0.05, 0.1, 0.85], 0, 2)
    assert wrong_start.concordance == "none"
    # weak with a clear margin
    weak = sd.classify_swap([0.5, 0.2, 0.3], [0.2, 0.2, 0.6], 0, 2)
    assert weak.concordance == "weak"
    # a margin of zero accepts the narrow win
    assert sd.classify_swap([0.8, 0.1, 0.1], [0.0, 0.45, 0.55], 0, 2, margin=0.0).concordance == "weak"


def test_single_output_and_thresholds() -> None:
    th = sd.SwapThresholds.parse("-0.5,0,0.5")
    single = sd.classify_swap([-0.8], [0.7], 0, 1, th)
    assert single.concordance == "strong" and single.margin_start is None and single.margin_end is None
    assert sd.classify_swap([-0.2], [0.3], 0, 1, th).concordance == "weak"
    with pytest.raises(InputError):
        sd.SwapThresholds.parse("0.5,0.25,0.75")
    with pytest.raises(InputError, match="--thresholds"):
        sd.SwapThresholds.parse("0.1,0.2")
    with pytest.raises(InputError, match="--thresholds"):
        sd.SwapThresholds.parse("0.1,x,0.3")


def test_classifier_column_by_name_then_index() -> None:
    assert sd.classifier_column("Squamous", 0, ["adeno", "squamous"]) == 1
    assert sd.classifier_column("class1", 1, ["a", "b"]) == 1
    assert sd.classifier_column("x", 1, ["score"]) == 0


def _by_hand(raw: np.ndarray) -> np.ndarray:
    """The paper's rule spelled out for 16 px over 64 µm → 48 µm at 8 px: crop 12 px at 2, resize."""
    crops = [Image.fromarray(t[2:14, 2:14]).resize((8, 8), Image.Resampling.BICUBIC) for t in raw]
    return np.stack([np.asarray(c) for c in crops])


def test_seed_search_end_to_end(tmp_path) -> None:
    G = tiny_generator(c_dim=2, res=16, tile_um=64.0, names=("adeno", "squam"), seed=3)
    seeds = list(range(16))
    ready_a = _by_hand(syn.generate(G, seeds, "adeno").raw)
    ready_b = _by_hand(syn.generate(G, seeds, "squam").raw)
    # a fixed linear function of the pixels, pointing from adeno- to squam-conditioned tiles
    clf, params = probe_classifier(
        tmp_path, ["adeno", "squam"], ready_a, ready_b, 6.0, scale=2.0, quantile=0.7
    )
    res = sd.seed_search(G, clf, seeds, "adeno", "squam", batch_size=5)
    np.testing.assert_allclose(
        [r.pred_start for r in res.rows], probe_probs(ready_a, params)[:, 1], atol=1e-5
    )
    np.testing.assert_allclose([r.pred_end for r in res.rows], probe_probs(ready_b, params)[:, 1], atol=1e-5)
    for r in res.rows:
        assert r.concordance == sd.classify_binary(r.pred_start, r.pred_end, TH)
        assert (r.class_start, r.class_end, r.thresholds) == ("adeno", "squam", (0.25, 0.5, 0.75))
    assert {r.concordance for r in res.rows} == {"strong", "weak", "none"}
    deltas = [r.delta for r in res.best(4)]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] == max(r.delta for r in res.rows)
    paths = sd.write_seed_search(res, tmp_path / "out", G=G, top=3)
    with open(paths["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["seed"]) for r in rows] == seeds
    assert list(rows[0])[:7] == list(sd.TABLE_COLUMNS[:7])
    assert sd.TABLE_COLUMNS[:7] == (
        "seed",
        "class_start",
        "class_end",
        "pred_start",
        "pred_end",
        "thresholds",
        "concordance",
    )
    assert rows[0]["thresholds"] == "0.25;0.5;0.75"
    doc = json.loads(paths["json"].read_text())
    assert doc["counts"] == res.counts() and sum(doc["counts"].values()) == 16
    np.testing.assert_allclose(doc["rows"][5]["probs_end"], res.probs_end[5])
    assert [b["seed"] for b in doc["best"]] == [r.seed for r in res.best(3)]
    assert Image.open(paths["png"]).size[0] >= 3 * 64


def test_seed_search_multiclass_uses_margins(tmp_path) -> None:
    G = tiny_generator(c_dim=3, res=16, tile_um=64.0)
    clf = tiny_classifier(tmp_path, ["class0", "class1", "class2"], px=8, um_px=6.0, gain=4.0, offset=-0.5)
    res = sd.seed_search(G, clf, [0, 1, 2], 0, 2)
    for r, ps, pe in zip(res.rows, res.probs_start, res.probs_end, strict=True):
        assert r.margin_start == pytest.approx(ps[0] - max(ps[1], ps[2]))
        assert r.margin_end == pytest.approx(pe[2] - max(pe[0], pe[1]))
        assert r.concordance == sd.classify_swap(ps, pe, 0, 2, TH, margin=0.1).concordance


def test_seed_search_refuses_same_class(tmp_path) -> None:
    G = tiny_generator(c_dim=2)
    clf = tiny_classifier(tmp_path, ["class0", "class1"], px=8, um_px=6.0)
    with pytest.raises(InputError, match="same"):
        sd.seed_search(G, clf, [0], 1, "class1")


def test_swap_verdict_is_a_frozen_record() -> None:
    import dataclasses

    v = sd.classify_swap([0.9, 0.1], [0.1, 0.9], 0, 1)
    assert v == sd.SwapVerdict("strong", 0.1, 0.9, pytest.approx(0.8), pytest.approx(0.8), False, "strong")
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.concordance = "none"  # type: ignore[misc]


def test_seed_search_refuses_no_seeds_and_bad_seeds(tmp_path) -> None:
    G = tiny_generator(c_dim=2)
    clf = tiny_classifier(tmp_path, ["class0", "class1"], px=8, um_px=6.0)
    with pytest.raises(InputError, match="at least one seed"):
        sd.seed_search(G, clf, [], 0, 1)
    with pytest.raises(InputError, match="seeds must be in"):
        sd.seed_search(G, clf, [-1], 0, 1)
