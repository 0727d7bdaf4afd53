"""Heatmap throughput: end-to-end tiles/s against the model's own forward rate, measured in one run.

On one generated JPEG-tiled pyramidal TIFF and one CNN (TorchScript, WSInfer config), each round
(rounds interleaved, because the machine may be shared) times, in this process, with the same model
object and the same torch threads:

- model only: the same tiles, already read and preprocessed in memory, through ``forward`` + softmax,
  in the chunks and layout the pipeline hands the model (on the CPU: a few tiles, channels-last),
  with the heap setting inference runs under (``_memory.heap_kept_for_reuse``);
- end to end: ``run_heatmap`` on a one-image project: annotations, thumbnail, region planning,
  threaded reads + resampling + preprocessing overlapped with inference, then every output (GeoJSON
  in the project and the output folder, NPZ, CSV, PNG overlays);
- pipeline: ``predict_regions`` alone (the end-to-end run without thumbnail, planning and outputs), to
  show where a gap lies.

Ratios are per round (end to end / model only, the goal ≥ 0.9 on the CPU), with their median; CPU
seconds per 1000 tiles (this process and its reader threads) are the steadier figure on a shared
machine. The first model calls (TorchScript specialising) are timed apart and left out of both sides.

Then, in fresh processes: the fixed costs of a one-image CLI-like run (interpreter start + imports,
model loading, ``run_heatmap`` with its first calls), and the peak RSS of a ``run_heatmap`` process,
measured from outside (``os.wait4`` through a small forking launcher) next to a process that only
imports torch and histobridge and loads the model; the goal is 0.5 GiB. WSInfer is compared in
``bench_wsinfer.py`` (it needs its own venv).

Run: ``python benchmarks/bench_heatmap.py [--size 4096] [--rounds 5] [--threads 1] [--batch-size 32]
[--workers 2] [--model light|resnet18]``
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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from statistics import median

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
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[6]))
from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap
from histobridge.models.classifier import load_classifier
t1 = time.perf_counter()
project, model, out, workers, batch = sys.argv[1:6]
clf = load_classifier(model, device="cpu")
t2 = time.perf_counter()
opts = HeatmapOptions(batch_size=int(batch), workers=int(workers), tissue=False)
rep = run_heatmap(project, clf, out, opts)
assert rep.ok, rep.to_dict()
print(json.dumps({"tiles": rep.tiles, "import_s": t1 - t0, "load_s": t2 - t1,
                  "run_s": time.perf_counter() - t2}))
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


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn()``; CPU is this process's, reader threads included."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def model_only(clf, batches: list[torch.Tensor]) -> tuple[float, float]:
    """(wall, CPU) seconds for forward + softmax over inputs already preprocessed and in memory.

    Under the heap setting :func:`~histobridge.heatmap.inference.infer_tiles` runs with, so both sides
    differ only in reading, preprocessing and (end to end) planning and outputs.
    """
    from histobridge._memory import heap_kept_for_reuse

    def run() -> None:
        with heap_kept_for_reuse():
            for b in batches:
                clf.predict_batch(b)

    return timed(run)


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
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1). On a busy machine OpenMP threads spin while "
                         "waiting for each other, which makes every timing noisy; 0 keeps torch's choice")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of each measurement")
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
        project = make_project(tmp / "proj", slide_path, args.size)
        print(f"setup {time.perf_counter() - t0:.1f}s; slide {args.size}² px at {MPP} µm/px; {clf}")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {clf.device}; "
              f"batch {args.batch_size}, {args.workers} reader threads; load average before: {load}")

        region = Region(box(0, 0, args.size, args.size), None, "all", "all")
        opts = HeatmapOptions(batch_size=args.batch_size, workers=args.workers, tissue=False)
        with open_slide(slide_path) as slide:
            pred = predict_regions(slide, [region], clf, batch_size=args.batch_size, workers=args.workers)
            n = len(pred)
            batches = model_inputs(slide, pred.coords, clf, args.batch_size, args.workers)
            first = model_only(clf, batches)  # TorchScript specialises during its first calls
            steady = model_only(clf, batches)
            print(f"tiles: {n} ({args.patch} px at {args.spacing} µm/px = {pred.tile_l0:.1f} level-0 px); "
                  f"first model pass {first[0]:.2f}s, the next {steady[0]:.2f}s (first calls left out below)")
            rows: list[dict[str, tuple[float, float]]] = []
            for r in range(args.rounds):
                row = {"model": model_only(clf, batches)}
                row["e2e"] = timed(lambda r=r: run_heatmap(project, clf, tmp / f"out{r}", opts))
                row["pipeline"] = timed(lambda: predict_regions(
                    slide, [region], clf, batch_size=args.batch_size, workers=args.workers))
                rows.append(row)
                print(f"round {r + 1}: " + ", ".join(
                    f"{k} {w:.2f}s wall {1000 * c / n:.1f} CPU ms/tile" for k, (w, c) in row.items())
                    + f"; end to end / model only {row['model'][0] / row['e2e'][0]:.3f}, "
                    f"pipeline / model only {row['model'][0] / row['pipeline'][0]:.3f}", flush=True)
        e2e = [row["model"][0] / row["e2e"][0] for row in rows]
        pipe = [row["model"][0] / row["pipeline"][0] for row in rows]
        cpu = {k: median(1000 * row[k][1] / n for row in rows) for k in rows[0]}
        rate = {k: median(n / row[k][0] for row in rows) for k in rows[0]}
        print(f"model only (same preprocessed inputs):    {rate['model']:8.1f} tiles/s (median)")
        print(f"end to end (run_heatmap, every output):   {rate['e2e']:8.1f} tiles/s; ratio per round "
              f"{', '.join(f'{x:.3f}' for x in e2e)}, median {median(e2e):.3f} (goal ≥ 0.9)")
        print(f"pipeline (predict_regions, no outputs):   {rate['pipeline']:8.1f} tiles/s; ratio per round "
              f"{', '.join(f'{x:.3f}' for x in pipe)}, median {median(pipe):.3f}")
        print(f"CPU ms per tile (median): model only {cpu['model']:.2f}, end to end {cpu['e2e']:.2f}, "
              f"pipeline {cpu['pipeline']:.2f}; CPU ratio model / end to end {cpu['model'] / cpu['e2e']:.3f} "
              "(the share of the run's CPU spent in the model; steadier than wall-clock on a shared machine)")
        # The default tissue filter reads the thumbnail before planning: its cost per tile it keeps.
        tissue = run_heatmap(project, clf, tmp / "tissue", replace(opts, tissue=True)).results
        if tissue:
            print(f"run_heatmap with the tissue filter: {tissue[0].tiles} of {n} tiles on tissue, "
                  f"{tissue[0].tiles_per_s:.1f} tiles/s")
        else:  # the mask keeps only the purple blobs of this texture, smaller than half a tile
            print("run_heatmap with the tissue filter: no tile is half on tissue here; not timed")

        threads = str(args.threads or torch.get_num_threads())
        base, _, _ = child_peak(LOAD_ONLY, [str(model_dir), threads])
        t0 = time.perf_counter()
        peak, cpu_s, out = child_peak(HEATMAP_CHILD, [str(project), str(model_dir), str(tmp / "mem"),
                                                      str(args.workers), str(args.batch_size), threads])
        wall = time.perf_counter() - t0
        cold = json.loads(out.splitlines()[-1])
        print(f"a fresh one-image process: {wall:.2f}s wall, {cpu_s:.1f} CPU s: "
              f"imports {cold['import_s']:.2f}s, "
              f"model load {cold['load_s']:.2f}s, run_heatmap {cold['run_s']:.2f}s with its first calls "
              f"(in this process, warm: median {median(row['e2e'][0] for row in rows):.2f}s); the rest is "
              "interpreter start and exit")
        print(f"peak RSS of a run_heatmap process: {peak:.0f} MiB = {peak / RSS_GOAL_MIB:.2f} of the "
              f"{RSS_GOAL_MIB:.0f} MiB goal ({cold['tiles']} tiles); torch + imports + model alone: "
              f"{base:.0f} MiB, so the run itself adds {peak - base:.0f} MiB")
        notes: list[str] = []
        bench_wsinfer(notes)
        for line in notes:
            print(line)


if __name__ == "__main__":
    main()
