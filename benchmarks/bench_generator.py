"""Generator throughput: images/s for eager vs ``torch.compile``, per resolution, batch and device.

Uses the standard training configuration (channel_base = 32768 × fmaps, fmaps 0.5 below 512 px,
2 mapping layers, conv_clamp 256) with random weights. Prints one table row per setting and the
compiled/eager speed ratio measured in the same run.

    python benchmarks/bench_generator.py                       # 256 and 512 px, batch 1 and 8
    python benchmarks/bench_generator.py --reps 1 --warmup 1   # quickest run on a small CPU
    python benchmarks/bench_generator.py --batch-ratio 16 --threads 1 --resolutions 128 256
        # per-image time at batch 16 vs batch 1, for the shared-weight batch path and, for
        # comparison, the per-sample grouped-conv path forced on (speed-up ratios printed)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

import histobridge.models.stylegan2 as sg2
from histobridge.models.stylegan2 import Generator, GeneratorConfig, onehot


def standard_config(resolution: int, c_dim: int = 2) -> GeneratorConfig:
    fmaps = 1.0 if resolution >= 512 else 0.5
    return GeneratorConfig(
        z_dim=512, c_dim=c_dim, w_dim=512, img_resolution=resolution, mapping_layers=2,
        channel_base=int(32768 * fmaps), channel_max=512, conv_clamp=256,
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_generator(
    G: Generator, batch: int, device: str, reps: int, warmup: int, clock: Any = time.perf_counter
) -> float:
    """Median seconds per forward pass of ``batch`` images (after warm-up passes)."""
    z = torch.randn(batch, G.z_dim, device=device)
    c = onehot(0, G.c_dim, batch).to(device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + reps):
            _sync(device)
            t0 = clock()
            G(z, c, noise_mode="const")
            _sync(device)
            if i >= warmup:
                times.append(clock() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def grouped_conv_forced() -> Iterator[None]:
    """Run every modulated conv as one per-sample grouped conv (the batch path before this change)."""
    original = sg2.modulated_conv2d

    def fused(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, "fused": True})

    sg2.modulated_conv2d = fused
    try:
        yield
    finally:
        sg2.modulated_conv2d = original


def batch_ratio(resolutions: list[int], batch: int, reps: int, warmup: int) -> None:
    """CPU seconds per image at batch 1 and at ``batch``, for both conv paths, measured in one run.

    Process CPU time (not wall time) so that other load on a shared machine does not enter the
    ratio; with one torch thread it is the cost of the computation itself.
    """
    print(f"{'px':>4} {'path':>14} {'cpu s/img b1':>12} {f'cpu s/img b{batch}':>13} {'b1/b' + str(batch):>8}")
    for res in resolutions:
        torch.manual_seed(0)
        G = Generator(standard_config(res)).eval().requires_grad_(False)
        for name, ctx in (("shared-weight", contextlib.nullcontext), ("grouped", grouped_conv_forced)):
            with ctx():
                one = time_generator(G, 1, "cpu", reps, warmup, time.process_time)
                many = time_generator(G, batch, "cpu", reps, warmup, time.process_time) / batch
            print(f"{res:>4} {name:>14} {one:>12.3f} {many:>13.3f} {one / many:>8.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--reps", type=int, default=3, help="timed passes per setting (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed passes (compilation happens here)")
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--batch-ratio", type=int, default=None, metavar="N",
                    help="only compare per-image time at batch N vs batch 1 (CPU, eager)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch_ratio:
        print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
        batch_ratio(args.resolutions, args.batch_ratio, args.reps, args.warmup)
        return
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, devices {devices}")
    header = f"{'device':<6} {'px':>4} {'batch':>5} {'params(M)':>9} {'eager img/s':>12}"
    print(header + f" {'compiled img/s':>15} {'compiled/eager':>15}")
    for device in devices:
        for res in args.resolutions:
            torch.manual_seed(0)
            G = Generator(standard_config(res)).eval().requires_grad_(False).to(device)
            n_params = sum(p.numel() for p in G.parameters()) / 1e6
            Gc = None if args.no_compile else copy.deepcopy(G).compile()
            for batch in args.batches:
                eager = batch / time_generator(G, batch, device, args.reps, args.warmup)
                row = f"{device:<6} {res:>4} {batch:>5} {n_params:>9.1f} {eager:>12.2f}"
                if Gc is None:
                    print(row + f" {'-':>15} {'-':>15}", flush=True)
                    continue
                compiled = batch / time_generator(Gc, batch, device, args.reps, args.warmup)
                print(row + f" {compiled:>15.2f} {compiled / eager:>15.2f}", flush=True)


if __name__ == "__main__":
    main()
