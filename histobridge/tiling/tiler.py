"""Tile every annotated region of a QuPath project into the Zarr tile store.

Resumable: an image whose group is complete with the same parameters (and the same slide and
annotations) is skipped; an interrupted image only ever exists as ``<id>.partial`` and is redone.
Parallel: images run side by side and, within an image, batches of tiles are read, resampled and
written by a shared thread pool (JPEG decoding, Pillow and Blosc release the GIL). Memory is bounded
by the number of batches in flight, never by the slide size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import box

from histobridge._threads import reader_threads
from histobridge.errors import HistobridgeError, StoreError
from histobridge.qupath.project import ImageEntry, Project
from histobridge.runs import ImageOutcome, ProgressCallback, ProgressEvent, all_done, no_progress
from histobridge.slides import Slide
from histobridge.slides._tiffdirect import SharedTiles
from histobridge.slides.tissue import tissue_geometry
from histobridge.tiling.grid import TileSpec
from histobridge.tiling.options import TilingOptions
from histobridge.tiling.regions import Region, check_classes, grid_regions, read_regions
from histobridge.tiling.store import GroupWriter, open_store, shard_tiles

log = logging.getLogger(__name__)

CELL_TILES = 8  # tiles per side of the spatial cell a batch is read from (8 x 8 = one shard)


@dataclass(frozen=True)
class TiledImage:
    """One requested image: its :class:`ImageOutcome` plus how it was tiled (pixel size, time, notes)."""

    outcome: ImageOutcome
    mpp: float | None = None
    mpp_source: str | None = None
    seconds: float = 0.0
    up_to_date: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class TilingReport:
    """Per-image outcomes of one :func:`tile_project` run (``ok`` only when every image was done)."""

    store_path: Path
    details: tuple[TiledImage, ...] = field(default_factory=tuple)
    seconds: float = 0.0

    @property
    def images(self) -> tuple[ImageOutcome, ...]:
        return tuple(d.outcome for d in self.details)

    @property
    def tiles(self) -> int:
        """Tiles written by this run (images found up to date add nothing)."""
        return sum(d.outcome.count for d in self.details if d.outcome.ok and not d.up_to_date)

    @property
    def failed(self) -> tuple[ImageOutcome, ...]:
        return tuple(o for o in self.images if o.status == "failed")

    @property
    def not_done(self) -> tuple[ImageOutcome, ...]:
        """Images skipped or failed: requested work that did not happen."""
        return tuple(o for o in self.images if not o.ok)

    @property
    def ok(self) -> bool:
        return all_done(self.images)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for d in self.details for w in d.warnings)


def slide_fingerprint(path: Path) -> tuple[str, int]:
    """(sha256 of size + first and last MiB, size): cheap identity of a multi-GB slide file."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(size - (1 << 20))
            digest.update(fh.read(1 << 20))
    return digest.hexdigest(), size


def spatial_order(coords: np.ndarray, region_idx: np.ndarray, stride: float) -> np.ndarray:
    """Order tiles by region, then by 8x8-tile cell, so each batch of 64 comes from one small block."""
    if len(coords) == 0:
        return np.zeros(0, np.int64)
    cell = stride * CELL_TILES
    cx = np.floor(coords[:, 0] / cell)
    cy = np.floor(coords[:, 1] / cell)
    return np.lexsort((coords[:, 0], coords[:, 1], cx, cy, region_idx))


def read_batch(
    slide: Slide,
    coords: np.ndarray,
    tile_px: int,
    stride: float,
    out: np.ndarray | None = None,
    shared: SharedTiles | None = None,
    resample: str = "exact",
) -> np.ndarray:
    """Read tiles of one batch, one decoded block per spatial cell the batch touches.

    ``shared`` (one per image) hands decoded source tiles on a block's edge to the next batches;
    ``resample`` is :meth:`Slide.read_scaled_batch`'s (``"fast"``: JPEG DCT scaling allowed).
    """
    if out is None:
        out = np.empty((len(coords), tile_px, tile_px, 3), np.uint8)
    cell = stride * CELL_TILES
    keys = np.floor(coords[:, 0] / cell) + 1e6 * np.floor(coords[:, 1] / cell)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    if len(np.unique(keys)) == len(starts):  # each cell's tiles are contiguous (spatial order)
        for a, b in zip(starts, np.r_[starts[1:], len(keys)], strict=True):
            slide.read_scaled_batch(coords[a:b], tile_px, out=out[a:b], shared=shared, resample=resample)
        return out
    for key in np.unique(keys):
        sel = np.nonzero(keys == key)[0]
        out[sel] = slide.read_scaled_batch(coords[sel], tile_px, shared=shared, resample=resample)
    return out


_buffers = threading.local()


def _buffer(n: int, tile_px: int) -> np.ndarray:
    """A per-thread batch buffer, reused so fresh pages are not faulted in for every batch."""
    buf = getattr(_buffers, "array", None)
    if buf is None or buf.shape[1] != tile_px or buf.shape[0] < n:
        buf = np.empty((max(n, shard_tiles(tile_px)), tile_px, tile_px, 3), np.uint8)
        _buffers.array = buf
    return buf[:n]


class _Skip(Exception):
    """An image with nothing to tile, and why (reported as ``skipped``)."""


@dataclass
class _Job:
    project: Project
    entry: ImageEntry
    spec: TileSpec
    options: TilingOptions
    store_path: Path
    pool: ThreadPoolExecutor
    on_tiles: Callable[[int, int], None]  # (tiles done in this image, tiles planned)


def _matches(store_path: Path, name: str, params: dict[str, Any], slide_sha: str) -> bool:
    if not (store_path / name).is_dir():
        return False
    try:
        group = open_store(store_path).group(name)
    except HistobridgeError:
        return False
    attrs = group.attrs
    return (
        bool(attrs.get("complete")) and attrs.get("params") == params and attrs.get("slide_sha") == slide_sha
        and len(group) > 0
    )  # fmt: skip


def _regions_sha(regions: Sequence[Region]) -> str:
    digest = hashlib.sha256()
    for r in regions:
        digest.update(r.geometry.wkb)
        digest.update(repr((r.path_class, r.region_id, r.name)).encode())
    return digest.hexdigest()


def _open(job: _Job) -> Slide:
    opts = job.options
    return job.entry.open_slide(mpp=opts.mpp_override, fill_mpp=opts.mpp)


def _calibration_notes(job: _Job, slide: Slide, tile_l0: float) -> list[str]:
    """Warnings about the pixel size: an override that replaced a known value, heavy upsampling."""
    label, notes = _label(job.entry), []
    own = job.entry.mpp_override if job.entry.mpp_override is not None else slide.recorded_mpp
    if job.options.mpp_override is not None and own is not None and own != slide.mpp:
        where = "project" if job.entry.mpp_override is not None else "slide"
        notes.append(f"{label}: pixel size {own:.4g} µm/px ({where}) overridden with {slide.mpp:.4g}")
    upsample = job.spec.tile_px / tile_l0
    if upsample > job.options.max_upsample:
        notes.append(
            f"{label}: tiles are upsampled {upsample:.3g}x ({job.spec.tile_px} px over "
            f"{job.spec.tile_um:g} µm at {slide.mpp:.4g} µm/px is {tile_l0:.4g} slide px each); "
            "they hold no detail the slide lacks"
        )
    return notes


def _label(entry: ImageEntry) -> str:
    return f"image {entry.entry_id} ({entry.name!r})"


def _regions_or_skip(job: _Job, slide: Slide) -> tuple[list[Region], list[str]]:
    plan = read_regions(job.project, job.entry, job.options.region_options(), lambda: tissue_geometry(slide))
    w, h = slide.dimensions
    inside = [r for r in plan.regions if r.geometry.intersects(box(0, 0, w, h))]
    if inside:
        return inside, list(plan.class_names)
    raise _Skip(plan.reason or f"the annotations lie outside the image ({w} x {h} px)")


def _no_tile_reason(job: _Job, regions: Sequence[Region], tile_l0: float) -> str:
    largest = max(regions, key=lambda r: r.geometry.area)
    x0, y0, x1, y1 = largest.geometry.bounds
    return (
        f"no {tile_l0:.4g}-px tile ({job.spec.tile_um:g} µm) is {job.spec.min_coverage:.0%} inside the "
        f"annotations (the largest spans {x1 - x0:.0f} x {y1 - y0:.0f} px); use smaller tiles or a lower "
        "minimum coverage"
    )


def _tile_image(job: _Job) -> TiledImage:
    entry = job.entry
    name, entry_id = entry.name, entry.entry_id
    t0 = time.perf_counter()
    if not entry.found or entry.path is None:
        reason = entry.problem or "slide file not found"
        return TiledImage(ImageOutcome(entry_id, name, "skipped", reason=reason))
    with _open(job) as slide:
        mpp, source = slide.mpp, slide.mpp_source
        tile_l0, stride_l0 = job.spec.level0(mpp)
        notes = tuple(_calibration_notes(job, slide, tile_l0))

        def record(outcome: ImageOutcome, up_to_date: bool = False) -> TiledImage:
            return TiledImage(outcome, mpp, source, time.perf_counter() - t0, up_to_date, notes)

        try:
            regions, class_names = _regions_or_skip(job, slide)
        except _Skip as why:
            return record(ImageOutcome(entry_id, name, "skipped", reason=str(why)))
        jpeg_scale = _jpeg_scale(job, slide, tile_l0)
        params = _params(job, slide, regions, class_names, jpeg_scale)
        slide_sha, slide_size = slide_fingerprint(Path(slide.path))
        if _matches(job.store_path, str(entry_id), params, slide_sha):
            count = _count(job.store_path, str(entry_id))
            return record(ImageOutcome(entry_id, name, "done", count, "up to date"), up_to_date=True)
        coords, labels, region_idx = grid_regions(
            regions,
            class_names,
            tile_l0,
            stride_l0,
            job.spec.min_coverage,
            slide,
            max_tiles=job.options.max_tiles,
        )
        if len(coords) == 0:  # the store keeps whatever it held: a run that made nothing replaces nothing
            return record(
                ImageOutcome(entry_id, name, "skipped", reason=_no_tile_reason(job, regions, tile_l0))
            )
        order = spatial_order(coords, region_idx, stride_l0)
        coords, labels, region_idx = coords[order], labels[order], region_idx[order]
        attrs = {
            "slide_path": str(slide.path), "entry_id": str(entry_id), "entry_name": name, "mpp": mpp,
            "mpp_source": source, "tile_px": job.spec.tile_px, "tile_um": job.spec.tile_um,
            "classes": class_names, "histobridge_version": _version(), "params": params,
            "backend": slide.backend, "regions": [r.record() for r in regions], "slide_sha": slide_sha,
            "slide_size": slide_size, "tile_l0_px": tile_l0, "stride_l0_px": stride_l0,
            "level": slide.best_level(tile_l0 / job.spec.tile_px), "compression": job.options.compression,
            "resample": job.options.resample, "jpeg_scale": jpeg_scale,
        }  # fmt: skip
        _write_group(job, slide, attrs, coords, labels, region_idx, stride_l0)
    return record(ImageOutcome(entry_id, name, "done", len(coords)))


def _write_group(
    job: _Job, slide: Slide, attrs: dict[str, Any], coords: np.ndarray, labels: np.ndarray,
    region_idx: np.ndarray, stride_l0: float,
) -> None:  # fmt: skip
    """Write one image's group; a write the file system refuses becomes one :class:`StoreError`."""
    try:
        writer = GroupWriter(
            job.store_path,
            str(job.entry.entry_id),
            len(coords),
            job.spec.tile_px,
            attrs,
            replace=job.options.replace,
            compression=job.options.compression,
        )
    except HistobridgeError:
        raise
    except OSError as err:
        raise _store_error(job.store_path, err) from err
    try:
        writer.write_meta(coords, labels, region_idx)
        _write_tiles(job, slide, writer, coords, stride_l0)
        writer.commit()
    except HistobridgeError:
        _abort(writer)  # a clean failure (unreadable tiles...): leave nothing behind
        raise
    except OSError as err:
        _abort(writer)
        raise _store_error(job.store_path, err) from err
    except BaseException:
        log.warning(
            "tiling of %s (%s) interrupted; its partial group will be redone", job.entry.name, slide.path
        )
        writer.close()  # release the group's lock; the next run clears the partial group
        raise


def _abort(writer: GroupWriter) -> None:
    try:
        writer.abort()
    except OSError as err:  # the store refuses even deletion (read-only): the rerun will replace it
        log.debug("cannot remove %s/%s.partial: %s", writer.store_path, writer.name, err)


class _StoreWriteError(StoreError):
    """The file system refused a write to the store: every later image would fail the same way."""


def _store_error(store: Path, err: OSError) -> StoreError:
    what = err.strerror or str(err)
    where = f" ({err.filename})" if err.filename else ""
    return _StoreWriteError(f"{store}: cannot write the tile store: {what}{where}")


def _jpeg_scale(job: _Job, slide: Slide, tile_l0: float) -> int:
    """The JPEG decoder's reduction the tiles are read at: 1 unless ``resample="fast"`` could use one."""
    if job.options.resample != "fast":
        return 1
    return slide.dct_scale(tile_l0 / job.spec.tile_px)


def _params(
    job: _Job, slide: Slide, regions: Sequence[Region], class_names: list[str], jpeg_scale: int
) -> dict[str, Any]:
    """Everything that decides a group's content: a rerun with equal params can skip the image.

    The resampling mode counts only where it changes pixels (``fast`` on a JPEG level shrunk 2x or
    more: ``jpeg_scale`` > 1), so groups made before the option existed, or where ``fast`` equals
    ``exact``, stay valid.
    """
    spec, opts = job.spec, job.options
    params = {
        "tile_px": spec.tile_px, "tile_um": spec.tile_um, "stride_px": spec.stride_px,
        "min_coverage": spec.min_coverage, "tissue": opts.tissue, "whole_tissue": opts.whole_tissue,
        "classes": class_names, "mpp": slide.mpp, "offset": list(slide.offset),
        "dimensions": list(slide.dimensions), "regions_sha": _regions_sha(regions),
    }  # fmt: skip
    if jpeg_scale > 1:
        params["resample"] = f"fast-jpeg-1/{jpeg_scale}"
    return params


MIN_UNIT_TILES = 8  # below this a work unit costs more in overhead than it gains in parallelism


def work_units(n: int, shard: int, workers: int) -> list[tuple[int, int]]:
    """(start, stop) read units: whole shards, or shards cut so every worker gets at least 2 units.

    Units never straddle a shard, so the store still writes whole shards; small images (one or
    two shards) are split across the workers instead of leaving all but one idle.
    """
    want = max(MIN_UNIT_TILES, -(-n // (2 * max(1, workers))))
    step = -(-want // CELL_TILES) * CELL_TILES  # whole rows of a spatial cell: fewer tiles decoded twice
    if step >= shard:
        return [(a, min(a + shard, n)) for a in range(0, n, shard)]
    return [
        (a, min(a + step, s + shard, n))
        for s in range(0, n, shard)
        for a in range(s, min(s + shard, n), step)
    ]


class _Shard:
    """One shard, filled by one or more read units; the unit that completes it writes it."""

    def __init__(self, start: int, stop: int, parts: int, tile_px: int) -> None:
        self.start, self.stop, self.remaining, self.tile_px = start, stop, parts, tile_px
        # A shard read in one unit uses its thread's reusable buffer; a shared one needs its own.
        self.shared = None if parts == 1 else np.empty((stop - start, tile_px, tile_px, 3), np.uint8)
        self.lock = threading.Lock()

    def buffer(self) -> np.ndarray:
        return _buffer(self.stop - self.start, self.tile_px) if self.shared is None else self.shared

    def part_done(self) -> bool:
        with self.lock:
            self.remaining -= 1
            return self.remaining == 0


def _write_tiles(job: _Job, slide: Slide, writer: GroupWriter, coords: np.ndarray, stride: float) -> None:
    """Read units on the shared pool (at most two per worker in flight); write each shard once complete."""
    tile_px = job.spec.tile_px
    workers = reader_threads(job.options.workers)
    units = work_units(len(coords), writer.shard, workers)
    parts = Counter(a // writer.shard for a, _ in units)
    shards = {
        k: _Shard(k * writer.shard, min((k + 1) * writer.shard, len(coords)), n, tile_px)
        for k, n in parts.items()
    }
    done = 0
    shared = SharedTiles()  # source tiles on batch edges, decoded once for both neighbours

    def unit(a: int, b: int) -> int:
        shard = shards[a // writer.shard]
        tiles = shard.buffer()
        part = tiles[a - shard.start : b - shard.start]
        read_batch(
            slide, coords[a:b], tile_px, stride, out=part, shared=shared, resample=job.options.resample
        )
        if not shard.part_done():
            return 0
        writer.write_tiles(shard.start, tiles)
        shard.shared = None  # a small image's split shards hold memory only until written
        return shard.stop - shard.start

    def finished(futures: set[Future[int]]) -> None:
        nonlocal done
        for f in futures:
            done += f.result()
        job.on_tiles(done, len(coords))

    job.on_tiles(0, len(coords))
    pending: set[Future[int]] = set()
    try:
        for a, b in units:
            if len(pending) >= 2 * workers:
                ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                finished(ready)
            pending.add(job.pool.submit(unit, a, b))
        while pending:
            ready, pending = wait(pending, return_when=FIRST_COMPLETED)
            finished(ready)
    finally:  # on failure: stop queued batches and let running ones end before the caller cleans up
        for f in pending:
            f.cancel()
        wait(pending)


def _count(store_path: Path, name: str) -> int:
    return len(open_store(store_path).group(name))


def _version() -> str:
    from histobridge import __version__

    return __version__


def tile_project(
    project: Project,
    store_path: str | os.PathLike[str],
    spec: TileSpec,
    options: TilingOptions | None = None,
    *,
    images: Iterable[str | int] | None = None,
    progress: ProgressCallback | None = None,
) -> TilingReport:
    """Tile the project's annotated regions (or tissue) of each image into the Zarr store.

    One image's failure (missing slide, unknown pixel size, unreadable tiles) is reported in the
    returned :class:`TilingReport` and does not stop the others; a store the file system refuses
    to write stops the run with one :class:`StoreError`. ``progress`` receives ``"images"`` and
    ``"tiles"`` events, one call at a time (the tiler serialises them across its threads).
    """
    opts = options or TilingOptions()
    store = Path(store_path)
    entries = project.select_images(list(images) if images is not None else None)
    if opts.classes:
        check_classes(project, entries, opts.classes)
    report = _serialised(progress or no_progress)
    t0 = time.perf_counter()
    report(ProgressEvent("images", 0, len(entries)))
    results: dict[int, TiledImage] = {}
    workers = reader_threads(opts.workers)  # never more readers than the cores granted
    with ThreadPoolExecutor(workers, "hb-tiles") as pool:

        def run(i: int, entry: ImageEntry) -> None:
            def on_tiles(done: int, total: int) -> None:
                report(ProgressEvent("tiles", done, total, item=entry.name))

            t = time.perf_counter()
            try:
                results[i] = _tile_image(_Job(project, entry, spec, opts, store, pool, on_tiles))
            except _StoreWriteError:
                raise
            except HistobridgeError as err:
                outcome = ImageOutcome(entry.entry_id, entry.name, "failed", reason=str(err))
                results[i] = TiledImage(outcome, seconds=time.perf_counter() - t)
            out = results[i].outcome
            report(ProgressEvent("images", len(results), len(entries), item=entry.name, message=out.status))

        with ThreadPoolExecutor(min(workers, max(1, len(entries))), "hb-images") as outer:
            futures = [outer.submit(run, i, e) for i, e in enumerate(entries)]
            try:
                for f in futures:
                    f.result()
            finally:
                for f in futures:
                    f.cancel()
    details = tuple(results[i] for i in range(len(entries)))
    return TilingReport(store, details, time.perf_counter() - t0)


def _serialised(callback: ProgressCallback) -> ProgressCallback:
    lock = threading.Lock()

    def call(event: ProgressEvent) -> None:
        with lock:
            callback(event)

    return call
