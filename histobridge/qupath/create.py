"""Create a new QuPath project from image files and the objects to show on them.

Writes ``project.qpproj`` (one entry per image, image URIs absolute as QuPath writes them),
``classifiers/classes.json`` and each image's objects as GeoJSON in histobridge's annotation layout
(read back by :class:`~histobridge.qupath.project.Project`) plus a ``<image>.geojson`` beside the image
that QuPath imports by drag and drop. Refuses to write into a folder that already holds a project.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from histobridge._atomic import write_json
from histobridge.errors import ProjectError
from histobridge.qupath.annotations import Annotation, PathClass
from histobridge.qupath.classes import write_classes
from histobridge.qupath.geojson import write_features
from histobridge.qupath.layout import PROJECT_FILE, annotation_path, classes_path

BIOFORMATS = "qupath.lib.images.servers.bioformats.BioFormatsServerBuilder"
PROJECT_VERSION = "0.5.1"


@dataclass(frozen=True)
class NewImage:
    """One image of the new project and the objects drawn on it (level-0 px)."""

    path: Path
    name: str
    objects: Sequence[Annotation] = ()
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


def _entry(entry_id: int, image: NewImage) -> dict[str, object]:
    return {
        "serverBuilder": {
            "builderType": "uri",
            "providerClassName": BIOFORMATS,
            "uri": image.path.resolve().as_uri(),
            "args": [],
        },
        "entryID": entry_id,
        "randomizedName": str(uuid.uuid5(uuid.NAMESPACE_URL, image.path.resolve().as_uri())),
        "imageName": image.name,
        "description": image.description,
        "metadata": dict(image.metadata),
    }


def create_project(
    folder: str | os.PathLike[str], images: Sequence[NewImage], classes: Sequence[PathClass]
) -> Path:
    """Write a QuPath project for ``images`` into ``folder``; returns the ``project.qpproj`` path."""
    root = Path(folder)
    qpproj = root / PROJECT_FILE
    if qpproj.exists():
        raise ProjectError(f"{qpproj}: a project already exists here; choose an empty folder")
    for image in images:
        if not image.path.is_file():
            raise ProjectError(f"{image.path}: image file not found")
    root.mkdir(parents=True, exist_ok=True)
    write_classes(classes_path(root), classes)
    for entry_id, image in enumerate(images, start=1):
        write_features(annotation_path(root, entry_id), list(image.objects))
        write_features(image.path.with_name(image.path.stem + ".geojson"), list(image.objects))
    now = int(time.time() * 1000)
    doc = {
        "version": PROJECT_VERSION,
        "createTimestamp": now,
        "modifyTimestamp": now,
        "uri": qpproj.resolve().as_uri(),
        "lastID": len(images),
        "images": [_entry(i, image) for i, image in enumerate(images, start=1)],
    }
    write_json(qpproj, doc)
    return qpproj
