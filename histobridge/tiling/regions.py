"""The regions of one image that get tiled: its annotations, or its tissue, with their classes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from histobridge.errors import InputError
from histobridge.qupath.annotations import Annotation
from histobridge.qupath.project import ImageEntry, Project
from histobridge.slides import Slide
from histobridge.slides.tissue import tissue_geometry
from histobridge.tiling.grid import area_parts, candidate_count, grid_for_geometry

log = logging.getLogger(__name__)

TILED_TYPES = ("annotation", "tmaCore")


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


def _class_names(
    project: Project, annotations: Sequence[Annotation], classes: Sequence[str] | None
) -> list[str]:
    if classes is not None:
        return list(classes)
    names = [c.name for c in project.classes]
    for a in annotations:
        if a.path_class is not None and a.path_class not in names:
            names.append(a.path_class)
    return names


def tiled_annotations(project: Project, entry: ImageEntry) -> list[Annotation]:
    """The image's objects that get tiled (annotations and TMA cores; detections never)."""
    found = project.annotations(entry)
    return [a for a in found.annotations if a.object_type in TILED_TYPES]


def collect_regions(
    project: Project,
    entry: ImageEntry,
    slide: Slide,
    *,
    classes: Sequence[str] | None = None,
    tissue: bool = False,
    whole_tissue: bool = False,
) -> tuple[list[Region], list[str]]:
    """Regions to tile and the class list the labels index into.

    ``whole_tissue`` tiles the detected tissue as one unclassified region (no annotations needed);
    ``tissue`` keeps only the tissue part of each annotation.
    """
    if whole_tissue:
        tissue_all = tissue_geometry(slide)
        names = list(classes) if classes is not None else []
        return ([Region(tissue_all, None, "tissue", "tissue")] if not tissue_all.is_empty else []), names
    annotations = tiled_annotations(project, entry)
    if classes is not None:
        wanted = set(classes)
        annotations = [a for a in annotations if a.path_class in wanted]
    names = _class_names(project, annotations, classes)
    tissue_geom = tissue_geometry(slide) if tissue and annotations else None
    regions = []
    for i, a in enumerate(annotations):
        geom = area_parts(a.geometry)
        if geom.is_empty:
            continue
        if tissue_geom is not None:
            geom = area_parts(geom.intersection(tissue_geom))
            if geom.is_empty:
                continue
        regions.append(Region(geom, a.path_class, a.object_id or str(i), a.name))
    return regions, names


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
