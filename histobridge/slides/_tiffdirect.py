"""Direct decoding of tiled TIFF levels: read the compressed tiles and decode them ourselves.

Why: going through tiffslide's zarr layer costs Python overhead per chunk, while tifffile's
per-page decoder (imagecodecs; releases the GIL) plus ``os.pread`` on a private file descriptor is
both faster and safe to call from many threads at once. Only plain levels qualify (one page, tiled,
8-bit, 3 contiguous samples); anything else falls back to tiffslide's own reader.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SHARED_BYTES = 96 << 20  # decoded source tiles kept for neighbouring batches (~500 tiles of 256 px)


class SharedTiles:
    """Decoded source tiles on the edges of batches, kept for the neighbouring batches (thread-safe).

    A batch decodes every source tile its block touches; the tiles on the block's edge are touched
    again by the batches beside and below it (a 1.2x shrink decodes ~30 % of its tiles twice, a
    ~100-tile slide read in small units ~20 %). Bounded: least recently used tiles go first.
    """

    def __init__(self, max_bytes: int = SHARED_BYTES) -> None:
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[tuple[int, ...], np.ndarray | None] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: tuple[int, ...]) -> tuple[bool, np.ndarray | None]:
        """(found, tile): a found tile may be None (an empty tile of the file)."""
        with self._lock:
            if key not in self._tiles:
                return False, None
            self._tiles.move_to_end(key)
            self.hits += 1
            return True, self._tiles[key]

    def put(self, key: tuple[int, ...], tile: np.ndarray | None) -> None:
        size = 0 if tile is None else tile.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._tiles:
                return
            self._tiles[key] = tile
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._tiles.popitem(last=False)
                self._bytes -= 0 if old is None else old.nbytes


class TileCache(dict[tuple[int, int], "np.ndarray | None"]):
    """Decoded source tiles of one batch; with ``shared``, edge tiles also come from and go to it.

    ``scale`` is the JPEG decoder's reduction the tiles were decoded at (1: full size).
    """

    def __init__(self, shared: SharedTiles | None = None, level: int = 0, scale: int = 1) -> None:
        super().__init__()
        self.shared, self.level, self.scale = shared, level, scale


JPEG_SCALES = (2, 4, 8)  # reductions libjpeg's scaled IDCT gives (1/2, 1/4, 1/8)


class TiledLevelReader:
    """Read arbitrary rectangles of one tiled TIFF page by decoding only the tiles they touch.

    JPEG pages can also be read at 1/2, 1/4 or 1/8 of their size (``scale``): the decoder's scaled
    IDCT makes each smaller tile straight from the compressed one (see :func:`decode_scaled`).
    """

    def __init__(self, page: Any, path: Path) -> None:
        self.width = int(page.imagewidth)
        self.height = int(page.imagelength)
        self.tile_w = int(page.tilewidth)
        self.tile_h = int(page.tilelength)
        self.tiles_across = -(-self.width // self.tile_w)
        self.offsets = tuple(int(v) for v in page.dataoffsets)
        self.counts = tuple(int(v) for v in page.databytecounts)
        self.jpegtables = page.jpegtables
        self._decode = page.decode
        self._jpeg = _jpeg_args(page)
        self.jpeg_mode = _pillow_jpeg_mode(self._jpeg)
        self._fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._lock = None if hasattr(os, "pread") else threading.Lock()

    def scales(self) -> tuple[int, ...]:
        """The reductions this level can be decoded at besides 1 (JPEG tiles that divide evenly)."""
        if self.jpeg_mode is None or not _pillow_decodes_jpeg():
            return ()
        return tuple(k for k in JPEG_SCALES if self.tile_w % k == 0 and self.tile_h % k == 0)

    def size(self, scale: int = 1) -> tuple[int, int]:
        """(width, height) at ``scale``: whole reduced pixels only (a last partial one is left out)."""
        return self.width // scale, self.height // scale

    def _read_bytes(self, index: int) -> bytes | None:
        count = self.counts[index]
        if count == 0:
            return None
        if self._lock is None:
            return os.pread(self._fd, count, self.offsets[index])
        with self._lock:  # pragma: no cover - platforms without pread
            os.lseek(self._fd, self.offsets[index], os.SEEK_SET)
            return os.read(self._fd, count)

    def tile(self, tx: int, ty: int, out: np.ndarray | None = None, scale: int = 1) -> np.ndarray | None:
        """Decode one source tile as (tile_h, tile_w, 3) uint8 / ``scale`` (into ``out``); None if empty."""
        index = ty * self.tiles_across + tx
        data = self._read_bytes(index)
        if data is None:
            return None
        if scale != 1:
            if self.jpeg_mode is None or scale not in self.scales():
                raise ValueError(f"level cannot be decoded at 1/{scale}")
            size = (self.tile_w // scale, self.tile_h // scale)
            scaled = decode_scaled(data, self.jpegtables, self.jpeg_mode, scale, size)
            if out is not None:
                out[...] = scaled
                return out
            return scaled
        if self._jpeg is not None:
            import imagecodecs

            decoded: np.ndarray = imagecodecs.jpeg_decode(data, tables=self.jpegtables, out=out, **self._jpeg)
            return decoded
        raw, _, _ = self._decode(data, index, jpegtables=self.jpegtables)
        arr: np.ndarray = np.asarray(raw)
        arr = arr.reshape(arr.shape[-3], arr.shape[-2], arr.shape[-1])
        if out is not None:
            out[...] = arr
            return out
        return arr

    def read(
        self, x: int, y: int, w: int, h: int, out: np.ndarray | None = None, cache: TileCache | None = None,
        scale: int = 1,
    ) -> np.ndarray:  # fmt: skip
        """Rectangle in level pixels (inside the level) as (h, w, 3) uint8, written into ``out`` if given.

        With ``scale`` > 1 the coordinates are those of the level reduced ``scale`` times (see
        :meth:`size`). ``cache`` (a dict shared by the calls of one batch, made for this ``scale``)
        keeps decoded tiles that several requested rectangles share; a rectangle that is exactly
        one tile is decoded in place.
        """
        if out is None:
            out = np.empty((h, w, 3), np.uint8)
        if w <= 0 or h <= 0:
            return out
        tw, th = self.tile_w // scale, self.tile_h // scale
        width, height = self.size(scale)
        if (
            x % tw == 0 and y % th == 0 and w == tw and h == th
            and x + w <= width and y + h <= height and out.flags.c_contiguous
        ):  # fmt: skip
            key = (x // tw, y // th)
            hit = cache.get(key) if cache is not None else None
            if hit is not None:
                out[...] = hit
            elif self.tile(*key, out=out, scale=scale) is None:
                out.fill(255)
            return out
        for ty in range(y // th, (y + h - 1) // th + 1):
            for tx in range(x // tw, (x + w - 1) // tw + 1):
                x0, y0 = tx * tw, ty * th
                inside = x <= x0 and x0 + tw <= x + w and y <= y0 and y0 + th <= y + h
                tile = self._cached_tile(tx, ty, cache, edge=not inside, scale=scale)
                sx0, sy0 = max(x, x0), max(y, y0)
                sx1, sy1 = min(x + w, x0 + tw, width), min(y + h, y0 + th, height)
                dst = out[sy0 - y : sy1 - y, sx0 - x : sx1 - x]
                if tile is None:
                    dst.fill(255)
                else:
                    dst[...] = tile[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0, :3]
        return out

    def _cached_tile(
        self, tx: int, ty: int, cache: TileCache | None, edge: bool = False, scale: int = 1
    ) -> np.ndarray | None:
        if cache is None:
            return self.tile(tx, ty, scale=scale)
        key = (tx, ty)
        if key not in cache:
            shared = cache.shared if edge and isinstance(cache, TileCache) else None
            shared_key = (cache.level, scale, tx, ty) if isinstance(cache, TileCache) else ()
            found, tile = shared.get(shared_key) if shared is not None else (False, None)
            if not found:
                tile = self.tile(tx, ty, scale=scale)
                if shared is not None:
                    shared.put(shared_key, tile)
            cache[key] = tile
        hit: np.ndarray | None = cache[key]
        return hit

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def decode_scaled(
    data: bytes, tables: bytes | None, jpeg_mode: str, scale: int, size: tuple[int, int]
) -> np.ndarray:
    """One JPEG tile decoded at 1/``scale`` by libjpeg's scaled IDCT (through Pillow's decoder).

    Why Pillow: imagecodecs does not expose libjpeg's scaling. The TIFF's shared JPEGTables are
    spliced in front of the tile's stream (both are JPEG streams: tables without EOI + tile without
    SOI), and the colour space the TIFF declares is forced (``jpeg_mode``), as for the full-size
    decoder: Aperio stores RGB in JPEG without a marker saying so. Accurate IDCT and smooth chroma
    upsampling stay on (Pillow's ``draft`` would switch both off).
    """
    from PIL import Image

    stream = tables[:-2] + data[2:] if tables else data
    w, h = size
    image = Image.new("RGB", (w, h))
    decoder = Image._getdecoder("RGB", "jpeg", ("RGB", jpeg_mode, scale, 0))
    try:
        decoder.setimage(image.im, (0, 0, w, h))
        consumed, status = decoder.decode(stream)
    finally:
        decoder.cleanup()
    if status < 0 or consumed >= 0:  # an error, or the decoder is still waiting for data
        raise ValueError(f"JPEG tile truncated or corrupt (decoder status {status})")
    return np.asarray(image)


@functools.cache
def _pillow_decodes_jpeg() -> bool:
    """Pillow's decoder entry point (private, so checked) and its JPEG codec are there."""
    from PIL import Image, features

    return hasattr(Image, "_getdecoder") and bool(features.check_codec("jpg"))


def _pillow_jpeg_mode(args: dict[str, Any] | None) -> str | None:
    """Pillow's name for the tiles' JPEG colour space ("" = as the stream says); None: not scalable."""
    if args is None or args.get("outcolorspace") not in (2, "RGB"):
        return None
    return {None: "", 2: "RGB", 3: "YCbCr", "RGB": "RGB", "YCBCR": "YCbCr"}.get(args.get("colorspace"))


def _jpeg_args(page: Any) -> dict[str, Any] | None:
    """imagecodecs.jpeg_decode arguments for plain 8-bit JPEG tiles (None: use tifffile's decoder)."""
    try:
        if int(page.compression) != 7 or getattr(page, "jpegheader", None) is not None:
            return None
        from tifffile.tifffile import jpeg_decode_colorspace

        colorspace, outcolorspace = jpeg_decode_colorspace(
            page.photometric, page.planarconfig, page.extrasamples, page.is_jfif
        )
        return {"colorspace": colorspace, "outcolorspace": outcolorspace, "bitspersample": 8}
    except Exception:  # private helper moved or odd tags: the generic decoder still works
        return None


def _qualifies(page: Any, dims: tuple[int, int]) -> bool:
    try:
        return (
            bool(page.is_tiled)
            and int(page.planarconfig) == 1
            and int(page.samplesperpixel) == 3
            and int(page.bitspersample) == 8
            and np.dtype(page.dtype) == np.uint8
            and (int(page.imagewidth), int(page.imagelength)) == tuple(dims)
            and int(page.imagedepth) == 1
            and len(page.dataoffsets) == len(page.databytecounts) > 0
        )
    except Exception:  # odd pages: let tiffslide handle them
        return False


def direct_readers(
    slide: Any, path: Path, level_dims: tuple[tuple[int, int], ...]
) -> list[TiledLevelReader | None]:
    """One direct reader per level where possible (None where tiffslide must read)."""
    out: list[TiledLevelReader | None] = [None] * len(level_dims)
    if os.environ.get("HISTOBRIDGE_NO_DIRECT_TIFF"):
        return out
    try:
        idx = int(slide.properties.get("tiffslide.series-index", 0))
        series = slide.ts_tifffile.series[idx]
        levels = series.levels
        if len(levels) != len(level_dims):
            return out
        for i, lvl in enumerate(levels):
            pages = lvl.pages
            if len(pages) != 1 or getattr(lvl, "axes", "YXS") != "YXS":
                continue
            page = pages[0]
            if hasattr(page, "keyframe") and page.keyframe is not page:
                continue
            if _qualifies(page, level_dims[i]):
                out[i] = TiledLevelReader(page, path)
    except Exception as err:  # never fail opening because the fast path is unavailable
        log.debug("direct TIFF decoding unavailable for %s: %s", path, err)
        for reader in out:
            if reader is not None:
                reader.close()
        return [None] * len(level_dims)
    return out
