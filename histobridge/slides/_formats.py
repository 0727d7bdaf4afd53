"""What a slide file holds before any reader touches its pixels: layout, sample format, OME calibration.

Why: both readers happily open files whose pixels they then squash into RGB (a 5-channel 16-bit
OME-TIFF becomes clipped uint8 RGB) or whose pyramid lives in another file (an Olympus ``.vsi`` opens
as its label photo). Such files are refused here with a message that names what the file is, and
OME-XML pixel sizes (which neither reader reports) are read with their units.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histobridge.errors import SlideError

log = logging.getLogger(__name__)

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Factor from an OME length unit to micrometres (OME-XML UnitsLength; µm is the default).
UM_PER_UNIT = {
    "pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "µm": 1.0, "um": 1.0, "μm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6,
}  # fmt: skip


@dataclass(frozen=True)
class TiffFacts:
    """The main image series of a TIFF: axes, dtype, samples per pixel and OME pixel size (µm)."""

    axes: str
    dtype: str
    shape: tuple[int, ...]
    ome_mpp: tuple[float | None, float | None] = (None, None)

    @property
    def channels(self) -> int:
        """Colour samples or channels per pixel (S and C axes together; 1 when neither exists)."""
        n = 1
        for axis, size in zip(self.axes, self.shape, strict=False):
            if axis in "SC":
                n *= size
        return n

    @property
    def extra_planes(self) -> int:
        """Planes beyond one 2-D image (Z, T or other axes): a stack, not a slide."""
        n = 1
        for axis, size in zip(self.axes, self.shape, strict=False):
            if axis not in "YXSC":
                n *= size
        return n

    def problem(self) -> str | None:
        """Why histobridge cannot tile this image as RGB brightfield (None when it can)."""
        bits = {"uint8": 8, "uint16": 16, "int16": 16, "uint32": 32, "float32": 32, "float64": 64}
        depth = f"{bits.get(self.dtype, '?')}-bit ({self.dtype})"
        if self.dtype != "uint8" or self.channels not in (3, 4) or self.extra_planes != 1:
            what = f"{self.channels} channel{'s' if self.channels != 1 else ''} of {depth} samples"
            if self.extra_planes != 1:
                what += f" in {self.extra_planes} planes"
            return (
                f"{what} (axes {self.axes}, shape {self.shape}); histobridge tiles 8-bit RGB brightfield "
                "images only, and converting this one would drop channels or clip values"
            )
        return None


def is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in TIFF_MAGIC
    except OSError:
        return False


def refuse_unsupported(path: Path) -> None:
    """Raise :class:`SlideError` for formats whose pixels live elsewhere (Olympus VSI + ETS)."""
    if path.suffix.lower() != ".vsi":
        return
    folder = path.parent / f"_{path.stem}_"
    ets = sorted(folder.rglob("*.ets")) if folder.is_dir() else []
    where = (
        f"its pyramid is in {ets[0].relative_to(path.parent)}" if ets
        else f"its pyramid folder {folder.name}/ (stack*/frame_t.ets) is missing as well"
    )  # fmt: skip
    raise SlideError(
        f"{path}: Olympus VSI is not supported: the .vsi file holds only the label and overview photos and "
        f"{where}, which neither slide reader can open; convert the slide to OME-TIFF "
        "(e.g. QuPath's or bfconvert's export) and add that file to the project"
    )


def tiff_facts(path: Path, series_index: int = 0) -> TiffFacts | None:
    """Facts about a TIFF's main series (None when the file is not a TIFF or tifffile cannot parse it)."""
    if not is_tiff(path):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[min(series_index, len(tf.series) - 1)]
            ome = _ome_mpp(tf.ome_metadata, series_index) if tf.is_ome else (None, None)
            return TiffFacts(str(series.axes), str(series.dtype), tuple(int(v) for v in series.shape), ome)
    except Exception as err:  # a file the readers may still handle (or refuse with their own message)
        log.debug("tifffile cannot describe %s: %s", path, err)
        return None


def _ome_mpp(xml: str | None, image_index: int) -> tuple[float | None, float | None]:
    """PhysicalSizeX/Y of the ``image_index``-th OME Image, converted to µm (None when absent or odd)."""
    if not xml:
        return None, None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None
    images = [el for el in root if el.tag.rsplit("}", 1)[-1] == "Image"]
    if not images:
        return None, None
    image = images[min(image_index, len(images) - 1)]
    pixels = next((el for el in image if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None, None
    return _length_um(pixels.attrib, "X"), _length_um(pixels.attrib, "Y")


def _length_um(attrib: dict[str, Any], axis: str) -> float | None:
    raw = attrib.get(f"PhysicalSize{axis}")
    unit = attrib.get(f"PhysicalSize{axis}Unit", "µm")
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        return None
    factor = UM_PER_UNIT.get(unit)
    if factor is None or not math.isfinite(value) or value <= 0:
        return None
    return value * factor
