"""From ``.qpdata`` objects to areas for tiling and to QuPath 0.4+ GeoJSON.

The reader already yields the package's :class:`PathObject`; this module only decides which of
them have an area (the shared rules in :mod:`histobridge.qupath.geometry`) and writes features
through the one GeoJSON writer (:func:`histobridge.qupath.geojson.path_object_feature`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Collection, Iterable
from typing import Any

from histobridge.errors import AnnotationError
from histobridge.qupath.annotations import PathObject
from histobridge.qupath.geojson import FeatureReadResult, path_object_feature
from histobridge.qupath.geometry import NoteCounter, area_geometry
from histobridge.qupath.qpdata.reader import iter_objects

log = logging.getLogger(__name__)


def _label(obj: PathObject) -> str:
    what = f"{obj.object_type} #{obj.index}"
    return f"{what} {obj.name!r}" if obj.name else what


def to_annotation(
    obj: PathObject, notes: NoteCounter | None = None, *, closed_lines_as_areas: bool = False
) -> PathObject | None:
    """The object with its ROI reduced to its area, None for the root, points, lines, bad ROIs.

    Why an object was left out goes to ``notes`` when given.
    """
    if obj.object_type == "root":
        return None
    area = area_geometry(obj.geometry, _label(obj), notes if notes is not None else NoteCounter(),
                         closed_lines_as_areas=closed_lines_as_areas)
    return None if area is None else dataclasses.replace(obj, geometry=area)


def read_qpdata_annotations(
    path: str | os.PathLike[str],
    types: Collection[str] = ("annotation",),
    *,
    closed_lines_as_areas: bool = False,
) -> FeatureReadResult:
    """Objects of the given types with an area, in hierarchy order, and notes on those left out."""
    notes = NoteCounter()
    out: list[PathObject] = []
    for obj in sorted(iter_objects(path, types=types), key=lambda o: o.index):
        kept = to_annotation(obj, notes, closed_lines_as_areas=closed_lines_as_areas)
        if kept is not None:
            out.append(kept)
    return FeatureReadResult(out, notes.lines())


def qpdata_annotations(
    path: str | os.PathLike[str], types: Collection[str] = ("annotation",)
) -> list[PathObject]:
    """Objects of the given types (annotations by default) with an area.

    Objects without an area (points, lines) are left out and logged; use
    :func:`read_qpdata_annotations` to get the notes instead.
    """
    result = read_qpdata_annotations(path, types)
    for note in result.notes:
        log.info("%s: %s", path, note)
    return result.annotations


def to_geojson_feature(obj: PathObject) -> dict[str, Any] | None:
    """One QuPath 0.4+ GeoJSON Feature; None for objects without a ROI (the root).

    Raises :class:`AnnotationError` for a ROI that cannot be written (a non-finite coordinate).
    """
    if obj.object_type == "root" or not obj.has_roi:
        return None
    return path_object_feature(obj)


def to_geojson_features(
    objects: Iterable[PathObject], notes: NoteCounter | None = None
) -> list[dict[str, Any]]:
    """Features for the objects that have a ROI (the root is left out).

    With ``notes``, an object that cannot be written is left out and counted there; without, its
    :class:`AnnotationError` propagates.
    """
    out = []
    for obj in objects:
        try:
            f = to_geojson_feature(obj)
        except AnnotationError as err:
            if notes is None:
                raise
            notes.add("object that cannot be written left out", f"{_label(obj)}: {err}")
            continue
        if f is not None:
            out.append(f)
    return out


__all__ = [
    "qpdata_annotations",
    "read_qpdata_annotations",
    "to_annotation",
    "to_geojson_feature",
    "to_geojson_features",
]
