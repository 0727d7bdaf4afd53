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

from histobridge.errors import HistobridgeError, InputError
from histobridge.qupath.annotations import Annotation
from histobridge.qupath.project import ImageEntry, Project
from histobridge.slides import Slide
from histobridge.slides.tissue import tissue_geometry
from histobridge.tiling.grid import area_parts, candidate_count, grid_for_geometry

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


def _union(annotations: Sequence[Annotation]) -> BaseGeometry | None:
    geoms = [area_parts(a.geometry) for a in annotations]
    geoms = [g for g in geoms if not g.is_empty]
    return area_parts(shapely.unary_union(geoms)) if geoms else None


def work_area(annotations: Sequence[Annotation]) -> WorkArea:
    """The ``Ignore*`` and ``Region*`` areas among an image's annotations."""
    ignore = _union([a for a in annotations if is_ignore_class(a.path_class)])
    keep = _union([a for a in annotations if is_region_class(a.path_class)])
    return WorkArea(ignore, keep)


def _class_names(
    project: Project, annotations: Sequence[Annotation], classes: Sequence[str] | None
) -> list[str]:
    if classes is not None:
        return [c for c in classes if not is_special_class(c)]
    names = [c.name for c in project.classes]
    names = [n for n in names if not is_special_class(n)]
    for a in annotations:
        if a.path_class is not None and a.path_class not in names:
            names.append(a.path_class)
    return names


def tiled_annotations(project: Project, entry: ImageEntry) -> list[Annotation]:
    """The image's labelled objects that get tiled (annotations and TMA cores; never detections, never
    the special ``Ignore*``/``Region*`` classes)."""
    found = project.annotations(entry)
    return [
        a for a in found.annotations if a.object_type in TILED_TYPES and not is_special_class(a.path_class)
    ]


def _read(
    project: Project, entry: ImageEntry, closed_lines_as_areas: bool, notes: list[str]
) -> list[Annotation]:
    """The image's annotations to consider; what the reader noticed (closed outlines…) goes to ``notes``."""
    found = project.annotations(entry, closed_lines_as_areas=closed_lines_as_areas)
    notes.extend(found.notes)
    if found.problem:
        notes.append(found.problem)
    return [a for a in found.annotations if a.object_type in TILED_TYPES]


def check_classes(project: Project, entries: Sequence[ImageEntry], classes: Sequence[str] | None) -> None:
    """Every requested class exists (in ``classes.json`` or the selected images' annotations).

    A typo is an :class:`InputError` listing the classes there are, before any image is opened.
    Images whose annotations cannot be read are left to the per-image report.
    """
    if not classes:
        return
    known = list(dict.fromkeys(project.class_names()))
    if all(c in known for c in classes):
        return
    for entry in entries:
        if not entry.found:
            continue
        try:
            found = tiled_annotations(project, entry)
        except HistobridgeError:
            continue
        known += [a.path_class for a in found if a.path_class is not None and a.path_class not in known]
    known = [c for c in known if not is_special_class(c)]  # Ignore*/Region* are never labels
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise InputError(
            f"{project.path}: no class {', '.join(repr(c) for c in unknown)} in the project; "
            f"classes that exist: {', '.join(known) or 'none'}"
        )


def collect_regions(
    project: Project,
    entry: ImageEntry,
    slide: Slide,
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
        regions.append(Region(geom, a.path_class, a.object_id or str(i), a.name))
    if not labelled and area.keep is not None:
        geom = area.apply(area.keep if tissue_geom is None else area.keep.intersection(tissue_geom))
        if not geom.is_empty:
            said.append("no labelled annotation: the Region* area is tiled unlabelled")
            regions.append(Region(geom, None, "region", REGION_CLASS))
    _log(entry, said)
    return regions, names


def _log(entry: ImageEntry, lines: Sequence[str]) -> None:
    for line in lines:
        log.info("image %s: %s", entry.entry_id, line)


def grid_regions(
    regions: Sequence[Region],
    class_names: Sequence[str],
    tile_l0: float,
    stride_l0: float,
    min_coverage: float,
    slide: Slide,
    *,
    max_tiles: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coords (N, 4), labels int16, region index int32) over all regions, clipped to the slide.

    More than ``max_tiles`` grid positions over the regions' bounding boxes raise
    :class:`InputError` before any is allocated (a typo such as ``--tile-um 0.001`` asks for
    trillions).
    """
    w, h = slide.dimensions
    clip = (0.0, 0.0, float(w), float(h))
    if max_tiles is not None:
        planned = sum(
            candidate_count(r.geometry.bounds, tile_l0, stride_l0, clip)
            for r in regions
            if not r.geometry.is_empty
        )
        if planned > max_tiles:
            raise InputError(
                f"{slide.path}: {tile_l0:.4g}-px tiles (stride {stride_l0:.4g} px) would need up to "
                f"{planned:,} tile positions, over the limit of {max_tiles:,} per image; use larger tiles "
                "or raise the limit (--max-tiles)"
            )
    index = {c: i for i, c in enumerate(class_names)}
    parts, labels, idx = [], [], []
    for i, r in enumerate(regions):
        c = grid_for_geometry(r.geometry, tile_l0, stride_l0, min_coverage, clip)
        parts.append(c)
        labels.append(np.full(len(c), index.get(r.path_class, -1) if r.path_class else -1, np.int16))
        idx.append(np.full(len(c), i, np.int32))
    if not parts:
        return np.zeros((0, 4)), np.zeros(0, np.int16), np.zeros(0, np.int32)
    return np.concatenate(parts), np.concatenate(labels), np.concatenate(idx)
