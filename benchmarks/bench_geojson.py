"""QuPath tile GeoJSON: writing and reading N heatmap tiles, new paths against the per-feature ones.

Rounds are interleaved; ratios are per round (old / new time, > 1 = faster now):

- write: ``tile_feature`` dicts through ``write_features`` (per-tile dicts and ``json.dumps``) against
  ``tile_feature_texts`` through ``write_feature_texts`` (the heatmap's path), both plain and gzip;
- read: ``read_features`` with the bulk polygon builder switched off (one ``shapely.shape`` per
  feature) against the default, with ``json.loads`` of the same file as the floor.

Run: ``python benchmarks/bench_geojson.py [--tiles 100000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import numpy as np


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from histobridge.qupath import geojson_read
    from histobridge.qupath.geojson import (
        read_features,
        tile_feature,
        tile_feature_texts,
        write_feature_texts,
        write_features,
    )

    n = args.tiles
    side = int(np.ceil(np.sqrt(n)))
    i = np.arange(n)
    coords = np.column_stack([(i % side) * 448.5, (i // side) * 448.5, np.full(n, 448.5), np.full(n, 448.5)])
    probs = np.random.default_rng(0).dirichlet([1.0, 1.0, 1.0], n)
    classes = ("Tumor", "Stroma", "Other")
    colours = {"Tumor": (200, 0, 0), "Stroma": (0, 160, 0), "Other": (0, 0, 200)}
    names = [f"model: {c} probability" for c in classes]
    top = probs.argmax(axis=1)

    def old_write(path: Path) -> None:
        write_features(path, (
            tile_feature(*coords[k].tolist(), classes[top[k]], colours[classes[top[k]]],
                         dict(zip(names, probs[k].tolist(), strict=True)), name="model")
            for k in range(n)
        ))

    def new_write(path: Path) -> None:
        texts = tile_feature_texts(coords, top, classes, colours, names, probs, name="model")
        write_feature_texts(path, texts)

    def old_read(path: Path) -> None:
        saved = geojson_read.BULK_MIN
        geojson_read.BULK_MIN = 1 << 62
        try:
            read_features(path)
        finally:
            geojson_read.BULK_MIN = saved

    with tempfile.TemporaryDirectory(prefix="bench_geojson_") as tmp_s:
        tmp = Path(tmp_s)
        plain, gz = tmp / "tiles.geojson", tmp / "tiles.geojson.gz"
        new_write(plain)
        print(f"{n} tiles, {plain.stat().st_size / 1e6:.1f} MB of GeoJSON; wall/CPU seconds per round")
        cases: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for label, fn in (
                ("write old", lambda: old_write(plain)), ("write new", lambda: new_write(plain)),
                ("write.gz old", lambda: old_write(gz)), ("write.gz new", lambda: new_write(gz)),
                ("json.loads", lambda: json.loads(plain.read_bytes())),
                ("read old", lambda: old_read(plain)), ("read new", lambda: read_features(plain)),
            ):
                cases.setdefault(label, []).append(timed(fn))
        for label, runs in cases.items():
            print(f"  {label:13s} " + ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs))
        for what in ("write", "write.gz", "read"):
            old, new = cases[f"{what} old"], cases[f"{what} new"]
            wall = [o[0] / m[0] for o, m in zip(old, new, strict=True)]
            cpu = [o[1] / m[1] for o, m in zip(old, new, strict=True)]
            print(f"{what}: old/new wall per round {', '.join(f'{r:.2f}' for r in wall)} (median "
                  f"{median(wall):.2f}), CPU {', '.join(f'{r:.2f}' for r in cpu)}; new median "
                  f"{median(m[0] for m in new):.2f} s")
        floor = [r[0] / m[0] for r, m in zip(cases["read new"], cases["json.loads"], strict=True)]
        print(f"read new / json.loads per round {', '.join(f'{r:.2f}' for r in floor)}")


if __name__ == "__main__":
    main()
