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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from histobridge.errors import HistobridgeError
from histobridge.tiling.grid import TileSpec
from histobridge.tiling.regions import Region, collect_regions, grid_regions
from histobridge.tiling.store import GroupWriter, open_store, shard_tiles

log = logging.getLogger(__name__)

CELL_TILES = 8  # tiles per side of the spatial cell a batch is read from (8 x 8 = one shard)


@dataclass(frozen=True)
class ImageTiling:
    """What happened to one image entry."""

    entry_id: str
    name: str
    status: str  # "written", "up-to-date", "skipped" or "failed"
    tiles: int = 0
    reason: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class TilingReport:
    """Per-image outcomes of one :func:`tile_project` run."""

    store_path: Path
    images: tuple[ImageTiling, ...] = field(default_factory=tuple)
    seconds: float = 0.0

    @property
    def tiles(self) -> int:
        return sum(i.tiles for i in self.images if i.status == "written")

    @property
    def failed(self) -> tuple[ImageTiling, ...]:
        return tuple(i for i in self.images if i.status == "failed")


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
    slide: Any, coords: np.ndarray, tile_px: int, stride: float, out: np.ndarray | None = None
) -> np.ndarray:
    """Read tiles of one batch, one decoded block per spatial cell the batch touches."""
    if out is None:
        out = np.empty((len(coords), tile_px, tile_px, 3), np.uint8)
    cell = stride * CELL_TILES
    keys = np.floor(coords[:, 0] / cell) + 1e6 * np.floor(coords[:, 1] / cell)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    if len(np.unique(keys)) == len(starts):  # each cell's tiles are contiguous (spatial order)
        for a, b in zip(starts, np.r_[starts[1:], len(keys)], strict=True):
            slide.read_scaled_batch(coords[a:b], tile_px, out=out[a:b])
        return out
    for key in np.unique(keys):
        sel = np.nonzero(keys == key)[0]
        out[sel] = slide.read_scaled_batch(coords[sel], tile_px)
    return out


_buffers = threading.local()


def _buffer(n: int, tile_px: int) -> np.ndarray:
    """A per-thread batch buffer, reused so fresh pages are not faulted in for every batch."""
    buf = getattr(_buffers, "array", None)
    if buf is None or buf.shape[1] != tile_px or buf.shape[0] < n:
        buf = np.empty((max(n, shard_tiles(tile_px)), tile_px, tile_px, 3), np.uint8)
        _buffers.array = buf
    return buf[:n]


@dataclass
class _Job:
    entry: Any
    spec: TileSpec
    store_path: Path
    options: dict[str, Any]
    pool: ThreadPoolExecutor
    workers: int
    on_tiles: Callable[[int], None]


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
    )


def _regions_sha(regions: Sequence[Region]) -> str:
    digest = hashlib.sha256()
    for r in regions:
        digest.update(r.geometry.wkb)
        digest.update(repr((r.path_class, r.region_id, r.name)).encode())
    return digest.hexdigest()


def _tile_image(job: _Job) -> ImageTiling:
    entry, opts = job.entry, job.options
    name, entry_id = str(getattr(entry, "name", entry.entry_id)), str(entry.entry_id)
    t0 = time.perf_counter()
    if not getattr(entry, "found", True) or getattr(entry, "path", None) is None:
        reason = getattr(entry, "problem", None) or "slide file not found"
        return ImageTiling(entry_id, name, "skipped", reason=reason)
    with entry.open_slide(mpp=opts["mpp"]) as slide:
        regions, class_names = collect_regions(
            opts["project"], entry, slide, classes=opts["classes"],
            tissue=opts["tissue"], whole_tissue=opts["whole_tissue"],
        )  # fmt: skip
        if not regions:
            hint = "" if opts["whole_tissue"] else " (use whole-tissue mode to tile tissue)"
            return ImageTiling(entry_id, name, "skipped", reason="no annotations" + hint,
                               seconds=time.perf_counter() - t0)  # fmt: skip
        params = _params(job, slide, regions, class_names)
        slide_sha, slide_size = slide_fingerprint(Path(slide.path))
        if _matches(job.store_path, entry_id, params, slide_sha):
            return ImageTiling(entry_id, name, "up-to-date", tiles=_count(job.store_path, entry_id))
        tile_l0, stride_l0 = job.spec.level0(slide.mpp)
        coords, labels, region_idx = grid_regions(
            regions, class_names, tile_l0, stride_l0, job.spec.min_coverage, slide
        )
        order = spatial_order(coords, region_idx, stride_l0)
        coords, labels, region_idx = coords[order], labels[order], region_idx[order]
        attrs = {
            "slide_path": str(slide.path), "entry_id": entry_id, "entry_name": name, "mpp": slide.mpp,
            "tile_px": job.spec.tile_px, "tile_um": job.spec.tile_um, "classes": class_names,
            "histobridge_version": _version(), "params": params, "backend": slide.backend,
            "regions": [r.record() for r in regions], "slide_sha": slide_sha, "slide_size": slide_size,
            "tile_l0_px": tile_l0, "stride_l0_px": stride_l0,
            "level": slide.best_level(tile_l0 / job.spec.tile_px),
        }  # fmt: skip
        writer = GroupWriter(job.store_path, entry_id, len(coords), job.spec.tile_px, attrs)
        try:
            writer.write_meta(coords, labels, region_idx)
            _write_tiles(job, slide, writer, coords, stride_l0)
            writer.finish()
        except HistobridgeError:
            writer.abort()  # a clean failure (unreadable tiles...): leave nothing behind
            raise
        except BaseException:
            log.warning("tiling of %s (%s) interrupted; its partial group will be redone", name, slide.path)
            writer.close()  # release the group's lock; the next run clears the partial group
            raise
    return ImageTiling(entry_id, name, "written", tiles=len(coords), seconds=time.perf_counter() - t0)


def _params(job: _Job, slide: Any, regions: Sequence[Region], class_names: list[str]) -> dict[str, Any]:
    """Everything that decides a group's content: a rerun with equal params can skip the image."""
    spec, opts = job.spec, job.options
    return {
        "tile_px": spec.tile_px, "tile_um": spec.tile_um, "stride_px": spec.stride_px,
        "min_coverage": spec.min_coverage, "tissue": opts["tissue"], "whole_tissue": opts["whole_tissue"],
        "classes": class_names, "mpp": slide.mpp, "offset": list(slide.offset),
        "dimensions": list(slide.dimensions), "regions_sha": _regions_sha(regions),
    }  # fmt: skip


def _write_tiles(job: _Job, slide: Any, writer: GroupWriter, coords: np.ndarray, stride: float) -> None:
    """Read and write shard-sized batches on the shared pool, at most two per worker in flight."""
    tile_px = job.spec.tile_px

    def unit(start: int) -> int:
        stop = min(start + writer.shard, len(coords))
        batch = read_batch(slide, coords[start:stop], tile_px, stride, out=_buffer(stop - start, tile_px))
        writer.write_tiles(start, batch)
        return stop - start

    pending: set[Future[int]] = set()
    try:
        for start in range(0, len(coords), writer.shard):
            if len(pending) >= 2 * job.workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    job.on_tiles(f.result())
            pending.add(job.pool.submit(unit, start))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                job.on_tiles(f.result())
    finally:  # on failure: stop queued batches and let running ones end before the caller cleans up
        for f in pending:
            f.cancel()
        wait(pending)


def _count(store_path: Path, name: str) -> int:
    return len(open_store(store_path).group(name))


def _version() -> str:
    from histobridge import __version__

    return __version__


def _select(entries: Sequence[Any], images: Iterable[str | int] | None) -> list[Any]:
    if images is None:
        return list(entries)
    wanted = {str(i) for i in images}
    chosen = [e for e in entries if str(e.entry_id) in wanted or str(e.name) in wanted]
    known = {str(e.entry_id) for e in chosen} | {str(e.name) for e in chosen}
    missing = sorted(wanted - known)
    if missing:
        from histobridge.errors import InputError

        raise InputError(f"no image entry with id or name {', '.join(missing)} in the project")
    return chosen


class _Progress:
    """A rich progress bar over images and tiles, or nothing."""

    def __init__(self, enabled: bool, n_images: int) -> None:
        self._lock = threading.Lock()
        self._bar: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=False,
        )  # fmt: skip
        self._images = self._bar.add_task("images", total=n_images)
        self._tiles = self._bar.add_task("tiles", total=None)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def tiles(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.advance(self._tiles, n)

    def image(self) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.advance(self._images, 1)


def tile_project(
    project: Any,
    store_path: str | os.PathLike[str],
    spec: TileSpec,
    *,
    images: Iterable[str | int] | None = None,
    classes: Sequence[str] | None = None,
    tissue: bool = False,
    whole_tissue: bool = False,
    workers: int = 2,
    mpp: float | None = None,
    progress: bool = True,
) -> TilingReport:
    """Tile the project's annotated regions (or tissue) of each image into the Zarr store.

    One image's failure (missing slide, unknown pixel size, unreadable tiles) is reported in the
    returned :class:`TilingReport` and does not stop the others.
    """
    store = Path(store_path)
    store.mkdir(parents=True, exist_ok=True)
    entries = _select(project.images, images)
    workers = max(1, int(workers))
    opts = {"project": project, "classes": list(classes) if classes else None, "tissue": tissue,
            "whole_tissue": whole_tissue, "mpp": mpp}  # fmt: skip
    t0 = time.perf_counter()
    results: dict[int, ImageTiling] = {}
    with _Progress(progress, len(entries)) as bar, ThreadPoolExecutor(workers, "hb-tiles") as pool:

        def run(i: int, entry: Any) -> None:
            job = _Job(entry, spec, store, opts, pool, workers, bar.tiles)
            t = time.perf_counter()
            try:
                results[i] = _tile_image(job)
            except HistobridgeError as err:
                log.warning("image %s failed: %s", getattr(entry, "name", entry.entry_id), err)
                results[i] = ImageTiling(str(entry.entry_id), str(entry.name), "failed", reason=str(err),
                                         seconds=time.perf_counter() - t)  # fmt: skip
            bar.image()

        with ThreadPoolExecutor(min(workers, max(1, len(entries))), "hb-images") as outer:
            futures = [outer.submit(run, i, e) for i, e in enumerate(entries)]
            for f in futures:
                f.result()
    report = tuple(results[i] for i in range(len(entries)))
    return TilingReport(store, report, time.perf_counter() - t0)
