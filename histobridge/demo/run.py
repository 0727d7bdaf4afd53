"""``histobridge demo``: the whole mission on the embedded skin sample, ending in one HTML report.

Stages: fetch the sample slide (cached) → materialise the sample QuPath project → tile the annotated
Epidermis and Dermis regions into Zarr → classifier heatmap written back as QuPath tiles → matched
synthetic tiles with class-swapped twins → class-swap seed search → class- and layer-blending pictures
for the best seeds → ``report.html`` and ``metrics.json``. Every stage reuses what an earlier run
finished, so an interrupted demo resumes.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.resources import as_file
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from histobridge._atomic import write_json
from histobridge.errors import InputError
from histobridge.runs import ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from histobridge.heatmap.pipeline import HeatmapReport
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator
    from histobridge.qupath.project import Project
    from histobridge.synthetic.blending import ClassBlend, LayerBlendGrid
    from histobridge.synthetic.controls import ColourBaseline
    from histobridge.synthetic.matched import MatchedReport
    from histobridge.synthetic.seeds import SeedSearchResult

log = logging.getLogger(__name__)

SAMPLE = "skin"
CLASS_A, CLASS_B = "Epidermis", "Dermis"
CURVE_STEPS = 25  # blend positions of the interpolation-probability curve
ANIMATION_STEPS = 25  # even positions of the animated blend, before frames are added in the window
STAGES = ("sample", "tile", "heatmap", "synthetic", "seeds", "blend", "invert", "teach", "report")


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does; the defaults finish in a few minutes on two CPU cores.

    Checked when made, so a bad value fails before the slide is fetched or anything is computed.
    """

    out_dir: Path
    seeds: int = 256
    blend_seeds: int = 4
    blend_steps: int = 9
    synthetic_per_region: int | None = None  # None: as many as the region has real tiles
    workers: int = 2
    offline: bool = False
    classifier: Path | None = None  # default: the sample project's own models
    generator: Path | None = None
    device: str = "auto"  # auto: CUDA, then Apple MPS, then CPU
    heatmap_stride_div: int = 2  # heatmap tiles overlap: stride = tile / this (1, 2 or 4)
    invert_tiles: int = 2  # real held-out tiles projected into W+ for counterfactuals (per class: half)
    invert_steps: int = 100  # optimisation steps of the projection
    teach: bool = True  # a short teaching stage: quiz forms A/B, a sheet, a synthetic-slide QuPath project

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.seeds < 1:
            raise InputError(f"demo: seeds must be at least 1, got {self.seeds}")
        if not 1 <= self.blend_seeds <= self.seeds:
            raise InputError(f"demo: blend_seeds must be between 1 and seeds ({self.seeds}), "
                             f"got {self.blend_seeds}")
        if self.blend_steps < 2:
            raise InputError(f"demo: blend_steps must be at least 2, got {self.blend_steps}")
        if self.synthetic_per_region is not None and self.synthetic_per_region < 1:
            raise InputError(f"demo: synthetic_per_region must be at least 1 (or None), "
                             f"got {self.synthetic_per_region}")
        if self.heatmap_stride_div not in (1, 2, 4):
            raise InputError(f"demo: heatmap_stride_div must be 1, 2 or 4, got {self.heatmap_stride_div}")
        if self.invert_tiles < 0 or self.invert_steps < 1:
            raise InputError(f"demo: invert_tiles must be ≥ 0 and invert_steps ≥ 1, got {self.invert_tiles}, "
                             f"{self.invert_steps}")
        if self.workers < 1:
            raise InputError(f"demo: workers must be at least 1, got {self.workers}")
        for what, path in (("classifier", self.classifier), ("generator", self.generator)):
            if path is not None and not Path(path).exists():
                raise InputError(f"{path}: demo {what} not found")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise InputError(f"{self.out_dir}: demo output must be a folder, found a file")


@dataclass(frozen=True)
class DemoModels:
    """The classifier and generator the demo runs, and where the classifier came from."""

    classifier: TileClassifier
    G: Generator
    clf_dir: Path


@dataclass(frozen=True)
class DemoRun:
    """Everything the stages produced, for the report and the metrics."""

    out: Path
    options: DemoOptions
    models: DemoModels
    project: Project
    store: Path
    tiles: int
    heatmap: HeatmapReport
    matched: MatchedReport
    agreement: dict[str, Any]
    controls: dict[str, Any]
    seeds: dict[tuple[str, str], SeedSearchResult]
    baseline_seeds: dict[str, Any]
    blends: list[tuple[ClassBlend, dict[str, Path]]]
    layer_blend: tuple[LayerBlendGrid, dict[str, Path]]
    explain: dict[str, Any] = field(default_factory=dict)  # curve, animation, annotated grid, sensitivity
    teach: dict[str, Any] = field(default_factory=dict)  # the teaching stage's files and item counts

    @property
    def files(self) -> dict[str, list[Path]]:
        return {
            "heatmap": [p for r in self.heatmap.results for p in r.files],
            "montages": [p for g in self.matched.groups for p in g.montages],
        }


@dataclass
class DemoResult:
    """Where the outputs went and the headline figures (also in ``metrics.json``)."""

    out_dir: Path
    report: Path
    metrics: dict[str, Any]
    files: dict[str, list[Path]] = field(default_factory=dict)


StageHook = Callable[[str, str], None]


class _Timer:
    def __init__(self, hook: StageHook | None) -> None:
        self.seconds: dict[str, float] = {}
        self.hook = hook

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.hook:
            self.hook(name, "start")
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 2)
        if self.hook:
            self.hook(name, "done")


def sample_model_paths(name: str = SAMPLE) -> tuple[Path, Path]:
    """The sample classifier directory and generator weights shipped with the sample project."""
    from histobridge.qupath.sample import sample_template

    models = sample_template(name) / "models"
    with (
        as_file(models / "classifier") as clf,
        as_file(models / "generator" / "generator.safetensors") as gen,
    ):
        return Path(clf), Path(gen)


def load_models(options: DemoOptions) -> DemoModels:
    """The models named in ``options``, else the sample project's, on ``options.device``."""
    from histobridge.models.checkpoints import load_generator
    from histobridge.models.classifier import load_classifier, select_device

    clf_dir, gen_path = sample_model_paths()
    clf_dir, gen_path = Path(options.classifier or clf_dir), Path(options.generator or gen_path)
    if not (clf_dir / "config.json").exists() or not gen_path.exists():
        raise InputError(f"demo models missing: need {clf_dir / 'config.json'} and {gen_path}")
    device = str(select_device(None if options.device == "auto" else options.device))
    classifier = load_classifier(clf_dir, device=device)
    return DemoModels(classifier, load_generator(gen_path, device=device), clf_dir)


def run_demo(
    options: DemoOptions, *, hook: StageHook | None = None, progress: ProgressCallback | None = None
) -> DemoResult:
    """Run every stage into ``options.out_dir``; returns the report path and the metrics.

    ``hook(stage, "start" | "done")`` marks the stages; ``progress`` gets the units within them.
    """
    from histobridge.demo.controls import run_controls
    from histobridge.demo.report import write_demo_report

    out = options.out_dir.expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    timer = _Timer(hook)
    models = load_models(options)
    with timer.stage("sample"):
        project = _stage_sample(out, options)
    with timer.stage("tile"):
        store, tiles = _stage_tile(out, options, project, models.classifier, progress)
    with timer.stage("heatmap"):
        heat = _stage_heatmap(out, options, project, models.classifier, progress)
    with timer.stage("synthetic"):
        matched, agreement = _stage_synthetic(out, options, store, models)
        baseline, controls = run_controls(store, models.classifier, models.clf_dir)
        controls["blinded_sheet"] = _blinded_sheet(out, store, models)
    with timer.stage("seeds"):
        seeds, baseline_seeds = _stage_seeds(out, options, models, baseline, progress)
    with timer.stage("blend"):
        blends, layer = _stage_blend(out, options, models, seeds[(CLASS_A, CLASS_B)], progress)
        explain = _stage_explain(out, options, models, seeds[(CLASS_A, CLASS_B)], layer[0])
    with timer.stage("invert"):
        explain["counterfactuals"] = _stage_invert(out, options, models, store)
    with timer.stage("teach"):
        teach = _stage_teach(out, options, models, project)
    run = DemoRun(out, options, models, project, store, tiles, heat, matched, agreement, controls, seeds,
                  baseline_seeds, blends, layer, explain, teach)
    with timer.stage("report"):
        metrics = _metrics(run, timer.seconds)
        report = write_demo_report(run, metrics, out / "report.html")
    metrics["seconds"]["report"] = timer.seconds["report"]
    metrics["seconds"]["total"] = round(sum(v for k, v in timer.seconds.items() if k != "total"), 2)
    write_json(out / "metrics.json", metrics)
    return DemoResult(out, report, metrics, run.files)


# --------------------------------------------------------------------------------------- stages


def _stage_sample(out: Path, options: DemoOptions) -> Project:
    from histobridge.qupath.project import Project
    from histobridge.qupath.sample import init_sample_project
    from histobridge.qupath.scripts import install_scripts

    qpproj = init_sample_project(out / "project", SAMPLE, force=True, offline=options.offline)
    install_scripts(qpproj.parent)  # QuPath lists them under Automate > Project scripts
    return Project.open(qpproj)


def _stage_tile(
    out: Path, options: DemoOptions, project: Project, classifier: TileClassifier,
    progress: ProgressCallback | None,
) -> tuple[Path, int]:
    from histobridge.tiling import TileSpec, TilingOptions, tile_project
    from histobridge.tiling.store import open_store

    cfg = classifier.config
    spec = TileSpec(tile_px=cfg.patch_size_pixels, tile_um=cfg.tile_um, stride_px=None, min_coverage=0.5)
    store = out / "tiles.zarr"
    report = tile_project(
        project,
        store,
        spec,
        TilingOptions(classes=(CLASS_A, CLASS_B), workers=options.workers),
        progress=progress,
    )
    if not report.ok:
        problems = "; ".join(f"{r.name}: {r.reason}" for r in report.not_done)
        raise InputError(f"tiling the sample project failed: {problems}")
    tiles = sum(len(g) for g in open_store(store).groups())  # this run's and earlier runs' tiles
    return store, tiles


def _stage_heatmap(
    out: Path, options: DemoOptions, project: Project, classifier: TileClassifier,
    progress: ProgressCallback | None,
) -> HeatmapReport:
    from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap

    opts = HeatmapOptions(whole_tissue=True, stride_div=options.heatmap_stride_div, write_back="qpdata",
                          workers=options.workers)  # the sample ships QuPath data: tiles go straight in
    report = run_heatmap(project, classifier, out / "heatmap", opts, progress=progress)
    if not report.ok:
        problems = "; ".join(f"{o.name}: {o.status} ({o.reason})" for o in report.not_done)
        raise InputError(f"heatmap of the sample project: {problems}")
    return report


def _stage_synthetic(
    out: Path, options: DemoOptions, store: Path, models: DemoModels
) -> tuple[MatchedReport, dict[str, Any]]:
    from histobridge.synthetic.synthesis import matched_synthetic

    report = matched_synthetic(
        store,
        models.G,
        models.classifier,
        n=options.synthetic_per_region,
        montage_dir=out / "synthetic",
    )
    return report, synthetic_agreement(store, models.classifier.config.class_names)


def synthetic_agreement(store_path: Path, classifier_classes: Sequence[str]) -> dict[str, Any]:
    """Share of synthetic tiles (and swapped twins) the classifier assigns to their conditioning class."""
    from histobridge.tiling.store import open_store

    hits = total = swap_hits = swap_total = 0
    for group in open_store(store_path).groups():
        sub = group.synthetic()
        if sub is None or "predictions" not in sub:
            continue
        names = list(sub.attrs["params"]["generator"]["class_names"])
        clf_names = list(classifier_classes)
        for cls_arr, pred_arr in (("classes", "predictions"), ("swap_classes", "swap_predictions")):
            cls, pred = np.asarray(sub[cls_arr][:]), np.asarray(sub[pred_arr][:])
            want = np.array([clf_names.index(names[c]) if names[c] in clf_names else -1 for c in cls])
            ok = int((pred.argmax(axis=1) == want).sum())
            if cls_arr == "classes":
                hits, total = hits + ok, total + len(cls)
            else:
                swap_hits, swap_total = swap_hits + ok, swap_total + len(cls)
    return {
        "synthetic_agreement": hits / total if total else float("nan"),
        "swapped_agreement": swap_hits / swap_total if swap_total else float("nan"),
        "synthetic_tiles": total,
    }


def _blinded_sheet(out: Path, store: Path, models: DemoModels) -> dict[str, str]:
    """Real and synthetic tiles shuffled for a human reader; the key is written beside it."""
    from histobridge.demo.controls import real_tiles, synthetic_tiles
    from histobridge.synthetic.realism import blinded_sheet
    from histobridge.viz.pictures import save_png

    names = list(models.classifier.config.class_names)
    real = real_tiles(store, names, None).tiles
    syn = synthetic_tiles(store, names)["synthetic"][0]
    if not len(real) or not len(syn):
        return {}
    sheet, key = blinded_sheet(real, syn, n=12)
    folder = out / "synthetic"
    folder.mkdir(exist_ok=True)
    save_png(sheet, folder / "blinded_sheet.png")
    write_json(folder / "blinded_sheet_key.json", key)
    return {"png": str(folder / "blinded_sheet.png"), "key": str(folder / "blinded_sheet_key.json")}


def _stage_seeds(
    out: Path, options: DemoOptions, models: DemoModels, baseline: ColourBaseline,
    progress: ProgressCallback | None,
) -> tuple[dict[tuple[str, str], SeedSearchResult], dict[str, Any]]:
    """Seed search from Epidermis to Dermis; the colour baseline judges the very same images.

    With two classes the reverse direction adds nothing: its strong seeds are the forward strong
    seeds read backwards (p_B = 1 − p_A), so it is not run.
    """
    from histobridge.demo.controls import baseline_swaps
    from histobridge.synthetic.controls import RecordingPredictor
    from histobridge.synthetic.seeds import seed_search, write_table

    folder = out / "seeds"
    folder.mkdir(exist_ok=True)
    seeds = list(range(options.seeds))
    a, b = CLASS_A, CLASS_B
    if progress is not None:
        progress(ProgressEvent("seeds", 0, len(seeds), f"{a} → {b}"))
    recorder = RecordingPredictor(models.classifier, baseline)
    batch = 16
    res = seed_search(models.G, cast("TileClassifier", recorder), seeds, a, b, batch_size=batch)
    write_table(folder / f"seeds_{a}_to_{b}.csv", res.rows)
    write_json(folder / f"seeds_{a}_to_{b}.json", [r.to_row() for r in res.rows])
    names = list(models.classifier.config.class_names)
    sizes = [len(seeds[i : i + batch]) for i in range(0, len(seeds), batch)]
    verdicts = baseline_swaps(recorder.other_predictions(), sizes, names.index(a), names.index(b),
                              res.thresholds, res.margin)
    agree = [v == r.concordance for v, r in zip(verdicts, res.rows, strict=True)]
    pairs = list(zip(verdicts, res.rows, strict=True))
    strong_both = sum(v == "strong" and r.concordance == "strong" for v, r in pairs)
    base = {
        "strong_swap_rate": verdicts.count("strong") / max(1, len(verdicts)),
        "weak_swap_rate": verdicts.count("weak") / max(1, len(verdicts)),
        "same_verdict_as_classifier": sum(agree) / max(1, len(agree)),
        "strong_for_both": strong_both,
        "verdicts": verdicts,
    }
    if progress is not None:
        progress(ProgressEvent("seeds", len(seeds), len(seeds)))
    return {(a, b): res}, base


def _stage_blend(
    out: Path, options: DemoOptions, models: DemoModels, res: SeedSearchResult,
    progress: ProgressCallback | None,
) -> tuple[list[tuple[ClassBlend, dict[str, Path]]], tuple[LayerBlendGrid, dict[str, Path]]]:
    from histobridge.synthetic.blending import class_blend, layer_blend, write_class_blend, write_layer_blend

    folder = out / "blends"
    best = [r.seed for r in res.best(options.blend_seeds)]
    blends = []
    for i, seed in enumerate(best):
        if progress is not None:
            progress(ProgressEvent("blend", i, len(best) + 1))
        blend = class_blend(
            models.G, seed, CLASS_A, CLASS_B, options.blend_steps, classifier=models.classifier
        )
        blends.append((blend, write_class_blend(blend, folder)))
    grid = layer_blend(models.G, best, CLASS_A, CLASS_B)
    if progress is not None:
        progress(ProgressEvent("blend", len(best) + 1, len(best) + 1))
    return blends, (grid, write_layer_blend(grid, folder))


def _stage_explain(
    out: Path, options: DemoOptions, models: DemoModels, res: SeedSearchResult, grid: LayerBlendGrid
) -> dict[str, Any]:
    """The interpolation-probability curve, an animated blend, and the layer grid with predictions."""
    from histobridge.synthetic.annotate import (
        annotate_layer_grid,
        annotated_grid_picture,
        dense_blend,
        layer_sensitivity,
        window_frames,
        write_blend_gif,
    )
    from histobridge.synthetic.curves import interpolation_curve, write_curve
    from histobridge.viz.pictures import save_png

    folder = out / "blends"
    k = options.blend_seeds
    by = {c: [r.seed for r in res.rows if r.concordance == c][:k] for c in ("strong", "weak")}
    curve = interpolation_curve(models.G, models.classifier, by, CLASS_A, CLASS_B, steps=CURVE_STEPS)
    curve_paths = write_curve(curve, folder)
    best = res.best(1)[0].seed
    dense = dense_blend(models.G, best, CLASS_A, CLASS_B, models.classifier, steps=ANIMATION_STEPS)
    gif = write_blend_gif(dense, folder / f"blend_seed{best}.gif")
    assert dense.predictions is not None
    col = list(dense.classifier_classes).index(CLASS_B)
    view = dense.ready if dense.ready is not None else dense.raw
    red_blue = view[..., 0].astype(float).mean(axis=(1, 2)) - view[..., 2].astype(float).mean(axis=(1, 2))
    p_b = dense.predictions[:, col]
    corr = float(np.corrcoef(p_b, red_blue)[0, 1]) if p_b.std() > 0 and red_blue.std() > 0 else float("nan")
    annotated = annotate_layer_grid(models.G, grid, models.classifier)
    grid_png = folder / "layer_blend_annotated.png"
    save_png(annotated_grid_picture(annotated, CLASS_B), grid_png)
    write_json(folder / "layer_blend_annotated.json", annotated.records())
    seeds = [c.seed for c in grid.cells[0]]
    sensitivity = layer_sensitivity(models.G, models.classifier, seeds, CLASS_A, CLASS_B)
    write_json(folder / "layer_sensitivity.json", sensitivity)
    return {
        "curve": curve, "curve_paths": curve_paths, "gif": gif, "gif_seed": best,
        "gif_frames": len(dense.ts), "gif_colour_correlation": corr,
        "gif_window_frames": window_frames(p_b),
        "annotated_grid": annotated, "annotated_grid_png": grid_png, "sensitivity": sensitivity,
    }


TEACH_DIR = "teach"


def _stage_teach(out: Path, options: DemoOptions, models: DemoModels, project: Project) -> dict[str, Any]:
    """A short version of ``histobridge teach``: small quiz forms, one sheet, the synthetic-slide project.

    A rerun reuses what an earlier run made (``teach/teach.json``)."""
    import json

    from histobridge.teach import QuizPlan, TeachSettings, make_teaching
    from histobridge.teach.sheet import SheetSettings

    folder = out / TEACH_DIR
    if not options.teach:
        return {}
    if not (folder / "teach.json").is_file():
        settings = TeachSettings(
            synthetic_per_class=12, swaps_per_direction=4, search_seeds=24, transition_rows=3,
            transition_steps=7, workers=options.workers,
            quiz=QuizPlan(class_real=3, class_synthetic=3, origin_real=3, origin_synthetic=3, pairs=2),
            sheet=SheetSettings(examples=4, blend_strips=2, blend_steps=7, curve_seeds=4, curve_steps=13),
        )  # fmt: skip
        if folder.exists():  # an interrupted earlier run: start the material again
            shutil.rmtree(folder)
        make_teaching(project, models.G, models.classifier, folder, settings)
    made = json.loads((folder / "teach.json").read_text(encoding="utf-8"))
    return {"folder": folder, **made}


def _stage_invert(out: Path, options: DemoOptions, models: DemoModels, store: Path) -> dict[str, Any]:
    """Project real held-out tiles (alternating classes) into W+ and render them under the other class."""
    from histobridge.demo.controls import heldout_regions, real_tiles
    from histobridge.synthetic.invert import (
        FEATURE_NET,
        InvertSettings,
        counterfactual_picture,
        counterfactuals,
    )
    from histobridge.viz.pictures import save_png

    names = list(models.classifier.config.class_names)
    real = real_tiles(store, names, heldout_regions(models.clf_dir))
    pool = real.heldout if real.heldout.any() else np.ones(len(real.labels), bool)
    by_class = [np.flatnonzero(pool & (real.labels == k)) for k in range(len(names))]
    pick: list[int] = []
    for i in range(options.invert_tiles):  # alternate classes, spread over each class's tiles
        own = by_class[i % len(names)]
        if len(own):
            pick.append(int(own[(i // len(names)) * max(1, len(own) // 3) % len(own)]))
    if not pick:
        return {"items": [], "records": [], "feature_net": FEATURE_NET}
    settings = InvertSettings(steps=options.invert_steps)
    items, losses = counterfactuals(models.G, models.classifier, real.tiles[pick],
                                    [names[real.labels[i]] for i in pick], settings=settings)
    png = out / "counterfactuals" / "counterfactuals.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    save_png(counterfactual_picture(items, names), png)
    records = [cf.record(names) for cf in items]
    write_json(png.with_suffix(".json"), {"settings": vars(settings), "feature_net": FEATURE_NET,
                                          "loss_first_last": [losses[0], losses[-1]], "tiles": records})
    return {"items": items, "records": records, "png": png, "feature_net": FEATURE_NET,
            "settings": settings, "loss_first_last": [losses[0], losses[-1]]}


def _metrics(run: DemoRun, seconds: dict[str, float]) -> dict[str, Any]:
    from histobridge.synthetic.controls import colour_carries

    res = run.seeds[(CLASS_A, CLASS_B)]
    counts = res.counts()
    n = max(1, len(res.rows))
    held = run.controls["heldout"]
    strong = counts.get("strong", 0) / n
    base_strong = float(run.baseline_seeds["strong_swap_rate"])
    carried = {
        "synthetic": run.controls["synthetic"]["colour_carries"],
        "swapped": run.controls["swapped"]["colour_carries"],
        "strong_swaps": colour_carries(strong, base_strong),
    }
    return {
        "teach_items": dict(run.teach.get("items", {})),
        "teach_questions_per_form": int(run.teach.get("questions_per_form", 0)),
        "tiles": int(run.tiles),
        "heatmap_tiles": int(run.heatmap.tiles),
        "classifier_heldout_accuracy": float(held["balanced_accuracy"]),
        "classifier_heldout_ci95": [float(v) for v in held["ci95"]],
        "classifier_heldout_tiles": int(held["tiles"]),
        "classifier_heldout_caveat": str(held["caveat"]),
        "synthetic_agreement": float(run.agreement["synthetic_agreement"]),
        "swapped_agreement": float(run.agreement["swapped_agreement"]),
        "synthetic_tiles": int(run.agreement["synthetic_tiles"]),
        "strong_swap_rate": strong,
        "weak_swap_rate": counts.get("weak", 0) / n,
        "colour_baseline_synthetic_agreement": float(run.controls["synthetic"]["colour_baseline_agreement"]),
        "colour_baseline_swapped_agreement": float(run.controls["swapped"]["colour_baseline_agreement"]),
        "colour_baseline_strong_swap_rate": base_strong,
        "recolour_keeps_class": float(run.controls["recolour"]["keeps_class_mean"]),
        "grayscale_balanced_accuracy": float(run.controls["grayscale"]["balanced_accuracy"]),
        "stain_swap_keeps_class": float(run.controls["stain_swap"]["keeps_class_mean"]),
        "shuffled_balanced_accuracy": float(run.controls["shuffled"]["balanced_accuracy"]),
        "colour_carries": carried,
        "controls": {k: v for k, v in run.controls.items()},
        "realism": run.controls["realism"],
        "colour_baseline_seeds": {k: v for k, v in run.baseline_seeds.items() if k != "verdicts"},
        "seeds_searched": len(res.rows),
        "interpolation_curve": [
            row for row in run.explain["curve"].rows() if row["step"] % 6 == 0 and row["seeds"]
        ],
        "animation": {"seed": run.explain["gif_seed"], "frames": run.explain["gif_frames"],
                      "frames_in_transition_window": run.explain["gif_window_frames"],
                      "correlation_p_end_with_red_minus_blue": run.explain["gif_colour_correlation"]},
        "layer_sensitivity": run.explain["sensitivity"],
        "counterfactuals": {
            "tiles": run.explain["counterfactuals"]["records"],
            "feature_net": run.explain["counterfactuals"]["feature_net"],
            "counterfactual_flips": sum(
                max(r["p_counterfactual"], key=r["p_counterfactual"].get) == r["class_to"]
                for r in run.explain["counterfactuals"]["records"]
            ),
        },
        "layer_grid_predictions": [
            {k: r[k] for k in ("row", "col", "split", "seed", "top", f"pred_{CLASS_B}")}
            for r in run.explain["annotated_grid"].records()
        ],
        "swap_direction": f"{CLASS_A} -> {CLASS_B}",
        "seconds": dict(seconds),
    }
