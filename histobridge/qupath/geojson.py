"""QuPath GeoJSON in, QuPath-valid GeoJSON out.

Reading accepts every dialect QuPath has written or accepts (qupath-formats.md §9): a
FeatureCollection, a bare list, one Feature or a bare geometry; ``objectType`` (0.4+),
``object_type`` (0.3) or the 0.2 class-name ``id``; classification ``name``/``names`` with a
``color`` array or the older ``colorRGB`` int; measurements as an object or a list, NaN as strings;
files as ``.geojson``/``.json``, gzip or zip. Nothing that QuPath would keep is dropped silently:
every skipped or repaired object is counted in the result's notes.

Writing follows the rules that keep every QuPath from 0.4 on able to import the file: lower-case
``objectType``, a classification always carrying ``color``, finite measurements only, float
coordinates, UUID ids.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import uuid
import zipfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import shapely
from shapely.geometry import GeometryCollection, MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from histobridge._atomic import atomic_open
from histobridge.errors import AnnotationError
from histobridge.qupath.annotations import OBJECT_TYPES, Annotation
from histobridge.qupath.classes import argb_to_rgb

# QuPath's exact, case-sensitive object-type spellings across versions (PathObjectTypeAdapter).
TYPE_ALIASES: dict[str, str] = {
    "annotation": "annotation", "unknown": "annotation", "PathAnnotationObject": "annotation",
    "detection": "detection", "PathDetectionObject": "detection",
    "tile": "tile", "PathTileObject": "tile",
    "cell": "cell", "PathCellObject": "cell",
    "tmaCore": "tmaCore", "tma_core": "tmaCore", "TMACoreObject": "tmaCore",
    "root": "root", "PathRootObject": "root",
}
GEOMETRY_TYPES = frozenset({
    "Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection",
})
COORD_DECIMALS = 3
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class FeatureReadResult:
    """Polygonal objects read from a GeoJSON document, and what was skipped or repaired."""

    annotations: list[Annotation]
    notes: list[str] = field(default_factory=list)


class _Notes:
    """Counts repeated problems so a 100k-feature file yields a few lines, not 100k."""

    def __init__(self) -> None:
        self._seen: dict[str, list[str]] = {}
        self._count: dict[str, int] = {}

    def add(self, kind: str, label: str) -> None:
        self._count[kind] = self._count.get(kind, 0) + 1
        examples = self._seen.setdefault(kind, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(label)

    def lines(self) -> list[str]:
        out = []
        for kind, n in self._count.items():
            more = ", …" if n > len(self._seen[kind]) else ""
            out.append(f"{n} × {kind} ({', '.join(self._seen[kind])}{more})")
        return out


# ---------------------------------------------------------------------------------------------
# reading


def load_document(path: str | os.PathLike[str]) -> Any:
    """Parse a GeoJSON file; ``.gz`` is gunzipped, ``.zip`` gives the list of its JSON members."""
    p = Path(path)
    if not p.is_file():
        raise AnnotationError(f"{p}: GeoJSON file not found")
    try:
        if p.name.lower().endswith(".zip"):
            return _load_zip(p)
        opener = gzip.open if p.name.lower().endswith(".gz") else open
        with opener(p, "rb") as fh:
            return json.loads(fh.read().decode("utf-8-sig"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError, zipfile.BadZipFile) as err:
        raise AnnotationError(f"{p}: not readable as GeoJSON: {err}") from err


def _load_zip(p: Path) -> Any:
    with zipfile.ZipFile(p) as zf:
        names = [n for n in zf.namelist() if n.lower().endswith((".geojson", ".json"))]
        if not names:
            raise AnnotationError(f"{p}: zip archive holds no .geojson or .json member")
        docs = [json.loads(zf.read(n).decode("utf-8-sig")) for n in names]
    return docs[0] if len(docs) == 1 else docs


def read_features(
    source: str | os.PathLike[str] | Mapping[str, Any] | list[Any],
    *,
    object_types: Collection[str] | None = None,
) -> FeatureReadResult:
    """Read polygonal QuPath objects from a GeoJSON file or an already parsed document.

    ``object_types`` keeps only those types (e.g. ``("annotation",)``); None keeps all.
    Coordinates are kept as stored, even where an object reaches outside the image: tiling
    intersects every region with the slide rectangle, so nothing outside the pixels is tiled.
    Raises :class:`AnnotationError` when the document is not GeoJSON at all.
    """
    where = str(source) if isinstance(source, (str, os.PathLike)) else "GeoJSON document"
    doc = load_document(source) if isinstance(source, (str, os.PathLike)) else source
    notes = _Notes()
    out: list[Annotation] = []
    n_features = 0
    for label, feature in _walk(doc, where, notes):
        n_features += 1
        for ann in _read_feature(feature, label, notes):
            if object_types is None or ann.object_type in object_types:
                out.append(ann)
            else:
                notes.add(f"{ann.object_type} object(s) not requested, left out", label)
    if n_features == 0 and not isinstance(doc, (list, dict)):
        raise AnnotationError(f"{where}: expected a GeoJSON object or array, found {type(doc).__name__}")
    return FeatureReadResult(out, notes.lines())


def _walk(doc: Any, where: str, notes: _Notes, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (label, feature) for every feature in any accepted document shape."""
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            yield from _walk(item, where, notes, f"{prefix}[{i}]")
        return
    if not isinstance(doc, Mapping):
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


def _read_feature(feature: Mapping[str, Any], label: str, notes: _Notes) -> list[Annotation]:
    """One feature (and its ``childObjects``) as Annotation records; [] when it has no area."""
    props = feature.get("properties") or {}
    if not isinstance(props, Mapping):
        notes.add("feature with non-object 'properties' read without properties", label)
        props = {}
    name = props.get("name") if isinstance(props.get("name"), str) else None
    if name:
        label = f"{label} {name!r}"
    out: list[Annotation] = []
    object_type = _object_type(feature, props, label, notes)
    if object_type != "root":
        _check_plane(feature.get("geometry"), label, notes)
        geometry = _geometry(feature.get("geometry"), label, notes)
        if geometry is not None:
            out.append(_annotation(feature, props, geometry, object_type, name, label, notes))
    children = props.get("childObjects", props.get("children"))
    if isinstance(children, list):
        for i, child in enumerate(children):
            if isinstance(child, Mapping):
                out.extend(_read_feature(child, f"{label}/child {i}", notes))
    return out


def _annotation(feature: Mapping[str, Any], props: Mapping[str, Any], geometry: BaseGeometry,
                object_type: str, name: str | None, label: str, notes: _Notes) -> Annotation:
    path_class, class_rgb = _classification(props.get("classification"), label, notes)
    own = props["color"] if "color" in props else props.get("colorRGB")
    rgb = _color(own, label, notes) if own is not None else None
    return Annotation(
        geometry=geometry,
        path_class=path_class,
        color=rgb if rgb is not None else class_rgb,
        name=name,
        object_id=_uuid_or_none(feature.get("id")),
        object_type=object_type,
        measurements=MappingProxyType(_measurements(props.get("measurements"), label, notes)),
        locked=bool(props.get("isLocked", props.get("locked", False))),
    )


def _check_plane(geometry: Any, label: str, notes: _Notes) -> None:
    """Objects drawn on another z-slice or time point are read, but the tiler sees plane 0 only."""
    plane = geometry.get("plane") if isinstance(geometry, Mapping) else None
    if isinstance(plane, Mapping) and (plane.get("z", 0) or plane.get("t", 0)):
        notes.add("object on a z/t plane other than the first (pixels are read from plane 0)", label)


def _object_type(feature: Mapping[str, Any], props: Mapping[str, Any], label: str, notes: _Notes) -> str:
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


def _uuid_or_none(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        uuid.UUID(value)
    except ValueError:
        return None
    return value


def _classification(value: Any, label: str, notes: _Notes) -> tuple[str | None, tuple[int, int, int] | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        return value or None, None
    if not isinstance(value, Mapping):
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


def _color(value: Any, label: str, notes: _Notes) -> tuple[int, int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return argb_to_rgb(value)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], int):
        return argb_to_rgb(value[0])
    if isinstance(value, list) and len(value) in (3, 4) and all(isinstance(c, (int, float)) for c in value):
        r, g, b = (min(255, max(0, round(c))) for c in value[:3])
        return r, g, b
    notes.add("colour of unexpected form ignored", f"{label} color={value!r}")
    return None


def _to_float(value: Any) -> float | None:
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


def _measurements(value: Any, label: str, notes: _Notes) -> dict[str, float]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list):
        items = [(m.get("name"), m.get("value")) for m in value if isinstance(m, Mapping)]
    else:
        notes.add("measurements of unexpected form ignored", label)
        return {}
    out: dict[str, float] = {}
    for key, raw in items:
        number = _to_float(raw)
        if not isinstance(key, str) or number is None:
            notes.add("measurement that is not a number ignored", f"{label} {key!r}={raw!r}")
            continue
        out[key] = number
    return out


def _geometry(value: Any, label: str, notes: _Notes) -> Polygon | MultiPolygon | None:
    if not isinstance(value, Mapping):
        notes.add("feature without geometry skipped", label)
        return None
    try:
        geom = shape(value)
    except (shapely.errors.GEOSException, ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        notes.add("unreadable geometry skipped", f"{label}: {err}")
        return None
    if geom.is_empty:
        notes.add("empty geometry skipped", label)
        return None
    if not isinstance(geom, (Polygon, MultiPolygon, GeometryCollection)):
        notes.add(f"{geom.geom_type} ignored (no area)", label)
        return None
    if not geom.is_valid:
        reason = explain_validity(geom)
        geom = shapely.make_valid(geom)
        notes.add("invalid geometry repaired with make_valid", f"{label}: {reason}")
    area = polygonal_part(geom)
    if area is None:
        notes.add("geometry without area after repair skipped", label)
    return area


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


# ---------------------------------------------------------------------------------------------
# writing


def default_class_color(name: str) -> tuple[int, int, int]:
    """A stable, mid-bright colour for a class that has none (same name → same colour)."""
    digest = hashlib.sha1(name.encode("utf-8")).digest()
    r, g, b = (60 + d % 160 for d in digest[:3])
    return r, g, b


def classification(name: str, color: Iterable[int] | None = None) -> dict[str, Any]:
    """QuPath's classification object; derived classes ("A: B") as ``names``, always with ``color``."""
    parts = name.split(": ")
    out: dict[str, Any] = {"name": name} if len(parts) == 1 else {"names": parts}
    rgb = tuple(color) if color is not None else default_class_color(name)
    out["color"] = [int(c) for c in rgb][:3]
    return out


def finite_measurements(values: Mapping[str, Any] | None) -> dict[str, float]:
    """Only finite numbers, as floats: QuPath 0.4 fails on NaN, 0.3 on anything else."""
    out: dict[str, float] = {}
    for k, v in (values or {}).items():
        number = _to_float(v)
        if number is not None and math.isfinite(number):
            out[str(k)] = number
    return out


def _round_coords(obj: Any) -> Any:
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float)):
            return [round(float(c), COORD_DECIMALS) for c in obj]
        return [_round_coords(o) for o in obj]
    return obj


def geometry_json(geometry: BaseGeometry) -> dict[str, Any]:
    """GeoJSON geometry with float coordinates rounded to 1/1000 px (lists, not tuples)."""
    g = mapping(geometry)
    return {"type": g["type"], "coordinates": _round_coords(g["coordinates"])}


def annotation_to_feature(annotation: Annotation) -> dict[str, Any]:
    """One QuPath-importable Feature for an Annotation record."""
    if annotation.object_type not in OBJECT_TYPES or annotation.object_type == "root":
        raise AnnotationError(f"cannot write object type {annotation.object_type!r}")
    if not isinstance(annotation.geometry, (Polygon, MultiPolygon)) or annotation.geometry.is_empty:
        raise AnnotationError(f"{annotation.label}: only non-empty polygons can be written")
    props: dict[str, Any] = {"objectType": annotation.object_type}
    if annotation.name:
        props["name"] = annotation.name
    if annotation.path_class:
        props["classification"] = classification(annotation.path_class, annotation.color)
    elif annotation.color is not None:
        props["color"] = [int(c) for c in annotation.color]
    if annotation.locked:
        props["isLocked"] = True
    measurements = finite_measurements(annotation.measurements)
    if measurements:
        props["measurements"] = measurements
    return {
        "type": "Feature",
        "id": _uuid_or_none(annotation.object_id) or str(uuid.uuid4()),
        "geometry": geometry_json(annotation.geometry),
        "properties": props,
    }


def tile_feature(
    x: float, y: float, w: float, h: float,
    path_class: str | None = None,
    color: Iterable[int] | None = None,
    measurements: Mapping[str, Any] | None = None,
    object_id: str | None = None,
    *,
    locked: bool = True,
    name: str | None = None,
) -> dict[str, Any]:
    """A rectangular ``tile`` Feature (level-0 px), the form QuPath's measurement maps show."""
    if not (w > 0 and h > 0) or not all(math.isfinite(v) for v in (x, y, w, h)):
        raise AnnotationError(f"tile ({x}, {y}, {w}, {h}) needs finite coordinates and a positive size")
    x0, y0, x1, y1 = (round(float(v), COORD_DECIMALS) for v in (x, y, x + w, y + h))
    props: dict[str, Any] = {"objectType": "tile"}
    if name:
        props["name"] = name
    if path_class:
        props["classification"] = classification(path_class, color)
    if locked:
        props["isLocked"] = True
    values = finite_measurements(measurements)
    if values:
        props["measurements"] = values
    return {
        "type": "Feature",
        "id": _uuid_or_none(object_id) or str(uuid.uuid4()),
        "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
        "properties": props,
    }


def write_features(
    path: str | os.PathLike[str],
    features: Iterable[Mapping[str, Any] | Annotation],
    *,
    feature_collection: bool = True,
) -> int:
    """Stream features to ``path`` atomically (gzip when it ends in ``.gz``); returns the count.

    Annotation records are converted with :func:`annotation_to_feature`. Non-finite numbers in
    plain feature dicts are an error (QuPath 0.4 cannot read them), reported with the file name.
    """
    p = Path(path)
    if p.name.lower().endswith(".zip"):
        raise AnnotationError(f"{p}: write .geojson or .geojson.gz; zip output is not supported")
    n = 0
    try:
        with atomic_open(p, "w") as fh:
            fh.write('{"type": "FeatureCollection", "features": [\n' if feature_collection else "[\n")
            for f in features:
                feature = annotation_to_feature(f) if isinstance(f, Annotation) else f
                fh.write((",\n" if n else "") + json.dumps(feature, allow_nan=False, separators=(",", ":")))
                n += 1
            fh.write("\n]}\n" if feature_collection else "\n]\n")
    except ValueError as err:
        if isinstance(err, AnnotationError):
            raise
        raise AnnotationError(f"{p}: feature {n} cannot be written as QuPath GeoJSON: {err}") from err
    return n


def features_bytes(features: Iterable[Mapping[str, Any] | Annotation]) -> bytes:
    """The FeatureCollection :func:`write_features` would write, in memory (for tests and HTTP)."""
    buf = io.StringIO()
    feats = [annotation_to_feature(f) if isinstance(f, Annotation) else dict(f) for f in features]
    json.dump({"type": "FeatureCollection", "features": feats}, buf, allow_nan=False)
    return buf.getvalue().encode("utf-8")


__all__ = [
    "FeatureReadResult",
    "annotation_to_feature",
    "classification",
    "default_class_color",
    "features_bytes",
    "finite_measurements",
    "geometry_json",
    "load_document",
    "polygonal_part",
    "read_features",
    "tile_feature",
    "write_features",
]
