"""Served classification against the batch heatmap, and how quickly the server answers while busy.

On the sample skin project (CMU-1-Small-Region, the sample classifier) it measures, in one run:

- batch: ``run_heatmap`` over the image's annotations (model already loaded) → tiles/s;
- inference alone: ``predict_regions`` on the same regions (no thumbnail, tissue mask or files), the
  strictest baseline;
- served: ``--clients`` concurrent clients sending ``--requests`` classify requests in total (each the same
  annotations, so each is the batch's work) to ``histobridge serve`` in a child process on loopback →
  requests/s, p50/p95 latency, tiles/s, and the ratio served / batch tiles/s (goal ≥ 0.8);
- busy: while one long job (the whole image at stride tile/4) runs, the latency of health and listing
  requests (goal: every one within 100 ms).

Loopback only, bounded by ``--requests`` and ``--time-limit``. Needs the sample slide in the cache
(``histobridge sample init`` once) and the ``serve`` extra.

Run: ``python benchmarks/bench_serve.py [--clients 4] [--requests 12] [--stride 1] [--workers 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(folder: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO)}
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
            str(workers),
            "--host",
            "127.0.0.1",
        ],
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("histobridge serve did not start")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--stride", type=int, default=1, choices=(1, 2, 4))
    ap.add_argument("--workers", type=int, default=2, help="server job workers")
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import httpx

    from histobridge.demo.run import sample_model_paths
    from histobridge.heatmap.pipeline import (
        HeatmapOptions,
        heatmap_regions,
        predict_regions,
        run_heatmap,
    )
    from histobridge.models.classifier import load_classifier
    from histobridge.qupath.project import Project
    from histobridge.qupath.sample import init_sample_project

    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    folder = init_sample_project(tmp / "skin", "skin", offline=True).parent
    clf_dir, _ = sample_model_paths()
    clf = load_classifier(clf_dir)
    options = HeatmapOptions(stride_div=args.stride, write_back="none")
    run_heatmap(folder, clf, tmp / "warm", options)
    t0 = time.perf_counter()
    report = run_heatmap(folder, clf, tmp / "batch", options)
    batch_s = time.perf_counter() - t0
    batch_tiles = report.tiles
    batch_rate = batch_tiles / batch_s
    # the inference part alone (no thumbnail, tissue mask or output files), the strictest baseline
    proj = Project.open(folder)
    entry = proj.images[0]
    with entry.open_slide() as slide:
        thumb = slide.thumbnail(options.thumbnail_px)
        regions, _ = heatmap_regions(proj.annotations(entry), thumb, options)
        t0 = time.perf_counter()
        pred = predict_regions(slide, regions, clf, stride_div=args.stride, workers=options.workers)
        infer_rate = len(pred) / (time.perf_counter() - t0)

    port = _free_port()
    proc = _start(folder, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    figures: dict[str, Any] = {
        "batch_tiles": batch_tiles,
        "batch_s": round(batch_s, 3),
        "batch_tiles_per_s": round(batch_rate, 1),
    }
    try:
        with httpx.Client(base_url=base, timeout=args.time_limit) as c:
            roi = c.get("/api/projects/skin/images/1/annotations").json()
            body = {
                "project": "skin",
                "image": "1",
                "model": "classifier",
                "roi": roi,
                "stride_div": args.stride,
            }
            c.post(
                "/api/classify?wait=120", json=body
            ).raise_for_status()  # warm: model and slide loaded once

        deadline = time.monotonic() + args.time_limit
        latencies: list[float] = []
        tiles = [0]
        lock = threading.Lock()

        def client(n: int) -> None:
            with httpx.Client(base_url=base, timeout=args.time_limit) as c:
                for _ in range(n):
                    if time.monotonic() > deadline:
                        return
                    t = time.perf_counter()
                    r = c.post("/api/classify?wait=120", json=body)
                    r.raise_for_status()
                    with lock:
                        latencies.append(time.perf_counter() - t)
                        tiles[0] += r.json()["histobridge"]["tiles"]

        share = [
            args.requests // args.clients + (i < args.requests % args.clients) for i in range(args.clients)
        ]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, share))
        wall = time.perf_counter() - t0
        served_rate = tiles[0] / wall
        figures.update(
            {
                "clients": args.clients,
                "requests": len(latencies),
                "wall_s": round(wall, 3),
                "requests_per_s": round(len(latencies) / wall, 3),
                "p50_s": round(_pct(latencies, 0.5), 3),
                "p95_s": round(_pct(latencies, 0.95), 3),
                "served_tiles_per_s": round(served_rate, 1),
                "served_over_batch": round(served_rate / batch_rate, 3),
            "inference_tiles_per_s": round(infer_rate, 1),
            "served_over_inference": round(served_rate / infer_rate, 3),
            }
        )

        with httpx.Client(base_url=base, timeout=30) as c:
            long_body = {
                **body,
                "stride_div": 4,
                "roi": {
                    "type": "Feature",
                    "properties": {},
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[0, 0], [2220, 0], [2220, 2967], [0, 2967], [0, 0]]],
                    },
                },
            }
            job = c.post("/api/classify", json=long_body).json()
            while c.get(f"/api/jobs/{job['id']}").json()["state"] == "queued":
                time.sleep(0.02)
            busy: dict[str, list[float]] = {
                p: []
                for p in (
                    "/api/health",
                    "/api/projects",
                    "/api/models",
                    "/api/projects/skin/images",
                    f"/api/jobs/{job['id']}",
                )
            }
            for _ in range(20):
                for path, values in busy.items():
                    t = time.perf_counter()
                    c.get(path).raise_for_status()
                    values.append(time.perf_counter() - t)
                time.sleep(0.02)
            running = c.get(f"/api/jobs/{job['id']}").json()["state"] == "running"
            c.delete(f"/api/jobs/{job['id']}")
        figures["busy_ms_max"] = {p: round(1000 * max(v), 1) for p, v in busy.items()}
        figures["busy_ms_p95"] = {p: round(1000 * _pct(v, 0.95), 1) for p, v in busy.items()}
        figures["busy_job_still_running"] = running
        figures["busy_all_within_100ms"] = all(max(v) < 0.1 for v in busy.values())
    finally:
        proc.terminate()
        proc.wait(30)

    print(f"batch heatmap : {batch_tiles} tiles in {batch_s:.2f} s = {batch_rate:.1f} tiles/s")
    print(
        f"served        : {figures['requests']} requests from {args.clients} clients "
        f"in {figures['wall_s']} s = "
        f"{figures['requests_per_s']} req/s, p50 {figures['p50_s']} s, p95 {figures['p95_s']} s, "
        f"{figures['served_tiles_per_s']} tiles/s"
    )
    print(f"served / batch tiles/s = {figures['served_over_batch']:.3f} (goal ≥ 0.8)")
    print(
        f"served / batch inference alone ({figures['inference_tiles_per_s']} tiles/s, no thumbnail or "
        f"files) = {figures['served_over_inference']:.3f}"
    )
    print(
        f"while a long job runs ({'running' if running else 'finished early'}): max latency ms "
        f"{figures['busy_ms_max']} (all < 100 ms: {figures['busy_all_within_100ms']})"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
