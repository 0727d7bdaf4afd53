"""Generated pyramidal TIFF slides with known pixels, for tests, benchmarks and bug reports.

One writer for every synthetic slide the project makes, so the reader is always checked against the
same file layouts real scanners and converters produce:

- ``"pages"``: each level a reduced-resolution page after the full-resolution one (Aperio-style
  generic TIFF pyramids);
- ``"subifds"``: levels 1… as SubIFDs of the first page (what newer converters write);
- ``"ome"``: SubIFDs with OME-XML metadata holding the pixel size in µm (bfconvert and friends).

Levels come from arrays in memory or, for slides larger than memory, as :class:`TiledLevel` streams
of tiles. The pixel size is stored as a TIFF resolution (pixels per centimetre), or as a
meaningless 72 dpi (``dpi72=True``) the way some scanners leave it, or not at all (``mpp=None``).

Example::

    from histobridge.testing import build_pyramid, write_pyramid

    write_pyramid("slide.tif", build_pyramid(rgb, levels=3), mpp=0.5, compression="jpeg")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

Layout = Literal["pages", "subifds", "ome"]


@dataclass(frozen=True)
class TiledLevel:
    """One pyramid level given tile by tile: ``tiles()`` yields ``tile x tile`` RGB uint8 arrays,
    row by row, edge tiles included (their part outside ``width x height`` is ignored)."""

    width: int
    height: int
    tiles: Callable[[], Iterator[np.ndarray]]


def halve(rgb: np.ndarray) -> np.ndarray:
    """2x2 mean, rounded half up (an odd last row or column is dropped): the usual pyramid step."""
    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    a = rgb[:h, :w].astype(np.uint16)
    out = (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2] + 2) // 4
    return out.astype(np.uint8)


def build_pyramid(level0: np.ndarray, levels: int = 3) -> list[np.ndarray]:
    """``level0`` and ``levels - 1`` successive :func:`halve` reductions of it."""
    pyramid = [np.ascontiguousarray(level0)]
    for _ in range(levels - 1):
        pyramid.append(halve(pyramid[-1]))
    return pyramid


def _size(level: np.ndarray | TiledLevel) -> tuple[int, int]:
    if isinstance(level, TiledLevel):
        return level.width, level.height
    return int(level.shape[1]), int(level.shape[0])


def write_pyramid(
    path: str | os.PathLike[str],
    pyramid: Sequence[np.ndarray | TiledLevel],
    *,
    mpp: float | None = 0.5,
    tile: int = 256,
    compression: str | None = "zlib",
    compression_level: int | None = None,
    layout: Layout = "pages",
    bigtiff: bool = False,
    dpi72: bool = False,
) -> Path:
    """Write ``pyramid`` (full resolution first) as a tiled RGB TIFF at ``path``; returns the path.

    Each level's resolution is the full-resolution one scaled by its width, so the stored pixel size
    of every level is what a reader should report for it.
    """
    import tifffile

    if not pyramid:
        raise ValueError("write_pyramid needs at least one level")
    if layout not in ("pages", "subifds", "ome"):
        raise ValueError(f"unknown layout {layout!r}: use 'pages', 'subifds' or 'ome'")
    path = Path(path)
    width0 = _size(pyramid[0])[0]

    def resolution(level: np.ndarray | TiledLevel) -> dict[str, Any]:
        if dpi72:
            return {"resolution": (72, 72), "resolutionunit": "INCH"}
        if mpp is None:
            return {}
        per_cm = 1e4 / mpp * _size(level)[0] / width0
        return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}

    opts: dict[str, Any] = {"tile": (tile, tile), "compression": compression, "photometric": "rgb"}
    if compression_level is not None:
        opts["compressionargs"] = {"level": compression_level}
    with tifffile.TiffWriter(path, bigtiff=bigtiff, ome=layout == "ome") as tw:
        for i, level in enumerate(pyramid):
            kwargs: dict[str, Any] = {**opts, **resolution(level), "metadata": None}
            if i == 0 and layout != "pages" and len(pyramid) > 1:
                kwargs["subifds"] = len(pyramid) - 1
            if i == 0 and layout == "ome":
                size = {} if mpp is None else {"PhysicalSizeX": mpp, "PhysicalSizeY": mpp}
                units = {"PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"} if size else {}
                kwargs["metadata"] = {"axes": "YXS", **size, **units}
            if i > 0:
                kwargs["subfiletype"] = 1
            if isinstance(level, TiledLevel):
                shape = (level.height, level.width, 3)
                tw.write(level.tiles(), shape=shape, dtype=np.uint8, **kwargs)
            else:
                tw.write(level, **kwargs)
    return path


__all__ = ["Layout", "TiledLevel", "build_pyramid", "halve", "write_pyramid"]
