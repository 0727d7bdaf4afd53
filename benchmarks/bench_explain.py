"""Seed-search throughput: seeds/s with batched generation against one seed per forward pass.

A seed search renders every seed twice (start and end class), crops and resizes both images to the
classifier's field of view and classifies them. This script times :func:`histobridge.synthetic.seeds.
seed_search` with ``batch_size=1`` (one seed, i.e. its two images, per forward pass) and with larger
batches on the same random generator and a small
TorchScript classifier, and prints the speed-up measured in this run. It also times crop-then-resize
alone (the paper's 400 → 302 µm, 512 → 299 px case) to show its share of the work, and the seed-list
parser (:func:`histobridge.ranges.parse_seeds`, linear) against the list-membership parser it
replaced (quadratic), printing time per value as the list grows.

    python benchmarks/bench_explain.py                   # 64 px generator, 16 seeds
    python benchmarks/bench_explain.py --res 512 --seeds 16 --device cuda
    python benchmarks/bench_explain.py --only-parse      # the seed-list parser alone
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from histobridge.errors import InputError
from histobridge.models.classifier import load_classifier, make_config, save_classifier
from histobridge.models.stylegan2 import Generator, GeneratorConfig
from histobridge.ranges import parse_seeds
from histobridge.synthetic import seeds as sd
from histobridge.synthetic.synthesis import crop_then_resize


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build(res: int, device: str, tmp: Path) -> tuple[Generator, object]:
    torch.manual_seed(0)
    fmaps = 1.0 if res >= 512 else 0.5
    cfg = GeneratorConfig(
        z_dim=512, c_dim=2, w_dim=512, img_resolution=res, mapping_layers=2,
        channel_base=int(32768 * fmaps), channel_max=512, conv_clamp=256,
    )  # fmt: skip
    G = Generator(cfg).eval().to(device)
    G.meta = dataclasses.replace(G.meta, tile_um=400.0)
    target_px = max(8, int(res * 299 / 512))
    save_classifier(SmallCNN(), make_config(["a", "b"], target_px, 302.0 / target_px), tmp / "clf")
    return G, load_classifier(tmp / "clf", device=device)


def time_search(G: Generator, clf: object, seeds: list[int], batch: int) -> float:
    sd.seed_search(G, clf, seeds[:batch], 0, 1, batch_size=batch)  # warm-up
    if str(next(G.parameters()).device).startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    sd.seed_search(G, clf, seeds, 0, 1, batch_size=batch)
    return time.perf_counter() - t


def _membership_parse(spec: str) -> list[int]:
    """The former seed parser's expansion: every value checked against the list built so far."""
    seeds: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(v for v in range(int(lo), int(hi or lo) + 1) if v not in seeds)
    return seeds


def _best_of(fn: object, arg: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(arg)  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best


def time_parsers() -> None:
    print("seed list 0-(n-1): time per value (ns), grammar parser vs the former membership parser")
    for n in (1_000, 4_000, 16_000, 100_000):
        spec = f"0-{n - 1}"
        new = _best_of(parse_seeds, spec)
        line = f"  n={n:>7,}: parse_seeds {new / n * 1e9:8.1f} ns/value"
        if n <= 16_000:
            old = _best_of(_membership_parse, spec, repeats=1)
            line += f"   former {old / n * 1e9:10.1f} ns/value   former/new x{old / new:,.0f}"
        print(line)
    t = time.perf_counter()
    try:
        parse_seeds("0-10000000")
    except InputError as err:
        print(f"  0-10000000 refused in {(time.perf_counter() - t) * 1e6:.0f} µs: {err}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--batches", type=str, default="1,8,16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only-parse", action="store_true", help="Time the seed-list parser only.")
    args = ap.parse_args()
    time_parsers()
    if args.only_parse:
        return
    seeds = list(range(args.seeds))
    with tempfile.TemporaryDirectory() as tmp:
        G, clf = build(args.res, args.device, Path(tmp))
        print(f"generator {args.res} px, {args.seeds} seeds x 2 classes, device {args.device}, "
              f"torch threads {torch.get_num_threads()}")  # fmt: skip
        base = None
        for b in (int(x) for x in args.batches.split(",")):
            sec = time_search(G, clf, seeds, b)
            base = base or sec
            print(f"batch {b:>3}: {sec:7.2f} s  {args.seeds / sec:7.2f} seeds/s  speed-up x{base / sec:.2f}")
    imgs = np.random.default_rng(0).integers(0, 256, (32, 512, 512, 3), dtype=np.uint8)
    t = time.perf_counter()
    crop_then_resize(imgs, 400.0, 302.0, 299)
    sec = time.perf_counter() - t
    print(f"crop-then-resize 512 px (400 µm) -> 299 px (302 µm): {32 / sec:.0f} images/s")


if __name__ == "__main__":
    main()
