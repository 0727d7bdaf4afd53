"""Where one image's annotations come from: ``.qpdata``, the GeoJSON export, or paquo.

The order for ``source="auto"`` (DEVELOPERS.md): QuPath's own ``data/<id>/data.qpdata`` (read
without a JVM), then the GeoJSON written by ``qupath_scripts/export_annotations.groovy``. paquo
starts a JVM, so it is used only when asked for. QuPath's ``summary.json`` (object counts per type
and class) is read alongside, so that what QuPath stored is known even when ``data.qpdata`` is not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from histobridge.errors import AnnotationError, ProjectError, QPDataError
from histobridge.qupath import layout
from histobridge.qupath.annotations import Annotation, AnnotationSet

if TYPE_CHECKING:
    from histobridge.qupath.project import ImageEntry, Project

log = logging.getLogger(__name__)

ALL_TYPES = ("annotation", "detection", "tile", "cell", "tmaCore")
# summary.json's objectTypeCounts keys (QuPath's display names) → objectType spellings.
SUMMARY_TYPES = {
    "Annotations": "annotation", "Detections": "detection", "Cells": "cell", "Tiles": "tile",
    "TMA cores": "tmaCore", "Root objects": "root",
}


@dataclass(frozen=True)
class StoredSummary:
    """QuPath's own record of one image's objects (``data/<id>/summary.json``), read without a JVM.

    ``counts`` maps object types (``"annotation"``, ``"cell"``…; the root left out) to numbers;
    class counts keep QuPath's names (``"Unclassified"`` for no class).
    """

    path: Path
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    annotation_classes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    detection_classes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    width: int | None = None
    height: int | None = None
    image_type: str | None = None

    @property
    def n_objects(self) -> int:
        """Objects QuPath counted, the root left out."""
        return sum(self.counts.values())

    def describe(self) -> str:
        """``"8 annotations, 13370 cells"``: what QuPath counted, for messages."""
        parts = [f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in self.counts.items() if n]
        return ", ".join(parts) or "no objects"


def _int_map(value: Any) -> Mapping[str, int]:
    if not isinstance(value, Mapping):
        return MappingProxyType({})
    return MappingProxyType({str(k): int(v) for k, v in value.items()
                             if isinstance(v, int) and not isinstance(v, bool)})


def read_summary(path: Path) -> StoredSummary | None:
    """A ``summary.json``; None when absent or unreadable (it is a convenience copy, never required)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    hierarchy = doc.get("hierarchy") if isinstance(doc, Mapping) else None
    if not isinstance(hierarchy, Mapping):
        return None
    raw = _int_map(hierarchy.get("objectTypeCounts"))
    counts = {SUMMARY_TYPES.get(k, k): n for k, n in raw.items() if SUMMARY_TYPES.get(k) != "root"}
    server = doc.get("server") if isinstance(doc.get("server"), Mapping) else {}
    size = [server.get(k) for k in ("width", "height")]
    width, height = (int(v) if isinstance(v, int) and not isinstance(v, bool) else None for v in size)
    return StoredSummary(
        path=path, counts=MappingProxyType(counts),
        annotation_classes=_int_map(hierarchy.get("annotationClassificationCounts")),
        detection_classes=_int_map(hierarchy.get("detectionClassificationCounts")),
        width=width, height=height,
        image_type=doc.get("imageType") if isinstance(doc.get("imageType"), str) else None,
    )


def stored_summary(project: Project, entry: ImageEntry) -> StoredSummary | None:
    """What QuPath counted for ``entry`` when it last saved it, or None without a summary."""
    return read_summary(layout.summary_path(project.folder, entry.entry_id))


def _keep(annotations: list[Annotation], object_types: Collection[str] | None) -> tuple[Annotation, ...]:
    return tuple(a for a in annotations if object_types is None or a.object_type in object_types)


def from_qpdata(
    project: Project, entry: ImageEntry, object_types: Collection[str] | None, *,
    closed_lines_as_areas: bool = False,
) -> AnnotationSet:
    """Objects from ``data/<id>/data.qpdata``; raises QPDataError/ProjectError when unusable."""
    path = layout.qpdata_path(project.folder, entry.entry_id)
    if not path.is_file():
        raise ProjectError(f"{path}: no QuPath data file for image {entry.entry_id} ({entry.name!r})")
    try:
        from histobridge.qupath.qpdata import read_qpdata_annotations
    except ImportError as err:
        raise ProjectError(f"{path}: the .qpdata reader is not available: {err}") from err
    types = tuple(object_types) if object_types is not None else ALL_TYPES
    result = read_qpdata_annotations(path, types=types, closed_lines_as_areas=closed_lines_as_areas)
    found = _keep(result.annotations, object_types)
    summary = stored_summary(project, entry)
    notes = tuple(result.notes)
    if object_types == ("annotation",):
        notes += _summary_check(summary, found)
    return AnnotationSet(found, "qpdata", notes, path, summary.counts if summary else None)


def _summary_check(summary: StoredSummary | None, found: tuple[Annotation, ...]) -> tuple[str, ...]:
    """Compare with QuPath's own count in ``summary.json`` (points and lines explain a surplus)."""
    if summary is None:
        return ()
    expected = summary.counts.get("annotation", 0)
    if expected == len(found):
        return ()
    return (f"{summary.path}: QuPath counted {expected} annotation(s), {len(found)} have an area and "
            "were read (points and lines are left out)",)


def from_geojson(
    project: Project, entry: ImageEntry, object_types: Collection[str] | None, *,
    closed_lines_as_areas: bool = False,
) -> AnnotationSet:
    """Objects from the GeoJSON export in the histobridge layout; AnnotationError when absent.

    An export that exists but cannot be read (empty, truncated, not JSON) is an AnnotationError
    naming the file, never an empty set.
    """
    from histobridge.qupath.geojson import read_features

    path = _geojson_export(project, entry)
    if path is None:
        raise AnnotationError(_no_export(project, entry))
    result = read_features(path, object_types=object_types, closed_lines_as_areas=closed_lines_as_areas)
    summary = stored_summary(project, entry)
    return AnnotationSet(tuple(result.annotations), "geojson", tuple(result.notes), path,
                         summary.counts if summary else None)


def _geojson_export(project: Project, entry: ImageEntry) -> Path | None:
    candidates = layout.annotation_candidates(project.folder, entry.entry_id)
    return next((p for p in candidates if p.is_file()), None)


def _no_export(project: Project, entry: ImageEntry) -> str:
    expected = layout.annotation_path(project.folder, entry.entry_id)
    return (f"{expected}: no GeoJSON annotations for image {entry.entry_id} ({entry.name!r}); export them "
            "from QuPath with qupath_scripts/export_annotations.groovy (Run for project)")


def from_paquo(
    project: Project, entry: ImageEntry, object_types: Collection[str] | None, *,
    closed_lines_as_areas: bool = False,
) -> AnnotationSet:
    """Annotations read by QuPath itself through paquo (in a subprocess).

    ``closed_lines_as_areas`` is accepted for a uniform signature; paquo's reader keeps QuPath's
    own view, in which a polyline has no area.
    """
    from histobridge.qupath.paquo.read import read_annotations

    result = read_annotations(project.path, entry.entry_id)
    return AnnotationSet(_keep(result.annotations, object_types), "paquo", tuple(result.notes), project.path)


def read_entry_annotations(
    project: Project, entry: ImageEntry, *, source: str, object_types: Collection[str] | None,
    closed_lines_as_areas: bool = False,
) -> AnnotationSet:
    """Dispatch on ``source``; ``auto`` reads qpdata, else the GeoJSON export, else nothing.

    ``auto`` falls back only on what is absent: a ``data.qpdata`` that cannot be read is used
    only with a GeoJSON export to fall back on (noted), else its error is raised; an export that
    exists but cannot be read raises. With neither file the set is empty, and when QuPath's
    ``summary.json`` counted objects its ``problem`` says the data file is missing.
    """
    readers = {"qpdata": from_qpdata, "geojson": from_geojson, "paquo": from_paquo}
    if source != "auto":
        return readers[source](project, entry, object_types, closed_lines_as_areas=closed_lines_as_areas)
    notes: list[str] = []
    qpdata = layout.qpdata_path(project.folder, entry.entry_id)
    export = _geojson_export(project, entry)
    if qpdata.is_file():
        try:
            return from_qpdata(project, entry, object_types, closed_lines_as_areas=closed_lines_as_areas)
        except (QPDataError, ProjectError, AnnotationError) as err:
            if export is None:
                raise
            log.warning("%s", err)
            notes.append(f"{qpdata}: not usable ({err}); read the GeoJSON export instead")
    summary = stored_summary(project, entry)
    stored = summary.counts if summary else None
    missing = None
    if summary is not None and summary.n_objects and not qpdata.is_file():
        missing = (f"{qpdata}: data file missing; QuPath's {summary.path.name} counted "
                   f"{summary.describe()} for image {entry.entry_id} ({entry.name!r})")
    if export is None:
        notes.append(_no_export(project, entry))
        return AnnotationSet((), "none", tuple(notes + ([missing] if missing else [])), None, stored, missing)
    found = from_geojson(project, entry, object_types, closed_lines_as_areas=closed_lines_as_areas)
    if missing:
        notes.append(missing)
    return AnnotationSet(found.annotations, found.source, tuple(notes) + found.notes, found.path, stored)


__all__ = [
    "StoredSummary",
    "from_geojson",
    "from_paquo",
    "from_qpdata",
    "read_entry_annotations",
    "read_summary",
    "stored_summary",
]
