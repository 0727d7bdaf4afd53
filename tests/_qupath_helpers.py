"""Builders for small QuPath projects and GeoJSON documents used by the QuPath-layer tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from histobridge.qupath.servers import path_to_uri

OPENSLIDE = "qupath.lib.images.servers.openslide.OpenslideServerBuilder"
BIOFORMATS = "qupath.lib.images.servers.bioformats.BioFormatsServerBuilder"


def write_tiff(path: Path, size: tuple[int, int] = (96, 64), mpp: float | None = None) -> Path:
    """A small RGB TIFF; ``mpp`` sets the resolution tags (None leaves the slide uncalibrated)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    img = np.full((h, w, 3), 220, np.uint8)
    img[: h // 2, : w // 2] = (150, 60, 170)
    kwargs: dict[str, Any] = {}
    if mpp is not None:
        kwargs = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(path, img, photometric="rgb", **kwargs)
    return path


def uri_builder(uri: str, provider: str = BIOFORMATS, args: list[str] | None = None,
                metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"builderType": "uri", "providerClassName": provider, "uri": uri,
                         "args": list(args if args is not None else (["--series", "0"]
                                                                     if provider == BIOFORMATS else []))}
    if metadata is not None:
        b["metadata"] = metadata
    return b


def calibration(value: float, unit: str = "µm") -> dict[str, Any]:
    """``ImageServerMetadata`` holding only a pixel calibration."""
    return {"pixelCalibration": {"pixelWidth": {"value": value, "unit": unit},
                                 "pixelHeight": {"value": value, "unit": unit}}}


def entry(entry_id: int, builder: dict[str, Any], name: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"serverBuilder": builder, "entryID": entry_id, "imageName": name or f"image {entry_id}",
            "metadata": {}, **extra}


def write_project(folder: Path, images: list[dict[str, Any]], *, uri: str | None = None,
                  classes: list[dict[str, Any]] | None = None) -> Path:
    """``project.qpproj`` (and optionally ``classes.json``) in ``folder``; returns the qpproj path."""
    folder.mkdir(parents=True, exist_ok=True)
    qpproj = folder / "project.qpproj"
    doc = {"version": "0.5.1", "createTimestamp": 1700000000000, "modifyTimestamp": 1700000000000,
           "uri": uri if uri is not None else path_to_uri(qpproj),
           "lastID": max([i.get("entryID", 0) for i in images], default=0), "images": images}
    qpproj.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    if classes is not None:
        (folder / "classifiers").mkdir(exist_ok=True)
        (folder / "classifiers" / "classes.json").write_text(json.dumps({"pathClasses": classes}))
    return qpproj


def square(x: float, y: float, s: float) -> list[list[list[float]]]:
    return [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]]


def feature(coords: Any, *, geom_type: str = "Polygon", **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": geom_type, "coordinates": coords}, "properties": props}
