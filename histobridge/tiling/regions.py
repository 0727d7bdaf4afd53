"""The regions of one image that get tiled: its annotations, or its tissue, with their classes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from histobridge.slides.tissue import tissue_geometry
from histobridge.tiling.grid import area_parts, grid_for_geometry

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


def _class_names(project: Any, annotations: Sequence[Any], classes: Sequence[str] | None) -> list[str]:
    if classes is not None:
        return list(classes)
    names = [getattr(c, "name", str(c)) for c in getattr(project, "classes", None) or []]
    for a in annotations:
        if a.path_class is not None and a.path_class not in names:
            names.append(a.path_class)
    return names


def collect_regions(
    project: Any,
    entry: Any,
    slide: Any,
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
        geom = tissue_geometry(slide)
        names = list(classes) if classes is not None else []
        return ([Region(geom, None, "tissue", "tissue")] if not geom.is_empty else []), names
    found = project.annotations(entry)
    annotations = [a for a in found.annotations if getattr(a, "object_type", "annotation") in TILED_TYPES]
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
        rid = getattr(a, "object_id", None) or str(i)
        regions.append(Region(geom, a.path_class, str(rid), getattr(a, "name", None)))
    return regions, names


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
