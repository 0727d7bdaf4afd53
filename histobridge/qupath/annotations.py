"""The one QuPath object record (``PathObject``) that every source (GeoJSON, .qpdata, paquo) yields.

QuPath calls the thing a *PathObject*: an annotation, detection, tile, cell, TMA core or the root,
with a ROI, a classification, measurements and (for .qpdata) its place in the hierarchy. One record
serves all of them so that reading, tiling and writing never convert between look-alike classes.
``Annotation`` is the historical name of the same class.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shapely.geometry import GeometryCollection
from shapely.geometry.base import BaseGeometry

# QuPath's object types, in the spelling of its 0.4+ GeoJSON ``objectType``.
OBJECT_TYPES = ("annotation", "detection", "tile", "cell", "tmaCore", "root")

RGB = tuple[int, int, int]


def _empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


def _no_roi() -> BaseGeometry:
    return GeometryCollection()


@dataclass(frozen=True)
class PathClass:
    """A QuPath classification: its display name ("Tumor: Positive" for derived classes) and colour."""

    name: str
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class PathObject:
    """One QuPath object, in level-0 QuPath pixel coordinates.

    ``geometry`` is the ROI as drawn (holes, several parts); an empty geometry stands for "no ROI"
    (the root object, or a ROI type the reader cannot rebuild). ``color`` is the object's own colour,
    ``class_color`` its classification's; :attr:`display_color` is what QuPath paints.

    Hierarchy fields come from ``.qpdata``: ``index`` numbers every object of the file in pre-order
    (root 0), ``parent_index`` is the parent's, ``depth`` the distance from the root; sources without
    that numbering leave ``index`` at -1.
    """

    geometry: BaseGeometry = field(default_factory=_no_roi)
    path_class: str | None = None
    color: RGB | None = None
    name: str | None = None
    object_id: str | None = None
    object_type: str = "annotation"
    measurements: Mapping[str, float] = field(default_factory=_empty_mapping)
    locked: bool = False
    class_color: RGB | None = None
    class_probability: float | None = None
    nucleus: BaseGeometry | None = None
    plane: tuple[int, int, int] | None = None  # (c, z, t); c = -1 means all channels
    is_missing: bool = False
    roi_type: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=_empty_mapping)
    roi_stats: Mapping[str, Any] | None = None  # statistics QuPath cached in the ROI (area, bounds…)
    index: int = -1
    parent_index: int | None = None
    depth: int = 0

    def __post_init__(self) -> None:
        if self.geometry is None:  # readers pass None for "no ROI"; keep the attribute a geometry
            object.__setattr__(self, "geometry", GeometryCollection())

    @property
    def has_roi(self) -> bool:
        """Whether the object has a (non-empty) ROI; the root never has one."""
        return not self.geometry.is_empty

    @property
    def display_color(self) -> RGB | None:
        """The colour QuPath paints the object with: its own, else its class's."""
        return self.color if self.color is not None else self.class_color

    @property
    def label(self) -> str:
        """A short human name: the object's name, else its class, else its type."""
        return self.name or self.path_class or self.object_type

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (geometry as WKT) for reports and debugging."""
        return {
            "geometry": self.geometry.wkt,
            "path_class": self.path_class,
            "color": self.color,
            "class_color": self.class_color,
            "name": self.name,
            "object_id": self.object_id,
            "object_type": self.object_type,
            "measurements": dict(self.measurements),
            "locked": self.locked,
        }


Annotation = PathObject  # the name most of the package (and its users) know the record by


@dataclass(frozen=True)
class AnnotationSet:
    """The annotations of one image, where they came from, and what was noticed while reading.

    ``source`` is ``"qpdata"``, ``"geojson"``, ``"paquo"`` or ``"none"``; ``path`` the file read.
    ``stored_counts`` are QuPath's own object counts from ``data/<id>/summary.json`` (object type →
    number, e.g. ``{"annotation": 8, "cell": 13370}``) when that file exists; ``problem`` says why
    what QuPath stored could not be read (e.g. ``data.qpdata`` missing although QuPath counted objects).
    """

    annotations: tuple[PathObject, ...]
    source: str
    notes: tuple[str, ...] = ()
    path: Path | None = None
    stored_counts: Mapping[str, int] | None = None
    problem: str | None = None

    def __len__(self) -> int:
        return len(self.annotations)

    def __iter__(self) -> Iterator[PathObject]:
        return iter(self.annotations)

    def classes(self) -> list[str]:
        """Class names in first-seen order (unclassified left out)."""
        seen: dict[str, None] = {}
        for a in self.annotations:
            if a.path_class is not None:
                seen.setdefault(a.path_class, None)
        return list(seen)

    def by_class(self) -> dict[str | None, int]:
        """Count of annotations per class name (None = unclassified)."""
        counts: dict[str | None, int] = {}
        for a in self.annotations:
            counts[a.path_class] = counts.get(a.path_class, 0) + 1
        return counts


__all__ = ["OBJECT_TYPES", "Annotation", "AnnotationSet", "PathClass", "PathObject"]
