"""Batch throughput: images/s on 1 and 2 local Dask workers, against the single command run alone.

A generated project of ``--images`` pyramidal TIFFs (JPEG-free zlib tiles, textured content, one
annotation over most of each slide) is tiled three ways per round, each into a fresh store:

- sequential: ``tile_project`` over the whole project with one thread (``histobridge tile --workers 1``);
- batch on 1 worker and on 2 workers: ``run_batch(steps=tile)`` on a local cluster started beforehand
  (cluster start-up and one untimed warm-up run, in which workers import the library, are paid
  once by a long-lived cluster and are printed or left out).

Printed per round: images/s of each, the 2-worker / 1-worker ratio, the 1-worker overhead against
sequential and how much of the 1-worker wall time was spent outside the library calls (submitting,
scheduling, resume marks, the report); then the medians. The machine may be shared: read the
per-round spread before the medians.

Run: ``python benchmarks/bench_batch.py [--images 6] [--size 5120] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

MPP = 0.5
TILE_PX, TILE_UM = 128, 64.0


def write_slide(path: Path, size: int, seed: int) -> None:
    import tifffile

    rng = np.random.default_rng(seed)
    small = rng.integers(60, 230, (size // 16, size // 16, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(small, 16, axis=0), 16, axis=1)
    noise = rng.integers(-12, 12, img.shape, dtype=np.int16)
    img = (img.astype(np.int16) + noise).clip(0, 255).astype(np.uint8)
    res = (1e4 / MPP, 1e4 / MPP)
    opts = {"tile": (256, 256), "photometric": "rgb", "compression": "zlib", "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(img, subifds=1, resolution=res, **opts)
        half = img[::2, ::2]
        tif.write(half, subfiletype=1, resolution=(res[0] / 2, res[1] / 2), **opts)


def make_project(root: Path, n: int, size: int) -> Path:
    from histobridge.qupath import layout

    folder = root / "proj"
    folder.mkdir(parents=True)
    images = []
    m = size * 0.05
    ring = [[m, m], [size - m, m], [size - m, size - m], [m, size - m], [m, m]]
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
               "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}}  # fmt: skip
    for i in range(1, n + 1):
        slide = root / f"slide{i}.tif"
        write_slide(slide, size, i)
        images.append({"serverBuilder": {"builderType": "uri", "uri": "file:" + slide.as_posix()},
                       "entryID": i, "imageName": slide.name, "metadata": {}})  # fmt: skip
        ann = layout.annotation_path(folder, i)
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    (folder / "project.qpproj").write_text(json.dumps({"version": "0.6.0", "images": images, "lastID": n}))
    return folder


def sequential(project: Path, store: Path) -> float:
    from histobridge.qupath.project import Project
    from histobridge.tiling import TileSpec, TilingOptions, tile_project

    t0 = time.perf_counter()
    report = tile_project(Project.open(project), store, TileSpec(TILE_PX, TILE_UM), TilingOptions(workers=1))
    assert report.ok, report.not_done
    return time.perf_counter() - t0


def batched(project: Path, out: Path, client: object) -> tuple[float, float]:
    """(wall seconds, seconds spent inside the tasks' library calls, summed)."""
    from histobridge.batch import BatchSettings
    from histobridge.batch.graph import run_batch

    settings = BatchSettings(steps=("tile",), out=out, tile_px=TILE_PX, tile_um=TILE_UM)
    t0 = time.perf_counter()
    report = run_batch([project], settings, client=client)
    assert report.ok, [r.outcome for r in report.failed]
    return time.perf_counter() - t0, sum(r.seconds for r in report.results)


def main() -> None:
    from distributed import Client, LocalCluster

    from histobridge.batch.graph import local_environ

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--size", type=int, default=5120, help="slide side in px")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        project = make_project(root, args.images, args.size)
        clusters = {}
        for n in (1, 2):
            t0 = time.perf_counter()
            with local_environ():  # the environment run_batch gives its own local clusters
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=":0")
            clusters[n] = (cluster, Client(cluster))
            print(f"local cluster of {n} worker(s) started in {time.perf_counter() - t0:.1f} s")
        ratios: list[float] = []
        overheads: list[float] = []
        outside: list[float] = []  # 1-worker wall time not spent in the library calls: the graph's own cost
        rates: dict[str, list[float]] = {}
        print(f"{args.images} images of {args.size} px, {TILE_PX}-px tiles over {TILE_UM:g} µm")
        for n, (_, client) in clusters.items():  # workers import the tiler once, outside the timing
            batched(project, root / f"warm{n}", client)
        print("round  sequential img/s  1 worker img/s  2 workers img/s  2w/1w  1w overhead"
              "  1w outside tasks")  # fmt: skip
        for r in range(args.rounds):
            t_seq = sequential(project, root / f"seq{r}.zarr")
            t1, in1 = batched(project, root / f"b1_{r}", clusters[1][1])
            t2, _ = batched(project, root / f"b2_{r}", clusters[2][1])
            outside.append(t1 - in1)
            for k, t in (("seq", t_seq), ("1w", t1), ("2w", t2)):
                rates.setdefault(k, []).append(args.images / t)
            ratios.append(t1 / t2)
            overheads.append(t1 / t_seq - 1)
            print(f"{r:5d}  {args.images / t_seq:16.3f}  {args.images / t1:14.3f}  {args.images / t2:15.3f}"
                  f"  {ratios[-1]:5.2f}  {overheads[-1]:+10.1%}  {outside[-1]:14.2f} s")  # fmt: skip
            for p in root.glob("seq*.zarr"):
                shutil.rmtree(p, ignore_errors=True)
            for p in root.glob("b[12]_*"):
                shutil.rmtree(p, ignore_errors=True)
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"median img/s: sequential {med['seq']:.3f}, 1 worker {med['1w']:.3f}, "
              f"2 workers {med['2w']:.3f}")  # fmt: skip
        print(f"median 2-worker/1-worker ratio {statistics.median(ratios):.2f} (goal >= 1.7); "
              f"median 1-worker overhead {statistics.median(overheads):+.1%} (goal <= 10 %), of which "
              f"{statistics.median(outside):.2f} s per run outside the tasks")  # fmt: skip
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
