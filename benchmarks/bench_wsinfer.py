"""histobridge heatmap against WSInfer 0.6.1: same slide, same TorchScript model, rounds interleaved.

Each round runs, each in a fresh process with torch at ``--threads`` (default 1, like for like):
histobridge ``run_heatmap`` over one annotation covering the slide (thumbnail, tiling, threaded reads,
model, GeoJSON + CSV + NPZ + PNG), WSInfer's Python API (``segment_and_patch_directory_of_slides``,
``run_inference``, ``write_geojsons``: tissue, patching, DataLoader, model, CSV + GeoJSON) and, with
``--baseline-src``, an older histobridge source tree. Tile counts differ a little (WSInfer keeps
the patches its tissue mask holds), so speeds are compared per tile. Every process reports its own
work time (imports and model loading left out), CPU seconds (its own and its DataLoader workers')
and tiles; its peak RSS is measured from outside (``bench_heatmap.measured``: wait4 on a child forked
from a small launcher, so the benchmark's own memory does not leak into it; for WSInfer the largest of
its main process and DataLoader workers, not their sum); ratios are per round.

WSInfer pins ``zarr<3`` and ``tiffslide<3``, which histobridge cannot share, so it lives in its own venv:

    python -m venv /tmp/wsinfer-venv
    /tmp/wsinfer-venv/bin/pip install wsinfer==0.6.1 torch==2.13.0 'zarr<3' 'tiffslide<3'
    python benchmarks/bench_wsinfer.py --wsinfer-python /tmp/wsinfer-venv/bin/python

That resolved to wsinfer 0.6.1, wsinfer-zoo 0.6.3, torch 2.13.0+cpu, torchvision 0.28.0, zarr 2.18.7,
tiffslide 2.5.1 and numpy 2.4.6 (see the torchvision note the benchmark prints).

Without ``--wsinfer-python`` the WSInfer side runs where ``wsinfer`` imports (here, if installed)
and is skipped with a note otherwise. ``--model resnet18`` uses a ResNet-18-sized network (heavy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_heatmap import ResNet18, SmallCNN, make_project, make_slide, measured

CLASSES = ["Tumor", "Stroma", "Other"]

# The child processes. Each prints one JSON line: tiles, wall_s, cpu_s (peak RSS is measured outside).
MEASURE = """
import json, os, resource, sys, time
import torch
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))

def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

def report(tiles, t0, c0):
    print(json.dumps({"tiles": int(tiles), "wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0}))
"""

OURS = MEASURE + """
from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap
from histobridge.models.classifier import load_classifier
project, model, out, workers, batch = sys.argv[1:6]
clf = load_classifier(model, device="cpu")
opts = HeatmapOptions(batch_size=int(batch), workers=int(workers), tissue=False)
t0, c0 = time.perf_counter(), cpu()
rep = run_heatmap(project, clf, out, opts)
assert rep.ok, rep.to_dict()
report(rep.tiles, t0, c0)
"""

WSINFER = MEASURE + """
import torch.library
_register_fake = torch.library.register_fake

def _register_fake_if_op(op, *args, **kwargs):  # see TORCHVISION_NOTE
    if isinstance(op, str) and op.startswith("torchvision::") and not hasattr(torch.ops.torchvision, op[13:]):
        return args[0] if args else (lambda fn: fn)
    return _register_fake(op, *args, **kwargs)

torch.library.register_fake = _register_fake_if_op
import contextlib, io
from pathlib import Path
from wsinfer.modellib.models import LocalModelTorchScript
from wsinfer.modellib.run_inference import run_inference
from wsinfer.patchlib import segment_and_patch_directory_of_slides
from wsinfer.write_geojson import write_geojsons
from wsinfer_zoo.client import ModelConfiguration
import pandas as pd
slides, model, out, workers, batch = sys.argv[1:6]
cfg = ModelConfiguration.from_dict(json.loads((Path(model) / "config.json").read_text()))
info = LocalModelTorchScript(config=cfg, model_path=str(Path(model) / "torchscript_model.pt"))
out = Path(out)
t0, c0 = time.perf_counter(), cpu()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    segment_and_patch_directory_of_slides(slides, out, cfg.patch_size_pixels, cfg.spacing_um_px)
    run_inference(slides, out, info, batch_size=int(batch), num_workers=int(workers))
    csvs = list((out / "model-outputs-csv").glob("*.csv"))
    write_geojsons(csvs, out, num_workers=1)
report(sum(len(pd.read_csv(c)) for c in csvs), t0, c0)
"""


TORCHVISION_NOTE = (
    "PyPI's torchvision for torch 2.13 is a CUDA build: next to the CPU torch its C ops do not load, "
    "and importing it then fails on two fake-op registrations (nms, qnms). The WSInfer process skips "
    "those registrations; WSInfer uses torchvision only for Resize/ToTensor/Normalize, which need no C op."
)


def child(python: str, code: str, args: list[str], threads: int, pythonpath: str | None) -> dict[str, float]:
    env = dict(os.environ, BENCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), WSINFER_FORCE_CPU="1")
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    usage, out = measured(python, code, args, env)
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    result["maxrss_mib"] = usage["maxrss_mib"]
    return result


def wsinfer_python(given: str | None, notes: list[str]) -> str | None:
    if given:
        return given
    probe = subprocess.run([sys.executable, "-c", "import wsinfer"], capture_output=True)
    if probe.returncode == 0:
        return sys.executable
    notes.append("WSInfer is not importable here; pass --wsinfer-python (the module docstring says how "
                 "to install it)")
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16384, help="level-0 side of the generated slide (px)")
    ap.add_argument("--model", choices=("light", "resnet18"), default="light")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in every process")
    ap.add_argument("--workers", type=int, default=2,
                    help="reader threads (histobridge) / DataLoader worker processes (WSInfer)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--wsinfer-python", default=None, help="python of a venv with wsinfer 0.6.1 installed")
    ap.add_argument("--baseline-src", default=None,
                    help="folder holding an older histobridge package to time as well (e.g. a git archive)")
    args = ap.parse_args()

    notes: list[str] = []
    ws_python = wsinfer_python(args.wsinfer_python, notes)
    repo = str(Path(__file__).resolve().parents[1])
    from histobridge.models.classifier import make_config, save_classifier

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_wsinfer_") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "slides").mkdir()
        slide = make_slide(tmp / "slides" / "bench.tif", args.size)
        cfg = make_config(CLASSES, 224, 0.5, architecture=args.model, resize=224,
                          mean=(0.8, 0.6, 0.7), std=(0.15, 0.15, 0.15))
        net = (SmallCNN() if args.model == "light" else ResNet18()).eval()
        model = save_classifier(net, cfg, tmp / "model")
        project = make_project(tmp / "proj", slide, args.size)

        sides: list[tuple[str, str, str, str | None]] = [("histobridge", sys.executable, OURS, repo)]
        if args.baseline_src:
            sides.append(("baseline", sys.executable, OURS, args.baseline_src))
        if ws_python:
            sides.append(("wsinfer", ws_python, WSINFER, None))
        print(f"slide {args.size}² px at 0.5 µm/px, model {args.model} (224 px, 0.5 µm/px), torch threads "
              f"{args.threads}, workers {args.workers}, batch {args.batch_size}, "
              f"load {os.getloadavg()[0]:.2f}")
        rows: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in sides}
        for r in range(args.rounds):
            for name, python, code, path in sides:
                src = str(project) if code is OURS else str(tmp / "slides")
                out = tmp / f"{name}{r}"
                rows[name].append(child(python, code, [src, str(model), str(out), str(args.workers),
                                                       str(args.batch_size)], args.threads, path))
            line = []
            for name, runs in rows.items():
                m = runs[-1]
                per_tile, cpu_tile = 1000 * m["wall_s"] / m["tiles"], 1000 * m["cpu_s"] / m["tiles"]
                line.append(f"{name} {m['tiles']:.0f} tiles {m['wall_s']:.1f}s wall {per_tile:.2f} ms/tile, "
                            f"CPU {cpu_tile:.2f} ms/tile, peak RSS {m['maxrss_mib']:.0f} MiB")
            print(f"round {r + 1}: " + "; ".join(line))
        ours = rows["histobridge"]
        for other in [n for n in rows if n != "histobridge"]:
            pairs = list(zip(rows[other], ours, strict=True))
            speed = [(o["tiles"] / o["wall_s"]) / (t["tiles"] / t["wall_s"]) for t, o in pairs]
            cpu = [(o["cpu_s"] / o["tiles"]) / (t["cpu_s"] / t["tiles"]) for t, o in pairs]
            print(f"histobridge vs {other}: tiles/s ratio per round {', '.join(f'{s:.2f}' for s in speed)} "
                  f"(median {median(speed):.2f}); CPU per tile ratio {', '.join(f'{c:.2f}' for c in cpu)} "
                  f"(median {median(cpu):.2f}, < 1 = less CPU)")
    if ws_python:
        notes.append(TORCHVISION_NOTE)
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
