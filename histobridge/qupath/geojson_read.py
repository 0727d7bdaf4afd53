"""Reading QuPath GeoJSON: every dialect QuPath has written or accepts, into PathObject records.

Accepted: a FeatureCollection, a bare list, one Feature or a bare geometry;
``objectType`` (0.4+), ``object_type`` (0.3) or the 0.2 class-name ``id``; classification
``name``/``names`` with a ``color`` array or the older ``colorRGB`` int; measurements as an object
or a list, NaN as strings; a Digital Slide Archive ``label`` as the name; files as
``.geojson``/``.json``, gzip or zip. Nothing that QuPath would keep is dropped silently: every
skipped or repaired object is counted in the result's notes. :mod:`histobridge.qupath.geojson`
re-exports the public names; import them from there.
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeGuard

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from histobridge.errors import AnnotationError
from histobridge.qupath.annotations import RGB, PathObject
from histobridge.qupath.classes import argb_to_rgb
from histobridge.qupath.geojson_bulk import bulk_record, simple_polygons
from histobridge.qupath.geojson_load import gc_paused, load_document
from histobridge.qupath.geometry import NoteCounter, area_geometry

# QuPath's exact, case-sensitive object-type spellings across versions (PathObjectTypeAdapter).
TYPE_ALIASES: dict[str, str] = {
    "annotation": "annotation", "unknown": "annotation", "PathAnnotationObject": "annotation",
    "detection": "detection", "PathDetectionObject": "detection",
    "tile": "tile", "PathTileObject": "tile",
    "cell": "cell", "PathCellObject": "cell",
    "tmaCore": "tmaCore", "tma_core": "tmaCore", "TMACoreObject": "tmaCore",
    "root": "root", "PathRootObject": "root",
}
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
BULK_MIN = 64  # fewer features than this: building polygons one by one costs no more
GEOMETRY_TYPES = frozenset({
    "Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection",
})


@dataclass(frozen=True)
class FeatureReadResult:
    """Objects with an area read from a GeoJSON document, and what was skipped or repaired."""

    annotations: list[PathObject]
    notes: list[str] = field(default_factory=list)


def read_features(
    source: str | os.PathLike[str] | Mapping[str, Any] | list[Any],
    *,
    object_types: Collection[str] | None = None,
    closed_lines_as_areas: bool = False,
) -> FeatureReadResult:
    """Read QuPath objects with an area from a GeoJSON file or an already parsed document.

    ``object_types`` keeps only those types (e.g. ``("annotation",)``); None keeps all.
    ``closed_lines_as_areas`` reads closed LineStrings (outlines) as the area they enclose; without
    it they are left out and counted in the notes. Coordinates are kept as stored, even where an
    object reaches outside the image: tiling intersects every region with the slide rectangle.
    Raises :class:`AnnotationError` when the document is not GeoJSON at all.

    Plain features of a long collection (tiles, simple annotations: one valid ring, the usual
    properties) are read in bulk (:func:`simple_polygons`, :func:`plain_object`) into the same
    records the feature-by-feature path makes; everything else takes that path.
    """
    where = str(source) if isinstance(source, (str, os.PathLike)) else "GeoJSON document"
    # The collector stays paused from parsing to the last record, and a file's document is freed
    # before it resumes: otherwise its first pass walks the document's 10⁶ containers.
    with gc_paused():
        doc = load_document(source) if isinstance(source, (str, os.PathLike)) else source
        result = _read_document(doc, where, object_types, closed_lines_as_areas)
        del doc
    return result


def _read_document(doc: Any, where: str, object_types: Collection[str] | None,
                   closed_lines_as_areas: bool) -> FeatureReadResult:
    reader = _FeatureReader(closed_lines_as_areas)
    notes = reader.notes
    out: list[PathObject] = []
    n_features = 0

    def keep(obj: PathObject, label: str) -> None:
        if object_types is None or obj.object_type in object_types:
            out.append(obj)
        else:
            notes.add(f"{obj.object_type} object(s) not requested, left out", label)

    try:
        features, label_form = _collection(doc)
        if features is None:
            for label, feature in _walk(doc, where, notes):
                n_features += 1
                for obj in reader.feature(feature, label):
                    keep(obj, label)
        else:
            ready = simple_polygons(features, BULK_MIN) if len(features) >= BULK_MIN else {}
            reader.ready = ready
            for i, item in enumerate(features):
                plain = plain_object(item, ready) if ready else None
                if plain is not None:
                    n_features += 1
                    if object_types is None or plain.object_type in object_types:
                        out.append(plain)
                    else:
                        name = f" {plain.name!r}" if plain.name else ""
                        keep(plain, label_form.format(i) + name)
                    continue
                for label, feature in _walk(item, where, notes, label_form.format(i)):
                    n_features += 1
                    for obj in reader.feature(feature, label):
                        keep(obj, label)
    except RecursionError as err:
        raise AnnotationError(f"{where}: objects nested too deeply to read") from err
    if n_features == 0 and not isinstance(doc, (list, dict)):
        raise AnnotationError(f"{where}: expected a GeoJSON object or array, found {type(doc).__name__}")
    return FeatureReadResult(out, notes.lines())


def _is_map(value: Any) -> TypeGuard[Mapping[Any, Any]]:
    """``isinstance(value, Mapping)``, with the JSON case (a dict) decided without the ABC check."""
    return type(value) is dict or isinstance(value, Mapping)


def _collection(doc: Any) -> tuple[list[Any] | None, str]:
    """The top-level list of items and how :func:`_walk` labels them, or None for other documents."""
    if isinstance(doc, list):
        return doc, "[{}]"
    if _is_map(doc) and doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        return doc["features"], "feature {}"
    return None, ""


def _walk(doc: Any, where: str, notes: NoteCounter, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (label, feature) for every feature in any accepted document shape."""
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            yield from _walk(item, where, notes, f"{prefix}[{i}]")
        return
    if not _is_map(doc):
        notes.add("item that is not a JSON object skipped", prefix or "document")
        return
    kind = doc.get("type")
    if kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise AnnotationError(f"{where}: FeatureCollection{prefix} has no 'features' list")
        for i, f in enumerate(features):
            yield from _walk(f, where, notes, f"{prefix}feature {i}")
    elif kind == "Feature":
        yield prefix or "feature 0", dict(doc)
    elif kind in GEOMETRY_TYPES:
        yield prefix or "geometry", {"type": "Feature", "geometry": dict(doc), "properties": {}}
    elif not prefix:
        raise AnnotationError(f"{where}: not GeoJSON (top-level 'type' is {kind!r})")
    else:
        notes.add("item with an unknown GeoJSON type skipped", f"{prefix} type={kind!r}")


class _FeatureReader:
    """Turns features (and their ``childObjects``) into PathObject records, collecting notes."""

    def __init__(self, closed_lines_as_areas: bool) -> None:
        self.closed_lines_as_areas = closed_lines_as_areas
        self.notes = NoteCounter()
        self.ready: dict[int, BaseGeometry] = {}  # id(geometry mapping) → its polygon, built in bulk

    def feature(self, feature: Mapping[str, Any], label: str) -> list[PathObject]:
        """One feature and its children; objects without an area are left out with a note."""
        notes = self.notes
        props = feature.get("properties") or {}
        if not _is_map(props):
            notes.add("feature with non-object 'properties' read without properties", label)
            props = {}
        name = _name(props, label, notes)
        if name:
            label = f"{label} {name!r}"
        out: list[PathObject] = []
        object_type = _object_type(feature, props, label, notes)
        if object_type != "root":
            _check_plane(feature.get("geometry"), label, notes)
            geometry = self._area(feature.get("geometry"), label)
            if geometry is not None:
                out.append(_path_object(feature, props, geometry, object_type, name, label, notes))
        children = props.get("childObjects", props.get("children"))
        if isinstance(children, list):
            for i, child in enumerate(children):
                if _is_map(child):
                    out.extend(self.feature(child, f"{label}/child {i}"))
        return out

    def _area(self, value: Any, label: str) -> BaseGeometry | None:
        ready = self.ready.get(id(value))
        if ready is not None:
            return ready
        geom = _shape(value, label, self.notes)
        if geom is None:
            return None
        return area_geometry(geom, label, self.notes, closed_lines_as_areas=self.closed_lines_as_areas)


_PLAIN_FEATURE = frozenset({"type", "id", "geometry", "properties"})
_PLAIN_PROPERTIES = frozenset({"objectType", "name", "classification", "isLocked", "measurements"})
_PLAIN_CLASS = (frozenset({"name", "color"}), frozenset({"names", "color"}))
_FLOAT, _STR = frozenset({float}), frozenset({str})


def plain_object(feature: Any, polygons: Mapping[int, BaseGeometry]) -> PathObject | None:
    """The record for a feature in the plain form QuPath and histobridge write, else None.

    Plain: a Feature with only ``id``, ``geometry`` (one of ``polygons``, without plane or ellipse
    flag) and ``properties`` holding only a known ``objectType`` (not root), a text ``name``, a
    named classification with an ``[r, g, b]`` colour, ``isLocked`` and float measurements under
    text names. The record is the one :class:`_FeatureReader` makes for it, which would add no note.
    """
    if type(feature) is not dict or not feature.keys() <= _PLAIN_FEATURE:
        return None
    geometry = feature.get("geometry")
    polygon = polygons.get(id(geometry))
    props = feature.get("properties")
    if polygon is None or type(geometry) is not dict or len(geometry) != 2:  # a plane or ellipse flag
        return None
    if type(props) is not dict or not props.keys() <= _PLAIN_PROPERTIES:
        return None
    raw_type = props.get("objectType")
    object_type = TYPE_ALIASES.get(raw_type) if type(raw_type) is str else None
    name = props.get("name")
    if object_type is None or object_type == "root" or not (name is None or type(name) is str):
        return None
    path_class, class_rgb = None, None
    cls = props.get("classification")
    if cls is not None:
        if type(cls) is not dict or cls.keys() not in _PLAIN_CLASS:
            return None
        rgb = cls["color"]
        if not (type(rgb) is list and len(rgb) == 3 and type(rgb[0]) is type(rgb[1]) is type(rgb[2]) is int):
            return None
        names = cls.get("names")
        if names is None:
            path_class = cls["name"]
        elif type(names) is list and names and all(type(n) is str for n in names):
            path_class = ": ".join(names)
        if type(path_class) is not str or not path_class:
            return None
        class_rgb = _rgb(rgb[0], rgb[1], rgb[2])
    measurements = props.get("measurements")
    if measurements is None:
        measurements = {}
    elif not (type(measurements) is dict and set(map(type, measurements.values())) <= _FLOAT
              and set(map(type, measurements)) <= _STR):
        return None
    return bulk_record(
        geometry=polygon,
        path_class=path_class,
        class_color=class_rgb,
        name=name,
        object_id=uuid_or_none(feature.get("id")),
        object_type=object_type,
        measurements=MappingProxyType(dict(measurements)),
        locked=bool(props.get("isLocked", False)),
    )


def _name(props: Mapping[str, Any], label: str, notes: NoteCounter) -> str | None:
    """QuPath's ``name``; a Digital Slide Archive ``label`` (text or ``{"value": text}``) stands in."""
    name = props.get("name") if isinstance(props.get("name"), str) else None
    dsa = props.get("label")
    if _is_map(dsa):
        dsa = dsa.get("value")
    if isinstance(dsa, str) and dsa:
        if not name:
            return dsa
        if dsa != name:
            notes.add("'label' kept out: the object already has a name", f"{label} label={dsa!r}")
    return name


def _path_object(feature: Mapping[str, Any], props: Mapping[str, Any], geometry: BaseGeometry,
                 object_type: str, name: str | None, label: str, notes: NoteCounter) -> PathObject:
    path_class, class_rgb = _classification(props.get("classification"), label, notes)
    own = props["color"] if "color" in props else props.get("colorRGB")
    metadata = props.get("metadata")
    return PathObject(
        geometry=geometry,
        path_class=path_class,
        color=_color(own, label, notes) if own is not None else None,
        class_color=class_rgb,
        name=name,
        object_id=uuid_or_none(feature.get("id")),
        object_type=object_type,
        measurements=MappingProxyType(_measurements(props.get("measurements"), label, notes)),
        locked=bool(props.get("isLocked", props.get("locked", False))),
        is_missing=bool(props.get("isMissing", False)),
        metadata=MappingProxyType(dict(metadata)) if _is_map(metadata) else MappingProxyType({}),
        nucleus=_nucleus(feature.get("nucleusGeometry")),
        plane=_plane(feature.get("geometry")),
        roi_type="ellipse" if _is_ellipse(feature.get("geometry")) else None,
    )


def _plane(geometry: Any) -> tuple[int, int, int] | None:
    """The (c, z, t) plane a geometry is drawn on, when the file names one."""
    plane = geometry.get("plane") if _is_map(geometry) else None
    if not _is_map(plane):
        return None
    try:
        return int(plane.get("c", -1)), int(plane.get("z", 0)), int(plane.get("t", 0))
    except (TypeError, ValueError):
        return None


def _is_ellipse(geometry: Any) -> bool:
    return _is_map(geometry) and geometry.get("isEllipse") is True


def _nucleus(value: Any) -> BaseGeometry | None:
    if not _is_map(value):
        return None
    try:
        return shape(dict(value))
    except (shapely.errors.GEOSException, ValueError, TypeError, KeyError, AttributeError, IndexError):
        return None


def _check_plane(geometry: Any, label: str, notes: NoteCounter) -> None:
    """Objects drawn on another z-slice or time point are read, but the tiler sees plane 0 only."""
    plane = geometry.get("plane") if _is_map(geometry) else None
    if _is_map(plane) and (plane.get("z", 0) or plane.get("t", 0)):
        notes.add("object on a z/t plane other than the first (pixels are read from plane 0)", label)


def _object_type(feature: Mapping[str, Any], props: Mapping[str, Any], label: str, notes: NoteCounter) -> str:
    raw: str | None = None
    for key in ("objectType", "object_type", "type"):
        if isinstance(props.get(key), str):
            raw = props[key]
            break
    if raw is None:
        fid = feature.get("id")
        if isinstance(fid, str) and fid in TYPE_ALIASES and not fid[:1].islower():
            raw = fid  # QuPath 0.2 wrote the Java class name as the feature id
    if raw is None:
        return "annotation"
    if raw not in TYPE_ALIASES:
        notes.add("unknown object type read as annotation (QuPath does the same)", f"{label} type={raw!r}")
        return "annotation"
    return TYPE_ALIASES[raw]


def uuid_or_none(value: Any) -> str | None:
    """``value`` when it is a UUID string (QuPath's object ids), else None."""
    if not isinstance(value, str):
        return None
    if _CANONICAL_UUID.fullmatch(value):  # the form QuPath writes; uuid.UUID accepts a few more
        return value
    try:
        uuid.UUID(value)
    except ValueError:
        return None
    return value


def _classification(value: Any, label: str, notes: NoteCounter) -> tuple[str | None, RGB | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        return value or None, None
    if not _is_map(value):
        notes.add("classification of unexpected form ignored", label)
        return None, None
    names = value.get("names")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        name: str | None = ": ".join(names)
    else:
        name = value.get("name") if isinstance(value.get("name"), str) else None
    if not name:
        notes.add("classification without a name ignored", label)
        return None, None
    if "color" in value:
        return name, _color(value["color"], label, notes)
    if "colorRGB" in value:
        return name, _color(value["colorRGB"], label, notes)
    notes.add("classification without 'color' (QuPath 0.4+ refuses such a file on import)", label)
    return name, None


def _color(value: Any, label: str, notes: NoteCounter) -> RGB | None:
    if value is None:
        return None
    if type(value) is list and len(value) == 3 and type(value[0]) is type(value[1]) is type(value[2]) is int:
        return _rgb(value[0], value[1], value[2])  # the common [r, g, b]: same result, cached
    if isinstance(value, int) and not isinstance(value, bool):
        return argb_to_rgb(value)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], int):
        return argb_to_rgb(value[0])
    if isinstance(value, list) and len(value) in (3, 4) and all(isinstance(c, (int, float)) for c in value):
        r, g, b = (min(255, max(0, round(c))) for c in value[:3])
        return r, g, b
    notes.add("colour of unexpected form ignored", f"{label} color={value!r}")
    return None


@functools.lru_cache(maxsize=1024)
def _rgb(r: int, g: int, b: int) -> RGB:
    return min(255, max(0, r)), min(255, max(0, g)), min(255, max(0, b))


def number_or_none(value: Any) -> float | None:
    """A JSON number or QuPath's number strings ("NaN", "Infinity") as float; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())  # accepts NaN, Infinity, -Infinity, nan, inf (QuPath 0.5+)
        except ValueError:
            return None
    return None


def _measurements(value: Any, label: str, notes: NoteCounter) -> dict[str, float]:
    if value is None:
        return {}
    if type(value) is dict and set(map(type, value.values())) <= {float} and set(map(type, value)) <= {str}:
        return dict(value)  # plain numbers under text names, as QuPath 0.4+ writes: nothing to convert
    if _is_map(value):
        items = list(value.items())
    elif isinstance(value, list):
        items = [(m.get("name"), m.get("value")) for m in value if _is_map(m)]
    else:
        notes.add("measurements of unexpected form ignored", label)
        return {}
    out: dict[str, float] = {}
    for key, raw in items:
        number = number_or_none(raw)
        if not isinstance(key, str) or number is None:
            notes.add("measurement that is not a number ignored", f"{label} {key!r}={raw!r}")
            continue
        out[key] = number
    return out


def _shape(value: Any, label: str, notes: NoteCounter) -> BaseGeometry | None:
    if not _is_map(value):
        notes.add("feature without geometry skipped", label)
        return None
    try:
        with np.errstate(invalid="ignore"):  # NaN coordinates are reported per object, not warned about
            return shape(dict(value))
    except (shapely.errors.GEOSException, ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        notes.add("unreadable geometry skipped", f"{label}: {err}")
        return None


__all__ = [
    "GEOMETRY_TYPES",
    "TYPE_ALIASES",
    "FeatureReadResult",
    "load_document",
    "number_or_none",
    "read_features",
    "uuid_or_none",
]
