"""The regions of one image that get tiled: its annotations, or its tissue, with their classes.

QuPath's two special classes keep their QuPath meaning here. ``Ignore*`` marks an area to leave
out: it is cut out of every other region and is never a label. ``Region*`` marks where to work:
when an image has any, every region is clipped to them (and with no labelled annotation the
``Region*`` area itself is tiled unlabelled); it is never a label either. Derived classes
(``"Ignore*: artefact"``) count as their base class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from histobridge.errors import HistobridgeError, InputError
from histobridge.qupath.annotations import Annotation, AnnotationSet
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


def tiled_annotations(project: Project, entry: ImageEntry) -> list[Annotation]:
    """The image's labelled objects that get tiled (annotations and TMA cores; never detections, never
    the special ``Ignore*``/``Region*`` classes)."""
    found = project.annotations(entry)
    return [
        a for a in found.annotations if a.object_type in TILED_TYPES and not is_special_class(a.path_class)
    ]


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


TissueSource = Callable[[], BaseGeometry]
"""Computes an image's tissue outline (level-0 px) when the planner needs it; called at most once."""

Fallback = Literal["region", "tissue"]
NO_TISSUE_INSIDE = "no tissue inside the annotations"


@dataclass(frozen=True)
class RegionOptions:
    """What :func:`plan_regions` is asked for (the tiler and the heatmap each fill one in).

    ``whole_tissue`` plans the detected tissue as one unclassified region (annotations are not
    needed); ``tissue`` keeps only the tissue part of each annotation; ``classes`` keeps only
    annotations of these classes (an empty list means every class). ``closed_lines_as_areas`` is how
    :func:`read_regions` reads closed outlines. ``fallback`` is what an image without a labelled
    annotation gets: ``"region"`` its ``Region*`` area, unlabelled (a training store holds only what
    was marked); ``"tissue"`` the detected tissue inside the work area, when no class was asked for
    and the reader noticed nothing that could explain the missing annotations (an unannotated slide
    still gets a heatmap).
    """

    classes: tuple[str, ...] | None = None
    tissue: bool = False
    whole_tissue: bool = False
    closed_lines_as_areas: bool = False
    fallback: Fallback = "region"

    def __post_init__(self) -> None:
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes) or None)
        if self.fallback not in get_args(Fallback):
            known = ", ".join(get_args(Fallback))
            raise InputError(f"fallback must be one of {known}, got {self.fallback!r}")


@dataclass(frozen=True)
class PlannedRegions:
    """The regions of one image, the class list their labels index into, and what was decided.

    ``read_notes`` are what the annotation reader noticed; ``notes`` say what the planner did (the
    special classes, a fallback); ``reason`` says why there is nothing to tile (None when there are
    regions), naming the reader's notes when they explain it.
    """

    regions: tuple[Region, ...]
    class_names: tuple[str, ...]
    notes: tuple[str, ...] = ()
    reason: str | None = None
    read_notes: tuple[str, ...] = ()

    def explained(self, *, read_notes: bool = True) -> list[str]:
        """The reader's notes (unless left out), the planner's, then the reason for an empty plan."""
        first = self.read_notes if read_notes else ()
        return [*first, *self.notes, *([self.reason] if self.reason else [])]


def reader_notes(found: AnnotationSet) -> list[str]:
    """What the annotation reader noticed, its ``problem`` included once."""
    notes = list(found.notes)
    if found.problem and found.problem not in notes:
        notes.append(found.problem)
    return notes


def plan_regions(
    found: AnnotationSet,
    options: RegionOptions,
    tissue: TissueSource,
    *,
    known_classes: Sequence[str] = (),
) -> PlannedRegions:
    """The one region planner: the tiler and the heatmap (batch and live) both plan through it.

    ``found`` is the image's annotation set as read; ``tissue`` computes its tissue outline, called
    only when needed and at most once (the server passes its cached outline). ``known_classes`` are
    the project's classes, the start of the class list when ``options.classes`` is None. ``Ignore*``
    and ``Region*`` shape the work area in every mode (module docstring).
    """
    said: list[str] = []
    every = [a for a in found.annotations if a.object_type in TILED_TYPES]
    area = work_area(every)
    if area.ignore is not None:
        said.append(f"Ignore* area of {area.ignore.area:.0f} px² cut out of the regions")
    if area.keep is not None:
        said.append(f"work limited to the Region* area ({area.keep.area:.0f} px²)")
    outline: list[BaseGeometry] = []

    def tissue_once() -> BaseGeometry:
        if not outline:
            outline.append(tissue())
        return outline[0]

    def plan(regions: list[Region], names: Sequence[str], reason: str | None = None) -> PlannedRegions:
        reason = None if regions else reason or "no area left to tile"
        return PlannedRegions(tuple(regions), tuple(names), tuple(said), reason, tuple(reader_notes(found)))

    asked = options.classes
    if options.whole_tissue:
        names = [c for c in asked if not is_special_class(c)] if asked is not None else []
        return plan(_whole(area, tissue_once()), names, _no_tissue(area, tissue_once()))
    labelled = [a for a in every if not is_special_class(a.path_class)]
    drawn = labelled if asked is None else [a for a in labelled if a.path_class in asked]
    names = _class_names(known_classes, drawn, asked)
    if drawn:
        regions = []
        for i, a in enumerate(drawn):
            geom = area.apply(a.geometry)
            if options.tissue and not geom.is_empty:
                geom = area_parts(geom.intersection(tissue_once()))
            if not geom.is_empty:
                regions.append(Region(geom, a.path_class, a.object_id or str(i), a.name))
        return plan(regions, names, _nothing_left(area, options.tissue))
    if options.fallback == "region":
        if not labelled and area.keep is not None:
            keep = area.keep if not options.tissue else area.keep.intersection(tissue_once())
            geom = area.apply(keep)
            if geom.is_empty:
                where = "no tissue inside" if options.tissue else "Ignore* covers all of"
                return plan([], names, f"{where} the Region* area")
            said.append("no labelled annotation: the Region* area is tiled unlabelled")
            return plan([Region(geom, None, "region", REGION_CLASS)], names)
        return plan([], names, _unannotated(found, asked, "whole-tissue mode tiles the tissue instead"))
    if asked or reader_notes(found):  # a class was asked for, or the reader saw why: never guess the tissue
        return plan([], names, _unannotated(found, asked, None))
    said.append("no annotations; tiling the detected tissue instead")
    return plan(_whole(area, tissue_once()), names, _no_tissue(area, tissue_once()))


def _whole(area: WorkArea, tissue: BaseGeometry) -> list[Region]:
    geom = area.apply(tissue)
    return [Region(geom, None, "tissue", "tissue")] if not geom.is_empty else []


def _no_tissue(area: WorkArea, tissue: BaseGeometry) -> str:
    if area_parts(tissue).is_empty or (area.keep is None and area.ignore is None):
        return "no tissue detected"
    return "no tissue detected inside the work area (Region* limits it, Ignore* is cut out)"


def _nothing_left(area: WorkArea, tissue: bool) -> str:
    if tissue:
        return NO_TISSUE_INSIDE
    if area.keep is not None or area.ignore is not None:
        return "the annotations have no area inside the work area (Region* limits it, Ignore* is cut out)"
    return "the annotations have no area"


def _unannotated(found: AnnotationSet, asked: Sequence[str] | None, hint: str | None) -> str:
    if asked:
        return f"no annotation of class {', '.join(asked)} on this image"
    seen = reader_notes(found)
    why = "no usable annotation: " + "; ".join(seen) if seen else "no annotations"
    return f"{why} ({hint})" if hint else why


def _class_names(known: Sequence[str], drawn: Sequence[Annotation], asked: Sequence[str] | None) -> list[str]:
    if asked is not None:
        return [c for c in asked if not is_special_class(c)]
    names = [n for n in known if not is_special_class(n)]
    for a in drawn:
        if a.path_class is not None and a.path_class not in names:
            names.append(a.path_class)
    return names


def read_regions(
    project: Project, entry: ImageEntry, options: RegionOptions, tissue: TissueSource
) -> PlannedRegions:
    """:func:`plan_regions` over the image's annotations as the project stores them (the tiler)."""
    found = project.annotations(entry, closed_lines_as_areas=options.closed_lines_as_areas)
    plan = plan_regions(found, options, tissue, known_classes=[c.name for c in project.classes])
    for line in plan.explained():
        log.info("image %s: %s", entry.entry_id, line)
    return plan


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
    """Regions to tile and the class list the labels index into (:func:`read_regions` on ``slide``).

    The notes of the plan, and the reason when it is empty, are appended to ``notes`` when given,
    so a caller can say why an image has no regions.
    """
    options = RegionOptions(
        classes=None if classes is None else tuple(classes),
        tissue=tissue,
        whole_tissue=whole_tissue,
        closed_lines_as_areas=closed_lines_as_areas,
    )
    plan = read_regions(project, entry, options, lambda: tissue_geometry(slide))
    if notes is not None:
        notes.extend(plan.explained())
    return list(plan.regions), list(plan.class_names)


def planned_positions(
    regions: Sequence[Region], tile_l0: float, stride_l0: float, dimensions: tuple[int, int]
) -> int:
    """Grid positions over the regions' bounding boxes, clipped to the image: an upper bound on the
    tiles, counted before any coordinate is allocated (the tiler's and the server's size limits)."""
    clip = (0.0, 0.0, float(dimensions[0]), float(dimensions[1]))
    boxes = [r.geometry.bounds for r in regions if not r.geometry.is_empty]
    return sum(candidate_count(b, tile_l0, stride_l0, clip) for b in boxes)


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
        planned = planned_positions(regions, tile_l0, stride_l0, slide.dimensions)
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
