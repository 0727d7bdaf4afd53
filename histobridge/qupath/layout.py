"""Where histobridge and QuPath keep things inside a project folder: the one place paths are spelled.

QuPath owns ``project.qpproj``, ``classifiers/`` and ``data/``; histobridge writes only below
``<project>/histobridge/`` so that QuPath never sees (or overwrites) files it does not know.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_FILE = "project.qpproj"
HISTOBRIDGE_DIR = "histobridge"
ANNOTATIONS_DIR = "annotations"
PREDICTIONS_DIR = "predictions"
BACKUPS_DIR = "backups"
ANNOTATION_SUFFIXES = (".geojson", ".geojson.gz")
PREDICTION_SUFFIX = ".geojson.gz"

PathLike = str | os.PathLike[str]


def histobridge_dir(project_folder: PathLike) -> Path:
    """``<project>/histobridge``: everything histobridge writes into a project lives below it."""
    return Path(project_folder) / HISTOBRIDGE_DIR


def annotations_dir(project_folder: PathLike) -> Path:
    """Folder of per-image annotation exports written by ``export_annotations.groovy``."""
    return histobridge_dir(project_folder) / ANNOTATIONS_DIR


def annotation_path(project_folder: PathLike, entry_id: int) -> Path:
    """``<project>/histobridge/annotations/<entryID>.geojson`` (the name the Groovy script writes)."""
    return annotations_dir(project_folder) / f"{int(entry_id)}{ANNOTATION_SUFFIXES[0]}"


def annotation_candidates(project_folder: PathLike, entry_id: int) -> list[Path]:
    """Every accepted sidecar name for an entry, preferred first (plain, then gzip)."""
    return [annotations_dir(project_folder) / f"{int(entry_id)}{s}" for s in ANNOTATION_SUFFIXES]


def predictions_dir(project_folder: PathLike) -> Path:
    """Folder of per-image classifier results read by ``import_results.groovy``."""
    return histobridge_dir(project_folder) / PREDICTIONS_DIR


def predictions_path(project_folder: PathLike, entry_id: int) -> Path:
    """``<project>/histobridge/predictions/<entryID>.geojson.gz``."""
    return predictions_dir(project_folder) / f"{int(entry_id)}{PREDICTION_SUFFIX}"


prediction_path = predictions_path


def backups_dir(project_folder: PathLike) -> Path:
    """Copies of project files taken before histobridge rewrites them."""
    return histobridge_dir(project_folder) / BACKUPS_DIR


def classes_path(project_folder: PathLike) -> Path:
    """QuPath's class list, ``<project>/classifiers/classes.json``."""
    return Path(project_folder) / "classifiers" / "classes.json"


def entry_data_dir(project_folder: PathLike, entry_id: int) -> Path:
    """QuPath's per-image folder ``<project>/data/<entryID>``."""
    return Path(project_folder) / "data" / str(int(entry_id))


def qpdata_path(project_folder: PathLike, entry_id: int) -> Path:
    """QuPath's object hierarchy for one image, ``data/<entryID>/data.qpdata``."""
    return entry_data_dir(project_folder, entry_id) / "data.qpdata"


def summary_path(project_folder: PathLike, entry_id: int) -> Path:
    """QuPath's per-image object counts, ``data/<entryID>/summary.json``."""
    return entry_data_dir(project_folder, entry_id) / "summary.json"


__all__ = [
    "ANNOTATION_SUFFIXES",
    "PROJECT_FILE",
    "annotation_candidates",
    "annotation_path",
    "annotations_dir",
    "backups_dir",
    "classes_path",
    "entry_data_dir",
    "histobridge_dir",
    "prediction_path",
    "predictions_dir",
    "predictions_path",
    "qpdata_path",
    "summary_path",
]
