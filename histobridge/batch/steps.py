"""The work of one task, run on a worker: one library call for one image (or one project, for teaching).

Tasks receive paths and small settings, never tiles or models: each worker loads a model once and
keeps it, reads slides from the shared file system and writes the store or project files itself, so
nothing large passes through the scheduler or the client. Every error becomes a ``failed`` outcome of
that image-step alone.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histobridge.batch.records import StepResult
from histobridge.errors import HistobridgeError
from histobridge.runs import ImageOutcome

if TYPE_CHECKING:
    from histobridge.heatmap.pipeline import HeatmapOptions
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator
    from histobridge.teach.build import TeachSettings
    from histobridge.tiling.options import TilingOptions

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _torch_threads() -> int:
    """Torch threads in this worker: what the core budget leaves beside the task's one reader thread
    (Dask starts workers with ``OMP_NUM_THREADS=1``, which caps it at one)."""
    from histobridge._threads import configure_torch_threads

    return configure_torch_threads(readers=1)


@functools.lru_cache(maxsize=4)
def _classifier(path: str, stamp: int, device: str) -> TileClassifier:
    from histobridge.models.classifier import load_classifier

    _torch_threads()
    return load_classifier(Path(path), device=device)


@functools.lru_cache(maxsize=4)
def _generator(path: str, stamp: int, gan_um: float | None, device: str) -> Generator:
    from histobridge.models.checkpoints import load_generator

    _torch_threads()
    return load_generator(path, gan_um=gan_um, device=device)


def _stamp(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def classifier(path: Path, device: str) -> TileClassifier:
    """The worker's copy of a classifier (loaded once per process and file version)."""
    return _classifier(str(path), _stamp(path), device)


def generator(path: Path, gan_um: float | None, device: str) -> Generator:
    """The worker's copy of a generator (loaded once per process and file version)."""
    return _generator(str(path), _stamp(path), gan_um, device)


def _guard(project: str, step: str, entry_id: str, name: str, work: Callable[[], ImageOutcome]) -> StepResult:
    t0 = time.perf_counter()
    try:
        outcome = work()
    except HistobridgeError as err:
        outcome = ImageOutcome(entry_id, name, "failed", reason=str(err))
    except Exception as err:  # one bad image must not stop the batch: record it, go on
        log.debug("%s %s of %s failed", step, name, project, exc_info=True)
        outcome = ImageOutcome(entry_id, name, "failed", reason=f"{type(err).__name__}: {err}")
    return StepResult(project, step, outcome, time.perf_counter() - t0)


def tile_step(
    project: str, label: str, store: Path, tile_px: int, tile_um: float, options: TilingOptions,
    entry_id: str, name: str,
) -> StepResult:  # fmt: skip
    """:func:`~histobridge.tiling.tile_project` for one image into the project's shared store."""

    def work() -> ImageOutcome:
        from histobridge.qupath.project import Project
        from histobridge.tiling import TileSpec, tile_project

        report = tile_project(
            Project.open(project), store, TileSpec(tile_px=tile_px, tile_um=tile_um), options,
            images=[entry_id],
        )  # fmt: skip
        return report.images[0]

    return _guard(label, "tile", entry_id, name, work)


def heatmap_step(
    project: str, label: str, model: Path, out_dir: Path, options: HeatmapOptions, device: str,
    entry_id: str, name: str,
) -> StepResult:  # fmt: skip
    """:func:`~histobridge.heatmap.pipeline.run_heatmap` for one image (its own predictions lock)."""

    def work() -> ImageOutcome:
        from histobridge.heatmap.pipeline import run_heatmap
        from histobridge.qupath.project import Project

        clf = classifier(model, device)
        return run_heatmap(Project.open(project), clf, out_dir, options, images=[entry_id]).outcomes[0]

    return _guard(label, "heatmap", entry_id, name, work)


def synth_step(
    label: str, store: Path, gen_path: Path, gan_um: float | None, model: Path | None, n: int | None,
    class_map: tuple[tuple[str, str], ...], seed0: int, montages: Path, device: str,
    entry_id: str, name: str, tiled: Sequence[StepResult],
) -> StepResult:  # fmt: skip
    """:func:`~histobridge.synthetic.matched.matched_synthetic` for one image group, after every image of
    the project is tiled (seeds run over all groups, so they are the ones a whole-store run gives)."""

    def work() -> ImageOutcome:
        from histobridge.synthetic.matched import matched_synthetic

        mine = [t for t in tiled if str(t.outcome.entry_id) == entry_id]
        if not mine or not mine[0].outcome.ok:
            why = mine[0].outcome.reason if mine else "no tile step"
            return ImageOutcome(entry_id, name, "skipped", reason=f"not tiled: {why}")
        G = generator(gen_path, gan_um, device)
        clf = classifier(model, device) if model is not None else None
        report = matched_synthetic(
            store, G, clf, n, dict(class_map), seed0, gan_um=gan_um, montage_dir=montages, images=[entry_id]
        )
        groups = [g for g in report.groups if str(g.entry_id) == entry_id]
        if not groups:
            return ImageOutcome(entry_id, name, "skipped", reason="no complete tile group in the store")
        g = groups[0]
        if g.status == "no-regions":
            reasons = "; ".join(sorted(set(g.skipped_regions.values()))) or "no regions"
            return ImageOutcome(entry_id, name, "skipped", reason=reasons)
        return ImageOutcome(entry_id, name, "done", count=g.n_synthetic)

    return _guard(label, "synth", entry_id, name, work)


def teach_step(
    project: str, label: str, model: Path, gen_path: Path, gan_um: float | None, out_dir: Path,
    settings: TeachSettings, device: str,
) -> StepResult:  # fmt: skip
    """:func:`~histobridge.teach.make_teaching` for one project (one task: it samples across images)."""

    def work() -> ImageOutcome:
        from histobridge.qupath.project import Project
        from histobridge.teach.build import make_teaching

        G = generator(gen_path, gan_um, device)
        make_teaching(Project.open(project), G, classifier(model, device), out_dir, settings)
        return ImageOutcome("*", "project", "done", count=1)

    return _guard(label, "teach", "*", "project", work)


def result_key(result: Any) -> str:
    """A short name of a task result for progress messages."""
    if isinstance(result, StepResult):
        return f"{result.project}/{result.step}/{result.outcome.name}"
    return str(result)
