"""From ``.qpdata`` objects to the shared :class:`Annotation` record and to QuPath 0.4+ GeoJSON."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection, Iterable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.geometry.base import BaseGeometry

from histobridge.qupath.qpdata.reader import iter_objects
from histobridge.qupath.qpdata.records import QPObject

if TYPE_CHECKING:
    from histobridge.qupath.annotations import Annotation

log = logging.getLogger(__name__)
DEFAULT_PLANE = (-1, 0, 0)


def polygonal(geometry: BaseGeometry | None) -> Polygon | MultiPolygon | None:
    """The area part of a geometry (invalid rings repaired); None when it has no area."""
    if geometry is None or geometry.is_empty:
        return None
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    if isinstance(geometry, Polygon | MultiPolygon):
        return geometry
    parts: list[Polygon] = []
    for g in getattr(geometry, "geoms", []):
        p = polygonal(g)
        if isinstance(p, Polygon):
            parts.append(p)
        elif isinstance(p, MultiPolygon):
            parts.extend(p.geoms)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def to_annotation(obj: QPObject) -> Annotation | None:
    """The shared Annotation record for one object with an area, None for points/lines/root."""
    from histobridge.qupath.annotations import Annotation

    geometry = polygonal(obj.geometry)
    if geometry is None:
        return None
    return Annotation(
        geometry=geometry,
        path_class=obj.path_class,
        color=obj.color,
        name=obj.name,
        object_id=obj.object_id,
        object_type=obj.object_type,
        measurements=MappingProxyType(dict(obj.measurements)),
        locked=obj.locked,
    )


def qpdata_annotations(
    path: str | os.PathLike[str], types: Collection[str] = ("annotation",)
) -> list[Annotation]:
    """Objects of the given types (annotations by default) with an area, as Annotation records.

    Objects without an area (points, lines) are left out and logged; so is anything else skipped.
    """
    out: list[Annotation] = []
    skipped = 0
    for obj in sorted(iter_objects(path, types=types), key=lambda o: o.index):
        ann = to_annotation(obj)
        if ann is None:
            skipped += 1
        else:
            out.append(ann)
    if skipped:
        log.info("%s: %d object(s) without an area left out", path, skipped)
    return out


def _geometry_json(geometry: BaseGeometry, obj: QPObject, ellipse: bool) -> dict[str, Any]:
    g: dict[str, Any] = dict(mapping(geometry))
    if obj.plane is not None and tuple(obj.plane) != DEFAULT_PLANE:
        c, z, t = obj.plane
        g["plane"] = {"c": c, "z": z, "t": t}
    if ellipse:
        g["isEllipse"] = True
    return g


def to_geojson_feature(obj: QPObject) -> dict[str, Any] | None:
    """One QuPath 0.4+ GeoJSON Feature; None for objects without geometry (the root)."""
    if obj.geometry is None or obj.object_type == "root":
        return None
    props: dict[str, Any] = {"objectType": obj.object_type}
    if obj.name is not None:
        props["name"] = obj.name
    if obj.color is not None:
        props["color"] = list(obj.color)
    if obj.path_class:
        names = obj.path_class.split(": ")
        cls: dict[str, Any] = {"name": names[0]} if len(names) == 1 else {"names": names}
        cls["color"] = list(obj.class_color) if obj.class_color is not None else None
        props["classification"] = cls
    if obj.locked:
        props["isLocked"] = True
    if obj.object_type == "tmaCore":
        props["isMissing"] = bool(obj.is_missing)
    finite = {k: float(v) for k, v in obj.measurements.items() if math.isfinite(v)}
    if finite:
        props["measurements"] = finite
    meta = {str(k): str(v) for k, v in obj.metadata.items() if v is not None}
    if meta:
        props["metadata"] = meta
    feature: dict[str, Any] = {"type": "Feature"}
    if obj.object_id:
        feature["id"] = obj.object_id
    feature["geometry"] = _geometry_json(obj.geometry, obj, obj.roi_type == "ellipse")
    if obj.nucleus is not None:
        feature["nucleusGeometry"] = _geometry_json(obj.nucleus, obj, False)
    feature["properties"] = props
    return feature


def to_geojson_features(objects: Iterable[QPObject]) -> list[dict[str, Any]]:
    """QuPath 0.4+ GeoJSON Features for the objects that have a geometry (the root is left out)."""
    out = []
    for obj in objects:
        f = to_geojson_feature(obj)
        if f is not None:
            out.append(f)
    return out
