"""Reader backends (tiffslide, openslide) behind one small interface, with one error boundary.

Every backend reads rectangles in the *reader's own* level coordinates and returns RGB uint8. All
library exceptions are translated here into :class:`SlideError` naming the file, so nothing above
this module needs to know which library raised.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from histobridge.errors import SlideError
from histobridge.slides._formats import refuse_unsupported, tiff_facts
from histobridge.slides._tiffdirect import TileCache, TiledLevelReader, direct_readers

log = logging.getLogger(__name__)

# Formats tiffslide cannot read (not TIFF containers) or reads incompletely: go to openslide first.
OPENSLIDE_FIRST = {".dcm", ".mrxs", ".vms", ".vmu", ".scn", ".bif", ".ndpi"}


class Backend(Protocol):
    """What :class:`~histobridge.slides.Slide` needs from a reader library."""

    name: str
    dimensions: tuple[int, int]
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    properties: dict[str, Any]
    fallback_mpp: tuple[float | None, float | None]

    def raw_mpp(self) -> tuple[float | None, float | None]: ...

    def read_level(
        self,
        level: int,
        x: int,
        y: int,
        w: int,
        h: int,
        out: np.ndarray | None = None,
        cache: TileCache | None = None,
        scale: int = 1,
    ) -> np.ndarray: ...

    def scaled_levels(self, level: int) -> dict[int, tuple[int, int]]:
        """{reduction: (width, height)} a level can be decoded at besides 1 (JPEG DCT scaling)."""
        ...

    def close(self) -> None: ...


def _float_or_none(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _mpp_pair(
    properties: dict[str, Any], prefix: str, fallback: tuple[float | None, float | None]
) -> tuple[float | None, float | None]:
    """The reader's ``<prefix>.mpp-x/y``, else the fallback (OME-XML PhysicalSizeX/Y, which neither reads)."""
    mx = _float_or_none(properties.get(f"{prefix}.mpp-x"))
    my = _float_or_none(properties.get(f"{prefix}.mpp-y"))
    if mx is None and my is None:
        return fallback
    return mx, my


def rgba_to_rgb_on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite straight-alpha RGBA on white (openslide marks no-data pixels fully transparent)."""
    if rgba.shape[-1] == 3:
        return rgba
    alpha = rgba[..., 3:4]
    rgb = rgba[..., :3]
    if bool((alpha == 255).all()):
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = rgba_to_rgb_on_white(arr)
    elif arr.shape[-1] != 3:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _into(arr: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return arr
    out[...] = arr
    return out


class TiffslideBackend:
    """tiffslide with one handle per thread, plus direct tile decoding for plain tiled levels."""

    name = "tiffslide"

    def __init__(self, path: Path) -> None:
        import tiffslide

        self.path = path
        self._module = tiffslide
        self._local = threading.local()
        self._handles: list[Any] = []
        self._lock = threading.Lock()
        main = self._handle()
        self.fallback_mpp: tuple[float | None, float | None] = (None, None)
        self.dimensions: tuple[int, int] = (int(main.dimensions[0]), int(main.dimensions[1]))
        self.level_dimensions = tuple((int(w), int(h)) for w, h in main.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in main.level_downsamples)
        self.properties = dict(main.properties)
        self._direct: list[TiledLevelReader | None] = direct_readers(main, path, self.level_dimensions)

    def _handle(self) -> Any:
        handle = getattr(self._local, "slide", None)
        if handle is None:
            handle = self._module.TiffSlide(str(self.path))
            self._local.slide = handle
            with self._lock:
                self._handles.append(handle)
        return handle

    def raw_mpp(self) -> tuple[float | None, float | None]:
        return _mpp_pair(self.properties, "tiffslide", self.fallback_mpp)

    def read_level(
        self,
        level: int,
        x: int,
        y: int,
        w: int,
        h: int,
        out: np.ndarray | None = None,
        cache: TileCache | None = None,
        scale: int = 1,
    ) -> np.ndarray:
        direct = self._direct[level]
        if direct is not None:
            return direct.read(x, y, w, h, out=out, cache=cache, scale=scale)
        if scale != 1:
            raise ValueError(f"level {level} cannot be decoded at 1/{scale}")
        ds = self.level_downsamples[level]
        # tiffslide maps a level-0 location to int(loc / ds); find the location that lands on x, y.
        loc = (_location_for(x, ds), _location_for(y, ds))
        arr = self._handle().read_region(loc, level, (w, h), as_array=True, padding=True)
        return _into(_to_rgb(np.asarray(arr)), out)

    def scaled_levels(self, level: int) -> dict[int, tuple[int, int]]:
        direct = self._direct[level]
        return {} if direct is None else {k: direct.size(k) for k in direct.scales()}

    def close(self) -> None:
        with self._lock:
            for handle in self._handles:
                with contextlib.suppress(Exception):
                    handle.close()
            self._handles.clear()
        for direct in self._direct:
            if direct is not None:
                direct.close()


def _location_for(level_px: int, ds: float) -> int:
    loc = math.ceil(level_px * ds)
    while loc > 0 and int((loc - 1) / ds) == level_px:
        loc -= 1
    while int(loc / ds) < level_px:
        loc += 1
    return loc


class OpenslideBackend:
    """openslide (thread-safe C library; one handle shared by all threads)."""

    name = "openslide"

    def __init__(self, path: Path) -> None:
        import openslide

        self.path = path
        self._slide = openslide.OpenSlide(str(path))
        self.fallback_mpp: tuple[float | None, float | None] = (None, None)
        self.dimensions: tuple[int, int] = (int(self._slide.dimensions[0]), int(self._slide.dimensions[1]))
        self.level_dimensions = tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        self.properties = dict(self._slide.properties)

    def raw_mpp(self) -> tuple[float | None, float | None]:
        return _mpp_pair(self.properties, "openslide", self.fallback_mpp)

    def read_level(
        self,
        level: int,
        x: int,
        y: int,
        w: int,
        h: int,
        out: np.ndarray | None = None,
        cache: TileCache | None = None,
        scale: int = 1,
    ) -> np.ndarray:
        if scale != 1:
            raise ValueError(f"level {level} cannot be decoded at 1/{scale}")
        # openslide takes a level-0 location and divides it by the downsample itself; with a
        # non-integer downsample (2.0003...) the result is fractional and openslide interpolates
        # by that sub-pixel amount. Rounding keeps the fraction below half a level-0 pixel.
        ds = self.level_downsamples[level]
        image = self._slide.read_region((round(x * ds), round(y * ds)), level, (w, h))
        return _into(rgba_to_rgb_on_white(np.asarray(image)), out)

    def scaled_levels(self, level: int) -> dict[int, tuple[int, int]]:
        return {}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._slide.close()


def _open_one(name: str, path: Path) -> Backend:
    if name == "tiffslide":
        return TiffslideBackend(path)
    if name == "openslide":
        return OpenslideBackend(path)
    raise SlideError(f"{path}: unknown slide backend {name!r} (use auto, tiffslide or openslide)")


def open_backend(path: Path, backend: str) -> Backend:
    """Open ``path`` with the requested backend; ``auto`` tries the likely one first, then the other.

    Files that are not 8-bit RGB (multichannel, 16-bit, stacks) and formats whose pyramid lives in
    other files are refused first, whichever reader would have opened them.
    """
    refuse_unsupported(path)
    facts = tiff_facts(path)
    problem = facts.problem() if facts is not None else None
    if problem:
        raise SlideError(f"{path}: {problem}")
    opened = _open_any(path, backend)
    if facts is not None:
        opened.fallback_mpp = facts.ome_mpp
    return opened


def _open_any(path: Path, backend: str) -> Backend:
    if backend == "auto":
        order = (
            ["openslide", "tiffslide"]
            if path.suffix.lower() in OPENSLIDE_FIRST
            else ["tiffslide", "openslide"]
        )
    else:
        order = [backend]
    problems: list[str] = []
    for name in order:
        try:
            return _open_one(name, path)
        except SlideError:
            raise
        except Exception as err:  # each library raises its own types; translate them here
            log.debug("%s cannot open %s: %s", name, path, err)
            problems.append(f"{name}: {type(err).__name__}: {err}")
    raise SlideError(f"{path}: cannot open slide ({'; '.join(problems)})")
