"""The annotation record every QuPath source (GeoJSON, .qpdata, paquo) is turned into."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shapely.geometry.base import BaseGeometry

OBJECT_TYPES = ("annotation", "detection", "tile", "cell", "tmaCore", "root")


@dataclass(frozen=True)
class PathClass:
    """A QuPath classification: its display name ("Tumor: Positive" for derived classes) and colour."""

    name: str
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Annotation:
    """One QuPath object with an area, in level-0 QuPath pixel coordinates.

    ``geometry`` keeps holes and multi-part shapes exactly as drawn (after repair of invalid rings).
    """

    geometry: BaseGeometry
    path_class: str | None = None
    color: tuple[int, int, int] | None = None
    name: str | None = None
    object_id: str | None = None
    object_type: str = "annotation"
    measurements: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    locked: bool = False

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
            "name": self.name,
            "object_id": self.object_id,
            "object_type": self.object_type,
            "measurements": dict(self.measurements),
            "locked": self.locked,
        }


@dataclass(frozen=True)
class AnnotationSet:
    """The annotations of one image, where they came from, and what was noticed while reading.

    ``source`` is ``"qpdata"``, ``"geojson"``, ``"paquo"`` or ``"none"``; ``path`` the file read.
    """

    annotations: tuple[Annotation, ...]
    source: str
    notes: tuple[str, ...] = ()
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.annotations)

    def __iter__(self) -> Iterator[Annotation]:
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
