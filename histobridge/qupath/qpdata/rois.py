"""QuPath ROI serialization proxies (``*ROI$SerializationProxy``) turned into shapely geometries.

Coordinates are QuPath level-0 pixels. Array-based ROIs store float32 vertices; rectangles, ellipses,
lines and WKB geometries store float64.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from histobridge.qupath.qpdata.stream import JavaObject

ROI_KINDS = {
    "qupath.lib.roi.RectangleROI$SerializationProxy": "rectangle",
    "qupath.lib.roi.EllipseROI$SerializationProxy": "ellipse",
    "qupath.lib.roi.LineROI$SerializationProxy": "line",
    "qupath.lib.roi.PolygonROI$SerializationProxy": "polygon",
    "qupath.lib.roi.PolylineROI$SerializationProxy": "polyline",
    "qupath.lib.roi.PointsROI$SerializationProxy": "points",
    "qupath.lib.roi.GeometryROI$WKBSerializationProxy": "geometry",
    "qupath.lib.roi.AreaROI$SerializationProxy": "area",
    "qupath.lib.roi.GeometryROI$SerializationProxy": "jts",
}
ELLIPSE_POINTS = 100  # JTS GeometricShapeFactory default, as QuPath uses it
PRECISION = 100.0  # QuPath's default GeometryFactory: PrecisionModel(100) (0.5), grid 0.01 (0.6)


class UnsupportedROI(ValueError):
    """A ROI this reader cannot turn into a geometry (the message says why)."""


class CorruptROI(UnsupportedROI):
    """A ROI whose stored geometry is damaged (bad WKB, vertex arrays that do not match)."""


def roi_type(roi: Any) -> str | None:
    """Short ROI kind ("rectangle", "polygon", "geometry"…) or None when there is no ROI."""
    if roi is None:
        return None
    if isinstance(roi, JavaObject):
        return ROI_KINDS.get(roi.class_name, "unknown")
    return "unknown"


def roi_plane(roi: Any) -> tuple[int, int, int] | None:
    """The ROI's image plane as (c, z, t); c = -1 means all channels."""
    if not isinstance(roi, JavaObject):
        return None
    f = roi.fields
    return (int(f.get("c", -1)), int(f.get("z", 0)), int(f.get("t", 0)))


def roi_stats(roi: Any) -> dict[str, Any] | None:
    """The statistics QuPath cached inside the ROI proxy (polygons, WKB geometries), if any."""
    if isinstance(roi, JavaObject) and isinstance(roi.fields.get("stats"), JavaObject):
        return dict(roi.fields["stats"].fields)
    return None


@functools.lru_cache(maxsize=8)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    ang = np.arange(n + 1) * (2 * math.pi / n)
    cos, sin = np.cos(ang), np.sin(ang)
    cos[n], sin[n] = cos[0], sin[0]  # the ring closes on its first point exactly
    return cos, sin


def ellipse_polygon(x: float, y: float, x2: float, y2: float, n: int = ELLIPSE_POINTS) -> Polygon:
    """The ellipse inscribed in a box as the n-gon JTS GeometricShapeFactory makes (first point at 0 rad).

    QuPath's geometry factory snaps every vertex to a 0.01 px grid (its precision model), which moves
    the area of a 250 px circle by about 1e-5 relative, so the vertices are snapped the same way.
    """
    rx, ry = (x2 - x) / 2.0, (y2 - y) / 2.0
    cos, sin = _unit_circle(n)
    pts = np.empty((n + 1, 2))
    pts[:, 0] = rx * cos + (x + rx)
    pts[:, 1] = ry * sin + (y + ry)
    pts = np.floor(pts * PRECISION + 0.5) / PRECISION  # Java Math.round(v * scale) / scale
    return Polygon(pts)


def _xy(f: dict[str, Any]) -> np.ndarray:
    xs, ys = f.get("x"), f.get("y")
    if xs is None or ys is None or len(xs) != len(ys):
        raise CorruptROI("vertex arrays missing or of different lengths")
    out = np.empty((len(xs), 2))
    out[:, 0] = xs
    out[:, 1] = ys
    return out


def _ring_polygon(xy: np.ndarray) -> BaseGeometry:
    if len(xy) >= 3:
        return Polygon(xy)
    if len(xy) == 2:
        return LineString(xy)
    return Point(xy[0]) if len(xy) == 1 else Polygon()


def _area(f: dict[str, Any]) -> BaseGeometry:
    """Legacy multi-ring area: rings combined even-odd, which honours holes however they wind."""
    out: BaseGeometry = Polygon()
    for xs, ys in zip(f.get("x") or [], f.get("y") or [], strict=False):
        ring = np.column_stack([np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)])
        if len(ring) >= 3:
            out = out.symmetric_difference(shapely.make_valid(Polygon(ring)))
    return out


def roi_geometry(roi: Any) -> BaseGeometry | None:
    """Shapely geometry of a ROI proxy; raises :class:`UnsupportedROI` for forms that cannot be read."""
    kind = roi_type(roi)
    if kind is None:
        return None
    if kind == "unknown" or not isinstance(roi, JavaObject):
        raise UnsupportedROI(f"unknown ROI class {getattr(roi, 'class_name', type(roi).__name__)}")
    f = roi.fields
    if kind in ("rectangle", "ellipse", "line"):
        try:
            x, y, x2, y2 = (float(f[k]) for k in ("x", "y", "x2", "y2"))
        except (KeyError, TypeError) as err:
            raise CorruptROI(f"{kind} ROI without its bounds ({err})") from None
        if kind == "rectangle":
            return box(x, y, x2, y2)
        if kind == "line":
            return LineString([(x, y), (x2, y2)])
        return ellipse_polygon(x, y, x2, y2)
    if kind == "polygon":
        return _ring_polygon(_xy(f))
    if kind == "polyline":
        xy = _xy(f)
        return LineString(xy) if len(xy) >= 2 else _ring_polygon(xy)
    if kind == "points":
        return MultiPoint(_xy(f))
    if kind == "geometry":
        wkb = f.get("wkb")
        if not isinstance(wkb, bytes | bytearray):
            raise CorruptROI("WKB geometry ROI without WKB bytes")
        try:
            return shapely.from_wkb(bytes(wkb))
        except shapely.errors.GEOSException as err:
            raise CorruptROI(f"invalid WKB geometry ({err})") from None
    if kind == "area":
        return _area(f)
    raise UnsupportedROI("JTS-serialized GeometryROI (QuPath 0.2 milestones) is not supported")
