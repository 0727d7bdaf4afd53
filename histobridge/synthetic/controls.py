"""Controls that say how much of an explanation is colour: a colour-only baseline, recoloured and
grayscale real tiles, and held-out accuracy with an interval.

Why: a tile classifier that separates two classes by their mean colour will call every synthetic tile
"right" as long as the generator paints it the right colour. Before a figure claims that synthetic
tiles carry class morphology, the same figure must show what a rule that sees only the mean colour
would have said. These controls are ours, not the method authors' (see docs/method.md).

- :class:`ColourBaseline`: nearest class-mean colour (mean RGB of a tile), with probabilities from an
  isotropic Gaussian of the pooled within-class spread, so its output can be read with the same
  swap thresholds as the classifier's.
- :func:`recolour`: a real tile's per-channel mean and SD moved to another class's pixel statistics.
  A classifier that keeps the tile's class after this looks at more than colour.
- :func:`grayscale`: luminance copied into the three channels.
- :func:`stain_swap`: a harder recolouring, in stain space: each tile's haematoxylin and eosin
  amounts (optical density, Ruifrok-Johnston vectors) moved to another class's statistics. Per-tile
  RGB or CIELAB normalisation largely undoes :func:`recolour`, much less this.
- :func:`shuffle_pixels`: every tile's pixels in random order: colours kept, morphology gone. A
  classifier that still finds the class on these reads colour, whatever the recolour control said.
- :func:`balanced_accuracy_ci`: balanced accuracy with a stratified bootstrap 95 % interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from histobridge.errors import InputError

COLOUR_MARGIN = 0.05  # the baseline "matches" the classifier when it is at most this far below it


class Predictor(Protocol):
    """Anything that maps uint8 NHWC RGB tiles to class probabilities (N, C)."""

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray: ...


def mean_colour(images: np.ndarray) -> np.ndarray:
    """Mean RGB (0..255) of each uint8 NHWC tile, shape (N, 3)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"expected tiles as (N, H, W, 3) RGB, got shape {images.shape}")
    return np.asarray(images.reshape(len(images), -1, 3).mean(axis=1), dtype=np.float64)


@dataclass(frozen=True)
class ColourBaseline:
    """Nearest class-mean colour: the rule a colour detector would follow."""

    class_names: tuple[str, ...]
    means: np.ndarray  # (C, 3) mean of the tiles' mean RGB per class
    spread: float  # pooled within-class SD of the tiles' mean RGB (per channel), > 0

    @classmethod
    def fit(cls, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> ColourBaseline:
        """Class means of the tiles' mean colours; every class needs at least one tile."""
        feats, labels = mean_colour(images), np.asarray(labels)
        means, resid = [], []
        for k, name in enumerate(class_names):
            own = feats[labels == k]
            if not len(own):
                raise InputError(f"colour baseline: no tiles of class {name!r} to fit")
            means.append(own.mean(axis=0))
            resid.append(own - own.mean(axis=0))
        spread = float(np.sqrt(np.mean(np.concatenate(resid) ** 2)))
        return cls(tuple(class_names), np.asarray(means), max(spread, 1.0))

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N, C) ∝ exp(−d²/2s²), d the distance of the tile's mean RGB to each class mean."""
        d2 = ((mean_colour(images)[:, None, :] - self.means[None]) ** 2).sum(axis=2)
        logit = -d2 / (2 * self.spread**2)
        logit -= logit.max(axis=1, keepdims=True)
        p = np.exp(logit)
        return np.asarray(p / p.sum(axis=1, keepdims=True), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": "nearest class-mean RGB",
            "class_means_rgb": {n: [round(float(v), 2) for v in m] for n, m in zip(self.class_names,
                                                                                   self.means, strict=True)},
            "spread": round(self.spread, 3),
        }


def pixel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and SD over every pixel of ``images`` (uint8 NHWC)."""
    px = np.asarray(images, dtype=np.float64).reshape(-1, 3)
    return px.mean(axis=0), px.std(axis=0)


def recolour(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Each tile's per-channel mean and SD replaced by ``mean``/``std`` (uint8 out, clipped)."""
    x = np.asarray(images, dtype=np.float64)
    mu = x.mean(axis=(1, 2), keepdims=True)
    sd = x.std(axis=(1, 2), keepdims=True)
    out = (x - mu) / np.where(sd > 1e-6, sd, 1.0) * np.asarray(std) + np.asarray(mean)
    return np.asarray(np.clip(np.rint(out), 0, 255), dtype=np.uint8)


def grayscale(images: np.ndarray) -> np.ndarray:
    """Rec. 601 luminance in all three channels (uint8)."""
    x = np.asarray(images, dtype=np.float64)
    y = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    return np.repeat(np.clip(np.rint(y), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def _hed_matrix() -> np.ndarray:
    from histobridge.models.augment import HED_VECTORS

    m = np.asarray(HED_VECTORS, dtype=np.float64)
    return np.asarray(m / np.linalg.norm(m, axis=1, keepdims=True), dtype=np.float64)


def stain_amounts(images: np.ndarray) -> np.ndarray:
    """Haematoxylin, eosin and residual (DAB) optical densities per pixel, float (N, H, W, 3)."""
    od = -np.log(np.maximum(np.asarray(images, dtype=np.float64), 1.0) / 255.0)
    return np.asarray(od @ np.linalg.inv(_hed_matrix()))


def stain_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD of each stain amount over every pixel of ``images``."""
    c = stain_amounts(images).reshape(-1, 3)
    return c.mean(axis=0), c.std(axis=0)


def stain_swap(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Each tile's H and E amounts given ``mean``/``std`` (the residual channel kept); uint8 out."""
    c = stain_amounts(images)
    mu, sd = c.mean(axis=(1, 2), keepdims=True), c.std(axis=(1, 2), keepdims=True)
    moved = (c - mu) / np.where(sd > 1e-6, sd, 1.0) * np.asarray(std) + np.asarray(mean)
    moved[..., 2] = c[..., 2]
    rgb = 255.0 * np.exp(-(np.maximum(moved, 0.0) @ _hed_matrix()))
    return np.asarray(np.clip(np.rint(rgb), 0, 255), dtype=np.uint8)


def shuffle_pixels(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each tile's pixels in an independent random order (same colours, no morphology)."""
    x = np.asarray(images)
    n, h, w, _ = x.shape
    rng = np.random.default_rng(seed)
    flat = x.reshape(n, h * w, 3)
    order = np.argsort(rng.random((n, h * w)), axis=1)
    return np.ascontiguousarray(np.take_along_axis(flat, order[..., None], axis=1).reshape(x.shape))


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    recalls = [float((pred[labels == k] == k).mean()) for k in range(n_classes) if (labels == k).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def balanced_accuracy_ci(
    pred: np.ndarray, labels: np.ndarray, n_classes: int, *, resamples: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """(balanced accuracy, 2.5 %, 97.5 %) with tiles resampled within each class.

    Tiles of one region are correlated, so this interval is narrower than one over regions would be.
    """
    pred, labels = np.asarray(pred), np.asarray(labels)
    point = balanced_accuracy(pred, labels, n_classes)
    if not len(labels):
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx_by_class = [np.flatnonzero(labels == k) for k in range(n_classes)]
    stats = []
    for _ in range(resamples):
        pick = np.concatenate([rng.choice(ix, len(ix)) for ix in idx_by_class if len(ix)])
        stats.append(balanced_accuracy(pred[pick], labels[pick], n_classes))
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return point, float(lo), float(hi)


def agreement(probs: np.ndarray, want: np.ndarray) -> float:
    """Share of rows whose top class is ``want`` (NaN when empty)."""
    probs = np.asarray(probs)
    return float((probs.argmax(axis=1) == np.asarray(want)).mean()) if len(probs) else float("nan")


def colour_carries(classifier_rate: float, baseline_rate: float, margin: float = COLOUR_MARGIN) -> bool:
    """True when the colour-only baseline does as well as the classifier (within ``margin``)."""
    return bool(np.isfinite(classifier_rate) and np.isfinite(baseline_rate)
                and baseline_rate >= classifier_rate - margin)


def _keeps_class(
    predictor: Predictor, tiles: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
    stats_from: np.ndarray | None, move: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> dict[str, float]:
    """Per class: the share of its tiles still given their class after ``move(own, target)`` takes
    them to the next class's tiles (``target``: those selected by ``stats_from``, default all)."""
    labels = np.asarray(labels)
    pick = np.ones(len(labels), bool) if stats_from is None else np.asarray(stats_from, bool)
    n = len(class_names)
    out: dict[str, float] = {}
    for k, name in enumerate(class_names):
        own, target = labels == k, pick & (labels == (k + 1) % n)
        if not own.any() or not target.any():
            continue
        moved = move(tiles[own], tiles[target])
        out[name] = float((np.asarray(predictor.predict(moved)).argmax(axis=1) == k).mean())
    return out


def recolour_keeps_class(
    predictor: Predictor, tiles: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
    stats_from: np.ndarray | None = None,
) -> dict[str, float]:
    """Per class: the share of its tiles still given their class after :func:`recolour` to the next
    class's pixel statistics (taken from the tiles selected by ``stats_from``, default all)."""
    return _keeps_class(predictor, tiles, labels, class_names, stats_from,
                        lambda own, target: recolour(own, *pixel_stats(target)))


def stain_swap_keeps_class(
    predictor: Predictor, tiles: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
    stats_from: np.ndarray | None = None,
) -> dict[str, float]:
    """As :func:`recolour_keeps_class`, with :func:`stain_swap` to the next class's stain statistics."""
    return _keeps_class(predictor, tiles, labels, class_names, stats_from,
                        lambda own, target: stain_swap(own, *stain_stats(target)))


def shuffled_balanced_accuracy(
    predictor: Predictor, tiles: np.ndarray, labels: np.ndarray, n_classes: int, seed: int = 0
) -> float:
    """Balanced accuracy on :func:`shuffle_pixels` tiles: near chance when the class is read from form."""
    pred = np.asarray(predictor.predict(shuffle_pixels(tiles, seed))).argmax(axis=1)
    return balanced_accuracy(pred, np.asarray(labels), n_classes)


class RecordingPredictor:
    """Runs the classifier and records, on the very same images, what a second predictor says.

    The seed search renders each seed once; wrapping its classifier this way gives the colour
    baseline's verdicts on the same images at no extra generator cost.
    """

    def __init__(self, classifier: Any, other: Predictor) -> None:
        self.classifier = classifier
        self.config = classifier.config
        self.other = other
        self.recorded: list[np.ndarray] = []

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        self.recorded.append(np.asarray(self.other.predict(images, batch_size=batch_size)))
        return np.asarray(self.classifier.predict(images, batch_size=batch_size))

    def other_predictions(self) -> np.ndarray:
        return np.concatenate(self.recorded) if self.recorded else np.zeros((0, 0))


__all__ = [
    "COLOUR_MARGIN",
    "ColourBaseline",
    "Predictor",
    "RecordingPredictor",
    "agreement",
    "balanced_accuracy",
    "balanced_accuracy_ci",
    "colour_carries",
    "grayscale",
    "mean_colour",
    "pixel_stats",
    "recolour",
    "recolour_keeps_class",
    "shuffle_pixels",
    "shuffled_balanced_accuracy",
    "stain_amounts",
    "stain_stats",
    "stain_swap",
    "stain_swap_keeps_class",
]
