"""QuPath tile GeoJSON: writing and reading N heatmap tiles, against per-feature paths and JSON floors.

Every case runs once per round, rounds interleaved; ratios are per round (other / ours, > 1 = ours
is faster), times are wall/CPU seconds.

- write: ``tile_feature_texts`` (bulk, from arrays) then ``write_feature_texts`` against the
  per-feature path (``tile_feature`` dicts through ``write_features``, one ``json.dumps`` each) and
  against serialising the same features, already built as dicts, with ``json.dumps`` and
  ``orjson.dumps`` (floors that leave out building the dicts). ``encode`` is the serialisation
  alone; ``gzip N`` compresses the encoded tiles at level N (the split of a ``.geojson.gz`` write).
- read: ``read_features`` against the path it replaced (standard-library parse with the garbage
  collector running, bulk polygons but a per-feature pass over the properties) and the bare parse
  of the same file by ``json.loads`` and ``orjson.loads``.

Run: ``python benchmarks/bench_geojson.py [--tiles 100000] [--rounds 3] [--levels 1,6]``
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import orjson

TARGETS = {"write": 0.5, "read": 2.5}  # seconds for 100k tiles


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


@contextlib.contextmanager
def reading_as_before() -> Iterator[None]:
    """The read path before bulk records: stdlib JSON, collector running, properties per feature."""
    from histobridge.qupath import geojson_load, geojson_read

    saved = geojson_load.parse_json, geojson_read.gc_paused, geojson_read.plain_object
    geojson_load.parse_json = lambda data: json.loads(data.decode("utf-8-sig"))
    geojson_read.gc_paused = contextlib.nullcontext
    geojson_read.plain_object = lambda feature, polygons: None
    try:
        yield
    finally:
        geojson_load.parse_json, geojson_read.gc_paused, geojson_read.plain_object = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", default="1,6", help="gzip levels to time on the encoded tiles")
    args = ap.parse_args()
    levels = [int(v) for v in args.levels.split(",") if v]

    from histobridge.qupath.geojson import (
        GZIP_LEVEL,
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

    def dicts() -> Iterator[dict[str, Any]]:
        for k in range(n):
            yield tile_feature(*coords[k].tolist(), classes[top[k]], colours[classes[top[k]]],
                               dict(zip(names, probs[k].tolist(), strict=True)), name="model")

    def encode() -> Any:
        return tile_feature_texts(coords, top, classes, colours, names, probs, name="model")

    built = list(dicts())
    block = encode()
    body = b",\n".join(block.chunks)

    with tempfile.TemporaryDirectory(prefix="bench_geojson_") as tmp_s:
        tmp = Path(tmp_s)
        plain, gz = tmp / "tiles.geojson", tmp / "tiles.geojson.gz"
        write_feature_texts(plain, block)
        data = plain.read_bytes()
        print(f"{n} tiles, {len(data) / 1e6:.1f} MB of GeoJSON; .geojson.gz at level {GZIP_LEVEL}; "
              "wall/CPU seconds per round")
        cases: dict[str, list[tuple[float, float]]] = {}

        def read_before() -> None:
            with reading_as_before():
                read_features(plain)

        for _ in range(args.rounds):
            steps: list[tuple[str, Callable[[], object]]] = [
                ("write dicts", lambda: write_features(plain, dicts())),
                ("json.dumps", lambda: json.dumps(built, separators=(",", ":"))),
                ("orjson.dumps", lambda: orjson.dumps(built)),
                ("encode", encode),
                ("write", lambda: write_feature_texts(plain, encode())),
                ("write.gz", lambda: write_feature_texts(gz, encode())),
                *((f"gzip {lv}", lambda lv=lv: gzip.compress(body, lv)) for lv in levels),
                ("json.loads", lambda: json.loads(data)),
                ("orjson.loads", lambda: orjson.loads(data)),
                ("read before", read_before),
                ("read", lambda: read_features(plain)),
            ]
            for label, fn in steps:
                cases.setdefault(label, []).append(timed(fn))
        for label, runs in cases.items():
            print(f"  {label:13s} " + ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs)
                  + f"   median wall {median(w for w, _ in runs):.2f} s")
        for lv in levels:
            print(f"  gzip {lv}: {len(gzip.compress(body, lv)) / 1e6:.1f} MB")

        def ratios(other: str, ours: str) -> None:
            wall = [o[0] / m[0] for o, m in zip(cases[other], cases[ours], strict=True)]
            cpu = [o[1] / m[1] for o, m in zip(cases[other], cases[ours], strict=True)]
            print(f"{other} / {ours}: wall {', '.join(f'{r:.2f}' for r in wall)} "
                  f"(median {median(wall):.2f}), CPU {', '.join(f'{r:.2f}' for r in cpu)} "
                  f"(median {median(cpu):.2f})")

        for other, ours in (("write dicts", "write"), ("json.dumps", "encode"), ("orjson.dumps", "encode"),
                            ("read before", "read"), ("json.loads", "read"), ("orjson.loads", "read")):
            ratios(other, ours)
        for what, limit in TARGETS.items():
            runs = cases[what]
            print(f"{what}: median {median(w for w, _ in runs):.2f} s wall, "
                  f"{median(c for _, c in runs):.2f} s CPU (target for {n} tiles: "
                  f"{limit * n / 100_000:.2f} s)")


if __name__ == "__main__":
    main()
