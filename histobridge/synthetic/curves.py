"""The interpolation-probability curve: how the classifier's output moves along class blends.

For the strong and the weak seeds of a seed search, each seed is blended from the start to the end
class in ``steps`` steps, the end-class output is min–max normalised per seed, and the mean ± SD over
seeds is reported per step (the figure the method's authors draw; see docs/teaching.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from histobridge._atomic import write_csv
from histobridge.errors import InputError

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator

COLOURS = {"strong": (31, 119, 180), "weak": (255, 127, 14)}


@dataclass(frozen=True)
class CurveGroup:
    """Normalised end-class output per seed (rows) and step (columns)."""

    name: str
    seeds: tuple[int, ...]
    ts: np.ndarray
    normalised: np.ndarray  # (n_seeds, steps)

    @property
    def mean(self) -> np.ndarray:
        return self.normalised.mean(axis=0) if len(self.seeds) else np.full(len(self.ts), np.nan)

    @property
    def sd(self) -> np.ndarray:
        return self.normalised.std(axis=0) if len(self.seeds) else np.full(len(self.ts), np.nan)


@dataclass(frozen=True)
class InterpolationCurve:
    class_from: str
    class_to: str
    groups: tuple[CurveGroup, ...]

    def rows(self) -> list[dict[str, float | str | int]]:
        out: list[dict[str, float | str | int]] = []
        for g in self.groups:
            for i, t in enumerate(g.ts):
                out.append(
                    {
                        "group": g.name,
                        "seeds": len(g.seeds),
                        "step": i,
                        "t": float(t),
                        "mean": float(g.mean[i]),
                        "sd": float(g.sd[i]),
                    }
                )
        return out


def minmax(curves: np.ndarray) -> np.ndarray:
    """Per-row min–max normalisation; a flat row becomes zeros."""
    curves = np.asarray(curves, dtype=np.float64)
    lo = curves.min(axis=1, keepdims=True)
    span = curves.max(axis=1, keepdims=True) - lo
    return np.where(span > 0, (curves - lo) / np.where(span > 0, span, 1.0), 0.0)


def interpolation_curve(
    G: Generator,
    classifier: TileClassifier,
    seeds_by_group: Mapping[str, Sequence[int]],
    class_from: int | str,
    class_to: int | str,
    *,
    steps: int = 25,
    gan_um: float | None = None,
) -> InterpolationCurve:
    """Blend every seed of each group and normalise the end class's output along the blend."""
    from histobridge.synthetic import conditioning as cond
    from histobridge.synthetic.blending import class_blend
    from histobridge.synthetic.seeds import classifier_column

    if steps < 2:
        raise InputError(f"an interpolation curve needs at least 2 steps, got {steps}")
    names = cond.class_names(G)
    a, b = cond.resolve_class(G, class_from), cond.resolve_class(G, class_to)
    col = classifier_column(names[b], b, tuple(classifier.config.class_names))
    groups = []
    ts = np.linspace(0.0, 1.0, steps)
    for name, seeds in seeds_by_group.items():
        rows = []
        for seed in seeds:
            blend = class_blend(G, int(seed), a, b, steps, classifier=classifier, gan_um=gan_um)
            assert blend.predictions is not None
            rows.append(blend.predictions[:, col])
            ts = blend.ts
        data = minmax(np.asarray(rows)) if rows else np.zeros((0, steps))
        groups.append(CurveGroup(name, tuple(int(s) for s in seeds), np.asarray(ts), data))
    return InterpolationCurve(names[a], names[b], tuple(groups))


def curve_picture(curve: InterpolationCurve, size: tuple[int, int] = (520, 320)) -> Image.Image:
    """Mean line and ± SD band per group over the blend, on normalised [0, 1] axes."""
    w, h = size
    left, right, top, bottom = 48, 12, 28, 36
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img, "RGBA")
    pw, ph = w - left - right, h - top - bottom

    def xy(t: float, v: float) -> tuple[float, float]:
        return left + t * pw, top + (1.0 - v) * ph

    draw.rectangle([left, top, left + pw, top + ph], outline=(0, 0, 0))
    for v in (0.0, 0.5, 1.0):
        x0, y = xy(0, v)
        draw.line([x0 - 4, y, x0, y], fill=(0, 0, 0))
        draw.text((4, y - 6), f"{v:.1f}", fill=(0, 0, 0))
    for t in (0.0, 0.5, 1.0):
        x, y0 = xy(t, 0)
        draw.line([x, y0, x, y0 + 4], fill=(0, 0, 0))
        draw.text((x - 8, y0 + 6), f"{t:.1f}", fill=(0, 0, 0))
    draw.text(
        (left, 6),
        f"normalised P({curve.class_to}) along {curve.class_from} -> {curve.class_to}",
        fill=(0, 0, 0),
    )
    legend_y = top + 6
    for g in curve.groups:
        if not len(g.seeds):
            continue
        colour = COLOURS.get(g.name, (80, 80, 80))
        mean, sd = g.mean, g.sd
        upper = [xy(float(t), float(min(1.0, m + s))) for t, m, s in zip(g.ts, mean, sd, strict=True)]
        lower = [xy(float(t), float(max(0.0, m - s))) for t, m, s in zip(g.ts, mean, sd, strict=True)]
        draw.polygon(upper + lower[::-1], fill=(*colour, 50))
        draw.line([xy(float(t), float(m)) for t, m in zip(g.ts, mean, strict=True)], fill=colour, width=2)
        draw.text((left + 8, legend_y), f"{g.name} seeds (n={len(g.seeds)}): mean ± SD", fill=colour)
        legend_y += 14
    draw.text((left + pw // 2 - 30, h - 14), "blend step t", fill=(0, 0, 0))
    return img


def write_curve(curve: InterpolationCurve, out_dir: str | Path, stem: str | None = None) -> dict[str, Path]:
    """``<stem>.png`` and ``<stem>.csv`` (group, seeds, step, t, mean, sd)."""
    from histobridge.viz.pictures import save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or f"interpolation_{curve.class_from}_to_{curve.class_to}".replace(" ", "_")
    paths = {"png": out / f"{stem}.png", "csv": out / f"{stem}.csv"}
    save_png(curve_picture(curve), paths["png"])
    columns = ["group", "seeds", "step", "t", "mean", "sd"]
    write_csv(paths["csv"], columns, [[r[c] for c in columns] for r in curve.rows()])
    return paths
