"""A teaching sheet per class pair: real and synthetic examples, blend strips with the classifier's
prediction under each step, and the interpolation-probability curve — as one HTML page and one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from histobridge.errors import InputError
from histobridge.report.html import Report
from histobridge.teach.items import ItemPool, TeachingItem

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator
    from histobridge.synthetic.curves import InterpolationCurve
    from histobridge.synthetic.seeds import SeedSearchResult


@dataclass(frozen=True)
class SheetSettings:
    examples: int = 6
    blend_strips: int = 3
    blend_steps: int = 7
    curve_seeds: int = 12
    curve_steps: int = 25


def _examples(items: Sequence[TeachingItem], cls: str, n: int) -> list[TeachingItem]:
    return [i for i in items if i.true_class == cls][:n]


def _stack(pictures: Sequence[Image.Image]) -> Image.Image:
    width = max(p.width for p in pictures)
    canvas = Image.new("RGB", (width, sum(p.height + 8 for p in pictures)), (255, 255, 255))
    y = 0
    for p in pictures:
        canvas.paste(p, (0, y))
        y += p.height + 8
    return canvas


def _curve(
    G: Generator, classifier: TileClassifier, search: SeedSearchResult, a: str, b: str, s: SheetSettings
) -> InterpolationCurve:
    from histobridge.synthetic.curves import interpolation_curve

    groups = {
        kind: [r.seed for r in search.rows if r.concordance == kind][: s.curve_seeds]
        for kind in ("strong", "weak")
    }
    return interpolation_curve(G, classifier, groups, a, b, steps=s.curve_steps)


def write_sheet(
    out_dir: str | Path,
    pool: ItemPool,
    G: Generator,
    classifier: TileClassifier,
    class_a: str,
    class_b: str,
    search: SeedSearchResult,
    settings: SheetSettings = SheetSettings(),
) -> dict[str, Path]:
    """``sheet_<a>_vs_<b>.html`` and ``.png`` (plus the curve's PNG and CSV) in ``out_dir``; ``search``
    is a seed search from ``class_a`` to ``class_b`` (its strongest swaps are shown and curved)."""
    from histobridge.synthetic.blending import class_blend, class_blend_strip
    from histobridge.synthetic.curves import curve_picture, write_curve
    from histobridge.viz.pictures import montage, save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    held = set(pool.held_out_real)
    real = [i for i in pool.of_kind("real") if i.item_id not in held]
    synthetic = pool.of_kind("synthetic")
    rows, labels = [], []
    for kind, items in (("real", real), ("synthetic", synthetic)):
        for cls in (class_a, class_b):
            ex = _examples(items, cls, settings.examples)
            if not ex:
                raise InputError(f"no {kind} {cls} tiles for the teaching sheet")
            rows.append([i.image for i in ex])
            labels.append(f"{kind}\n{cls}")
    examples = montage(rows, row_labels=labels, cell_px=96)
    strips = [
        class_blend_strip(
            class_blend(G, r.seed, class_a, class_b, settings.blend_steps, classifier=classifier)
        )
        for r in search.best(settings.blend_strips)
    ]
    curve = _curve(G, classifier, search, class_a, class_b, settings)
    stem = f"sheet_{class_a}_vs_{class_b}".replace(" ", "_")
    curve_files = write_curve(curve, out, f"{stem}_curve")
    picture = _stack([examples, *strips, curve_picture(curve)])
    save_png(picture, out / f"{stem}.png")
    counts = search.counts()
    rep = Report(
        f"{class_a} vs {class_b}", lead="What separates the two classes, in real and synthetic tiles."
    )
    rep.heading("Examples")
    rep.figure(examples, "Real tiles from annotated regions (top) and synthetic tiles (bottom), per class.")
    rep.heading(f"Blends from {class_a} to {class_b}")
    rep.paragraph(
        f"One seed drawn with a label moving from {class_a} to {class_b}; the classifier's probability of "
        f"{class_b} is written under each step. These are the {len(strips)} seeds whose prediction moved "
        f"most among {len(search.rows)} searched ({counts.get('strong', 0)} strong, "
        f"{counts.get('weak', 0)} weak swaps)."
    )
    for s in strips:
        rep.figure(s, "")
    rep.heading("Interpolation-probability curve")
    rep.figure(
        curve_picture(curve), "Normalised prediction along the blend, mean ± SD over strong and weak seeds."
    )
    rep.note(
        "Synthetic tiles come from a generator trained on few slides; they teach what the classifier "
        "responds to, not the full range of either class."
    )
    html_path = rep.write(out / f"{stem}.html")
    return {
        "html": html_path,
        "png": out / f"{stem}.png",
        "curve_png": curve_files["png"],
        "curve_csv": curve_files["csv"],
    }
