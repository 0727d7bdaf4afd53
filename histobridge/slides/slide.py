"""One slide reader over tiffslide and openslide, in QuPath's level-0 pixel space.

QuPath space differs from the reader's space by an offset (OpenSlide bounds cropping, see
qupath-formats.md §10); every public coordinate here is in QuPath space and the offset is added
once, internally. Regions partly outside the image are padded with white, like empty glass.

Resampling rule (``read_scaled``): the region is read from the highest-downsample level whose
resolution is still at least the target's (0.5 % tolerance, because readers report downsamples such
as 4.002 for a nominal 4), then resampled once with Pillow: area averaging (``BOX``) when shrinking,
bicubic when enlarging. A region that needs no scaling and sits on whole pixels is copied as is.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from histobridge.errors import CalibrationError, SlideError, SlideNotFoundError
from histobridge.slides._backends import Backend, open_backend

log = logging.getLogger(__name__)

MAX_PLAUSIBLE_MPP = 10.0
LEVEL_TOLERANCE = 0.005
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
        self._mpp_override = mpp
        self._mpp, self.mpp_problem = self._resolve_mpp(mpp)

    # -- calibration ---------------------------------------------------------------------------
    def _resolve_mpp(self, override: float | None) -> tuple[float | None, str | None]:
        if override is not None:
            value = float(override)
            if not math.isfinite(value) or value <= 0:
                raise CalibrationError(
                    f"{self.path}: pixel size override {override!r} must be a positive number"
                )
            return value, None
        mx, my = self._backend.raw_mpp()
        values = [v for v in (mx, my) if v is not None and v > 0]
        if not values:
            return None, (
                f"{self.path}: the slide records no pixel size (µm/px); give it with --mpp "
                "(or set the pixel calibration in the QuPath project)"
            )
        value = float(sum(values) / len(values))
        if value > MAX_PLAUSIBLE_MPP:
            return None, (
                f"{self.path}: the recorded pixel size {value:.4g} µm/px is implausible for a whole-slide "
                "image (probably a screen DPI tag); give the real value with --mpp"
            )
        return value, None

    @property
    def mpp(self) -> float:
        """Level-0 µm per pixel; raises CalibrationError when unknown or implausible."""
        if self._mpp is None:
            raise CalibrationError(self.mpp_problem or f"{self.path}: pixel size unknown; use --mpp")
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
    def _level_rect(self, level: int, lx: int, ly: int, lw: int, lh: int) -> np.ndarray:
        """Rectangle in reader level coordinates, white outside the (cropped) image."""
        out = np.full((lh, lw, 3), WHITE, np.uint8)
        if lw <= 0 or lh <= 0:
            return out
        ds = self.level_downsamples[level]
        level_w, level_h = self._backend.level_dimensions[level]
        vx0 = max(0, round(self.offset[0] / ds))
        vy0 = max(0, round(self.offset[1] / ds))
        vx1 = min(level_w, round((self.offset[0] + self.dimensions[0]) / ds))
        vy1 = min(level_h, round((self.offset[1] + self.dimensions[1]) / ds))
        ix0, iy0 = max(lx, vx0), max(ly, vy0)
        ix1, iy1 = min(lx + lw, vx1), min(ly + lh, vy1)
        if ix1 <= ix0 or iy1 <= iy0:
            return out
        try:
            arr = self._backend.read_level(level, ix0, iy0, ix1 - ix0, iy1 - iy0)
        except SlideError:
            raise
        except Exception as err:
            raise SlideError(
                f"{self.path}: cannot read level {level} region x={ix0} y={iy0} w={ix1 - ix0} h={iy1 - iy0} "
                f"({self.backend}: {type(err).__name__}: {err})"
            ) from err
        out[iy0 - ly : iy1 - ly, ix0 - lx : ix1 - lx] = arr[: iy1 - iy0, : ix1 - ix0]
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

    def read_scaled(
        self, x: float, y: float, w: float, h: float, out_px: int | tuple[int, int]
    ) -> np.ndarray:
        """Level-0 float rectangle resampled once from the best level to ``out_px`` (w, h)."""
        return self.read_scaled_batch(np.array([[x, y, w, h]], np.float64), out_px)[0]

    def read_scaled_batch(self, coords: np.ndarray, out_px: int | tuple[int, int]) -> np.ndarray:
        """Several level-0 rectangles (N, 4) of equal size, read as ONE block then resampled each.

        Meant for spatially close tiles (a tiler's batch): the block covering them is decoded once.
        """
        out_w, out_h = _as_pair(out_px)
        coords = np.asarray(coords, np.float64).reshape(-1, 4)
        out = np.empty((len(coords), out_h, out_w, 3), np.uint8)
        if len(coords) == 0:
            return out
        w, h = float(coords[0, 2]), float(coords[0, 3])
        if w <= 0 or h <= 0 or out_w <= 0 or out_h <= 0:
            raise SlideError(f"{self.path}: empty region or output size ({w}x{h} -> {out_w}x{out_h})")
        level = self.best_level(min(w / out_w, h / out_h))
        ds = self.level_downsamples[level]
        fx0 = (coords[:, 0] + self.offset[0]) / ds
        fy0 = (coords[:, 1] + self.offset[1]) / ds
        fx1 = (coords[:, 0] + coords[:, 2] + self.offset[0]) / ds
        fy1 = (coords[:, 1] + coords[:, 3] + self.offset[1]) / ds
        # Shrinking with an area filter needs no pixels outside the box; bicubic enlarging does.
        margin = 0 if (fx1[0] - fx0[0]) >= out_w - 1e-6 and (fy1[0] - fy0[0]) >= out_h - 1e-6 else 2
        ix0 = math.floor(float(fx0.min()) + 1e-6) - margin
        iy0 = math.floor(float(fy0.min()) + 1e-6) - margin
        ix1 = math.ceil(float(fx1.max()) - 1e-6) + margin
        iy1 = math.ceil(float(fy1.max()) - 1e-6) + margin
        block = self._level_rect(level, ix0, iy0, ix1 - ix0, iy1 - iy0)
        for i in range(len(coords)):
            box = (fx0[i] - ix0, fy0[i] - iy0, fx1[i] - ix0, fy1[i] - iy0)
            out[i] = resample_box(block, box, (out_w, out_h))
        return out

    def thumbnail(self, max_px: int = 1024) -> tuple[np.ndarray, float]:
        """Whole image scaled so its longer side is ``max_px``; returns (rgb, level-0 px per thumb px).

        Read in pieces of at most ~4096² level pixels, so memory stays bounded on single-level slides.
        """
        w, h = self.dimensions
        scale = max(1.0, max(w, h) / float(max_px))
        out_w, out_h = max(1, round(w / scale)), max(1, round(h / scale))
        ds = max(w / out_w, h / out_h)
        level_ds = self.level_downsamples[self.best_level(ds)]
        step = max(16, int(4096 * level_ds / ds))
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


def resample_box(
    block: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """Resample the float ``box`` (x0, y0, x1, y1) of ``block`` to ``size`` in one Pillow call."""
    x0, y0, x1, y1 = box
    out_w, out_h = size
    rx0, ry0 = round(x0), round(y0)
    if (
        abs(x0 - rx0) < 1e-6
        and abs(y0 - ry0) < 1e-6
        and abs((x1 - x0) - out_w) < 1e-6
        and abs((y1 - y0) - out_h) < 1e-6
    ):
        return np.ascontiguousarray(block[ry0 : ry0 + out_h, rx0 : rx0 + out_w])
    shrinking = (x1 - x0) >= out_w and (y1 - y0) >= out_h
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    img = Image.fromarray(block).resize((out_w, out_h), method, box=(x0, y0, x1, y1))
    return np.asarray(img)


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
    return Slide(p, open_backend(p, backend), mpp=mpp, offset=offset, size=size)
