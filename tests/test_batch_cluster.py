"""A batch on a real cluster: ``dask scheduler`` and two ``dask worker`` processes on loopback, one of
them killed mid-run. Outputs still equal the sequential run: nothing lost, nothing written twice."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="batch runs need the 'batch' extra (dask.distributed)")

from histobridge.batch.graph import run_batch
from histobridge.runs import ProgressEvent
from histobridge.tiling.store import remove_stale
from tests.test_batch import (
    build_project,
    cohort,
    make_models,
    predictions,
    same_outputs,
    sequential,
    settings_for,
)

ROOT = Path(__file__).resolve().parents[1]
START_S = 90.0  # bounded wait for processes to come up on a loaded machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dask_cli() -> list[str]:
    exe = Path(sys.executable).parent / "dask"
    if not exe.exists():
        pytest.skip(f"no dask command next to {sys.executable}")
    return [str(exe)]


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "wb") as fh:
        return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process and its children (its own session), then reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def wait_workers(address: str, n: int) -> None:
    from distributed import Client

    deadline = time.monotonic() + START_S
    with Client(address, timeout=f"{START_S}s") as client:
        client.wait_for_workers(n, timeout=max(1.0, deadline - time.monotonic()))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A scheduler and two single-thread workers (no nanny: a killed worker stays dead)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    try:
        procs.append(start([*dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                            "--no-dashboard"], tmp_path / "scheduler.log"))  # fmt: skip
        for k in range(2):
            procs.append(start([*dask_cli(), "worker", address, "--nthreads", "1", "--no-nanny",
                                "--no-dashboard", "--name", f"w{k}", "--host", "127.0.0.1"],
                               tmp_path / f"worker{k}.log"))  # fmt: skip
        wait_workers(address, 2)
        yield address, procs[1:]
    finally:
        for p in procs:
            stop(p)


@pytest.mark.slow
def test_batch_on_a_separate_cluster_survives_a_killed_worker(tmp_path, models, cluster, cmu_slide) -> None:
    address, workers = cluster
    slides = cohort(tmp_path, 3, cmu_slide)
    ref = build_project(tmp_path / "ref" / "proj", slides)
    mine = build_project(tmp_path / "mine" / "proj", slides)
    sequential(ref, tmp_path / "ref_out", models)
    killed: list[int] = []

    def kill_one(event: ProgressEvent) -> None:
        if event.task != "batch" and not killed:  # the first image-step is back: others are running
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(workers[0].pid)

    report = run_batch([mine], settings_for(tmp_path / "out", models), scheduler=address, progress=kill_one)
    assert killed and workers[0].wait(timeout=10) == -signal.SIGKILL
    # the killed worker may have died inside one of zarr's metadata writes; with no writer left, the
    # store's leftover cleanup (which the next writer runs) takes its temp file away
    leftovers = remove_stale(tmp_path / "out" / "proj" / "tiles.zarr", temp_age_s=0)
    assert all(name.startswith("zarr.") and name.endswith(".partial") for name in leftovers), leftovers
    same_outputs(tmp_path / "out" / "proj", tmp_path / "ref_out")
    assert predictions(mine) == predictions(ref) and len(predictions(mine)) == 4
    store = tmp_path / "out" / "proj" / "tiles.zarr"
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".") and p.is_dir()) == [
        "1", "2", "3", "4"
    ]  # no partial group left behind, none twice
    by = {(r.step, str(r.outcome.entry_id)): r.outcome.status for r in report.results}
    assert len(by) == 15
    assert by[("tile", "5")] == "failed" and by[("heatmap", "5")] == "failed"
    assert all(by[(s, e)] == "done" for s in ("tile", "heatmap", "synth") for e in "1234")
    assert report.scheduler == address
