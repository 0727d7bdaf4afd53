"""What of a QuPath ROI is an area: the one place that flattens, repairs and rejects geometry.

GeoJSON and ``.qpdata`` readers, and the GeoJSON writer, all pass ROIs through here so that the
same shape gets the same area whichever file it came from. Repairs follow ``shapely.make_valid``:
a self-intersecting ring keeps every lobe (a 100 × 100 bow tie has area 5000, as QuPath measures
it), where ``buffer(0)`` would drop one lobe and the raw ring's signed area cancels to 0.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import GeometryCollection, LineString, MultiLineString, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

MAX_EXAMPLES = 5
CLOSED_LINE_HINT = "closed_lines_as_areas=True (--closed-lines-as-areas) reads them as areas"

class NoteCounter:
    """Counts repeated problems so a 100k-object file yields a few lines, not 100k."""

    def __init__(self) -> None:
        self._seen: dict[str, list[str]] = {}
        self._count: dict[str, int] = {}

    def add(self, kind: str, label: str) -> None:
        self._count[kind] = self._count.get(kind, 0) + 1
        examples = self._seen.setdefault(kind, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(label)

    def count(self, kind: str) -> int:
        return self._count.get(kind, 0)

    def lines(self) -> list[str]:
        out = []
        for kind, n in self._count.items():
            more = ", …" if n > len(self._seen[kind]) else ""
            out.append(f"{n} × {kind} ({', '.join(self._seen[kind])}{more})")
        return out


def has_non_finite(geometry: BaseGeometry) -> bool:
    """Whether any coordinate is NaN or infinite (GEOS fails on such input, often with a crash)."""
    coords = shapely.get_coordinates(geometry, include_z=False)
    return bool(coords.size) and not bool(np.isfinite(coords).all())


def _closed(line: LineString) -> bool:
    return bool(line.is_closed) and len(line.coords) >= 4


def is_closed_line(geometry: BaseGeometry) -> bool:
    """A LineString (or every part of a MultiLineString) that ends where it starts: an outline."""
    if isinstance(geometry, LineString):
        return _closed(geometry)
    if isinstance(geometry, MultiLineString):
        return bool(geometry.geoms) and all(_closed(g) for g in geometry.geoms)
    return False


def closed_line_area(geometry: BaseGeometry) -> BaseGeometry:
    """The area a closed outline encloses (several outlines: a multi-polygon, repaired later)."""
    lines = list(geometry.geoms) if isinstance(geometry, MultiLineString) else [geometry]
    polys = [Polygon(line.coords) for line in lines]
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def polygonal_part(geom: BaseGeometry) -> Polygon | MultiPolygon | None:
    """The polygons inside any geometry (collections flattened); None when there are none."""
    if isinstance(geom, (Polygon, MultiPolygon)):
        return None if geom.is_empty or geom.area <= 0 else geom
    parts: list[Polygon] = []
    for g in getattr(geom, "geoms", ()):
        p = polygonal_part(g)
        if p is not None:
            parts.extend(p.geoms if isinstance(p, MultiPolygon) else [p])
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def repaired(geometry: BaseGeometry) -> tuple[BaseGeometry, str | None]:
    """(valid geometry, why it was invalid) — unchanged and None when it was valid already."""
    if geometry.is_valid:
        return geometry, None
    return shapely.make_valid(geometry), explain_validity(geometry)


def area_geometry(
    geometry: BaseGeometry | None, label: str, notes: NoteCounter, *, closed_lines_as_areas: bool = False
) -> Polygon | MultiPolygon | None:
    """The area of one ROI, or None with a note saying why it has none.

    Points and open lines have no area; closed lines (outlines exported as LineStrings) are read as
    areas only when ``closed_lines_as_areas`` is set, and counted either way; a ROI with a NaN or
    infinite coordinate is rejected; invalid rings are repaired (see the module docstring).
    """
    if geometry is None or geometry.is_empty:
        notes.add("empty geometry skipped", label)
        return None
    if has_non_finite(geometry):
        notes.add("object with a non-finite (NaN/Infinity) coordinate skipped", label)
        return None
    if is_closed_line(geometry):
        if not closed_lines_as_areas:
            notes.add(f"closed {geometry.geom_type} outline ignored (lines have no area; {CLOSED_LINE_HINT})",
                      label)
            return None
        notes.add(f"closed {geometry.geom_type} outline read as an area", label)
        geometry = closed_line_area(geometry)
    if not isinstance(geometry, (Polygon, MultiPolygon, GeometryCollection)):
        notes.add(f"{geometry.geom_type} ignored (no area)", label)
        return None
    geometry, reason = repaired(geometry)
    if reason is not None:
        notes.add("invalid geometry repaired with make_valid", f"{label}: {reason}")
    area = polygonal_part(geometry)
    if area is None:
        notes.add("geometry without area after repair skipped", label)
    return area


def writable_geometry(geometry: BaseGeometry) -> BaseGeometry:
    """The geometry to write for a ROI: polygons made valid, other types as they are.

    Raises ValueError for an empty geometry, a non-finite coordinate, or a polygon that has no area
    left after repair; callers turn that into an error or a note naming the object.
    """
    if geometry.is_empty:
        raise ValueError("empty geometry")
    if has_non_finite(geometry):
        raise ValueError("non-finite (NaN/Infinity) coordinate")
    if not isinstance(geometry, (Polygon, MultiPolygon)):
        return geometry
    fixed, reason = repaired(geometry)
    if reason is None:
        return geometry
    area = polygonal_part(fixed)
    if area is None:
        raise ValueError(f"invalid polygon without area ({reason})")
    return area


__all__ = [
    "NoteCounter",
    "area_geometry",
    "closed_line_area",
    "has_non_finite",
    "is_closed_line",
    "polygonal_part",
    "repaired",
    "writable_geometry",
]
