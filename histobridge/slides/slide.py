"""One slide reader over tiffslide and openslide, in QuPath's level-0 pixel space.

QuPath space differs from the reader's space by an offset (OpenSlide bounds cropping, as
QuPath applies it); every public coordinate here is in QuPath space and the offset is added
once, internally. Regions partly outside the image are padded with white, like empty glass.

Resampling rule (``read_scaled``): the region is read from the highest-downsample level whose
resolution is still at least the target's (0.5 % tolerance, because readers report downsamples such
as 4.002 for a nominal 4), then resampled once with Pillow: area averaging (``BOX``) when shrinking,
bicubic when enlarging. Within the same 0.5 % no resampling happens, because a resize costs more
than decoding and changes nothing visible: a region at the level's own scale (256.5 px -> 256) is
copied, a whole-factor shrink (2.004x) is a k x k mean (``Image.reduce``); either way the output
window is centred on the requested box, at most half a pixel away. ``resample="fast"`` (opt-in)
lets a JPEG level shrunk 2x, 4x or 8x be decoded at that reduction by the JPEG decoder and copied:
less CPU, but windows then start only on every k-th level pixel (docs/tiling.md).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from histobridge.errors import CalibrationError, SlideError, SlideNotFoundError
from histobridge.slides._backends import Backend, open_backend
from histobridge.slides._tiffdirect import SharedTiles, TileCache

log = logging.getLogger(__name__)

MAX_PLAUSIBLE_MPP = 10.0
LEVEL_TOLERANCE = 0.005
RESAMPLE_MODES = ("exact", "fast")  # fast: JPEG levels may be decoded at 1/2, 1/4, 1/8 first
MAX_READ_BYTES = 1 << 30  # one decoded block; beyond it tiles are read alone, then refused
WHITE = 255


def _as_pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    w, h = value
    return int(w), int(h)


class Slide:
    """An open whole-slide image; safe to read from several threads at once."""

    def __init__(
        self,
        path: Path,
        backend: Backend,
        *,
        mpp: float | None = None,
        offset: tuple[float, float] = (0, 0),
        size: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self._backend = backend
        self.backend: str = backend.name
        self.offset: tuple[float, float] = (float(offset[0]), float(offset[1]))
        full_w, full_h = backend.dimensions
        if size is None:
            size = (round(full_w - self.offset[0]), round(full_h - self.offset[1]))
        self.dimensions: tuple[int, int] = (int(size[0]), int(size[1]))
        if self.dimensions[0] <= 0 or self.dimensions[1] <= 0:
            raise SlideError(f"{path}: empty image after applying offset {offset} and size {size}")
        self.level_downsamples: tuple[float, ...] = backend.level_downsamples
        self.level_count: int = len(self.level_downsamples)
        cropped = self.offset != (0.0, 0.0) or self.dimensions != tuple(backend.dimensions)
        if cropped:
            self.level_dimensions = tuple(
                (max(1, round(self.dimensions[0] / d)), max(1, round(self.dimensions[1] / d)))
                for d in self.level_downsamples
            )
        else:
            self.level_dimensions = backend.level_dimensions
        self.properties: dict[str, Any] = backend.properties
        self.mpp_source: str = "slide"  # where ``mpp`` came from; callers that chose it may relabel it
        self._mpp, self.mpp_problem = self._resolve_mpp(mpp)

    # -- calibration ---------------------------------------------------------------------------
    def _resolve_mpp(self, override: float | None) -> tuple[float | None, str | None]:
        """(µm/px, why it is unknown): the override, else the file's own plausible value.

        The problem text states the fact only; whoever knows how the user can fix it (the CLI, the
        project entry) adds that advice once.
        """
        recorded, problem = self._recorded_mpp()
        self.recorded_mpp: float | None = recorded  # the file's own value, even when overridden
        if override is not None:
            value = float(override)
            if not math.isfinite(value) or value <= 0:
                raise CalibrationError(
                    f"{self.path}: pixel size override {override!r} must be a positive number"
                )
            self.mpp_source = "argument"
            return value, None
        return recorded, problem

    def _recorded_mpp(self) -> tuple[float | None, str | None]:
        mx, my = self._backend.raw_mpp()
        values = [v for v in (mx, my) if v is not None and v > 0]
        if not values:
            return None, f"{self.path}: the file records no pixel size (µm/px)"
        value = float(sum(values) / len(values))
        if value > MAX_PLAUSIBLE_MPP:
            return None, (
                f"{self.path}: the recorded pixel size {value:.4g} µm/px is implausible for a whole-slide "
                "image (probably a screen DPI tag)"
            )
        return value, None

    @property
    def mpp(self) -> float:
        """Level-0 µm per pixel; raises CalibrationError when unknown or implausible."""
        if self._mpp is None:
            problem = self.mpp_problem or f"{self.path}: pixel size unknown"
            raise CalibrationError(f"{problem}; give the real value with --mpp")
        return self._mpp

    @property
    def mpp_or_none(self) -> float | None:
        """Level-0 µm per pixel, or None when unknown or implausible."""
        return self._mpp

    @property
    def reader_bounds(self) -> tuple[int, int, int, int] | None:
        """``openslide.bounds-x/y/width/height`` when the reader reports them (else None)."""
        keys = (
            "openslide.bounds-x",
            "openslide.bounds-y",
            "openslide.bounds-width",
            "openslide.bounds-height",
        )
        try:
            x, y, w, h = (int(self.properties[k]) for k in keys)
        except (KeyError, TypeError, ValueError):
            return None
        return x, y, w, h

    # -- reading -------------------------------------------------------------------------------
    def _level_rect(
        self,
        level: int,
        lx: int,
        ly: int,
        lw: int,
        lh: int,
        out: np.ndarray | None = None,
        cache: TileCache | None = None,
        scale: int = 1,
    ) -> np.ndarray:
        """Rectangle in reader level coordinates, white outside the (cropped) image.

        ``scale`` > 1: coordinates of the level decoded at 1/``scale`` (see :meth:`dct_scale`).
        """
        if out is None:
            out = np.empty((max(lh, 0), max(lw, 0), 3), np.uint8)
        if lw <= 0 or lh <= 0:
            return out
        ds = self.level_downsamples[level] * scale
        if scale == 1:
            level_w, level_h = self._backend.level_dimensions[level]
        else:
            level_w, level_h = self._backend.scaled_levels(level)[scale]
        vx0 = max(0, round(self.offset[0] / ds))
        vy0 = max(0, round(self.offset[1] / ds))
        vx1 = min(level_w, round((self.offset[0] + self.dimensions[0]) / ds))
        vy1 = min(level_h, round((self.offset[1] + self.dimensions[1]) / ds))
        ix0, iy0 = max(lx, vx0), max(ly, vy0)
        ix1, iy1 = min(lx + lw, vx1), min(ly + lh, vy1)
        if ix1 <= ix0 or iy1 <= iy0:
            out.fill(WHITE)
            return out
        if (ix0, iy0, ix1, iy1) != (lx, ly, lx + lw, ly + lh):
            out.fill(WHITE)
        dst = out[iy0 - ly : iy1 - ly, ix0 - lx : ix1 - lx]
        try:
            self._backend.read_level(level, ix0, iy0, ix1 - ix0, iy1 - iy0, out=dst, cache=cache, scale=scale)
        except SlideError:
            raise
        except Exception as err:
            raise SlideError(
                f"{self.path}: cannot read level {level} region x={ix0} y={iy0} w={ix1 - ix0} h={iy1 - iy0} "
                f"({self.backend}: {type(err).__name__}: {err})"
            ) from err
        return out

    def read_region(self, x: float, y: float, w: float, h: float, *, level: int = 0) -> np.ndarray:
        """RGB uint8 (h/ds, w/ds, 3) of a level-0 QuPath rectangle, read at ``level``."""
        if not 0 <= level < self.level_count:
            raise SlideError(f"{self.path}: level {level} does not exist (the slide has {self.level_count})")
        ds = self.level_downsamples[level]
        lx = math.floor((x + self.offset[0]) / ds)
        ly = math.floor((y + self.offset[1]) / ds)
        return self._level_rect(level, lx, ly, max(0, round(w / ds)), max(0, round(h / ds)))

    def best_level(self, downsample: float) -> int:
        """Highest-downsample level whose resolution still meets ``downsample`` (level-0 px per output px)."""
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= downsample * (1 + LEVEL_TOLERANCE) and d >= self.level_downsamples[best]:
                best = i
        return best

    def dct_scale(self, downsample: float) -> int:
        """The JPEG reduction (2, 4 or 8) ``resample="fast"`` decodes at for this level-0 px per output px.

        Only where the best level's JPEG tiles allow it and the shrink left on that level is that
        factor (within :data:`LEVEL_TOLERANCE`), so the reduced tiles are copied, not resampled
        again: a second resize of the reduced pixels (2.4x = 1/2 then 1.2x) averaged 2-4x farther
        from a true area average than ``exact`` (``benchmarks/bench_tiling.py``, jpeg section). Else 1.
        """
        level = self.best_level(downsample)
        left = downsample / self.level_downsamples[level]
        fits = (k for k in self._backend.scaled_levels(level) if abs(left / k - 1) <= LEVEL_TOLERANCE)
        return max(fits, default=1)

    def read_scaled(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        out_px: int | tuple[int, int],
        *,
        resample: str = "exact",
    ) -> np.ndarray:
        """Level-0 float rectangle resampled once from the best level to ``out_px`` (w, h)."""
        coords = np.array([[x, y, w, h]], np.float64)
        tile: np.ndarray = self.read_scaled_batch(coords, out_px, resample=resample)[0]
        return tile

    def read_scaled_batch(
        self,
        coords: np.ndarray,
        out_px: int | tuple[int, int],
        out: np.ndarray | None = None,
        shared: SharedTiles | None = None,
        *,
        resample: str = "exact",
    ) -> np.ndarray:
        """Several level-0 rectangles (N, 4) of equal size, read as ONE block then resampled each.

        Meant for spatially close tiles (a tiler's batch): the block covering them is decoded once.
        ``shared`` (one per image, given to every batch) keeps the decoded tiles on the block's
        edge for the batches beside it, so they are not decoded twice. ``resample="fast"`` lets
        JPEG levels be decoded at 1/2, 1/4 or 1/8 first when the shrink allows (:meth:`dct_scale`);
        ``"exact"`` always decodes full size.
        """
        if resample not in RESAMPLE_MODES:
            raise ValueError(f"resample must be one of {', '.join(RESAMPLE_MODES)}, got {resample!r}")
        out_w, out_h = _as_pair(out_px)
        coords = np.asarray(coords, np.float64).reshape(-1, 4)
        if out is None:
            out = np.empty((len(coords), out_h, out_w, 3), np.uint8)
        elif out.shape != (len(coords), out_h, out_w, 3) or out.dtype != np.uint8:
            raise ValueError(
                f"out must be uint8 {(len(coords), out_h, out_w, 3)}, got {out.dtype} {out.shape}"
            )
        if len(coords) == 0:
            return out
        w, h = float(coords[0, 2]), float(coords[0, 3])
        if w <= 0 or h <= 0 or out_w <= 0 or out_h <= 0:
            raise SlideError(f"{self.path}: empty region or output size ({w}x{h} -> {out_w}x{out_h})")
        level = self.best_level(min(w / out_w, h / out_h))
        scale = self.dct_scale(min(w / out_w, h / out_h)) if resample == "fast" else 1
        ds = self.level_downsamples[level] * scale
        fx0 = (coords[:, 0] + self.offset[0]) / ds
        fy0 = (coords[:, 1] + self.offset[1]) / ds
        fx1 = (coords[:, 0] + coords[:, 2] + self.offset[0]) / ds
        fy1 = (coords[:, 1] + coords[:, 3] + self.offset[1]) / ds
        cache = TileCache(shared, level, scale)
        if _is_identity(fx0, fy0, fx1, fy1, out_w, out_h) or _unit_scale(fx0, fy0, fx1, fy1, out_w, out_h):
            # Copies at the level's own scale (within 0.5 %): decode straight into the output, each
            # tile centred on its box, so no pixel is more than half a level pixel from where a
            # resampling would have put it.
            lx_all, ly_all = _centred(fx0, fx1, out_w), _centred(fy0, fy1, out_h)
            for i in range(len(coords)):
                self._level_rect(
                    level, int(lx_all[i]), int(ly_all[i]), out_w, out_h, out=out[i], cache=cache, scale=scale
                )
            return out
        factor = _integer_factor(fx0, fy0, fx1, fy1, out_w, out_h)
        if factor > 1 and self._reduce_batch(level, factor, fx0, fy0, fx1, fy1, out, cache, scale):
            return out
        # Shrinking with an area filter needs no pixels outside the box; bicubic enlarging does.
        margin = 0 if (fx1[0] - fx0[0]) >= out_w - 1e-6 and (fy1[0] - fy0[0]) >= out_h - 1e-6 else 2
        ix0 = math.floor(float(fx0.min()) + 1e-6) - margin
        iy0 = math.floor(float(fy0.min()) + 1e-6) - margin
        ix1 = math.ceil(float(fx1.max()) - 1e-6) + margin
        iy1 = math.ceil(float(fy1.max()) - 1e-6) + margin
        if (ix1 - ix0) * (iy1 - iy0) * 3 > MAX_READ_BYTES:
            if len(coords) > 1:  # the batch's common block is too big: read its tiles one by one
                for i in range(len(coords)):
                    one = out[i : i + 1]
                    self.read_scaled_batch(
                        coords[i : i + 1], (out_w, out_h), out=one, shared=shared, resample=resample
                    )
                return out
            raise SlideError(
                f"{self.path}: one {w:.0f} x {h:.0f} px tile needs a {ix1 - ix0} x {iy1 - iy0} px read at "
                f"level {level} (downsample {ds:g}) because the slide has no level near the {w / out_w:.3g}x "
                "reduction asked for; use smaller tiles in µm or a pyramidal copy of the slide"
            )
        pixels = self._level_rect(
            level,
            ix0,
            iy0,
            ix1 - ix0,
            iy1 - iy0,
            out=_scratch(iy1 - iy0, ix1 - ix0),
            cache=cache,
            scale=scale,
        )
        if _resample_as_mosaic(pixels, fx0 - ix0, fy0 - iy0, fx1 - ix0, fy1 - iy0, out):
            return out
        block = Image.fromarray(pixels)
        for i in range(len(coords)):
            box = (fx0[i] - ix0, fy0[i] - iy0, fx1[i] - ix0, fy1[i] - iy0)
            out[i] = resample_image(block, box, (out_w, out_h))
        return out

    def _reduce_batch(
        self, level: int, k: int, fx0: np.ndarray, fy0: np.ndarray, fx1: np.ndarray, fy1: np.ndarray,
        out: np.ndarray, cache: TileCache, scale: int = 1,
    ) -> bool:  # fmt: skip
        """Shrink by a whole factor ``k`` (within 0.5 %) with Pillow's ``reduce``: k x k means.

        ``reduce`` costs a fraction of a general resize. Each tile's k*size window is centred on its
        box, so it sits at most half a level pixel (plus the 0.5 % scale difference) from it. Only
        the union of the windows is decoded (tiles on a whole-pixel grid touch no source tile
        beyond their own), and each window goes to Pillow on its own through one reused buffer:
        handing Pillow the whole block made it allocate ~4x the block's bytes afresh per batch,
        whose page faults cost ~15-25 % of the batch. Returns False (nothing written) when the
        common block would be too big.
        """
        out_h, out_w = out.shape[1:3]
        wx, wy = k * out_w, k * out_h
        margin = k + math.ceil(k * max(out_w, out_h) * LEVEL_TOLERANCE)
        ix0, iy0 = math.floor(float(fx0.min())) - margin, math.floor(float(fy0.min())) - margin
        bw, bh = math.ceil(float(fx1.max())) + margin - ix0, math.ceil(float(fy1.max())) + margin - iy0
        if bw * bh * 3 > MAX_READ_BYTES:
            return False
        lx = np.clip(_centred(fx0 - ix0, fx1 - ix0, wx), 0, bw - wx)
        ly = np.clip(_centred(fy0 - iy0, fy1 - iy0, wy), 0, bh - wy)
        sx, sy = int(lx.min()), int(ly.min())  # the windows' union, in block coordinates
        uw, uh = int(lx.max()) + wx - sx, int(ly.max()) + wy - sy
        block = self._level_rect(
            level, ix0 + sx, iy0 + sy, uw, uh, out=_scratch(uh, uw), cache=cache, scale=scale
        )
        window = np.empty((wy, wx, 3), np.uint8)
        for i in range(len(out)):
            x, y = int(lx[i]) - sx, int(ly[i]) - sy
            window[...] = block[y : y + wy, x : x + wx]
            out[i] = np.asarray(Image.fromarray(window).reduce(k))
        return True

    def thumbnail(self, max_px: int = 1024) -> tuple[np.ndarray, float]:
        """Whole image scaled so its longer side is ``max_px``; returns (rgb, level-0 px per thumb px).

        Read in pieces of at most ~2048² level pixels, so memory stays bounded on single-level slides:
        each piece is held three times at once (decoded source tiles, the block, Pillow's copy), which
        at 4096² was +190 MiB of peak memory for a 16k² slide; 2048² costs no more time.
        """
        w, h = self.dimensions
        scale = max(1.0, max(w, h) / float(max_px))
        out_w, out_h = max(1, round(w / scale)), max(1, round(h / scale))
        ds = max(w / out_w, h / out_h)
        level_ds = self.level_downsamples[self.best_level(ds)]
        step = max(16, int(2048 * level_ds / ds))
        out = np.empty((out_h, out_w, 3), np.uint8)
        for oy in range(0, out_h, step):
            for ox in range(0, out_w, step):
                bw, bh = min(step, out_w - ox), min(step, out_h - oy)
                out[oy : oy + bh, ox : ox + bw] = self.read_scaled(
                    ox * ds, oy * ds, bw * ds, bh * ds, (bw, bh)
                )
        return out, ds

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        name = str(self.path)
        return f"Slide({name!r}, backend={self.backend!r}, dimensions={self.dimensions}, mpp={self._mpp})"


def _is_identity(fx0: np.ndarray, fy0: np.ndarray, fx1: np.ndarray, fy1: np.ndarray, w: int, h: int) -> bool:
    return bool(
        np.all(np.abs(fx0 - np.round(fx0)) < 1e-6)
        and np.all(np.abs(fy0 - np.round(fy0)) < 1e-6)
        and np.all(np.abs((fx1 - fx0) - w) < 1e-6)
        and np.all(np.abs((fy1 - fy0) - h) < 1e-6)
    )


SCRATCH_BYTES = 64 << 20  # blocks up to this size are decoded into a reused per-thread buffer
_scratch_local = threading.local()


def _scratch(h: int, w: int) -> np.ndarray | None:
    """A reused (h, w, 3) block buffer for this thread (None: too big, allocate afresh).

    Faulting in fresh pages for every ~18 MB block costs about a third of decoding it; Pillow
    copies the block, so the buffer is free again once the resampling has begun.
    """
    need = h * w * 3
    if need > SCRATCH_BYTES:
        return None
    buf: np.ndarray | None = getattr(_scratch_local, "buf", None)
    if buf is None or buf.size < need:
        buf = np.empty(max(need, 1 << 20), np.uint8)
        _scratch_local.buf = buf
    return buf[:need].reshape(h, w, 3)


def _unit_scale(fx0: np.ndarray, fy0: np.ndarray, fx1: np.ndarray, fy1: np.ndarray, w: int, h: int) -> bool:
    """True when every box is within :data:`LEVEL_TOLERANCE` of the output size (a 1.002x shrink)."""
    return bool(
        np.all(np.abs((fx1 - fx0) / w - 1) <= LEVEL_TOLERANCE)
        and np.all(np.abs((fy1 - fy0) / h - 1) <= LEVEL_TOLERANCE)
    )


def _integer_factor(
    fx0: np.ndarray, fy0: np.ndarray, fx1: np.ndarray, fy1: np.ndarray, w: int, h: int
) -> int:
    """The whole shrink factor k >= 2 shared by both axes within :data:`LEVEL_TOLERANCE`, else 0."""
    sx, sy = float(fx1[0] - fx0[0]) / w, float(fy1[0] - fy0[0]) / h
    k = round(sx)
    if k < 2 or round(sy) != k:
        return 0
    return k if _unit_scale(fx0 / k, fy0 / k, fx1 / k, fy1 / k, w, h) else 0


def _centred(start: np.ndarray, stop: np.ndarray, size: int) -> np.ndarray:
    """Whole-pixel origin of a ``size``-px window centred on each float box (exact boxes stay put)."""
    origin: np.ndarray = np.floor((start + stop - size) / 2 + 0.5 + 1e-6).astype(np.int64)
    return origin


def _resample_as_mosaic(
    block: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, out: np.ndarray
) -> bool:
    """Resample all tiles with ONE Pillow call when they sit on a common output-pixel lattice.

    Tiles of a grid (any stride of whole output pixels) map to integer offsets in one big
    resampled image, pixel for pixel the same as resampling each tile on its own, at a fraction of
    the per-call overhead. Returns False (nothing written) when the tiles are not on such a lattice
    or too sparse for this to pay off.
    """
    n, out_h, out_w = out.shape[:3]
    sx, sy = float(x1[0] - x0[0]) / out_w, float(y1[0] - y0[0]) / out_h
    ox, oy = (x0 - x0.min()) / sx, (y0 - y0.min()) / sy
    if n < 2 or np.abs(ox - np.round(ox)).max() > 1e-3 or np.abs(oy - np.round(oy)).max() > 1e-3:
        return False
    ox, oy = np.round(ox).astype(int), np.round(oy).astype(int)
    big_w, big_h = int(ox.max()) + out_w, int(oy.max()) + out_h
    if big_w * big_h > 2 * n * out_w * out_h:
        return False
    bx0, by0 = float(x0.min()), float(y0.min())
    box = (bx0, by0, bx0 + big_w * sx, by0 + big_h * sy)
    big = resample_planes(block, box, (big_w, big_h))
    for i in range(n):
        out[i] = big[oy[i] : oy[i] + out_h, ox[i] : ox[i] + out_w]
    return True


def resample_image(
    image: Image.Image, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """Resample the float ``box`` (x0, y0, x1, y1) of ``image`` to ``size`` in one Pillow call.

    Area averaging (BOX) when shrinking, bicubic when enlarging; whole-pixel same-size boxes are cropped.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    out_w, out_h = size
    if _is_identity(np.array([x0]), np.array([y0]), np.array([x1]), np.array([y1]), out_w, out_h):
        rx, ry = round(x0), round(y0)
        return np.asarray(image.crop((rx, ry, rx + out_w, ry + out_h)))
    shrinking = (x1 - x0) >= out_w and (y1 - y0) >= out_h
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return np.asarray(image.resize((out_w, out_h), method, box=(x0, y0, x1, y1)))


def resample_planes(
    block: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """:func:`resample_image` of an RGB array one colour plane at a time: the same pixels, less CPU.

    Pillow filters each channel on its own, but holds RGB as 4 bytes a pixel and filters the padding
    byte too; three 1-byte planes cost ~15 % less than one RGB image, copies included
    (``benchmarks/bench_tiling.py`` resampled section).
    """
    out = np.empty((size[1], size[0], 3), np.uint8)
    for c in range(3):
        out[..., c] = resample_image(Image.fromarray(np.ascontiguousarray(block[..., c])), box, size)
    return out


def resample_box(
    block: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """:func:`resample_image` for an array."""
    return resample_image(Image.fromarray(block), box, size)


def open_slide(
    path: str | os.PathLike[str],
    *,
    backend: str = "auto",
    mpp: float | None = None,
    offset: tuple[float, float] = (0, 0),
    size: tuple[int, int] | None = None,
) -> Slide:
    """Open a whole-slide image in QuPath space (``offset`` = reader bounds origin; ``size`` = crop)."""
    p = Path(os.fsdecode(path)).expanduser()
    if not p.exists():
        raise SlideNotFoundError(f"{p}: slide file not found")
    if p.is_dir():
        raise SlideError(f"{p}: is a folder, not a slide file")
    reader = open_backend(p, backend)
    try:
        return Slide(p, reader, mpp=mpp, offset=offset, size=size)
    except BaseException:
        reader.close()
        raise
