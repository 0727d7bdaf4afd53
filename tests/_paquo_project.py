"""A QuPath project made by QuPath itself (through paquo) around a plain TIFF of the sample slide.

QuPath's ImageJ server opens plain (strip, uncompressed) RGB TIFFs, so every QuPath build can open
this image; tiffslide opens it too. The project, its image entry (ImageJ server builder, thumbnail,
``server.json``), its classes and the sample's annotations in ``data.qpdata`` are all written by
QuPath's own code: run as ``python tests/_paquo_project.py FOLDER TIFF GEOJSON CLASSES_JSON`` with
``PAQUO_QUPATH_DIR`` naming the QuPath to use (one JVM per process, hence a child).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_MPP = 0.499  # CMU-1-Small-Region's recorded pixel size


def write_plain_tiff(slide: Path, target: Path, *, tiled: bool = False) -> Path:
    """The whole slide as one RGB image with its pixel size (ResolutionUnit cm, as ImageJ and tiffslide
    read it); strips by default, ``tiled`` for a TIFF that QuPath's ImageJ server cannot open."""
    import tifffile

    from histobridge.slides import open_slide

    s = open_slide(slide)
    w, h = s.dimensions
    pixels = np.ascontiguousarray(np.asarray(s.read_region(0, 0, w, h))[..., :3])
    per_cm = 1e4 / (s.mpp_or_none or SAMPLE_MPP)
    layout: dict[str, Any] = {"tile": (256, 256)} if tiled else {"rowsperstrip": 64}
    target.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(target, pixels, photometric="rgb", resolution=(per_cm, per_cm),
                     resolutionunit="CENTIMETER", **layout)
    return target


def sample_file(rel: str) -> Path:
    """A file of the bundled skin sample project (its path in the install)."""
    from histobridge.qupath.sample import sample_template

    node = sample_template("skin")
    for part in rel.split("/"):
        node = node / part
    return Path(str(node))


def make_project(install: Path, folder: Path, tiff: Path, geojson: Path, classes: Path) -> Path:
    """Run this file as a child under QuPath ``install``; returns ``folder/project.qpproj``.
    Skips the calling test when paquo is not installed (it is in the ``test`` extra)."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("paquo") is None:
        pytest.skip("paquo is not installed (pip install 'histobridge[qupath]')")
    env = {**os.environ, "PAQUO_QUPATH_DIR": str(install)}
    cmd = [sys.executable, __file__, str(folder), str(tiff), str(geojson), str(classes)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"QuPath could not make the project:\n{proc.stderr[-3000:]}")
    return folder / "project.qpproj"


_MADE: dict[str, Path] = {}


def paquo_made_project(version: str, install: Path, slide: Path, workdir: Path) -> Path:
    """The skin sample as a project QuPath ``version`` made around a plain TIFF of ``slide``; made once
    per session under ``workdir`` (a session temp folder). Work on a :func:`copy_project` of it."""
    if version not in _MADE:
        tiff = workdir / "CMU-1-Small-Region.tif"
        if not tiff.exists():
            write_plain_tiff(slide, tiff)
        folder = workdir / f"skin-{version.replace('.', '')}"  # paquo takes a dotted folder for a file
        make_project(install, folder, tiff, sample_file("histobridge/annotations/1.geojson"),
                     sample_file("classifiers/classes.json"))
        _MADE[version] = folder
    return _MADE[version]


def copy_project(template: Path, target: Path) -> Path:
    """A copy of a project folder; the image stays where it is (its URI is absolute)."""
    shutil.copytree(template, target)
    return target


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def _child(folder: str, tiff: str, geojson: str, classes: str) -> None:
    from paquo.classes import QuPathPathClass
    from paquo.images import QuPathImageType
    from paquo.projects import QuPathProject

    features = json.loads(Path(geojson).read_text(encoding="utf-8"))["features"]
    path_classes = []
    for c in json.loads(Path(classes).read_text(encoding="utf-8"))["pathClasses"]:
        argb = int(c["color"]) & 0xFFFFFF
        rgb = ((argb >> 16) & 255, (argb >> 8) & 255, argb & 255)
        path_classes.append(QuPathPathClass(c["name"], color=rgb))
    with QuPathProject(Path(folder) / "project.qpproj", mode="x") as qp:
        qp.path_classes = path_classes
        image = qp.add_image(tiff, image_type=QuPathImageType.BRIGHTFIELD_H_E)
        image.hierarchy.load_geojson(features)
    # Leaving the block saves the image data and the project, as QuPath does.


if __name__ == "__main__":
    _child(*sys.argv[1:5])
