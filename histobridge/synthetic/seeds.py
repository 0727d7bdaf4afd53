"""Seeds that swap class: the same z generated under two classes, classified, and labelled.

Binary rule (the authors'; docs/method.md), with ``pred`` the classifier's probability of the *end*
class for the image generated under the start class (``pred_start``) and under the end class (``pred_end``):

* **strong**: ``pred_start < low`` and ``pred_end > high``;
* **weak**: ``pred_start < mid`` and ``pred_end > mid``, and not strong;
* **none**: anything else (a swap in the reverse direction is flagged ``reversed`` but stays none).

More than two classifier classes (histobridge's generalisation): ``pred_*`` is still the end class's
probability and the same thresholds apply, and in addition the *top class must follow the
conditioning class with a margin*: with ``margin(p, k) = p[k] − max_{j≠k} p[j]`` (one-vs-rest), a
seed counts (strong or weak) only if ``margin(p_start, start) ≥ margin`` and
``margin(p_end, end) ≥ margin``. With two classes this extra test is implied by the thresholds and is
skipped, so binary results equal the paper's. A single-output model (sigmoid or regression score)
is read as is: choose ``class_end`` as the class the output measures and set thresholds to its scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histobridge._atomic import write_csv, write_json
from histobridge.errors import InputError, ModelError
from histobridge.ranges import parse_floats
from histobridge.synthetic import conditioning as cond
from histobridge.synthetic.fov import classify_tiles, crop_box, gan_tile_um

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator

CATEGORIES = ("strong", "weak", "none")
TABLE_COLUMNS = (
    "seed",
    "class_start",
    "class_end",
    "pred_start",
    "pred_end",
    "thresholds",
    "concordance",
    "delta",
    "margin_start",
    "margin_end",
    "reversed",
    "concordance_binary_rule",
)


@dataclass(frozen=True)
class SwapThresholds:
    """``low ≤ mid ≤ high`` on the classifier output (probabilities by default)."""

    low: float = 0.25
    mid: float = 0.5
    high: float = 0.75

    def __post_init__(self) -> None:
        vals = (self.low, self.mid, self.high)
        if not all(math.isfinite(v) for v in vals) or not self.low <= self.mid <= self.high:
            raise InputError(f"thresholds must be finite with low <= mid <= high, got {vals}")

    @classmethod
    def parse(cls, text: str | Sequence[float], *, what: str = "--thresholds") -> SwapThresholds:
        """From ``"0.25,0.5,0.75"`` (the :mod:`histobridge.ranges` float grammar) or a 3-sequence."""
        if isinstance(text, str):
            low, mid, high = parse_floats(text, what=what, count=3)
        else:
            values = list(text)
            if len(values) != 3:
                raise InputError(f"{what}: thresholds need three values low,mid,high; got {values!r}")
            low, mid, high = (float(v) for v in values)
        return cls(low, mid, high)

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.low, self.mid, self.high)


@dataclass(frozen=True)
class SeedSwap:
    """One seed's verdict, with everything needed to reproduce it."""

    seed: int
    class_start: str
    class_end: str
    pred_start: float
    pred_end: float
    thresholds: tuple[float, float, float]
    concordance: str
    margin_start: float | None = None
    margin_end: float | None = None
    reversed: bool = False
    binary_rule: str = ""  # the authors' binary verdict on the end-class output alone (no margin test)

    @property
    def delta(self) -> float:
        return self.pred_end - self.pred_start

    def to_row(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "class_start": self.class_start,
            "class_end": self.class_end,
            "pred_start": self.pred_start,
            "pred_end": self.pred_end,
            "thresholds": list(self.thresholds),
            "concordance": self.concordance,
            "delta": self.delta,
            "margin_start": self.margin_start,
            "margin_end": self.margin_end,
            "reversed": self.reversed,
            "concordance_binary_rule": self.binary_rule or self.concordance,
        }


@dataclass(frozen=True)
class SwapVerdict:
    """What :func:`classify_swap` decides for one seed: the category, the end-class probabilities it
    was read from, the one-vs-rest margins (``None`` for a single-output model) and whether the
    classifier swapped the other way (start high, end low)."""

    concordance: str
    pred_start: float
    pred_end: float
    margin_start: float | None
    margin_end: float | None
    reversed: bool
    binary_rule: str = ""  # before the multi-class margin test; equals ``concordance`` for two classes


def classify_binary(pred_start: float, pred_end: float, th: SwapThresholds) -> str:
    """The paper's strong / weak / none rule on one monotonic output."""
    if pred_start < th.low and pred_end > th.high:
        return "strong"
    if pred_start < th.mid and pred_end > th.mid:
        return "weak"
    return "none"


def one_vs_rest_margin(p: np.ndarray, k: int) -> float:
    """``p[k] − max_{j≠k} p[j]``: positive when class k is the top class."""
    p = np.asarray(p, dtype=np.float64)
    others = np.delete(p, k)
    return float(p[k] - others.max()) if others.size else float(p[k])


def classify_swap(
    p_start: np.ndarray,
    p_end: np.ndarray,
    idx_start: int,
    idx_end: int,
    thresholds: SwapThresholds = SwapThresholds(),
    *,
    margin: float = 0.1,
) -> SwapVerdict:
    """Verdict for one seed from the classifier outputs of its start and end images; ``idx_*`` are
    classifier columns. See the module docstring for the multi-class rule."""
    p_start = np.asarray(p_start, dtype=np.float64).reshape(-1)
    p_end = np.asarray(p_end, dtype=np.float64).reshape(-1)
    n = p_start.size
    if p_end.size != n or n == 0:
        raise InputError(f"start and end predictions differ in length ({n} vs {p_end.size})")
    col = 0 if n == 1 else idx_end
    if not 0 <= col < n or (n > 1 and not 0 <= idx_start < n):
        raise InputError(f"class columns {idx_start}, {idx_end} out of range for {n} classifier outputs")
    pred_start, pred_end = float(p_start[col]), float(p_end[col])
    verdict = binary = classify_binary(pred_start, pred_end, thresholds)
    reverse = pred_start > thresholds.high and pred_end < thresholds.low
    m_start = m_end = None
    if n > 1:
        m_start, m_end = one_vs_rest_margin(p_start, idx_start), one_vs_rest_margin(p_end, idx_end)
        if n > 2 and verdict != "none" and (m_start < margin or m_end < margin):
            verdict = "none"
    return SwapVerdict(verdict, pred_start, pred_end, m_start, m_end, reverse, binary)


def classifier_column(name: str, gen_index: int, classifier_names: Sequence[str]) -> int:
    """The classifier output matching a generator class: by name (case-insensitive), else by index."""
    lowered = [n.lower() for n in classifier_names]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    if len(classifier_names) == 1:
        return 0
    if 0 <= gen_index < len(classifier_names):
        return gen_index
    raise ModelError(
        f"generator class {name!r} (index {gen_index}) has no matching classifier output "
        f"{list(classifier_names)}"
    )


@dataclass(frozen=True)
class SeedSearchResult:
    """All verdicts plus the raw classifier outputs (rows align with ``rows``)."""

    rows: tuple[SeedSwap, ...]
    probs_start: np.ndarray
    probs_end: np.ndarray
    classifier_classes: tuple[str, ...]
    thresholds: SwapThresholds
    margin: float
    generator: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {c: sum(r.concordance == c for r in self.rows) for c in CATEGORIES}

    def best(self, k: int = 10) -> list[SeedSwap]:
        """Top ``k`` seeds by ``pred_end − pred_start`` (ties: lower seed first)."""
        return sorted(self.rows, key=lambda r: (-r.delta, r.seed))[:k]


def seed_search(
    G: Generator,
    classifier: TileClassifier,
    seeds: Sequence[int],
    class_start: int | str = 0,
    class_end: int | str = 1,
    *,
    thresholds: SwapThresholds = SwapThresholds(),
    margin: float = 0.1,
    gan_um: float | None = None,
    truncation_psi: float = 1.0,
    batch_size: int = 16,
) -> SeedSearchResult:
    """Generate every seed under both classes (same z), classify the crop-then-resized images, label."""
    a, b = cond.resolve_class(G, class_start), cond.resolve_class(G, class_end)
    names = cond.class_names(G)
    if a == b:
        raise InputError(f"start and end class are the same ({names[a]!r})")
    seeds = cond.check_seeds(seeds)
    if not seeds:
        raise InputError("seed search needs at least one seed")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    um = gan_tile_um(G, gan_um)
    crop_box(int(G.img_resolution), um, float(classifier.config.tile_um))  # too wide: refuse before work
    clf_names = tuple(classifier.config.class_names)
    col_a = classifier_column(names[a], a, clf_names)
    col_b = classifier_column(names[b], b, clf_names)
    starts, ends = [], []
    n_cls = cond.num_classes(G)
    for i in range(0, len(seeds), batch_size):
        chunk = seeds[i : i + batch_size]
        # the start and end images of a chunk share one forward pass (same z, two labels)
        weights = np.concatenate(
            [cond.class_weights(n_cls, a, len(chunk)), cond.class_weights(n_cls, b, len(chunk))]
        )
        raw = cond.render_uint8(
            G, chunk + chunk, weights, truncation_psi=truncation_psi, batch_size=2 * batch_size
        )
        _, preds = classify_tiles(raw, um, classifier, 2 * batch_size)
        starts.append(preds[: len(chunk)])
        ends.append(preds[len(chunk) :])
    n_out = len(clf_names) or 1
    p_start = np.concatenate(starts) if starts else np.zeros((0, n_out))
    p_end = np.concatenate(ends) if ends else np.zeros((0, n_out))
    rows = []
    for seed, ps, pe in zip(seeds, p_start, p_end, strict=True):
        v = classify_swap(ps, pe, col_a, col_b, thresholds, margin=margin)
        rows.append(
            SeedSwap(
                seed, names[a], names[b], v.pred_start, v.pred_end, thresholds.as_tuple(), v.concordance,
                v.margin_start, v.margin_end, v.reversed, v.binary_rule,
            )
        )  # fmt: skip
    return SeedSearchResult(
        tuple(rows), p_start, p_end, clf_names, thresholds, margin, cond.generator_record(G, um)
    )


def table_rows(rows: Sequence[SeedSwap]) -> list[list[object]]:
    """The verdict table's rows in ``TABLE_COLUMNS`` order (thresholds as ``low;mid;high``)."""
    out: list[list[object]] = []
    for r in rows:
        row = r.to_row()
        row["thresholds"] = ";".join(f"{t:g}" for t in r.thresholds)
        out.append(["" if row.get(k) is None else row[k] for k in TABLE_COLUMNS])
    return out


def write_table(path: str | Path, rows: Sequence[SeedSwap]) -> None:
    """The verdict table as CSV, written atomically."""
    write_csv(path, TABLE_COLUMNS, table_rows(rows))


def write_seed_search(
    result: SeedSearchResult,
    out_dir: str | Path,
    *,
    G: Generator | None = None,
    top: int = 8,
) -> dict[str, Path]:
    """Write ``seeds.csv``, ``seeds.json`` (rows, counts, best seeds) and, given G, ``best_seeds.png``."""
    out = Path(out_dir)
    paths = {"csv": out / "seeds.csv", "json": out / "seeds.json"}
    write_table(paths["csv"], result.rows)
    n = len(result.rows)
    best = result.best(top)
    write_json(
        paths["json"],
        {
            "thresholds": list(result.thresholds.as_tuple()),
            "margin": result.margin,
            "classifier_classes": list(result.classifier_classes),
            "generator": result.generator,
            "counts": result.counts(),
            "fractions": {k: (v / n if n else 0.0) for k, v in result.counts().items()},
            "best": [r.to_row() for r in best],
            "rows": [
                {**r.to_row(), "probs_start": ps.tolist(), "probs_end": pe.tolist()}
                for r, ps, pe in zip(result.rows, result.probs_start, result.probs_end, strict=True)
            ],
        },
    )
    if G is not None and best:
        paths["png"] = out / "best_seeds.png"
        from histobridge.viz.pictures import save_png

        save_png(best_seeds_picture(G, best), paths["png"])
    return paths


def best_seeds_picture(G: Generator, best: Sequence[SeedSwap]) -> Any:
    """Start-class images above end-class images for the best seeds (full GAN tiles)."""
    from histobridge.viz.pictures import montage

    seeds = [r.seed for r in best]
    start = cond.render_uint8(G, seeds, cond.class_rows(G, best[0].class_start, len(seeds)))
    end = cond.render_uint8(G, seeds, cond.class_rows(G, best[0].class_end, len(seeds)))
    captions = [
        [f"seed {r.seed}\np={r.pred_start:.2f}" for r in best],
        [f"{r.concordance}\np={r.pred_end:.2f}" for r in best],
    ]
    return montage(
        [list(start), list(end)], row_labels=[best[0].class_start, best[0].class_end], captions=captions
    )


__all__ = [
    "CATEGORIES",
    "SeedSearchResult",
    "SeedSwap",
    "SwapThresholds",
    "SwapVerdict",
    "best_seeds_picture",
    "classifier_column",
    "classify_binary",
    "classify_swap",
    "one_vs_rest_margin",
    "seed_search",
    "table_rows",
    "write_seed_search",
    "write_table",
]
