"""Annotation-to-synthetic jobs over whole projects and cohorts, as one task graph on Dask.

One task per image per step (tile, heatmap, synth) plus one teaching task per project, run on a local
cluster of worker processes or on an existing Dask cluster by address. Each task calls the same library
function the single command calls, for one image, so the files written are the ones a sequential run
writes. Per-image failures are recorded, never fatal; a rerun skips image-steps already done.
"""

from __future__ import annotations

from histobridge.batch.layout import ProjectPaths, project_paths
from histobridge.batch.records import BatchReport, StepResult
from histobridge.batch.settings import STEPS, BatchSettings

__all__ = [
    "STEPS", "BatchReport", "BatchSettings", "ProjectPaths", "StepResult", "project_paths", "run_batch"
]


def __getattr__(name: str) -> object:
    if name == "run_batch":  # needs dask.distributed; imported on first use only
        from histobridge.batch.graph import run_batch

        return run_batch
    raise AttributeError(name)
