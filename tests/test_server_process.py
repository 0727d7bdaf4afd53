"""``histobridge serve`` as a real process: killed mid-job and restarted, nothing is written half."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._server_helpers import free_port, sample_project, square

REPO = Path(__file__).resolve().parents[1]


def _start(folder: Path, port: int) -> tuple[subprocess.Popen[bytes], object]:
    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("HISTOBRIDGE_TOKEN", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from histobridge.cli import main; main()",
            "serve",
            "--project",
            str(folder),
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    deadline = time.monotonic() + 90
    while True:
        try:
            if client.get("/api/health").status_code == 200:
                return proc, client
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read().decode() if proc.stdout else ""
            proc.kill()
            raise RuntimeError(f"server did not start: {out}")
        time.sleep(0.2)


@pytest.mark.slow
def test_killed_server_leaves_earlier_results_whole_and_a_restart_finishes(cmu_slide, tmp_path):
    from histobridge.qupath import layout
    from histobridge.qupath.geojson_read import load_document

    folder = sample_project(tmp_path / "skin")
    target = layout.predictions_path(folder, 1)
    port = free_port()
    proc, client = _start(folder, port)
    body = {"project": "skin", "image": "1", "model": "classifier", "write_back": True}
    try:
        first = client.post("/api/classify?wait=60", json={**body, "roi": square(800, 800, 500)})
        assert first.status_code == 200, first.text
        before = target.read_bytes()
        job = client.post(
            "/api/classify", json={**body, "stride_div": 4, "roi": square(0, 0, 2220, None)}
        ).json()
        deadline = time.monotonic() + 60
        while client.get(f"/api/jobs/{job['id']}").json()["done"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()
    assert target.read_bytes() == before  # the killed job wrote nothing, the earlier result is intact
    assert [p.name for p in target.parent.iterdir() if not p.name.startswith(".")] == [target.name]

    proc, client = _start(folder, port)
    try:
        again = client.post(
            "/api/classify?wait=120", json={**body, "stride_div": 2, "roi": square(0, 0, 2220, None)}
        )
        assert again.status_code == 200, again.text
        tiles = again.json()["histobridge"]["tiles"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        client.close()
    doc = load_document(target)
    assert len(doc["features"]) >= tiles > len(load_document_bytes(before)["features"])


def load_document_bytes(data: bytes) -> dict:
    import gzip
    import json

    return json.loads(gzip.decompress(data))
