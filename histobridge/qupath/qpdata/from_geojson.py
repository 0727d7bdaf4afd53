"""An image's GeoJSON annotations turned into QuPath's own ``data.qpdata``, so QuPath shows them.

QuPath opens a project image with the objects of ``data/<id>/data.qpdata`` and ignores histobridge's
GeoJSON export beside it. This writes the export's annotations (areas; points and lines are left
out with a note) into a new data file with :func:`~.writer.write_objects_qpdata`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histobridge.errors import AnnotationError
from histobridge.qupath import layout
from histobridge.qupath.geojson import read_features
from histobridge.qupath.qpdata.writer import QPDataWriteReport, write_objects_qpdata


@dataclass(frozen=True)
class GeoJSONImport:
    """What one conversion wrote, and what it left out (``notes``)."""

    report: QPDataWriteReport
    source: Path
    notes: tuple[str, ...]


def qpdata_from_geojson(
    project_folder: str | os.PathLike[str],
    entry_id: int | str,
    geojson: str | os.PathLike[str] | None = None,
    *,
    replace: bool = False,
    server: Mapping[str, Any] | None = None,
    root_id: str | None = None,
    timestamp_ms: int | None = None,
    entry_property: str | None = None,
) -> GeoJSONImport:
    """Write the annotations of ``geojson`` (default: the image's export under ``histobridge/``)
    into ``data/<id>/data.qpdata``. An existing data file is refused unless ``replace`` (kept as
    ``data.qpdata.bkp``). The remaining arguments are those of :func:`write_objects_qpdata`."""
    folder = Path(project_folder)
    eid = int(entry_id)
    if geojson is None:
        candidates = layout.annotation_candidates(folder, eid)
        source = next((p for p in candidates if p.is_file()), None)
        if source is None:
            raise AnnotationError(f"{candidates[0]}: no GeoJSON annotations for image {eid}")
    else:
        source = Path(geojson)
    result = read_features(source, object_types=("annotation",))
    if not result.annotations:
        raise AnnotationError(f"{source}: no annotations with an area to write")
    report = write_objects_qpdata(
        folder,
        eid,
        annotations=result.annotations,
        replace=replace,
        server=server,
        root_id=root_id,
        timestamp_ms=timestamp_ms,
        entry_property=entry_property,
    )
    return GeoJSONImport(report, source, tuple(result.notes))


__all__ = ["GeoJSONImport", "qpdata_from_geojson"]
