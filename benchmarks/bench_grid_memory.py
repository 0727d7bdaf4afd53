"""Peak memory of grid planning: all candidate tiles at once against bands of rows, in one run.

Each variant plans the same disc-shaped region (about 1.5 million 70-px tiles) in a fresh child
process, so peak resident memory (``ru_maxrss``) belongs to that variant alone. "one band" sets
the band size beyond the candidate count, which is how planning worked before bands existed.

Run: ``python benchmarks/bench_grid_memory.py [--radius 48000] [--tile 70]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
from shapely.geometry import Point
from histobridge.tiling import grid
radius, tile, chunk = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
if chunk:
    grid.PLAN_CHUNK = chunk
region = Point(radius + 2000, radius + 2000).buffer(radius)
side = 2 * radius + 4000
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
coords = grid.grid_for_geometry(region, tile, tile, 0.5, (0, 0, side, side))
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tiles": len(coords), "seconds": seconds, "peak_mb": peak / 1e3, "base_mb": base / 1e3}))
"""


def measure(radius: float, tile: float, chunk: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(radius), str(tile), str(chunk)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--radius", type=float, default=48000.0, help="disc radius in level-0 px")
    ap.add_argument("--tile", type=float, default=70.0, help="tile size in level-0 px")
    args = ap.parse_args()
    one = measure(args.radius, args.tile, 1 << 40)
    banded = measure(args.radius, args.tile, 0)
    assert one["tiles"] == banded["tiles"]
    for name, r in (("one band", one), ("bands", banded)):
        grown = r["peak_mb"] - r["base_mb"]
        print(f"{name:>9}: {int(r['tiles']):,} tiles, {r['seconds']:.1f} s, peak RSS {r['peak_mb']:.0f} MB "
              f"(+{grown:.0f} MB over imports)")  # fmt: skip
    ratio = (one["peak_mb"] - one["base_mb"]) / max(1.0, banded["peak_mb"] - banded["base_mb"])
    speed = one["seconds"] / banded["seconds"]
    print(f"planning memory: one band / bands = {ratio:.1f}x; time one band / bands = {speed:.2f}")


if __name__ == "__main__":
    main()
