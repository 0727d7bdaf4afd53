"""The demo's controls: held-out accuracy measured in the run, and the colour-only checks shown beside
every synthetic figure (see :mod:`histobridge.synthetic.controls` and docs/method.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from histobridge.synthetic import controls as ctl

SAME_SLIDE = ("same slide: held-out regions come from the slide the classifier was trained on, so this "
              "measures region-level, not slide-level, generalisation")
NOT_HELD_OUT = "no held-out regions recorded: measured on all tiles, which the classifier may have seen"


@dataclass(frozen=True)
class RealTiles:
    """The store's real tiles with labels as classifier columns, and which are held out."""

    tiles: np.ndarray
    labels: np.ndarray
    heldout: np.ndarray  # bool
    heldout_regions: tuple[int, ...]


def heldout_regions(clf_dir: Path) -> tuple[int, ...] | None:
    """Region indices the classifier's training held out (its metrics.json), or None if unrecorded."""
    try:
        data = json.loads((clf_dir / "metrics.json").read_text(encoding="utf-8"))
        return tuple(int(r) for r in data["regions"]["heldout"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def real_tiles(store_path: Path, class_names: Sequence[str], held: tuple[int, ...] | None) -> RealTiles:
    """Every labelled real tile of the store whose class the classifier knows."""
    from histobridge.tiling.store import open_store

    tiles, labels, hold = [], [], []
    for group in open_store(store_path).groups():
        names = group.classes
        lab = np.asarray(group.labels[:])
        reg = np.asarray(group.regions[:])
        col = np.array([class_names.index(names[i]) if 0 <= i < len(names) and names[i] in class_names else -1
                        for i in lab], dtype=np.int64)
        keep = col >= 0
        tiles.append(np.asarray(group.tiles[:])[keep])
        labels.append(col[keep])
        hold.append(np.isin(reg[keep], held) if held is not None else np.zeros(int(keep.sum()), bool))
    if not tiles:
        return RealTiles(np.zeros((0, 1, 1, 3), np.uint8), np.zeros(0, np.int64), np.zeros(0, bool), ())
    return RealTiles(np.concatenate(tiles), np.concatenate(labels), np.concatenate(hold), tuple(held or ()))


def synthetic_tiles(store_path: Path, class_names: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Synthetic tiles and swapped twins with the classifier column of their conditioning class."""
    from histobridge.tiling.store import open_store

    out: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {"synthetic": ([], []), "swapped": ([], [])}
    for group in open_store(store_path).groups():
        sub = group.synthetic()
        if sub is None or "swapped" not in sub:
            continue
        gen_names = list(sub.attrs["params"]["generator"]["class_names"])
        for key, arr, cls in (("synthetic", "tiles", "classes"), ("swapped", "swapped", "swap_classes")):
            c = np.asarray(sub[cls][:])
            want = np.array([class_names.index(gen_names[i]) if gen_names[i] in class_names else -1
                             for i in c])
            keep = want >= 0
            out[key][0].append(np.asarray(sub[arr][:])[keep])
            out[key][1].append(want[keep])
    return {k: (np.concatenate(t) if t else np.zeros((0, 1, 1, 3), np.uint8),
                np.concatenate(w) if w else np.zeros(0, np.int64)) for k, (t, w) in out.items()}


def run_controls(
    store_path: Path, classifier: Any, clf_dir: Path
) -> tuple[ctl.ColourBaseline, dict[str, Any]]:
    """Fit the colour baseline on the training regions' tiles and measure every control.

    Returns the baseline (the seed search reuses it) and the numbers for metrics.json.
    """
    names = list(classifier.config.class_names)
    held = heldout_regions(clf_dir)
    real = real_tiles(store_path, names, held)
    fit = ~real.heldout if real.heldout.any() and (~real.heldout).any() else np.ones(len(real.labels), bool)
    baseline = ctl.ColourBaseline.fit(real.tiles[fit], real.labels[fit], names)
    n = len(names)
    out: dict[str, Any] = {"colour_baseline": baseline.to_dict()}

    test = real.heldout if real.heldout.any() else np.ones(len(real.labels), bool)
    pred = classifier.predict(real.tiles[test]).argmax(axis=1)
    base_pred = baseline.predict(real.tiles[test]).argmax(axis=1)
    ba, lo, hi = ctl.balanced_accuracy_ci(pred, real.labels[test], n)
    out["heldout"] = {
        "balanced_accuracy": ba, "ci95": [lo, hi], "accuracy": float((pred == real.labels[test]).mean()),
        "tiles": int(test.sum()), "regions": list(real.heldout_regions),
        "held_out": bool(real.heldout.any()),
        "colour_baseline_balanced_accuracy": ctl.balanced_accuracy(base_pred, real.labels[test], n),
        "caveat": SAME_SLIDE if real.heldout.any() else NOT_HELD_OUT,
    }

    # Recolour every real tile to the next class's pixel statistics; does the classifier keep its class?
    keeps = ctl.recolour_keeps_class(classifier, real.tiles, real.labels, names, fit)
    base_keeps = ctl.recolour_keeps_class(baseline, real.tiles, real.labels, names, fit)
    gray = classifier.predict(ctl.grayscale(real.tiles)).argmax(axis=1)
    gray_ok = {name: float((gray[real.labels == k] == k).mean())
               for k, name in enumerate(names) if (real.labels == k).any()}
    out["recolour"] = {
        "keeps_class": keeps,
        "keeps_class_mean": float(np.mean(list(keeps.values()))) if keeps else float("nan"),
        "colour_baseline_keeps_class": base_keeps, "tiles": len(real.labels),
        "rule": "each real tile's per-channel mean and SD set to the next class's pixel statistics",
    }
    out["grayscale"] = {"recall": gray_ok,
                        "balanced_accuracy": ctl.balanced_accuracy(gray, real.labels, n)}
    # Harder: stain amounts swapped (a per-tile colour normaliser undoes less of it), and shuffled
    # pixels (colours kept, form gone: no colour normalisation undoes it).
    swap = ctl.stain_swap_keeps_class(classifier, real.tiles, real.labels, names, fit)
    out["stain_swap"] = {
        "keeps_class": swap,
        "keeps_class_mean": float(np.mean(list(swap.values()))) if swap else float("nan"),
        "rule": "each real tile's haematoxylin and eosin amounts set to the next class's statistics",
    }
    out["shuffled"] = {
        "balanced_accuracy": ctl.shuffled_balanced_accuracy(classifier, real.tiles, real.labels, n),
        "colour_baseline_balanced_accuracy": ctl.shuffled_balanced_accuracy(
            baseline, real.tiles, real.labels, n),
        "rule": "each real tile's pixels in random order: near 0.5 when the class is read from form",
    }

    syn = synthetic_tiles(store_path, names)
    out["realism"] = _realism(real.tiles, syn["synthetic"][0])
    for key in ("synthetic", "swapped"):
        tiles, want = syn[key]
        clf_p = classifier.predict(tiles) if len(tiles) else np.zeros((0, n))
        base_p = baseline.predict(tiles) if len(tiles) else np.zeros((0, n))
        c, b = ctl.agreement(clf_p, want), ctl.agreement(base_p, want)
        same = float((clf_p.argmax(axis=1) == base_p.argmax(axis=1)).mean()) if len(tiles) else float("nan")
        out[key] = {"classifier_agreement": c, "colour_baseline_agreement": b,
                    "classifier_equals_baseline": same, "colour_carries": ctl.colour_carries(c, b)}
    return baseline, out


def _realism(real: np.ndarray, synthetic: np.ndarray) -> dict[str, Any]:
    """Realism of the synthetic tiles against the real ones, with the real-vs-real ceiling."""
    from histobridge.synthetic.invert import FEATURE_NET
    from histobridge.synthetic.realism import realism, split_half_ceiling

    k = 3
    if len(real) <= 2 * k + 1 or len(synthetic) <= k:
        return {"skipped": f"too few tiles ({len(real)} real, {len(synthetic)} synthetic)"}
    res = realism(real, synthetic, k=k)
    return {**res.summary(), "real_split_half": split_half_ceiling(real, k=k), "feature_space": FEATURE_NET,
            "real_tiles": len(real), "synthetic_tiles": len(synthetic)}


def baseline_swaps(recorded: np.ndarray, batch_sizes: Sequence[int], col_a: int, col_b: int,
                   thresholds: Any, margin: float) -> list[str]:
    """The colour baseline's swap category per seed, from predictions recorded during a seed search.

    ``recorded`` holds, chunk by chunk, the start-class images then the end-class images of that chunk.
    """
    from histobridge.synthetic.seeds import classify_swap

    verdicts, at = [], 0
    for size in batch_sizes:
        starts, ends = recorded[at : at + size], recorded[at + size : at + 2 * size]
        at += 2 * size
        for ps, pe in zip(starts, ends, strict=True):
            verdicts.append(classify_swap(ps, pe, col_a, col_b, thresholds, margin=margin).concordance)
    return verdicts


__all__ = ["SAME_SLIDE", "RealTiles", "baseline_swaps", "heldout_regions", "real_tiles", "run_controls",
           "synthetic_tiles"]
