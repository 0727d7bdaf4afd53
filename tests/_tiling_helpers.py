"""Small stand-ins for the project API and generated pyramidal TIFFs with known pixel patterns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from histobridge.qupath.annotations import Annotation, PathClass
from histobridge.qupath.project import ImageEntry

BLOCK = 64


def pattern_image(width: int, height: int, block: int = BLOCK) -> np.ndarray:
    """RGB image where each ``block`` square is coloured by its block coordinates (R=bx*8, G=by*8)."""
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[..., 0] = ((xs // block) * 8) % 256
    rgb[..., 1] = ((ys // block) * 8) % 256
    rgb[..., 2] = 128
    return rgb


def halve(rgb: np.ndarray) -> np.ndarray:
    """2x2 mean (drops an odd last row/column), the usual way pyramids are built."""
    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    a = rgb[:h, :w].astype(np.uint16)
    return ((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2] + 2) // 4).astype(np.uint8)


def write_pyramid(
    path: Path,
    level0: np.ndarray,
    *,
    levels: int = 3,
    mpp: float | None = 0.5,
    compression: str | None = "zlib",
    tile: int = 256,
    dpi72: bool = False,
    ome_subifds: bool = False,
) -> Path:
    """Tiled pyramidal TIFF: levels as reduced-resolution IFDs (or OME SubIFDs) with optional µm/px."""
    import tifffile

    pyramid = [level0]
    for _ in range(levels - 1):
        pyramid.append(halve(pyramid[-1]))

    def res(i: int) -> dict[str, Any]:
        if dpi72:
            return {"resolution": (72, 72), "resolutionunit": "INCH"}
        if mpp is None:
            return {}
        return {"resolution": (1e4 / mpp / 2**i, 1e4 / mpp / 2**i), "resolutionunit": "CENTIMETER"}

    opts: dict[str, Any] = {"tile": (tile, tile), "compression": compression, "photometric": "rgb"}
    if ome_subifds:
        meta = {
            "PhysicalSizeX": mpp,
            "PhysicalSizeY": mpp,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
        }
        with tifffile.TiffWriter(path, ome=True) as tw:
            tw.write(pyramid[0], subifds=levels - 1, metadata={"axes": "YXS", **meta}, **opts, **res(0))
            for i, lvl in enumerate(pyramid[1:], start=1):
                tw.write(lvl, subfiletype=1, metadata=None, **opts, **res(i))
        return path
    with tifffile.TiffWriter(path, bigtiff=False) as tw:
        for i, lvl in enumerate(pyramid):
            tw.write(lvl, subfiletype=1 if i else 0, metadata=None, **opts, **res(i))
    return path


@dataclass
class FakeAnnotationSet:
    annotations: list[Annotation]
    source: str = "test"
    notes: list[str] = field(default_factory=list)


def FakeEntry(
    entry_id: int,
    name: str,
    path: Path | None,
    found: bool = True,
    problem: str | None = None,
    mpp_override: float | None = None,
    crop_region: tuple[float, float, float, float] | None = None,
) -> ImageEntry:
    """A real project entry for a local file (what Project.open builds from a qpproj)."""
    uri = path.absolute().as_uri() if path is not None else "file:/missing"
    return ImageEntry(entry_id, name, uri, path, found and path is not None, problem,
                      mpp_override=mpp_override, crop_region=crop_region)  # fmt: skip


def FakeClass(name: str, color: tuple[int, int, int] | None = None) -> PathClass:
    return PathClass(name, color)


@dataclass
class FakeProject:
    """The part of Project the tiler uses, with annotations given in memory instead of .qpdata files."""

    images: list[ImageEntry]
    by_entry: dict[int, list[Annotation]]
    classes: list[PathClass] = field(default_factory=list)

    def annotations(self, entry: ImageEntry) -> FakeAnnotationSet:
        return FakeAnnotationSet(list(self.by_entry.get(entry.entry_id, [])))

    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]


OPENSLIDE_SDIST = "openslide_python-1.4.7.tar.gz"
OPENSLIDE_SDIST_SHA256 = "730fed798de683b00c8ef4d956f3d429cc02f2c449eb0d58944e1769ba7983cc"
OPENSLIDE_FIXTURES = (
    "small.svs",
    "unreadable.svs",
    "boxes.tiff",
    "unopenable.tiff",
    "boxes_0.dcm",
    "boxes_1.dcm",
)


def openslide_test_fixtures() -> Path:
    """openslide-python 1.4.7's synthetic reader fixtures (sdist only), cached by the sdist's sha256.

    Raises RuntimeError when neither the cache nor the package index can provide them.
    """
    import hashlib
    import subprocess
    import sys
    import tarfile
    import tempfile

    from histobridge import datasets

    folder = datasets.cache_dir() / OPENSLIDE_SDIST_SHA256[:12] / "fixtures"
    if all((folder / name).is_file() for name in OPENSLIDE_FIXTURES):
        return folder
    with tempfile.TemporaryDirectory(prefix="hb-openslide-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "openslide-python",
               "--disable-pip-version-check", "-q", "openslide-python==1.4.7", "-d", tmp]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        sdist = Path(tmp) / OPENSLIDE_SDIST
        if proc.returncode != 0 or not sdist.is_file():
            raise RuntimeError(f"pip download openslide-python==1.4.7 failed: {proc.stderr.strip()[-300:]}")
        if hashlib.sha256(sdist.read_bytes()).hexdigest() != OPENSLIDE_SDIST_SHA256:
            raise RuntimeError(f"{sdist.name} has an unexpected sha256")
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and parts[1:3] == ("tests", "fixtures"):
                    data = tar.extractfile(member)
                    assert data is not None
                    (folder / parts[-1]).write_bytes(data.read())
    return folder
