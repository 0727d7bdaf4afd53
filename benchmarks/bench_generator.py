"""Generator throughput: images/s for eager vs ``torch.compile``, per resolution, batch and device.

Uses the standard training configuration (channel_base = 32768 × fmaps, fmaps 0.5 below 512 px,
2 mapping layers, conv_clamp 256) with random weights. Prints one table row per setting and the
compiled/eager speed ratio measured in the same run.

    python benchmarks/bench_generator.py                       # 256 and 512 px, batch 1 and 8
    python benchmarks/bench_generator.py --reps 1 --warmup 1   # quickest run on a small CPU
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

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


def time_generator(G: Generator, batch: int, device: str, reps: int, warmup: int) -> float:
    """Median seconds per forward pass of ``batch`` images (after warm-up passes)."""
    z = torch.randn(batch, G.z_dim, device=device)
    c = onehot(0, G.c_dim, batch).to(device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + reps):
            _sync(device)
            t0 = time.perf_counter()
            G(z, c, noise_mode="const")
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--reps", type=int, default=3, help="timed passes per setting (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed passes (compilation happens here)")
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
