"""Heatmap throughput: end-to-end tiles/s against the model's own forward rate, in one run.

On one generated JPEG-tiled pyramidal TIFF and one small CNN (TorchScript, WSInfer config), it times:

- model only: the same preprocessed batches, already in memory, through ``forward`` + softmax;
- pipeline: ``predict_regions`` (grid, threaded reads + resampling + preprocessing overlapped with
  inference), which is what ``run_heatmap`` does per image before writing files;
- full: ``run_heatmap`` on a one-image project (pipeline + thumbnail, GeoJSON, NPZ, CSV, PNG).

The ratio pipeline / model-only says how close the pipeline gets to keeping the model busy (the goal is
≥ 0.9 on CPU). WSInfer is compared in ``bench_wsinfer.py`` (it needs its own venv).

Run: ``python benchmarks/bench_heatmap.py [--size 4096] [--spacing 0.5] [--batch-size 32] [--workers 2]
[--threads N]``
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

MPP = 0.5
TILE = 256


class SmallCNN(nn.Module):
    """Five stride-2 conv blocks (32→256 channels) and a linear head: a small tile classifier."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        chans = (3, 32, 64, 128, 192, 256)
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(chans):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def make_slide(path: Path, size: int) -> Path:
    """JPEG-tiled 2-level pyramid (level 1 a SubIFD), H&E-like texture: pink field, purple blobs, noise."""
    from histobridge.testing import TiledLevel, write_pyramid

    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    pool = []
    for _ in range(16):
        f = rng.uniform(0.02, 0.1, 2)
        blobs = (np.sin(xs * f[0]) * np.sin(ys * f[1]) > 0.7)[..., None]
        base = np.where(blobs, [120, 70, 160], [232, 175, 205]).astype(np.float32)
        pool.append(np.clip(base + rng.normal(0, 10, (TILE, TILE, 3)), 0, 255).astype(np.uint8))

    def level(side: int) -> TiledLevel:
        n_side = side // TILE

        def tiles():
            for i in range(n_side * n_side):
                yield pool[(i * 7 + i // n_side) % len(pool)]

        return TiledLevel(side, side, tiles)

    levels = [level(size), level(size // 2)]
    return write_pyramid(path, levels, mpp=MPP, tile=TILE, compression="jpeg", layout="subifds", bigtiff=True)


def make_project(folder: Path, slide: Path, size: int) -> Path:
    from histobridge.qupath import layout

    folder.mkdir(parents=True)
    provider = "qupath.lib.images.servers.openslide.OpenslideServerBuilder"
    entry = {"serverBuilder": {"builderType": "uri", "uri": "file:" + slide.resolve().as_posix(),
                               "providerClassName": provider, "args": []},
             "entryID": 1, "imageName": slide.name, "metadata": {}}
    (folder / "project.qpproj").write_text(json.dumps(
        {"version": "0.6.0", "createTimestamp": 0, "modifyTimestamp": 0, "lastID": 1, "images": [entry]}))
    ring = [[0.0, 0.0], [size, 0.0], [size, size], [0.0, size], [0.0, 0.0]]
    props = {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}
    ann = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props}
    path = layout.annotation_path(folder, 1)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [ann]}))
    return folder


def model_only(clf, batches: list[torch.Tensor]) -> tuple[float, float]:
    """(wall, CPU) seconds for forward + softmax over batches already preprocessed and in memory."""
    t0, c0 = time.perf_counter(), time.process_time()
    for b in batches:
        clf.predict_batch(b)
    return time.perf_counter() - t0, time.process_time() - c0


def pipeline(predict, *args, **kwargs) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``predict_regions`` call."""
    t0, c0 = time.perf_counter(), time.process_time()
    predict(*args, **kwargs)
    return time.perf_counter() - t0, time.process_time() - c0


def bench_wsinfer(note: list[str]) -> None:
    if importlib.util.find_spec("wsinfer") is None:
        note.append("wsinfer: not installed in this environment; skipped (pip install wsinfer to compare)")
        return
    note.append("wsinfer: installed; benchmarks/bench_wsinfer.py times it against histobridge")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="level-0 side of the generated slide (px)")
    ap.add_argument("--patch", type=int, default=224, help="model input size (px)")
    ap.add_argument("--spacing", type=float, default=0.5, help="model µm/px (the slide is 0.5)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice). On a busy machine OpenMP threads "
                         "spin while waiting for each other, which inflates model-only times; 1 removes that")
    ap.add_argument("--repeats", type=int, default=3, help="best of N for each measurement")
    args = ap.parse_args()

    from shapely.geometry import box

    from histobridge.heatmap.inference import iter_batches
    from histobridge.heatmap.pipeline import HeatmapOptions, predict_regions, run_heatmap
    from histobridge.models.classifier import load_classifier, make_config, save_classifier
    from histobridge.slides import open_slide
    from histobridge.tiling.regions import Region

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    with tempfile.TemporaryDirectory(prefix="bench_heatmap_") as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        slide_path = make_slide(tmp / "bench.tif", args.size)
        cfg = make_config(["Tumor", "Stroma", "Other"], args.patch, args.spacing, architecture="smallcnn",
                          mean=(0.8, 0.6, 0.7), std=(0.15, 0.15, 0.15))
        clf = load_classifier(save_classifier(SmallCNN().eval(), cfg, tmp / "model"), device=args.device)
        print(f"setup {time.perf_counter() - t0:.1f}s; slide {args.size}² px at {MPP} µm/px; {clf}")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {clf.device}; "
              f"batch {args.batch_size}, {args.workers} reader threads")

        region = Region(box(0, 0, args.size, args.size), None, "all", "all")
        with open_slide(slide_path) as slide:
            pred = predict_regions(slide, [region], clf, batch_size=args.batch_size, workers=args.workers)
            n = len(pred)
            batches = [b for _, b, _ in iter_batches(slide, pred.coords, clf, batch_size=args.batch_size,
                                                     workers=args.workers)]
            model_only(clf, batches)  # warm-up: TorchScript specialises during its first runs
            runs_m, runs_p = [], []
            for _ in range(args.repeats):  # interleaved, best of N: the machine may be shared
                runs_m.append(model_only(clf, batches))
                runs_p.append(pipeline(predict_regions, slide, [region], clf, batch_size=args.batch_size,
                                       workers=args.workers))
            print("runs wall/CPU s: model only " + ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs_m)
                  + "; pipeline " + ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs_p))
            t_model, c_model = min(w for w, _ in runs_m), min(c for _, c in runs_m)
            t_pipe, c_pipe = min(w for w, _ in runs_p), min(c for _, c in runs_p)
        project = make_project(tmp / "proj", slide_path, args.size)
        opts = HeatmapOptions(batch_size=args.batch_size, workers=args.workers, tissue=False)
        t_full = min(run_heatmap(project, clf, tmp / f"out{i}", opts).results[0].seconds
                     for i in range(args.repeats))
        # The default tissue filter reads the thumbnail before planning: its cost per tile it keeps.
        tissue = [run_heatmap(project, clf, tmp / f"t{i}", replace(opts, tissue=True)).results[0]
                  for i in range(args.repeats)]
        n_tissue, t_tissue = tissue[0].tiles, min(r.seconds for r in tissue)
        rate_model, rate_pipe, rate_full = n / t_model, n / t_pipe, n / t_full
        print(f"tiles: {n} ({args.patch} px at {args.spacing} µm/px = {pred.tile_l0:.1f} level-0 px)")
        print(f"load average before the runs: {load}")
        print(f"model only (same preprocessed batches): {rate_model:8.1f} tiles/s")
        r_pipe, r_full = rate_pipe / rate_model, rate_full / rate_model
        print(f"pipeline (read+preprocess+model):       {rate_pipe:8.1f} tiles/s  ratio {r_pipe:.3f}")
        print(f"run_heatmap (pipeline + all outputs):   {rate_full:8.1f} tiles/s  ratio {r_full:.3f}")
        rate_tissue = n_tissue / t_tissue
        print(f"run_heatmap with the tissue filter:     {rate_tissue:8.1f} tiles/s  "
              f"ratio {rate_tissue / rate_model:.3f} ({n_tissue} of {n} tiles on tissue)")
        print(f"CPU s per 1000 tiles: model only {1000 * c_model / n:.1f}, pipeline {1000 * c_pipe / n:.1f} "
              f"(CPU ratio {c_model / c_pipe:.3f}: the share of the pipeline's CPU spent in the model; "
              "on a shared machine this is steadier than wall-clock)")
        notes: list[str] = []
        bench_wsinfer(notes)
        for line in notes:
            print(line)


if __name__ == "__main__":
    main()
