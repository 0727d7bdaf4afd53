"""The batch as a Dask graph: one future per image-step, dependencies as future arguments.

Tiling and heatmaps of an image are independent; synth of an image waits for the tiling of every
image of its project (its seeds follow the whole store, as in ``histobridge synth``). Dask schedules,
retries tasks of a worker that died, and balances the load; this module only builds the graph,
skips what an earlier run finished, and collects one :class:`StepResult` per image-step.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histobridge._atomic import write_json
from histobridge.batch import resume, steps
from histobridge.batch.layout import ProjectPaths, project_paths
from histobridge.batch.records import BatchReport, StepResult
from histobridge.batch.settings import GPU_STEPS, STEPS, BatchSettings
from histobridge.errors import InputError
from histobridge.qupath.project import Project
from histobridge.runs import ImageOutcome, ProgressCallback, ProgressEvent, no_progress

REPORT_NAME = "batch_report.json"


@dataclass(frozen=True)
class _Pending:
    """What a submitted future stands for, to report it even when the task itself never returned."""

    paths: ProjectPaths
    step: str
    entry_id: str
    name: str
    key: str


def default_workers() -> int:
    """Worker processes for a local cluster: one per core this process may use (affinity, cgroup
    quota or ``HISTOBRIDGE_THREADS``, see :mod:`histobridge._threads`)."""
    from histobridge._threads import available_cores

    return available_cores()


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a new local cluster of ``workers`` processes
    with one thread each (the library's own threads stay at one per task)."""
    try:
        import distributed
    except ImportError as err:
        raise InputError(
            f"batch runs need dask.distributed ({err}); install it with: pip install 'histobridge[batch]'"
        ) from err
    dist: Any = distributed  # typed loosely: distributed's own annotations are incomplete
    if scheduler:
        client = dist.Client(scheduler, timeout="30s")
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or default_workers()
    with local_environ(), dist.LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as cluster, dist.Client(cluster) as client:  # fmt: skip
        yield client


def local_environ() -> contextlib.AbstractContextManager[Any]:
    """Dask's worker environment less ``MALLOC_TRIM_THRESHOLD_``: with Dask's low threshold every
    freed batch buffer goes back to the OS and is faulted in again, which made tiling in a worker
    up to twice as slow as in the parent (benchmarks/bench_batch.py)."""
    import dask
    import distributed  # noqa: F401  (registers the distributed.* settings)

    key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    return dask.config.set({key: None})  # None unsets it


def dashboard_of(client: Any) -> str | None:
    """The dashboard link, when the scheduler serves one (it needs bokeh)."""
    services = client.scheduler_info().get("services", {})
    return str(client.dashboard_link) if "dashboard" in services else None


def _gpu_resources(client: Any) -> dict[str, float] | None:
    workers = client.scheduler_info().get("workers", {}).values()
    return {"GPU": 1} if any("GPU" in (w.get("resources") or {}) for w in workers) else None


def _tile_geometry(settings: BatchSettings) -> tuple[int | None, float | None]:
    if settings.tile_px is not None or "tile" not in settings.steps:
        return settings.tile_px, settings.tile_um
    from histobridge.models.checkpoints import load_generator
    from histobridge.synthetic.fov import gan_tile_um

    assert settings.generator is not None  # checked by BatchSettings
    G = load_generator(settings.generator, gan_um=settings.gan_um)
    return int(G.img_resolution), float(gan_tile_um(G, settings.gan_um))


class _Graph:
    """Builds and submits the futures of one batch."""

    def __init__(self, client: Any, settings: BatchSettings, tile: tuple[int | None, float | None]) -> None:
        self.client, self.settings = client, settings
        self.tile_px, self.tile_um = tile
        self.gpu = _gpu_resources(client)
        self.pending: dict[Any, _Pending] = {}
        self.resumed: list[StepResult] = []
        self.stamp = f"{time.time_ns():x}"

    def _submit(self, pend: _Pending, fn: Any, *args: Any) -> Any:
        res = self.gpu if pend.step in GPU_STEPS else None
        name = f"{pend.step}-{pend.paths.root.name}-{pend.entry_id}-{self.stamp}"
        fut = self.client.submit(fn, *args, key=name, pure=False, resources=res)
        self.pending[fut] = pend
        return fut

    def _skip_or_submit(self, pend: _Pending, output: Path, fn: Any, *args: Any) -> Any:
        done = resume.finished(pend.paths, pend.step, pend.entry_id, pend.key, output)
        if done is not None:
            self.resumed.append(done)
            return done
        return self._submit(pend, fn, *args)

    def add_project(self, paths: ProjectPaths, project: Project) -> None:
        s, label, ppath = self.settings, paths.root.name, str(project.path)
        entries = list(project.images)
        inputs = {str(e.entry_id): resume.entry_inputs(project, e) for e in entries}
        tiled: list[Any] = []
        tile_keys: list[str] = []
        for e in entries:
            eid = str(e.entry_id)
            if "tile" in s.steps:
                assert self.tile_px is not None and self.tile_um is not None
                rec = {**s.record("tile"), "tile_px": self.tile_px, "tile_um": self.tile_um}
                key = resume.step_key(rec, inputs[eid])
                tile_keys.append(key)
                pend = _Pending(paths, "tile", eid, e.name, key)
                tiled.append(self._skip_or_submit(
                    pend, paths.store / eid, steps.tile_step, ppath, label, paths.store, self.tile_px,
                    self.tile_um, s.tiling, eid, e.name,
                ))  # fmt: skip
            if "heatmap" in s.steps:
                from histobridge.qupath import layout

                key = resume.step_key(s.record("heatmap"), inputs[eid])
                pend = _Pending(paths, "heatmap", eid, e.name, key)
                out = layout.predictions_path(project.folder, e.entry_id)
                if s.heatmap.write_back == "none":
                    out = paths.heatmap
                self._skip_or_submit(
                    pend, out, steps.heatmap_step, ppath, label, s.model, paths.heatmap, s.heatmap, s.device,
                    eid, e.name,
                )  # fmt: skip
        if "synth" in s.steps:
            assert s.generator is not None
            model = s.model if s.classify_synthetic else None
            for e in entries:
                eid = str(e.entry_id)
                key = resume.step_key(s.record("synth"), [inputs[eid], tile_keys])
                pend = _Pending(paths, "synth", eid, e.name, key)
                self._skip_or_submit(
                    pend, paths.store / eid / "synthetic", steps.synth_step, label, paths.store, s.generator,
                    s.gan_um, model, s.n, s.class_map, s.seed0, paths.montages, s.device, eid, e.name, tiled,
                )  # fmt: skip
        if "teach" in s.steps:
            assert s.model is not None and s.generator is not None
            key = resume.step_key(s.record("teach"), list(inputs.values()))
            pend = _Pending(paths, "teach", "*", "project", key)
            self._skip_or_submit(
                pend, paths.teach / "teach.json", steps.teach_step, ppath, label, s.model, s.generator,
                s.gan_um, paths.teach, s.teach, s.device,
            )  # fmt: skip

    def collect(self, progress: ProgressCallback) -> list[StepResult]:
        """Results as tasks finish; a task Dask could not run (its workers kept dying) is a failure."""
        import distributed

        as_completed: Any = distributed.as_completed
        total = len(self.pending) + len(self.resumed)
        per_step = {st: sum(1 for p in self.pending.values() if p.step == st) for st in STEPS}
        done_step = dict.fromkeys(STEPS, 0)
        results = list(self.resumed)
        progress(ProgressEvent("batch", len(results), total))
        for fut in as_completed(list(self.pending)):
            pend = self.pending.pop(fut)
            try:
                res: StepResult = fut.result()
            except Exception as err:  # KilledWorker, a cancelled dependency, an unpicklable result
                why = f"{type(err).__name__}: {err}"
                res = StepResult(pend.paths.root.name, pend.step, ImageOutcome(pend.entry_id, pend.name,
                                 "failed", reason=why))  # fmt: skip
            res = StepResult(res.project, res.step, res.outcome, res.seconds, key=pend.key)
            resume.record(pend.paths, res, pend.key)
            results.append(res)
            done_step[pend.step] += 1
            msg = f"{res.step} failed: {res.outcome.reason}" if res.failed else None
            item = f"{res.project}/{res.outcome.name}"
            progress(ProgressEvent(pend.step, done_step[pend.step], per_step[pend.step], item, msg))
            progress(ProgressEvent("batch", len(results), total))
            fut.release()
        return results


def _order(
    results: list[StepResult], labels: Sequence[str], order: dict[tuple[str, str], int]
) -> list[StepResult]:
    def key(r: StepResult) -> tuple[int, int, int]:
        where = order.get((r.project, str(r.outcome.entry_id)), -1)
        return (labels.index(r.project), STEPS.index(r.step), where)

    return sorted(results, key=key)


def run_batch(
    projects: Sequence[str | os.PathLike[str]],
    settings: BatchSettings,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    progress: ProgressCallback = no_progress,
) -> BatchReport:
    """Run ``settings.steps`` over every image of every project on a Dask cluster.

    ``client`` (a ``distributed.Client``) is used as given; otherwise ``scheduler`` is an address
    (``tcp://host:8786``) of a running cluster, or a local cluster of ``workers`` processes is started.
    Writes ``batch_report.json`` into ``settings.out``; check :attr:`BatchReport.ok`.
    """
    if not projects:
        raise InputError("no project given")
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    t0 = time.perf_counter()
    paths = project_paths([Path(p) for p in projects], settings.out)
    opened = [Project.open(p.project) for p in paths]  # a bad project is an error before any work
    tile = _tile_geometry(settings)
    ctx = contextlib.nullcontext(client) if client is not None else connect(scheduler, workers)
    with ctx as cl:
        dashboard = dashboard_of(cl)
        if dashboard:
            progress(ProgressEvent("batch", 0, None, message=f"dashboard: {dashboard}"))
        graph = _Graph(cl, settings, tile)
        for p, proj in zip(paths, opened, strict=True):
            graph.add_project(p, proj)
        results = graph.collect(progress)
        n_workers = len(cl.scheduler_info().get("workers", {}))
        address = str(cl.scheduler.address) if cl.scheduler is not None else None
    labels = [p.root.name for p in paths]
    order = {(p.root.name, str(e.entry_id)): i for p, proj in zip(paths, opened, strict=True)
             for i, e in enumerate(proj.images)}  # fmt: skip
    report = BatchReport(
        settings.out, tuple(_order(results, labels, order)), time.perf_counter() - t0, n_workers, address,
        dashboard,
    )  # fmt: skip
    write_json(Path(settings.out) / REPORT_NAME, report.to_dict())
    return report


__all__ = ["REPORT_NAME", "connect", "dashboard_of", "default_workers", "local_environ", "run_batch"]
