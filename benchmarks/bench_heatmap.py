"""Heatmap throughput: end-to-end tiles/s against the model's own forward rate, in one run.

On one generated JPEG-tiled pyramidal TIFF and one small CNN (TorchScript, WSInfer config), it times:

- model only: the same preprocessed batches, already in memory, through ``forward`` + softmax;
- pipeline: ``predict_regions`` (grid, threaded reads + resampling + preprocessing overlapped with
  inference), which is what ``run_heatmap`` does per image before writing files;
- full: ``run_heatmap`` on a one-image project (pipeline + thumbnail, GeoJSON, NPZ, CSV, PNG);
- peak memory: ``run_heatmap`` in a child process, its peak RSS read from outside (``os.wait4``), next
  to a child that only imports torch and histobridge and loads the model.

The ratio pipeline / model-only says how close the pipeline gets to keeping the model busy (the goal is
≥ 0.9 on CPU). Model-only feeds the model exactly what the pipeline does (on the CPU: chunks of a few
tiles, channels-last), so the ratio measures reading and preprocessing, not a different model call.
The peak RSS goal is 0.5 GiB. WSInfer is compared in ``bench_wsinfer.py`` (it needs its own venv).

Run: ``python benchmarks/bench_heatmap.py [--size 4096] [--spacing 0.5] [--batch-size 32] [--workers 2]
[--threads N] [--model light|resnet18]``
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

MPP = 0.5
TILE = 256
RSS_GOAL_MIB = 512.0

# Child processes for the memory figures; each prints its own CPU seconds and tile count.
LOAD_ONLY = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
import histobridge.heatmap.pipeline
from histobridge.models.classifier import load_classifier
load_classifier(sys.argv[1], device="cpu")
print(0)
"""
HEATMAP_CHILD = """
import sys, torch
torch.set_num_threads(int(sys.argv[6]))
from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap
from histobridge.models.classifier import load_classifier
project, model, out, workers, batch = sys.argv[1:6]
clf = load_classifier(model, device="cpu")
opts = HeatmapOptions(batch_size=int(batch), workers=int(workers), tissue=False)
rep = run_heatmap(project, clf, out, opts)
assert rep.ok, rep.to_dict()
print(rep.tiles)
"""


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


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class ResNet18(nn.Module):
    """ResNet-18's layout (stem, four stages of two basic blocks, 64→512 channels): a heavy classifier."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks: list[nn.Module] = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


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


def model_inputs(slide, coords, clf, batch_size: int, workers: int) -> list[torch.Tensor]:
    """Every tile preprocessed, in memory, cut as the pipeline hands them to the model."""
    from histobridge.heatmap.inference import (
        channels_last_buffer,
        cpu_chunk,
        in_place_steps,
        iter_batches,
        iter_tiles,
        preprocess_into,
    )

    chunk, steps, px = cpu_chunk(clf, batch_size), in_place_steps(clf), clf.config.patch_size_pixels
    if chunk is None or steps is None:
        return [b for _, b, _ in iter_batches(slide, coords, clf, batch_size=batch_size, workers=workers)]
    out = []
    for _, tiles, _ in iter_tiles(slide, coords, px, batch_size=batch_size, workers=workers):
        for a in range(0, len(tiles), chunk):
            part = tiles[a : a + chunk]
            out.append(preprocess_into(part, channels_last_buffer(len(part), px), steps))
    return out


def model_only(clf, batches: list[torch.Tensor]) -> tuple[float, float]:
    """(wall, CPU) seconds for forward + softmax over inputs already preprocessed and in memory."""
    t0, c0 = time.perf_counter(), time.process_time()
    for b in batches:
        clf.predict_batch(b)
    return time.perf_counter() - t0, time.process_time() - c0


# Linux records a process's peak RSS across exec, starting from the memory of the process it was
# forked (or vforked) from: a child started straight from this big process would report this one's peak.
# A small launcher forks the measured child instead and reports what wait4 says about it alone (with
# any processes it waited for, such as DataLoader workers: the largest of them, not a sum).
LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, use = os.wait4(pid, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "maxrss_mib": use.ru_maxrss / 1024,
                  "cpu_s": use.ru_utime + use.ru_stime}))
"""


def measured(python: str, code: str, args: list[str], env: dict[str, str]) -> tuple[dict[str, float], str]:
    """(peak RSS MiB, CPU s, exit status) of ``python -c code args`` measured from outside, and its stdout."""
    cmd = [sys.executable, "-c", LAUNCHER, python, "-c", textwrap.dedent(code), *args]
    # ``python -c`` puts the working directory first on sys.path: an empty one, so that the package
    # imported is the one env's PYTHONPATH names (a baseline tree), not the checkout run from.
    with tempfile.TemporaryDirectory(prefix="bench_cwd_") as cwd:
        done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    *lines, last = done.stdout.strip().splitlines()
    usage: dict[str, float] = json.loads(last)
    if usage["exit"] != 0:
        raise SystemExit(f"{python} failed:\n{done.stderr[-3000:]}")
    return usage, "\n".join(lines)


def child_peak(code: str, args: list[str]) -> tuple[float, float, str]:
    """(peak RSS MiB, CPU s, stdout) of a fresh Python process running ``code`` with this package."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    usage, out = measured(sys.executable, code, args, env)
    return usage["maxrss_mib"], usage["cpu_s"], out.strip()


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
    ap.add_argument("--model", choices=("light", "resnet18"), default="light",
                    help="a small CNN, or ResNet-18's layout (heavy)")
    args = ap.parse_args()

    from shapely.geometry import box

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
        cfg = make_config(["Tumor", "Stroma", "Other"], args.patch, args.spacing, architecture=args.model,
                          mean=(0.8, 0.6, 0.7), std=(0.15, 0.15, 0.15))
        net = SmallCNN() if args.model == "light" else ResNet18()
        model_dir = save_classifier(net.eval(), cfg, tmp / "model")
        clf = load_classifier(model_dir, device=args.device)
        print(f"setup {time.perf_counter() - t0:.1f}s; slide {args.size}² px at {MPP} µm/px; {clf}")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {clf.device}; "
              f"batch {args.batch_size}, {args.workers} reader threads")

        region = Region(box(0, 0, args.size, args.size), None, "all", "all")
        with open_slide(slide_path) as slide:
            pred = predict_regions(slide, [region], clf, batch_size=args.batch_size, workers=args.workers)
            n = len(pred)
            batches = model_inputs(slide, pred.coords, clf, args.batch_size, args.workers)
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
        tissue = [r for i in range(args.repeats)
                  for r in run_heatmap(project, clf, tmp / f"t{i}", replace(opts, tissue=True)).results]
        rate_model, rate_pipe, rate_full = n / t_model, n / t_pipe, n / t_full
        print(f"tiles: {n} ({args.patch} px at {args.spacing} µm/px = {pred.tile_l0:.1f} level-0 px)")
        print(f"load average before the runs: {load}")
        print(f"model only (same preprocessed inputs):  {rate_model:8.1f} tiles/s")
        r_pipe, r_full = rate_pipe / rate_model, rate_full / rate_model
        print(f"pipeline (read+preprocess+model):       {rate_pipe:8.1f} tiles/s  ratio {r_pipe:.3f}")
        print(f"run_heatmap (pipeline + all outputs):   {rate_full:8.1f} tiles/s  ratio {r_full:.3f}")
        if tissue:
            n_tissue, rate_tissue = tissue[0].tiles, tissue[0].tiles / min(r.seconds for r in tissue)
            print(f"run_heatmap with the tissue filter:     {rate_tissue:8.1f} tiles/s  "
                  f"ratio {rate_tissue / rate_model:.3f} ({n_tissue} of {n} tiles on tissue)")
        else:  # the mask keeps only the purple blobs of this texture, smaller than half a tile
            print("run_heatmap with the tissue filter: no tile is half on tissue here; not timed")
        print(f"CPU s per 1000 tiles: model only {1000 * c_model / n:.1f}, pipeline {1000 * c_pipe / n:.1f} "
              f"(CPU ratio {c_model / c_pipe:.3f}: the share of the pipeline's CPU spent in the model; "
              "on a shared machine this is steadier than wall-clock)")
        threads = str(args.threads or torch.get_num_threads())
        base, _, _ = child_peak(LOAD_ONLY, [str(model_dir), threads])
        peak, cpu, tiles = child_peak(HEATMAP_CHILD, [str(project), str(model_dir), str(tmp / "mem"),
                                                      str(args.workers), str(args.batch_size), threads])
        print(f"peak RSS of a run_heatmap process: {peak:.0f} MiB = {peak / RSS_GOAL_MIB:.2f} of the "
              f"{RSS_GOAL_MIB:.0f} MiB goal ({tiles} tiles, {cpu:.1f} CPU s); torch + imports + model alone: "
              f"{base:.0f} MiB, so the run itself adds {peak - base:.0f} MiB")
        notes: list[str] = []
        bench_wsinfer(notes)
        for line in notes:
            print(line)


if __name__ == "__main__":
    main()
