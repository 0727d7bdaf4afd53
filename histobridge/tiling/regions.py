"""The regions of one image that get tiled: its annotations, or its tissue, with their classes.

QuPath's two special classes keep their QuPath meaning here. ``Ignore*`` marks an area to leave
out: it is cut out of every other region and is never a label. ``Region*`` marks where to work:
when an image has any, every region is clipped to them (and with no labelled annotation the
``Region*`` area itself is tiled unlabelled); it is never a label either. Derived classes
(``"Ignore*: artefact"``) count as their base class.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from histobridge.slides.tissue import tissue_geometry
from histobridge.tiling.grid import area_parts, grid_for_geometry

log = logging.getLogger(__name__)

TILED_TYPES = ("annotation", "tmaCore")
IGNORE_CLASS = "Ignore*"
REGION_CLASS = "Region*"
SPECIAL_CLASSES = (IGNORE_CLASS, REGION_CLASS)


def base_class(path_class: str | None) -> str | None:
    """The first level of a (possibly derived) class name: ``"Ignore*: x"`` → ``"Ignore*"``."""
    return None if path_class is None else path_class.split(": ", 1)[0]


def is_ignore_class(path_class: str | None) -> bool:
    """Whether objects of this class mark an area to leave out (QuPath's ``Ignore*``)."""
    return base_class(path_class) == IGNORE_CLASS


def is_region_class(path_class: str | None) -> bool:
    """Whether objects of this class mark where to work (QuPath's ``Region*``)."""
    return base_class(path_class) == REGION_CLASS


def is_special_class(path_class: str | None) -> bool:
    """``Ignore*`` or ``Region*`` (or derived from them): never a label."""
    return base_class(path_class) in SPECIAL_CLASSES


@dataclass(frozen=True)
class Region:
    """One area to tile (level-0 QuPath px) and where it came from."""

    geometry: BaseGeometry
    path_class: str | None
    region_id: str
    name: str | None

    def record(self) -> dict[str, Any]:
        """The ``attrs["regions"]`` entry of this region."""
        return {
            "id": self.region_id,
            "name": self.name,
            "class": self.path_class,
            "bounds": [float(v) for v in self.geometry.bounds] if not self.geometry.is_empty else None,
        }


@dataclass(frozen=True)
class WorkArea:
    """What the special classes of one image say: the area to leave out, and where to work.

    ``keep`` is None when the image has no ``Region*`` annotation (work everywhere).
    """

    ignore: BaseGeometry | None
    keep: BaseGeometry | None

    def apply(self, geometry: BaseGeometry) -> BaseGeometry:
        """``geometry`` clipped to the work area, with the ignored area cut out."""
        geom = area_parts(geometry)
        if self.keep is not None and not geom.is_empty:
            geom = area_parts(geom.intersection(self.keep))
        if self.ignore is not None and not geom.is_empty:
            geom = area_parts(geom.difference(self.ignore))
        return geom


def _union(annotations: Sequence[Any]) -> BaseGeometry | None:
    geoms = [area_parts(a.geometry) for a in annotations]
    geoms = [g for g in geoms if not g.is_empty]
    return area_parts(shapely.unary_union(geoms)) if geoms else None


def work_area(annotations: Sequence[Any]) -> WorkArea:
    """The ``Ignore*`` and ``Region*`` areas among an image's annotations."""
    ignore = _union([a for a in annotations if is_ignore_class(a.path_class)])
    keep = _union([a for a in annotations if is_region_class(a.path_class)])
    return WorkArea(ignore, keep)


def _class_names(project: Any, annotations: Sequence[Any], classes: Sequence[str] | None) -> list[str]:
    if classes is not None:
        return [c for c in classes if not is_special_class(c)]
    names = [getattr(c, "name", str(c)) for c in getattr(project, "classes", None) or []]
    names = [n for n in names if not is_special_class(n)]
    for a in annotations:
        if a.path_class is not None and a.path_class not in names:
            names.append(a.path_class)
    return names


def _read(project: Any, entry: Any, closed_lines_as_areas: bool, notes: list[str]) -> list[Any]:
    """The image's annotations to consider; what the reader noticed (closed outlines…) goes to ``notes``."""
    found = project.annotations(entry, closed_lines_as_areas=True) if closed_lines_as_areas else (
        project.annotations(entry))
    notes.extend(getattr(found, "notes", ()) or ())
    problem = getattr(found, "problem", None)
    if problem:
        notes.append(problem)
    return [a for a in found.annotations if getattr(a, "object_type", "annotation") in TILED_TYPES]


def collect_regions(
    project: Any,
    entry: Any,
    slide: Any,
    *,
    classes: Sequence[str] | None = None,
    tissue: bool = False,
    whole_tissue: bool = False,
    closed_lines_as_areas: bool = False,
    notes: list[str] | None = None,
) -> tuple[list[Region], list[str]]:
    """Regions to tile and the class list the labels index into.

    ``whole_tissue`` tiles the detected tissue as one unclassified region (no labelled annotations
    needed); ``tissue`` keeps only the tissue part of each annotation. ``Ignore*`` and ``Region*``
    annotations shape the work area in both modes (module docstring). ``closed_lines_as_areas``
    reads closed outlines (LineStrings) as areas. The annotation set's notes and problem (e.g. "2 ×
    closed LineString outline ignored…", "data file missing") and what was done about special
    classes are appended to ``notes`` when given, so a caller can say why an image has no regions.
    """
    said = notes if notes is not None else []
    every = _read(project, entry, closed_lines_as_areas, said)
    area = work_area(every)
    if area.ignore is not None:
        said.append(f"Ignore* area of {area.ignore.area:.0f} px² cut out of the regions")
    if area.keep is not None:
        said.append(f"work limited to the Region* area ({area.keep.area:.0f} px²)")
    if whole_tissue:
        geom = area.apply(tissue_geometry(slide))
        names = [c for c in classes if not is_special_class(c)] if classes is not None else []
        _log(entry, said)
        return ([Region(geom, None, "tissue", "tissue")] if not geom.is_empty else []), names
    labelled = [a for a in every if not is_special_class(a.path_class)]
    annotations = labelled
    if classes is not None:
        wanted = set(classes)
        annotations = [a for a in annotations if a.path_class in wanted]
    names = _class_names(project, annotations, classes)
    tissue_geom = tissue_geometry(slide) if tissue and (annotations or area.keep is not None) else None
    regions = []
    for i, a in enumerate(annotations):
        geom = area.apply(a.geometry)
        if tissue_geom is not None and not geom.is_empty:
            geom = area_parts(geom.intersection(tissue_geom))
        if geom.is_empty:
            continue
        rid = getattr(a, "object_id", None) or str(i)
        regions.append(Region(geom, a.path_class, str(rid), getattr(a, "name", None)))
    if not labelled and area.keep is not None:
        geom = area.apply(area.keep if tissue_geom is None else area.keep.intersection(tissue_geom))
        if not geom.is_empty:
            said.append("no labelled annotation: the Region* area is tiled unlabelled")
            regions.append(Region(geom, None, "region", REGION_CLASS))
    _log(entry, said)
    return regions, names


def _log(entry: Any, lines: Sequence[str]) -> None:
    for line in lines:
        log.info("image %s: %s", getattr(entry, "entry_id", "?"), line)


def grid_regions(
    regions: Sequence[Region],
    class_names: Sequence[str],
    tile_l0: float,
    stride_l0: float,
    min_coverage: float,
    slide: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coords (N, 4), labels int16, region index int32) over all regions, clipped to the slide."""
    w, h = slide.dimensions
    index = {c: i for i, c in enumerate(class_names)}
    parts, labels, idx = [], [], []
    for i, r in enumerate(regions):
        c = grid_for_geometry(r.geometry, tile_l0, stride_l0, min_coverage, (0.0, 0.0, float(w), float(h)))
        parts.append(c)
        labels.append(np.full(len(c), index.get(r.path_class, -1) if r.path_class else -1, np.int16))
        idx.append(np.full(len(c), i, np.int32))
    if not parts:
        return np.zeros((0, 4)), np.zeros(0, np.int16), np.zeros(0, np.int32)
    return np.concatenate(parts), np.concatenate(labels), np.concatenate(idx)
