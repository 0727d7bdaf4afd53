"""Tiling throughput on a generated JPEG-tiled pyramidal TIFF, against two references, in one run.

References:
- raw decode: read every level-0 JPEG tile's bytes and decode them with imagecodecs (what any
  reader must at least do; single thread);
- naive loop: ``openslide.read_region`` per output tile + conversion to RGB (the usual script).

histobridge's tiler is timed end to end (grid, read, write to Zarr with compression) with 1 and 2
workers. Output tiles are 256 px at the slide's own resolution, so one output tile = one source tile.

Two more sections (``--sections``), each in interleaved rounds with the ratios of every round:
- resampled: output tiles of 0.6 µm/px from the 0.5 µm/px slide (a 1.2x shrink, the usual case:
  a model's pixel size is rarely the scanner's), against the decode floor = raw decode CPU per
  source tile x source tiles under the tiled area / output tiles;
- small: the real CMU-1-Small-Region slide (~100 tiles of 128 µm = 256.5 px -> 256 px, a 1.002x
  shrink), against a naive loop of ``openslide.read_region`` + Pillow resize in 2 threads.

The native and resampled sections end with the CPU cost of each stage (decode, resample, Blosc,
shard write) per tile, timed alone: decode / their sum is the most any tiler using this store can
reach against raw decoding. Every section then splits one 1-worker tiler run's own CPU per tile
into the same stages plus ``other`` (planning, group files, threads, Python), timed inside it.
The ``jpeg`` section times ``--resample fast`` (JPEG tiles decoded at 1/2 by the decoder's scaled
IDCT where the shrink is 2x) against ``exact`` on a pyramid with levels 4x apart and on the sample
slide, as CPU per tile over the decode floor, and prints the pixel difference between the two
stores (mean / p99 / max grey levels).
A further section (``codecs``) prints size and encode CPU of the store's compressions (lz4, none)
next to zstd-1 and the source JPEG's bytes. The tiler's CPU time never includes deleting the
previous run's store.

``--store-only`` times just the Zarr write of the same 256-px tiles, three ways, in one run: the
hand-written shard encoder (the tiler's path), zarr's own default codec pipeline, and zarr's fused
codec pipeline where the installed zarr has one (``FusedCodecPipeline``, zarr >= 3.3; both zarr
pipelines with a whole shard per batch), each with 1 and 2 writer threads on disjoint shards, and
prints each one's throughput relative to the encoder.

Run: ``python benchmarks/bench_tiling.py [--size 16384] [--sections native,resampled,small,jpeg,codecs]``
     ``python benchmarks/bench_tiling.py --store-only [--store-tiles 1024]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TILE = 256
MPP = 0.5


def _synthetic_pool(n: int, seed: int = 0) -> list[np.ndarray]:
    """H&E-like textured tiles: smooth pink/purple fields, blobs and noise (fallback content)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    pool = []
    for _ in range(n):
        f = rng.uniform(0.01, 0.08, 4)
        p = rng.uniform(0, 6.3, 4)
        field_ = np.sin(xs * f[0] + p[0]) * np.cos(ys * f[1] + p[1]) + np.sin((xs + ys) * f[2] + p[2])
        nuclei = np.sin(xs * f[3] * 4 + p[3]) * np.sin(ys * f[3] * 4) > 0.8
        noise = rng.normal(0, 6, (TILE, TILE, 1))
        base = np.array([230, 170, 200], np.float32) + field_[..., None] * np.array([12, 30, 15], np.float32)
        base[nuclei] = np.array([110, 70, 150], np.float32)
        pool.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return pool


def _texture_pool() -> tuple[list[np.ndarray], str]:
    """Real H&E tiles from the CMU sample slide (with flips/rotations), else synthetic texture."""
    try:
        from histobridge import datasets
        from histobridge.slides import open_slide

        with open_slide(datasets.fetch("cmu-small-region")) as s:
            rgb = s.read_region(0, 0, 2220, 2967)
    except Exception as err:  # no cache and no registry: still benchmark, on synthetic content
        return _synthetic_pool(32), f"synthetic texture (sample slide unavailable: {err})"
    crops = [
        rgb[y : y + TILE, x : x + TILE]
        for y in range(0, 2967 - TILE, TILE)
        for x in range(0, 2220 - TILE, TILE)
    ]
    tissue = [c for c in crops if (c.astype(int).max(-1) - c.min(-1)).mean() > 25] or crops
    pool = [np.ascontiguousarray(np.rot90(c, k)) for c in tissue for k in range(4)]
    return pool, f"{len(tissue)} real H&E tiles of CMU-1-Small-Region (x4 rotations)"


def make_slide(path: Path, size: int, levels: int = 4, step: int = 1) -> Path:
    """JPEG-tiled pyramid (each level a reduced-resolution page), tiles streamed to keep memory small.

    Level ``i`` is ``2 ** (step * i)`` times smaller: step 1 halves, step 2 quarters (as Aperio's).
    """
    from PIL import Image

    from histobridge.testing import TiledLevel, write_pyramid

    pool, _ = _texture_pool()

    def level(lvl: int) -> TiledLevel:
        dim = size >> (lvl * step)
        n = -(-dim // TILE)

        def tiles():
            for ty in range(n):
                for tx in range(n):
                    t = pool[(tx * 7 + ty * 13) % len(pool)]
                    if lvl:  # content of lower levels only needs to look plausible
                        t = np.asarray(Image.fromarray(t).resize((TILE, TILE), Image.Resampling.BOX))
                    yield t

        return TiledLevel(dim, dim, tiles)

    return write_pyramid(
        path, [level(lvl) for lvl in range(levels)], mpp=MPP, tile=TILE,
        compression="jpeg", compression_level=90, bigtiff=True,
    )  # fmt: skip


def raw_decode(path: Path, threads: int = 1, limit: int = 0) -> tuple[int, float]:
    """Read and decode every level-0 tile (the first ``limit``; in ``threads`` threads): (tiles, seconds).

    The tiles' colour space is passed as the tiler's reader passes it (Aperio: RGB in JPEG).
    """
    import threading

    import imagecodecs
    import tifffile

    from histobridge.slides._tiffdirect import _jpeg_args

    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        fh = tf.filehandle
        tables = page.jpegtables
        spaces = {k: v for k, v in (_jpeg_args(page) or {}).items() if k != "bitspersample"}
        segments = list(zip(page.dataoffsets, page.databytecounts, strict=True))[: limit or None]
        lock = threading.Lock()

        def work(part: list[tuple[int, int]]) -> None:
            for offset, count in part:
                with lock:
                    fh.seek(offset)
                    data = fh.read(count)
                imagecodecs.jpeg_decode(data, tables=tables, **spaces)

        t0 = time.perf_counter()
        pool = [threading.Thread(target=work, args=(segments[i::threads],)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return len(segments), time.perf_counter() - t0


def raw_decode_processes(path: Path, processes: int = 2) -> tuple[int, float]:
    """Each of ``processes`` processes decodes all level-0 tiles: no GIL at all, only the cores."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes) as ex:
        list(ex.map(_decode_some, [(str(path), 8)] * processes))  # start-up out of the timing
        t0 = time.perf_counter()
        n = sum(ex.map(_decode_some, [(str(path), 0)] * processes))
        return n, time.perf_counter() - t0


def _decode_some(args: tuple[str, int]) -> int:
    import imagecodecs
    import tifffile

    path, limit = args
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        segments = list(zip(page.dataoffsets, page.databytecounts, strict=True))[: limit or None]
        for offset, count in segments:
            tf.filehandle.seek(offset)
            imagecodecs.jpeg_decode(tf.filehandle.read(count), tables=page.jpegtables)
    return len(segments)


def naive_loop(path: Path, size: int, limit: int) -> tuple[int, float]:
    """openslide.read_region per 256-px tile, converted to RGB arrays (first ``limit`` tiles)."""
    import openslide

    slide = openslide.OpenSlide(str(path))
    n = size // TILE
    t0 = time.perf_counter()
    count = 0
    for ty in range(n):
        for tx in range(n):
            if count >= limit:
                break
            np.asarray(slide.read_region((tx * TILE, ty * TILE), 0, (TILE, TILE)).convert("RGB"))
            count += 1
    slide.close()
    return count, time.perf_counter() - t0


def _entry(path: Path):
    from histobridge.qupath.project import ImageEntry

    return ImageEntry(0, "bench", path.absolute().as_uri(), path, True)


@dataclass
class _Project:
    """The part of a Project the tiler uses: one image, one annotation over all of it."""

    images: list
    size: int | tuple[int, int]
    classes: list = field(default_factory=list)
    path: Path = Path("bench.qpproj")

    def annotations(self, entry, **_: object):
        from shapely.geometry import box

        from histobridge.qupath.annotations import Annotation, AnnotationSet

        w, h = (self.size, self.size) if isinstance(self.size, int) else self.size
        return AnnotationSet((Annotation(box(0, 0, w, h), "Tissue"),), "bench")

    def class_names(self) -> list[str]:
        return ["Tissue"]

    def select_images(self, images):
        from histobridge.qupath.project import Project

        return Project.select_images(self, images)  # type: ignore[arg-type]


def histobridge_tiler(
    path: Path,
    size: int | tuple[int, int],
    workers: int,
    out: Path,
    tile_um: float = TILE * MPP,
    tile_px: int = TILE,
    compression: str = "lz4",
    resample: str = "exact",
) -> tuple[int, float, float]:
    """(tiles, wall s, CPU s): the earlier run's store is deleted first, outside both timings."""
    from histobridge.tiling import TileSpec, TilingOptions, tile_project

    shutil.rmtree(out, ignore_errors=True)
    c0, t0 = time.process_time(), time.perf_counter()
    report = tile_project(_Project([_entry(path)], size), out, TileSpec(tile_px, tile_um),
                          TilingOptions(workers=workers, compression=compression,
                                        resample=resample))  # fmt: skip
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not report.ok:
        raise RuntimeError(report.not_done[0].reason)
    return report.tiles, seconds, cpu


def tiler_split(
    path: Path, size: int | tuple[int, int], out: Path, tile_um: float = TILE * MPP, tile_px: int = TILE,
    resample: str = "exact",
) -> dict[str, float]:  # fmt: skip
    """CPU ms per tile of each stage INSIDE one 1-worker tiler run (thread CPU time of each call).

    decode: the slide reads (JPEG tiles decoded, pieces copied); resample: the rest of reading a
    batch (Pillow, or nothing at the slide's own scale); blosc: the shard encoder; write: the shard
    files; other: everything else the process spent (planning, group files, threads, Python).
    """
    import threading

    from histobridge.slides.slide import Slide
    from histobridge.tiling import _store_write, tiler

    spent: dict[str, float] = dict.fromkeys(("decode", "batch", "blosc", "write"), 0.0)
    lock = threading.Lock()

    def timed(key, fn):
        def call(*args, **kwargs):
            c0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with lock:
                    spent[key] += time.thread_time() - c0

        return call

    saved = (tiler.read_batch, Slide._level_rect, _store_write.shard_parts, _store_write._write_parts)
    tiler.read_batch = timed("batch", saved[0])
    Slide._level_rect = timed("decode", saved[1])  # type: ignore[method-assign]
    _store_write.shard_parts = timed("blosc", saved[2])
    _store_write._write_parts = timed("write", saved[3])
    try:
        n, _, cpu = histobridge_tiler(path, size, 1, out, tile_um=tile_um, tile_px=tile_px, resample=resample)
    finally:
        tiler.read_batch, Slide._level_rect, _store_write.shard_parts, _store_write._write_parts = saved
    split = {
        "decode": spent["decode"],
        "resample": spent["batch"] - spent["decode"],
        "blosc": spent["blosc"],
        "write": spent["write"],
    }
    split["other"] = cpu - sum(split.values())
    return {k: v / n * 1e3 for k, v in split.items()}


def _print_split(split: dict[str, float]) -> None:
    total = sum(split.values())
    parts = ", ".join(f"{k} {v:.3f} ({v / total:.0%})" for k, v in split.items())
    print(f"  inside the tiler (1 worker), CPU ms per tile: {parts}; total {total:.3f}")


FUSED = "zarr.core.codec_pipeline.FusedCodecPipeline"


def store_write(tiles: np.ndarray, out: Path, how: str, threads: int) -> float:
    """Seconds to write ``tiles`` as one group: ``how`` is "encoder", "zarr" or "fused"."""
    from concurrent.futures import ThreadPoolExecutor

    import zarr

    from histobridge.tiling.store import GroupWriter

    shutil.rmtree(out, ignore_errors=True)
    n = len(tiles)
    # zarr at its best: a whole shard's chunks encoded as one batch (the default batch is 1 chunk)
    pipeline: dict[str, object] = {"codec_pipeline.batch_size": 64}
    if how == "fused":
        pipeline["codec_pipeline.path"] = FUSED
    with zarr.config.set(pipeline):
        t0 = time.perf_counter()
        w = GroupWriter(out, "1", n, tiles.shape[1], {"tile_px": tiles.shape[1], "tile_um": 128.0})
        w._direct_shards = w._direct_shards and how == "encoder"
        w.write_meta(np.zeros((n, 4)), np.zeros(n), np.zeros(n))
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda s: w.write_tiles(s, tiles[s : s + w.shard]), range(0, n, w.shard)))
        w.finish()
        return time.perf_counter() - t0


def store_only(n_tiles: int, rounds: int) -> None:
    """Throughput of the three shard writers (best of ``rounds``), relative to the hand encoder."""
    import zarr

    pool, what = _texture_pool()
    tiles = np.stack([pool[i % len(pool)] for i in range(n_tiles)])
    try:
        import importlib

        module, name = FUSED.rsplit(".", 1)
        getattr(importlib.import_module(module), name)
        hows = ["encoder", "zarr", "fused"]
    except AttributeError:
        hows = ["encoder", "zarr"]
    print(f"zarr {zarr.__version__}; {n_tiles} tiles of {TILE} px; content: {what}")
    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="hb-bench-store-"))
    best: dict[tuple[str, int], float] = {}
    try:
        for _ in range(rounds):  # interleaved, best of each: load from elsewhere hurts all alike
            for how in hows:
                for threads in (1, 2):
                    s = store_write(tiles, tmp / f"{how}{threads}.zarr", how, threads)
                    best[how, threads] = min(best.get((how, threads), float("inf")), s)
        same = all(
            (tmp / f"encoder1.zarr/1/tiles/c/{i}/0/0/0").read_bytes()
            == (tmp / f"{how}1.zarr/1/tiles/c/{i}/0/0/0").read_bytes()
            for how in hows
            for i in range(-(-n_tiles // 64))
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'writer':34s} {'threads':>7s} {'tiles/s':>9s} {'vs encoder':>10s}")
    for (how, threads), s in best.items():
        ratio = best["encoder", threads] / s
        print(f"{how:34s} {threads:7d} {n_tiles / s:9.0f} {ratio:9.2f}x")
    print(f"shards byte-identical across writers: {same}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


Timing = dict[str, tuple[int, float, float]]  # method -> (tiles, wall s, CPU s of this process)


def _timed(fn) -> tuple[int, float, float]:
    """(tiles, wall s, CPU s); a method that returns its own CPU time (the tiler) is taken at its word."""
    c0 = time.process_time()
    result = fn()
    cpu = time.process_time() - c0
    return (result[0], result[1], result[2]) if len(result) == 3 else (result[0], result[1], cpu)


def interleaved(methods: dict, rounds: int, ratios) -> list[Timing]:
    """Run every method once per round, in turn; print each round's ratios as they come."""
    out: list[Timing] = []
    for r in range(rounds):
        timing = {name: _timed(fn) for name, fn in methods.items()}
        out.append(timing)
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios(timing).items()))
    return out


def show(rounds: list[Timing], own_cpu: bool = True, skip_cpu: tuple[str, ...] = ()) -> dict[str, float]:
    """Table of the best wall time per method, with CPU ms per tile beside it; returns tiles/s."""
    print(f"  {'method':50s} {'tiles':>6s} {'wall s':>7s} {'tiles/s':>8s} {'CPU ms/tile':>11s}")
    rate: dict[str, float] = {}
    for name in rounds[0]:
        n, wall, _ = min((t[name] for t in rounds), key=lambda v: v[1])
        cpu = min(t[name][2] / t[name][0] for t in rounds)
        rate[name] = n / wall
        own = "-" if name in skip_cpu else f"{cpu * 1e3:.3f}"  # children's CPU is not ours
        print(f"  {name:50s} {n:6d} {wall:7.2f} {rate[name]:8.1f} {own:>11s}")
    return rate


def _rate(t: Timing, name: str) -> float:
    return t[name][0] / t[name][1]


def _cpu_per_tile(t: Timing, name: str) -> float:
    return t[name][2] / t[name][0]


def native_section(slide: Path, args: argparse.Namespace, tmp: Path) -> None:
    """Output tiles on the slide's own pixel grid: one output tile = one decoded source tile."""
    raw, raw2, rawp = (
        "raw decode (tifffile+imagecodecs, 1 thread)",
        "raw decode, 2 threads",
        "raw decode, 2 processes",
    )
    naive, w1, w2, w2n = (
        "naive openslide.read_region loop",
        "histobridge tiler, 1 worker",
        "histobridge tiler, 2 workers",
        "histobridge tiler, 2 workers, --compression none",
    )
    methods = {
        raw: lambda: raw_decode(slide),
        raw2: lambda: raw_decode(slide, threads=2),
        rawp: lambda: raw_decode_processes(slide, 2),
        naive: lambda: naive_loop(slide, args.size, args.naive_tiles),
        w1: lambda: histobridge_tiler(slide, args.size, 1, tmp / "w1.zarr"),
        w2: lambda: histobridge_tiler(slide, args.size, 2, tmp / "w2.zarr"),
        w2n: lambda: histobridge_tiler(slide, args.size, 2, tmp / "w2n.zarr", compression="none"),
    }

    def ratios(t: Timing) -> dict[str, float]:
        return {
            "2 workers/2 processes": _rate(t, w2) / _rate(t, rawp),
            "uncompressed": _rate(t, w2n) / _rate(t, rawp),
            "1 worker/raw": _rate(t, w1) / _rate(t, raw),
            "decode CPU/tiler CPU (1 worker)": _cpu_per_tile(t, raw) / _cpu_per_tile(t, w1),
        }

    print("native tiling (256 px at the slide's own 0.5 µm/px):")
    rate = show(interleaved(methods, args.rounds, ratios), skip_cpu=(rawp,))
    print(f"  tiler 1 worker  / raw decode:        {rate[w1] / rate[raw]:.2f}x")
    print(f"  tiler 2 workers / raw 2 processes:   {rate[w2] / rate[rawp]:.2f}x  (target >= 0.8)")
    print(f"  the same, --compression none:        {rate[w2n] / rate[rawp]:.2f}x")
    print(f"  tiler 2 workers / naive loop:        {rate[w2] / rate[naive]:.2f}x")
    print(f"  tiler 2 workers / 1 worker:          {rate[w2] / rate[w1]:.2f}x")
    print(f"  raw decode 2 threads / 1:            {rate[raw2] / rate[raw]:.2f}x")
    print(f"  raw decode 2 processes / 1:          {rate[rawp] / rate[raw]:.2f}x  (what the machine allows)")
    costs = stage_costs(slide, MPP, tmp)
    _print_stages(costs)
    print(f"  decode / sum of stages: {costs['decode'] / sum(costs.values()):.2f}x (the tiler's ceiling)")
    _print_split(tiler_split(slide, args.size, tmp / "split.zarr"))


def stage_costs(slide_path: Path, um_px: float, tmp: Path, batches: int = 8) -> dict[str, float]:
    """CPU ms per output tile of each stage of a 64-tile batch, timed alone in this thread.

    Stages: decode (the batch's source block, or its tiles in place at the native scale),
    resample (Pillow, as the tiler does it), Blosc (the store's shard encoder) and the shard file
    write. Their sum is what one worker spends per tile besides Python overhead. The batches are
    cells inside the image (cells beyond its edge would be white fill, nothing to decode).
    """
    from PIL import Image

    from histobridge.slides import open_slide
    from histobridge.tiling.store import shard_parts
    from histobridge.tiling.tiler import CELL_TILES, read_batch

    tile_l0 = TILE * um_px / MPP
    cell = int(tile_l0 * CELL_TILES)
    cost = dict.fromkeys(("decode", "resample", "blosc", "write"), 0.0)
    out = np.empty((CELL_TILES * CELL_TILES, TILE, TILE, 3), np.uint8)
    with open_slide(slide_path) as s:
        across, down = (max(1, int(d // (cell + 1))) for d in s.dimensions)
        for b in range(batches):
            x0, y0 = (b % across) * cell, (b // across % down) * cell
            coords = np.array(
                [
                    [x0 + c * tile_l0, y0 + r * tile_l0, tile_l0, tile_l0]
                    for r in range(CELL_TILES)
                    for c in range(CELL_TILES)
                ]
            )
            c0 = time.process_time()
            if um_px == MPP:
                read_batch(s, coords, TILE, tile_l0, out=out)  # decoded straight into the tiles
                cost["decode"] += time.process_time() - c0
            else:
                block = s.read_region(x0, y0, cell + 1, cell + 1)
                c1 = time.process_time()
                big = np.asarray(
                    Image.fromarray(block).resize(
                        (TILE * CELL_TILES,) * 2, Image.Resampling.BOX, box=(0, 0, cell * 1.0, cell * 1.0)
                    )
                )
                out[:] = big.reshape(CELL_TILES, TILE, CELL_TILES, TILE, 3).swapaxes(1, 2).reshape(out.shape)
                cost["decode"] += c1 - c0
                cost["resample"] += time.process_time() - c1
            c2 = time.process_time()
            parts = shard_parts(out, len(out))
            c3 = time.process_time()
            with open(tmp / "shard.bin", "wb") as fh:
                fh.writelines(parts)
            cost["write"] += time.process_time() - c3
            cost["blosc"] += c3 - c2
    n = batches * len(out)
    return {k: v / n * 1e3 for k, v in cost.items()}


def _print_stages(costs: dict[str, float]) -> None:
    total = sum(costs.values())
    parts = ", ".join(f"{k} {v:.3f} ({v / total:.0%})" for k, v in costs.items())
    print(f"  stages, CPU ms per tile (1 thread): {parts}; sum {total:.3f}")


RESAMPLED_UM_PX = 0.6  # 1.2x shrink from level 0 of the 0.5 µm/px slide


def resampled_section(slide: Path, args: argparse.Namespace, tmp: Path) -> None:
    """Output tiles of 0.6 µm/px: every tile is resampled (1.2x shrink from level 0)."""
    raw, w1, w2 = (
        "raw decode (1 thread, all level-0 tiles)",
        "histobridge tiler, 1 worker",
        "histobridge tiler, 2 workers",
    )
    um = TILE * RESAMPLED_UM_PX
    methods = {
        raw: lambda: raw_decode(slide),
        w1: lambda: histobridge_tiler(slide, args.size, 1, tmp / "r1.zarr", tile_um=um),
        w2: lambda: histobridge_tiler(slide, args.size, 2, tmp / "r2.zarr", tile_um=um),
    }

    def floor(t: Timing) -> float:
        """Decode CPU per OUTPUT tile: every source tile under the tiled area is decoded once."""
        return t[raw][2] / t[w1][0] if t[w1][0] else float("nan")

    def ratios(t: Timing) -> dict[str, float]:
        return {"tiler CPU/tile over decode floor (1 worker)": _cpu_per_tile(t, w1) / floor(t)}

    print(f"resampled tiling (256 px at {RESAMPLED_UM_PX} µm/px from 0.5 µm/px):")
    rounds = interleaved(methods, args.rounds, ratios)
    show(rounds)
    best = min(_cpu_per_tile(t, w1) / floor(t) for t in rounds)
    print(f"  decode floor: {min(floor(t) for t in rounds) * 1e3:.3f} ms CPU per output tile")
    print(f"  tiler CPU per tile / decode floor (best round): {best:.2f}x  (target <= 2)")
    costs = stage_costs(slide, RESAMPLED_UM_PX, tmp)
    _print_stages(costs)
    _print_split(tiler_split(slide, args.size, tmp / "split.zarr", tile_um=um))
    print(f"  Pillow resample / decode floor: {costs['resample'] / min(floor(t) for t in rounds) / 1e3:.2f}x")


def codecs_section(slide: Path, rounds: int) -> None:
    """Size and CPU of each way to store decoded H&E tiles, on 256 of the slide's level-0 tiles.

    lz4 and none are the store's two choices (the shard encoder itself); zstd-1 (Blosc) is the
    usual alternative; the source JPEG's own bytes are what a store could hold if it copied
    compressed tiles instead of decoding them (not offered: readers would need a JPEG codec).
    """
    import imagecodecs
    import tifffile
    from numcodecs import Blosc

    from histobridge.tiling.store import shard_parts

    with tifffile.TiffFile(slide) as tf:
        page = tf.pages[0]
        jpegs = []
        for offset, count in list(zip(page.dataoffsets, page.databytecounts, strict=True))[:256]:
            tf.filehandle.seek(offset)
            jpegs.append(tf.filehandle.read(count))
        tiles = np.stack([imagecodecs.jpeg_decode(j, tables=page.jpegtables) for j in jpegs])
    raw_bytes = tiles[0].nbytes
    zstd = Blosc(cname="zstd", clevel=1, shuffle=Blosc.NOSHUFFLE)

    def store(compression: str) -> tuple[float, float]:
        c0 = time.process_time()
        parts = [shard_parts(tiles[i : i + 64], 64, compression) for i in range(0, len(tiles), 64)]
        cpu = time.process_time() - c0
        size = sum(len(memoryview(b)) for shard in parts for b in shard[:-2])
        return size, cpu

    def zstd1() -> tuple[float, float]:
        c0 = time.process_time()
        size = sum(len(zstd.encode(t)) for t in tiles)
        return size, time.process_time() - c0

    ways = {
        "lz4 (Blosc, default)": lambda: store("lz4"),
        "none": lambda: store("none"),
        "zstd-1 (Blosc)": zstd1,
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(max(1, rounds)):
        for name, fn in ways.items():
            size, cpu = fn()
            best[name] = (size, min(cpu, best.get(name, (0, float("inf")))[1]))
    print(f"tile compression ({len(tiles)} decoded level-0 tiles, {raw_bytes // 1024} KB each):")
    print(f"  {'codec':24s} {'size':>6s} {'encode CPU ms/tile':>19s}")
    for name, (size, cpu) in best.items():
        print(f"  {name:24s} {size / len(tiles) / raw_bytes:6.3f} {cpu / len(tiles) * 1e3:19.3f}")
    jpeg = sum(len(j) for j in jpegs) / len(jpegs) / raw_bytes
    print(f"  {'source JPEG bytes':24s} {jpeg:6.3f} {'(no decode at all)':>19s}")


def _store_tiles(path: Path) -> np.ndarray:
    from histobridge.tiling.store import open_store

    return np.asarray(open_store(path).group("0").tiles[:])


def _difference(exact: Path, fast: Path) -> str:
    """Mean / p99 / max absolute difference in grey levels between two stores' tiles."""
    d = np.abs(_store_tiles(exact).astype(np.int16) - _store_tiles(fast))
    return f"mean {d.mean():.2f}, p99 {np.percentile(d, 99):.0f}, max {d.max()}"


def _floor_tiles(extent: float, tile_l0: float, source_tile: int) -> int:
    """Level-0 source tiles under the tiled area: whole output tiles from the origin, per axis."""
    covered = int(extent // tile_l0) * tile_l0
    return -(-int(np.ceil(covered)) // source_tile)


JPEG_SHRINKS = (2.0, 2.004, 2.4)  # from level 0 of an Aperio-like pyramid (levels 4x apart)


def jpeg_section(args: argparse.Namespace, tmp: Path, folder: Path) -> None:
    """``--resample fast`` against ``exact`` where the JPEG decoder's 1/2 scaling applies.

    On a pyramid whose levels are 4x apart (Aperio's usual layout) every shrink between 2x and 4x
    reads level 0. ``fast`` decodes at 1/2 where the shrink is 2x (within 0.5 %): at 2.0x the
    tiles sit on the reduced pixel lattice, at 2.004x (the sample's ratio) they do not and move by
    up to one level pixel; 2.4x stays exact (a control: the same CPU). Also the real sample slide
    at its own tiles (64 px at 1 µm/px, 2.004x). The floor is the raw decode CPU of the level-0
    tiles under the tiled area per output tile (full size, as any reader without DCT scaling).
    """
    from histobridge import datasets

    slide = folder / f"bench_{args.size}_x4.tiff"
    if not slide.exists():
        make_slide(slide.with_suffix(".partial.tiff"), args.size, levels=3, step=2).replace(slide)
    raw = "raw decode (1 thread, all level-0 tiles)"
    methods: dict = {raw: lambda: raw_decode(slide)}
    floors: dict[str, float] = {}  # config -> share of the raw decode per output tile
    stores: dict[str, Path] = {}
    configs: list[tuple[str, Path, float, int]] = []
    for shrink in JPEG_SHRINKS:
        configs.append((f"{shrink:g}x", slide, TILE * shrink * MPP, TILE))
    try:
        cmu = datasets.fetch("cmu-small-region")
    except Exception as err:
        print(f"  (sample slide unavailable: {err})")
        cmu = None
    if cmu is not None:
        methods["raw decode, sample slide"] = lambda: raw_decode(cmu)
        configs.append(("sample 64 px at 1 µm/px", cmu, SAMPLE_TILE[1], SAMPLE_TILE[0]))
    for name, path, um, px in configs:
        for mode in ("exact", "fast"):
            key = f"{name}, {mode}"
            store = stores[key] = tmp / f"j-{len(stores)}.zarr"
            methods[key] = lambda p=path, u=um, x=px, m=mode, o=store: histobridge_tiler(
                p, _dims(p), 1, o, tile_um=u, tile_px=x, resample=m
            )
    for name, path, um, px in configs:
        from histobridge.slides import open_slide

        with open_slide(path) as s:
            tile_l0, (w, h) = um / s.mpp, s.dimensions
            scale = s.dct_scale(tile_l0 / px)
        import tifffile

        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            st, total = page.tilewidth, len(page.dataoffsets)
        under = _floor_tiles(w, tile_l0, st) * _floor_tiles(h, tile_l0, st)
        floors[name] = under / total
        print(
            f"  {name}: {tile_l0 / px:.3f}x shrink, fast decodes at 1/{scale}; "
            f"{under} of {total} source tiles under the tiled area"
        )

    def floor(t: Timing, name: str) -> float:
        ref = "raw decode, sample slide" if name.startswith("sample") else raw
        return t[ref][2] * floors[name] / t[f"{name}, exact"][0]

    def ratios(t: Timing) -> dict[str, float]:
        out = {}
        for name, *_ in configs:
            for mode in ("exact", "fast"):
                out[f"{name} {mode}/floor"] = _cpu_per_tile(t, f"{name}, {mode}") / floor(t, name)
        return out

    print(
        "JPEG-scaled decoding (--resample fast) against exact, 1 worker, CPU per tile over the decode floor:"
    )
    rounds = interleaved(methods, args.rounds, ratios)
    show(rounds)
    for name, *_ in configs:
        best = {
            m: min(_cpu_per_tile(t, f"{name}, {m}") / floor(t, name) for t in rounds)
            for m in ("exact", "fast")
        }
        cpu = {m: min(_cpu_per_tile(t, f"{name}, {m}") for t in rounds) * 1e3 for m in ("exact", "fast")}
        fl = min(floor(t, name) for t in rounds) * 1e3
        print(
            f"  {name}: floor {fl:.3f} ms/tile; exact {cpu['exact']:.3f} ({best['exact']:.2f}x floor), "
            f"fast {cpu['fast']:.3f} ({best['fast']:.2f}x floor); "
            f"fast/exact CPU {cpu['fast'] / cpu['exact']:.2f}"
        )
    for name, *_ in configs:  # the last round's stores are still there
        diff = _difference(stores[f"{name}, exact"], stores[f"{name}, fast"])
        print(f"  {name}: fast - exact, grey levels: {diff}")
    name, path, um, px = configs[0]
    _print_split(tiler_split(path, _dims(path), tmp / "split.zarr", tile_um=um, tile_px=px, resample="fast"))


def _dims(path: Path) -> tuple[int, int]:
    from histobridge.slides import open_slide

    with open_slide(path) as s:
        return s.dimensions


SMALL_TILE_UM = 128.0  # 256.5 px of CMU-1-Small-Region (0.499 µm/px) -> 256 px: a 1.002x shrink


def naive_threads(
    path: Path, size: tuple[int, int], tile_l0: float, out_px: int = TILE, threads: int = 2
) -> tuple[int, float]:
    """The usual script: 2 threads of ``openslide.read_region`` per tile, resized by Pillow."""
    import threading

    import openslide
    from PIL import Image

    slide = openslide.OpenSlide(str(path))
    px = round(tile_l0)
    cols, rows = int(size[0] // tile_l0), int(size[1] // tile_l0)
    origins = [(round(c * tile_l0), round(r * tile_l0)) for r in range(rows) for c in range(cols)]

    def work(part: list[tuple[int, int]]) -> None:
        for xy in part:
            img = slide.read_region(xy, 0, (px, px)).convert("RGB")
            np.asarray(img.resize((out_px, out_px), Image.Resampling.BILINEAR) if px != out_px else img)

    t0 = time.perf_counter()
    pool = [threading.Thread(target=work, args=(origins[i::threads],)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - t0
    slide.close()
    return len(origins), seconds


SAMPLE_TILE = (64, 64.0)  # the sample project's classifier: 64 px at 1 µm/px, a 2.004x shrink


def small_section(args: argparse.Namespace, tmp: Path) -> None:
    """The real sample slide, ~100 tiles: where fixed costs and work-unit sizes show."""
    from histobridge import datasets
    from histobridge.slides import open_slide

    try:
        path = datasets.fetch("cmu-small-region")
    except Exception as err:
        print(f"small slide: skipped (sample slide unavailable: {err})")
        return
    with open_slide(path) as s:
        size, mpp = s.dimensions, s.mpp
    tile_l0 = SMALL_TILE_UM / mpp
    sample_px, sample_um = SAMPLE_TILE
    naive, w2 = "naive read_region + resize, 2 threads", "histobridge tiler, 2 workers"
    naive_s, w2_s = f"naive, {sample_px} px at 1 µm/px", f"tiler 2 workers, {sample_px} px at 1 µm/px"
    methods = {
        naive: lambda: naive_threads(path, size, tile_l0),
        w2: lambda: histobridge_tiler(path, size, 2, tmp / "s2.zarr", tile_um=SMALL_TILE_UM),
        naive_s: lambda: naive_threads(path, size, sample_um / mpp, out_px=sample_px),
        w2_s: lambda: histobridge_tiler(path, size, 2, tmp / "s3.zarr", tile_um=sample_um, tile_px=sample_px),
    }

    def ratios(t: Timing) -> dict[str, float]:
        return {
            "tiler/naive": _rate(t, w2) / _rate(t, naive),
            "sample tiles: tiler/naive": _rate(t, w2_s) / _rate(t, naive_s),
        }

    print(
        f"small slide ({path.name}, {size[0]} x {size[1]} px, {SMALL_TILE_UM:g} µm = {tile_l0:.1f} px tiles):"
    )
    rounds = interleaved(methods, max(args.rounds, 5), ratios)
    rate = show(rounds)
    print(f"  tiler 2 workers / naive 2-thread loop: {rate[w2] / rate[naive]:.2f}x  (target >= 2)")
    print(f"  the sample's {sample_px}-px tiles, tiler / naive: {rate[w2_s] / rate[naive_s]:.2f}x")
    _print_split(tiler_split(path, size, tmp / "split.zarr", tile_um=SMALL_TILE_UM))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16384, help="level-0 width = height (px)")
    ap.add_argument("--naive-tiles", type=int, default=1500, help="tiles timed for the naive loop")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the best time counts")
    ap.add_argument("--keep", type=Path, default=None, help="folder to keep the generated slide in")
    ap.add_argument("--store-only", action="store_true", help="time only the Zarr shard writers")
    ap.add_argument("--store-tiles", type=int, default=1024, help="tiles written per --store-only run")
    ap.add_argument(
        "--sections", default="native,resampled,small,jpeg,codecs", help="comma-separated sections to run"
    )
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    if args.store_only:
        store_only(args.store_tiles, args.rounds)
        return
    tmp = Path(tempfile.mkdtemp(prefix="hb-bench-"))
    try:
        folder = args.keep or tmp
        folder.mkdir(parents=True, exist_ok=True)
        slide = folder / f"bench_{args.size}.tiff"
        if sections & {"native", "resampled", "codecs"} and not slide.exists():
            t0 = time.perf_counter()
            make_slide(slide.with_suffix(".partial.tiff"), args.size).replace(slide)
            mb = slide.stat().st_size / 1e6
            print(f"generated {slide.name} ({mb:.0f} MB) in {time.perf_counter() - t0:.1f}s")
        if sections & {"native", "resampled", "codecs"}:
            raw_decode(slide)  # warm the page cache so every method reads from memory
            print(f"content: {_texture_pool()[1]}")
        print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}")
        if "native" in sections:
            native_section(slide, args, tmp)
        if "resampled" in sections:
            resampled_section(slide, args, tmp)
        if "small" in sections:
            small_section(args, tmp)
        if "jpeg" in sections:
            jpeg_section(args, tmp, folder)
        if "codecs" in sections:
            codecs_section(slide, args.rounds)
        print(
            f"load average after: {os.getloadavg()[0]:.1f} (wall ratios mean little when it exceeds the cpus)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
