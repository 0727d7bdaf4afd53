"""Two heatmap runs on one project: the second refuses, naming the first, instead of interleaving."""

from __future__ import annotations

import os

import pytest

from histobridge import _locks
from histobridge._locks import FileLock
from histobridge.errors import ProjectError
from histobridge.heatmap.pipeline import predictions_lock, run_heatmap
from histobridge.qupath import layout
from tests._heatmap_helpers import tumour_project


def test_second_heatmap_run_on_a_project_refuses_while_one_writes(tmp_path, monkeypatch) -> None:
    project, model = tumour_project(tmp_path, half=False)
    monkeypatch.setattr(_locks, "DEFAULT_WAIT_S", 0.2)
    running = FileLock(predictions_lock(project, 1), "first run").acquire(0)
    try:
        with pytest.raises(ProjectError) as info:
            run_heatmap(project, model, tmp_path / "out")
        msg = str(info.value)
        assert f"pid {os.getpid()}" in msg and str(project) in msg and "waited 0.2 s" in msg
        assert not layout.predictions_path(project, 1).exists()  # the refused run wrote nothing
    finally:
        running.release()
    report = run_heatmap(project, model, tmp_path / "out")  # free again: it runs
    assert report.results and layout.predictions_path(project, 1).exists()
