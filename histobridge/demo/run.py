"""``histobridge demo``: the whole mission on the embedded skin sample, ending in one HTML report.

Stages: fetch the sample slide (cached) → materialise the sample QuPath project → tile the annotated
Epidermis and Dermis regions into Zarr → classifier heatmap written back as QuPath tiles → matched
synthetic tiles with class-swapped twins → class-swap seed search → class- and layer-blending pictures
for the best seeds → ``report.html`` and ``metrics.json``. Every stage reuses what an earlier run
finished, so an interrupted demo resumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.resources import as_file
from pathlib import Path
from typing import Any

import numpy as np

from histobridge._atomic import write_json
from histobridge.errors import InputError

log = logging.getLogger(__name__)

SAMPLE = "skin"
CLASS_A, CLASS_B = "Epidermis", "Dermis"
STAGES = ("sample", "tile", "heatmap", "synthetic", "seeds", "blend", "report")


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does; the defaults finish in a few minutes on two CPU cores."""

    out_dir: Path
    seeds: int = 256
    blend_seeds: int = 4
    blend_steps: int = 9
    synthetic_per_region: int | None = None  # None: as many as the region has real tiles
    workers: int = 2
    offline: bool = False
    classifier: Path | None = None  # default: the sample project's own models
    generator: Path | None = None


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


def run_demo(options: DemoOptions, *, hook: StageHook | None = None, progress: bool = True) -> DemoResult:
    """Run every stage into ``options.out_dir``; returns the report path and the metrics."""
    from histobridge.models.checkpoints import load_generator
    from histobridge.models.classifier import load_classifier

    out = Path(options.out_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    timer = _Timer(hook)
    clf_dir, gen_path = sample_model_paths()
    clf_dir, gen_path = Path(options.classifier or clf_dir), Path(options.generator or gen_path)
    if not (clf_dir / "config.json").exists() or not gen_path.exists():
        raise InputError(f"demo models missing: need {clf_dir / 'config.json'} and {gen_path}")
    classifier = load_classifier(clf_dir, device="cpu")
    G = load_generator(gen_path)
    ctx: dict[str, Any] = {
        "out": out,
        "options": options,
        "classifier": classifier,
        "G": G,
        "clf_dir": clf_dir,
        "progress": progress,
    }
    for name, stage in _STAGES:
        with timer.stage(name):
            stage(ctx)
    with timer.stage("report"):
        metrics = _metrics(ctx, timer.seconds)
        from histobridge.demo.report import write_demo_report

        report = write_demo_report(ctx, metrics, out / "report.html")
    metrics["seconds"]["report"] = timer.seconds["report"]
    metrics["seconds"]["total"] = round(sum(v for k, v in timer.seconds.items() if k != "total"), 2)
    write_json(out / "metrics.json", metrics)
    return DemoResult(out, report, metrics, ctx.get("files", {}))


# --------------------------------------------------------------------------------------- stages


def _stage_sample(ctx: dict[str, Any]) -> None:
    from histobridge.qupath.project import Project
    from histobridge.qupath.sample import init_sample_project
    from histobridge.qupath.scripts import install_scripts

    qpproj = init_sample_project(ctx["out"] / "project", SAMPLE, force=True, offline=ctx["options"].offline)
    install_scripts(qpproj.parent)  # QuPath lists them under Automate > Project scripts
    ctx["project"] = Project.open(qpproj)


def _stage_tile(ctx: dict[str, Any]) -> None:
    from histobridge.tiling import TileSpec, TilingOptions, tile_project
    from histobridge.tiling.store import open_store

    cfg = ctx["classifier"].config
    spec = TileSpec(tile_px=cfg.patch_size_pixels, tile_um=cfg.tile_um, stride_px=None, min_coverage=0.5)
    store = ctx["out"] / "tiles.zarr"
    report = tile_project(
        ctx["project"],
        store,
        spec,
        TilingOptions(classes=(CLASS_A, CLASS_B), workers=ctx["options"].workers),
    )
    if not report.ok:
        problems = "; ".join(f"{r.name}: {r.reason}" for r in report.not_done)
        raise InputError(f"tiling the sample project failed: {problems}")
    ctx["store"] = store
    ctx["tiles"] = sum(len(g) for g in open_store(store).groups())  # this run's and earlier runs' tiles


def _stage_heatmap(ctx: dict[str, Any]) -> None:
    from histobridge.heatmap.pipeline import run_heatmap

    report = run_heatmap(
        ctx["project"],
        ctx["classifier"],
        ctx["out"] / "heatmap",
        whole_tissue=True,
        stride_div=2,
        write_back="geojson",
        workers=ctx["options"].workers,
        progress=False,
    )
    ctx["heatmap"] = report
    ctx.setdefault("files", {})["heatmap"] = [p for r in report.images for p in r.files]


def _stage_synthetic(ctx: dict[str, Any]) -> None:
    from histobridge.synthetic.synthesis import matched_synthetic

    report = matched_synthetic(
        ctx["store"],
        ctx["G"],
        ctx["classifier"],
        n=ctx["options"].synthetic_per_region,
        montage_dir=ctx["out"] / "synthetic",
    )
    ctx["matched"] = report
    ctx.setdefault("files", {})["montages"] = [p for g in report.groups for p in g.montages]
    ctx["agreement"] = synthetic_agreement(ctx["store"], ctx["classifier"].config.class_names)


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


def _stage_seeds(ctx: dict[str, Any]) -> None:
    from histobridge.synthetic.seeds import seed_search, table_csv

    out = ctx["out"] / "seeds"
    out.mkdir(exist_ok=True)
    seeds = range(ctx["options"].seeds)
    results = {}
    for a, b in ((CLASS_A, CLASS_B), (CLASS_B, CLASS_A)):
        res = seed_search(ctx["G"], ctx["classifier"], seeds, a, b)
        (out / f"seeds_{a}_to_{b}.csv").write_text(table_csv(res.rows), encoding="utf-8")
        write_json(out / f"seeds_{a}_to_{b}.json", [r.to_row() for r in res.rows])
        results[(a, b)] = res
    ctx["seeds"] = results


def _stage_blend(ctx: dict[str, Any]) -> None:
    from histobridge.synthetic.blending import class_blend, layer_blend, write_class_blend, write_layer_blend

    out = ctx["out"] / "blends"
    res = ctx["seeds"][(CLASS_A, CLASS_B)]
    best = [r.seed for r in res.best(ctx["options"].blend_seeds)]
    blends = []
    for seed in best:
        blend = class_blend(
            ctx["G"], seed, CLASS_A, CLASS_B, ctx["options"].blend_steps, classifier=ctx["classifier"]
        )
        blends.append((blend, write_class_blend(blend, out)))
    grid = layer_blend(ctx["G"], best, CLASS_A, CLASS_B)
    ctx["blends"], ctx["layer_blend"] = blends, (grid, write_layer_blend(grid, out))


_STAGES: tuple[tuple[str, Callable[[dict[str, Any]], None]], ...] = (
    ("sample", _stage_sample),
    ("tile", _stage_tile),
    ("heatmap", _stage_heatmap),
    ("synthetic", _stage_synthetic),
    ("seeds", _stage_seeds),
    ("blend", _stage_blend),
)


def _metrics(ctx: dict[str, Any], seconds: dict[str, float]) -> dict[str, Any]:
    clf_metrics = json.loads((ctx["clf_dir"] / "metrics.json").read_text(encoding="utf-8"))
    res = ctx["seeds"][(CLASS_A, CLASS_B)]
    rev = ctx["seeds"][(CLASS_B, CLASS_A)]
    counts, rev_counts = res.counts(), rev.counts()
    n = max(1, len(res.rows))
    return {
        "tiles": int(ctx["tiles"]),
        "heatmap_tiles": int(ctx["heatmap"].tiles),
        "classifier_heldout_accuracy": float(clf_metrics["heldout_accuracy"]),
        "synthetic_agreement": float(ctx["agreement"]["synthetic_agreement"]),
        "swapped_agreement": float(ctx["agreement"]["swapped_agreement"]),
        "synthetic_tiles": int(ctx["agreement"]["synthetic_tiles"]),
        "strong_swap_rate": counts.get("strong", 0) / n,
        "weak_swap_rate": counts.get("weak", 0) / n,
        "strong_swap_rate_reverse": rev_counts.get("strong", 0) / max(1, len(rev.rows)),
        "seeds_searched": len(res.rows),
        "swap_direction": f"{CLASS_A} -> {CLASS_B}",
        "seconds": dict(seconds),
    }
