"""QuPath GeoJSON: the one writer (and, re-exported from :mod:`.geojson_read`, the reader).

Writing follows the rules that keep every QuPath from 0.4 on able to import the file: lower-case
``objectType``, a classification always carrying a ``color`` (never ``null``), an object ``color``
only when it has one, finite measurements only, float coordinates, UUID ids, valid polygons. Every
GeoJSON histobridge writes (``qpdata to-geojson``, heatmap tiles, annotation exports) goes through
:func:`write_features`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import math
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import orjson
from shapely.geometry import GeometryCollection, mapping
from shapely.geometry.base import BaseGeometry

from histobridge._atomic import atomic_path
from histobridge.errors import AnnotationError, HistobridgeError
from histobridge.qupath.annotations import OBJECT_TYPES, PathObject
from histobridge.qupath.geojson_read import (
    GEOMETRY_TYPES,
    TYPE_ALIASES,
    FeatureReadResult,
    load_document,
    number_or_none,
    read_features,
    uuid_or_none,
)
from histobridge.qupath.geojson_tiles import FeatureBlock, encode_tiles
from histobridge.qupath.geometry import polygonal_part, writable_geometry

COORD_DECIMALS = 3
DEFAULT_PLANE = (-1, 0, 0)
WRITE_CHUNK = 2000
GZIP_LEVEL = 1


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
        number = number_or_none(v)
        if number is not None and math.isfinite(number):
            out[str(k)] = number
    return out


def _round_coords(obj: Any) -> Any:
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float)):
            return [round(float(c), COORD_DECIMALS) for c in obj]
        return [_round_coords(o) for o in obj]
    return obj


def geometry_json(
    geometry: BaseGeometry, plane: tuple[int, int, int] | None = None, *, ellipse: bool = False
) -> dict[str, Any]:
    """GeoJSON geometry with float coordinates rounded to 1/1000 px (lists, not tuples).

    ``plane`` (c, z, t) is written only when it is not QuPath's default; ``ellipse`` marks an
    ellipse ROI (its polygon approximation is what GeoJSON can carry).
    """
    if isinstance(geometry, GeometryCollection):
        out: dict[str, Any] = {"type": "GeometryCollection",
                               "geometries": [geometry_json(g) for g in geometry.geoms]}
    else:
        g = mapping(geometry)
        out = {"type": g["type"], "coordinates": _round_coords(g["coordinates"])}
    if plane is not None and tuple(plane) != DEFAULT_PLANE:
        c, z, t = plane
        out["plane"] = {"c": int(c), "z": int(z), "t": int(t)}
    if ellipse:
        out["isEllipse"] = True
    return out


def _writable(obj: PathObject, geometry: BaseGeometry, what: str) -> BaseGeometry:
    try:
        return writable_geometry(geometry)
    except ValueError as err:
        raise AnnotationError(f"{obj.object_type} {obj.label!r}: {what} cannot be written: {err}") from err


def path_object_feature(obj: PathObject) -> dict[str, Any]:
    """One QuPath-importable (0.4+) Feature for a PathObject.

    Polygons are written valid (self-intersections resolved as in :mod:`histobridge.qupath.geometry`);
    a classification always carries a colour (its own, else the object's, else a stable default),
    never ``null``; only finite measurements are kept. Raises :class:`AnnotationError` for the
    root, an object without a ROI, or a ROI with a non-finite coordinate.
    """
    if obj.object_type not in OBJECT_TYPES or obj.object_type == "root":
        raise AnnotationError(f"cannot write object type {obj.object_type!r}")
    if not obj.has_roi:
        raise AnnotationError(f"{obj.object_type} {obj.label!r}: has no ROI to write")
    geometry = _writable(obj, obj.geometry, "its ROI")
    props: dict[str, Any] = {"objectType": obj.object_type}
    if obj.name:
        props["name"] = obj.name
    if obj.color is not None:
        props["color"] = [int(c) for c in obj.color][:3]
    if obj.path_class:
        props["classification"] = classification(obj.path_class, obj.class_color or obj.color)
    if obj.locked:
        props["isLocked"] = True
    if obj.object_type == "tmaCore":
        props["isMissing"] = bool(obj.is_missing)
    measurements = finite_measurements(obj.measurements)
    if measurements:
        props["measurements"] = measurements
    meta = {str(k): str(v) for k, v in obj.metadata.items() if v is not None}
    if meta:
        props["metadata"] = meta
    feature: dict[str, Any] = {
        "type": "Feature",
        "id": uuid_or_none(obj.object_id) or str(uuid.uuid4()),
        "geometry": geometry_json(geometry, obj.plane, ellipse=obj.roi_type == "ellipse"),
    }
    if obj.nucleus is not None and not obj.nucleus.is_empty:
        feature["nucleusGeometry"] = geometry_json(_writable(obj, obj.nucleus, "its nucleus"), obj.plane)
    feature["properties"] = props
    return feature


annotation_to_feature = path_object_feature  # the older name


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
        "id": uuid_or_none(object_id) or str(uuid.uuid4()),
        "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
        "properties": props,
    }


def tile_feature_texts(
    coords: np.ndarray,
    class_index: np.ndarray,
    class_names: Sequence[str],
    colors: Mapping[str, Iterable[int]],
    measurement_names: Sequence[str],
    values: np.ndarray,
    *,
    locked: bool = True,
    name: str | None = None,
) -> FeatureBlock:
    """For each row, the text :func:`write_features` writes for the matching :func:`tile_feature`.

    ``coords`` (N, 4) x, y, w, h; ``class_index`` (N,) into ``class_names``; ``values`` (N, M) the
    measurements named ``measurement_names``. The same JSON, key order and number formatting (ids are
    fresh UUIDs either way), built for all rows at once (:mod:`.geojson_tiles`): the constant parts
    are serialised once per class. Non-finite measurements are left out, as
    :func:`finite_measurements` does; a non-finite or empty rectangle is an :class:`AnnotationError`.
    """
    xywh = np.asarray(coords, dtype=np.float64).reshape(-1, 4)
    vals = np.asarray(values, dtype=np.float64)
    if vals.shape != (len(xywh), len(measurement_names)):
        raise AnnotationError(f"measurement values of shape {vals.shape} for {len(xywh)} tiles and "
                              f"{len(measurement_names)} names")
    props = [('"properties":{"objectType":"tile"' + (f',"name":{_compact(name)}' if name else "")
              + (f',"classification":{_compact(classification(c, colors.get(c)))}' if c else "")
              + (',"isLocked":true' if locked else "")) for c in class_names]
    keys = [_compact(str(k)) + ":" for k in measurement_names]
    return encode_tiles(xywh, np.asarray(class_index), props, keys, vals)


def _compact(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def qupath_safe(feature: Mapping[str, Any]) -> dict[str, Any]:
    """A plain feature dict made importable by QuPath 0.4+: no ``null`` colours anywhere.

    QuPath refuses a classification whose ``color`` is missing or null, and an object ``color`` of
    null; the first gets the class's stable default colour, the second is dropped.
    """
    out = dict(feature)
    props = out.get("properties")
    if not isinstance(props, Mapping):
        return out
    props = dict(props)
    if "color" in props and props["color"] is None:
        del props["color"]
    cls = props.get("classification")
    if isinstance(cls, Mapping) and cls.get("color") is None:
        names = cls.get("names")
        name = ": ".join(names) if isinstance(names, list) else cls.get("name")
        cls = dict(cls)
        cls["color"] = list(default_class_color(str(name)))
        props["classification"] = cls
    out["properties"] = props
    return out


def _as_feature(f: Mapping[str, Any] | PathObject) -> dict[str, Any]:
    return path_object_feature(f) if isinstance(f, PathObject) else qupath_safe(f)


def write_features(
    path: str | os.PathLike[str],
    features: Iterable[Mapping[str, Any] | PathObject],
    *,
    feature_collection: bool = True,
    collection: Mapping[str, Any] | None = None,
) -> int:
    """Stream features to ``path`` atomically (gzip when it ends in ``.gz``); returns the count.

    ``collection`` adds members to the FeatureCollection itself (e.g. ``{"histobridge": {"model":
    name}}``, which tells ``import_results.groovy`` whose tiles to replace even when there are none).

    This is the one GeoJSON writer (``qpdata to-geojson``, heatmap tiles, annotation exports).
    PathObject records are converted with :func:`path_object_feature`, plain dicts pass through
    :func:`qupath_safe`. Non-finite numbers are an error (QuPath 0.4 cannot read them), reported
    with the file name; nothing is left at ``path`` then.
    """
    p = Path(path)
    return write_feature_texts(p, (_feature_text(f, p, n) for n, f in enumerate(features)),
                               feature_collection=feature_collection, collection=collection)


def write_feature_texts(
    path: str | os.PathLike[str],
    texts: Iterable[str] | FeatureBlock,
    *,
    feature_collection: bool = True,
    collection: Mapping[str, Any] | None = None,
) -> int:
    """:func:`write_features` for features already serialised (one compact JSON object each).

    A :class:`FeatureBlock` (from :func:`tile_feature_texts`) is written in one piece; other texts
    in chunks of :data:`WRITE_CHUNK` features (one write call per feature costs more than building
    its text when the file is gzipped).
    """
    p = Path(path)
    if p.name.lower().endswith(".zip"):
        raise AnnotationError(f"{p}: write .geojson or .geojson.gz; zip output is not supported")
    n = 0
    try:
        with atomic_path(p) as tmp, _binary_writer(tmp, str(p).endswith(".gz")) as fh:
            extra = "".join(
                f"{json.dumps(str(k))}: {json.dumps(v, allow_nan=False, separators=(',', ':'))}, "
                for k, v in (collection or {}).items()
                if k not in ("type", "features")
            )
            head = f'{{"type": "FeatureCollection", {extra}"features": [\n' if feature_collection else "[\n"
            fh.write(head.encode())
            if isinstance(texts, FeatureBlock):
                texts.write_to(fh)
                n = texts.count
            else:
                chunk: list[str] = []
                for text in texts:
                    chunk.append(text)
                    n += 1
                    if len(chunk) >= WRITE_CHUNK:
                        fh.write(((",\n" if n > len(chunk) else "") + ",\n".join(chunk)).encode())
                        chunk.clear()
                if chunk:
                    fh.write(((",\n" if n > len(chunk) else "") + ",\n".join(chunk)).encode())
            fh.write(b"\n]}\n" if feature_collection else b"\n]\n")
    except HistobridgeError:
        raise  # the source of the features failed (or _feature_text named the problem)
    except ValueError as err:
        raise AnnotationError(f"{p}: feature {n} cannot be written as QuPath GeoJSON: {err}") from err
    return n


@contextlib.contextmanager
def _binary_writer(tmp: Path, gz: bool) -> Iterator[IO[bytes]]:
    """Bytes to ``tmp``, flushed to disk before the rename; gzip at :data:`GZIP_LEVEL`.

    Level 1, not gzip's default 9 nor zlib's 6: on tile GeoJSON 6 takes more than twice as long as
    1 for a file ~15 % smaller, 9 several times as long again (``benchmarks/bench_geojson.py``
    prints the comparison).
    """
    fh: IO[bytes] = (
        cast(IO[bytes], gzip.open(tmp, "wb", compresslevel=GZIP_LEVEL)) if gz  # noqa: SIM115
        else open(tmp, "wb")  # noqa: SIM115 (both closed below)
    )
    try:
        yield fh
        fh.flush()
        with contextlib.suppress(OSError, ValueError):
            os.fsync(fh.fileno())
    finally:
        fh.close()


def _feature_text(f: Mapping[str, Any] | PathObject, path: Path, n: int) -> str:
    try:
        return compact_json(_as_feature(f))
    except AnnotationError as err:
        raise AnnotationError(f"{path}: feature {n}: {err}") from err
    except ValueError as err:
        raise AnnotationError(f"{path}: feature {n} cannot be written as QuPath GeoJSON: {err}") from err


def compact_json(value: Any) -> str:
    """``json.dumps(value, allow_nan=False, separators=(",", ":"))``, the same text, mostly by orjson.

    orjson's text is taken only where it cannot differ from the standard library's: pure ASCII
    without DEL (which ``json.dumps`` escapes), no ``null`` (orjson writes one for NaN, which must
    stay an error), no ``0.0000`` or ``e-`` (orjson spells numbers below 1e-4 otherwise than
    ``repr``). Anything else, and whatever orjson refuses (non-text keys, huge integers, numpy
    scalars), goes to ``json.dumps``.
    """
    try:
        data = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        data = b"null"
    if data.isascii() and b"null" not in data and b"\x7f" not in data and b"0.0000" not in data \
            and b"e-" not in data:
        return data.decode("ascii")
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def features_bytes(features: Iterable[Mapping[str, Any] | PathObject]) -> bytes:
    """The FeatureCollection :func:`write_features` would write, in memory (for tests and HTTP)."""
    buf = io.StringIO()
    json.dump({"type": "FeatureCollection", "features": [_as_feature(f) for f in features]}, buf,
              allow_nan=False)
    return buf.getvalue().encode("utf-8")


__all__ = [
    "GEOMETRY_TYPES",
    "TYPE_ALIASES",
    "FeatureBlock",
    "FeatureReadResult",
    "annotation_to_feature",
    "classification",
    "default_class_color",
    "features_bytes",
    "finite_measurements",
    "geometry_json",
    "load_document",
    "path_object_feature",
    "polygonal_part",
    "qupath_safe",
    "read_features",
    "tile_feature",
    "tile_feature_texts",
    "write_feature_texts",
    "write_features",
]
