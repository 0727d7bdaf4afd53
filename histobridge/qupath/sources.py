"""Where one image's annotations come from: ``.qpdata``, the GeoJSON export, or paquo.

The order for ``source="auto"`` (DEVELOPERS.md): QuPath's own ``data/<id>/data.qpdata`` (read
without a JVM), then the GeoJSON written by ``qupath_scripts/export_annotations.groovy``. paquo
starts a JVM, so it is used only when asked for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from histobridge.errors import AnnotationError, ProjectError, QPDataError
from histobridge.qupath import layout
from histobridge.qupath.annotations import Annotation, AnnotationSet

if TYPE_CHECKING:
    from histobridge.qupath.project import ImageEntry, Project

log = logging.getLogger(__name__)


def _keep(annotations: list[Annotation], object_types: Collection[str] | None) -> tuple[Annotation, ...]:
    return tuple(a for a in annotations if object_types is None or a.object_type in object_types)


def from_qpdata(project: Project, entry: ImageEntry, object_types: Collection[str] | None) -> AnnotationSet:
    """Objects from ``data/<id>/data.qpdata``; raises QPDataError/ProjectError when unusable."""
    path = layout.qpdata_path(project.folder, entry.entry_id)
    if not path.is_file():
        raise ProjectError(f"{path}: no QuPath data file for image {entry.entry_id} ({entry.name!r})")
    try:
        from histobridge.qupath.qpdata import qpdata_annotations
    except ImportError as err:
        raise ProjectError(f"{path}: the .qpdata reader is not available: {err}") from err
    types = tuple(object_types) if object_types is not None else (
        "annotation", "detection", "tile", "cell", "tmaCore")
    found = _keep(qpdata_annotations(path, types=types), object_types)
    notes = _summary_check(project, entry, found) if object_types == ("annotation",) else ()
    return AnnotationSet(found, "qpdata", notes, path)


def _summary_check(project: Project, entry: ImageEntry, found: tuple[Annotation, ...]) -> tuple[str, ...]:
    """Compare with QuPath's own count in ``summary.json`` (points and lines explain a surplus)."""
    path = layout.summary_path(project.folder, entry.entry_id)
    try:
        counts = json.loads(path.read_text(encoding="utf-8"))["hierarchy"]["objectTypeCounts"]
        expected = int(counts.get("Annotations", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    if expected == len(found):
        return ()
    return (f"{path}: QuPath counted {expected} annotation(s), {len(found)} have an area and were read "
            "(points and lines are left out)",)


def from_geojson(project: Project, entry: ImageEntry, object_types: Collection[str] | None) -> AnnotationSet:
    """Objects from the GeoJSON export in the histobridge layout; AnnotationError when absent."""
    from histobridge.qupath.geojson import read_features

    for path in layout.annotation_candidates(project.folder, entry.entry_id):
        if path.is_file():
            result = read_features(path, object_types=object_types)
            return AnnotationSet(tuple(result.annotations), "geojson", tuple(result.notes), path)
    expected = layout.annotation_path(project.folder, entry.entry_id)
    raise AnnotationError(
        f"{expected}: no GeoJSON annotations for image {entry.entry_id} ({entry.name!r}); export them "
        "from QuPath with qupath_scripts/export_annotations.groovy (Run for project)"
    )


def from_paquo(project: Project, entry: ImageEntry, object_types: Collection[str] | None) -> AnnotationSet:
    """Annotations read by QuPath itself through paquo (in a subprocess)."""
    from histobridge.qupath.paquo.read import read_annotations

    result = read_annotations(project.path, entry.entry_id)
    return AnnotationSet(_keep(result.annotations, object_types), "paquo", tuple(result.notes), project.path)


def read_entry_annotations(
    project: Project, entry: ImageEntry, *, source: str, object_types: Collection[str] | None
) -> AnnotationSet:
    """Dispatch on ``source``; ``auto`` falls through qpdata → GeoJSON → empty, noting each miss."""
    readers = {"qpdata": from_qpdata, "geojson": from_geojson, "paquo": from_paquo}
    if source != "auto":
        return readers[source](project, entry, object_types)
    notes: list[str] = []
    qpdata = layout.qpdata_path(project.folder, entry.entry_id)
    if qpdata.is_file():
        try:
            return from_qpdata(project, entry, object_types)
        except (QPDataError, ProjectError, AnnotationError) as err:
            log.warning("%s", err)
            notes.append(f"{qpdata}: not usable ({err}); trying the GeoJSON export")
    try:
        found = from_geojson(project, entry, object_types)
    except AnnotationError as err:
        notes.append(str(err))
        return AnnotationSet((), "none", tuple(notes), None)
    return AnnotationSet(found.annotations, found.source, tuple(notes) + found.notes, found.path)


__all__ = ["from_geojson", "from_paquo", "from_qpdata", "read_entry_annotations"]
