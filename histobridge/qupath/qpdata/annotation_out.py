"""New annotation objects in QuPath's own serial form (``PathAnnotationObject`` with a geometry ROI).

An annotation is written as QuPath writes one: ``PathAnnotationObject`` adds nothing of its own to
``PathROIObject``, so its data is the object's name, colour (an ARGB Integer or null), a MetadataMap
holding its "Object ID", its measurements (a DefaultMeasurementList of DoubleMeasurements, or null),
its children, the locked flag, the PathClass, the ROI and a NaN class probability. The ROI is
``GeometryROI``'s serialization proxy: plane (c, t, z), no cached statistics (QuPath computes them
when first asked) and the geometry as 2D big-endian WKB, so holes and several parts survive exactly
(double precision, unlike the float vertices of a polygon ROI).
"""

from __future__ import annotations

import math
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from histobridge.errors import QPDataError
from histobridge.qupath.annotations import PathObject
from histobridge.qupath.qpdata import jwriter as J
from histobridge.qupath.qpdata.stream import TC_ARRAY, TC_ENDBLOCKDATA, TC_NULL, TC_OBJECT
from histobridge.qupath.qpdata.tiles import OBJECT_ID, TileEmitter, argb, uuid4_strings

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class NewAnnotation:
    """One annotation checked and ready to write; ``source`` is the record it was made from."""

    source: PathObject
    object_id: str
    wkb: bytes
    plane: tuple[int, int, int]  # (c, z, t), c = -1 for all channels
    metadata: tuple[tuple[str, str], ...]


def _label(i: int, obj: PathObject) -> str:
    return f"annotation {i + 1}" + (f" ({obj.label!r})" if obj.name or obj.path_class else "")


def prepare_annotations(objects: Sequence[PathObject]) -> list[NewAnnotation]:
    """Check annotations for writing: areas (polygons, holes and several parts allowed) with finite
    coordinates. An object ID that is not a UUID gets a new one (QuPath parses it as a UUID)."""
    out: list[NewAnnotation] = []
    ids = iter(uuid4_strings(len(objects)))
    for i, obj in enumerate(objects):
        g = obj.geometry
        what = _label(i, obj)
        if obj.object_type != "annotation":
            raise QPDataError(f"{what}: a {obj.object_type} object, only annotations are written")
        if g is None or g.is_empty:
            raise QPDataError(f"{what}: no ROI; a QuPath annotation needs one")
        if not isinstance(g, (Polygon, MultiPolygon)):
            raise QPDataError(f"{what}: a {g.geom_type}; only areas (polygons, multipolygons) are written")
        if not bool(np.isfinite(shapely.get_coordinates(g)).all()):
            raise QPDataError(f"{what}: a NaN or infinite coordinate")
        try:
            oid = str(uuid.UUID(str(obj.object_id)))
        except ValueError:
            oid = next(ids)
        meta = tuple((str(k), str(v)) for k, v in obj.metadata.items() if k != OBJECT_ID and v is not None)
        plane = obj.plane or (-1, 0, 0)
        wkb = shapely.to_wkb(g, output_dimension=2, byte_order=0, include_srid=False)
        out.append(NewAnnotation(obj, oid, bytes(wkb), plane, meta))
    return out


def class_colors(annotations: Sequence[NewAnnotation]) -> dict[str, RGB | None]:
    """Each class's colour as the annotations give it (the first that names one)."""
    out: dict[str, RGB | None] = {}
    for a in annotations:
        name = a.source.path_class
        if name is not None and out.get(name) is None:
            out[name] = a.source.class_color
    return out


class AnnotationEmitter:
    """Writes annotations into the tile emitter's stream, sharing its classes, Integers and Booleans."""

    def __init__(self, shared: TileEmitter) -> None:
        self.t = shared
        self.w = shared.w

    def _strings_array(self, texts: Sequence[str]) -> None:
        w = self.w
        w.out.append(TC_ARRAY)
        w.desc(J.OBJECT_ARRAY)
        w.new_handle()
        w.out += struct.pack(">i", len(texts))
        for text in texts:
            w.string(text)

    def _metadata(self, a: NewAnnotation) -> None:
        w = self.w
        w.out.append(TC_OBJECT)
        w.desc(J.METADATA_MAP)
        w.new_handle()
        self.t.integer(1)  # MetadataMap's format version
        pairs = [*a.metadata, (OBJECT_ID, a.object_id)]  # QuPath adds the ID after the user's keys
        self._strings_array([k for k, _ in pairs])
        self._strings_array([v for _, v in pairs])
        w.out.append(TC_ENDBLOCKDATA)

    def _measurements(self, values: Mapping[str, float]) -> None:
        w = self.w
        if not values:
            w.null()
            return
        w.out.append(TC_OBJECT)
        w.desc(J.DEFAULT_ML)
        w.new_handle()
        w.out.append(TC_OBJECT)  # field list: an ArrayList of DoubleMeasurement
        w.desc(J.ARRAY_LIST)
        w.new_handle()
        w.out += struct.pack(">i", len(values))
        w.block(struct.pack(">i", len(values)))
        for name, value in values.items():
            w.out.append(TC_OBJECT)
            w.desc(J.DOUBLE_MEASUREMENT)
            w.new_handle()
            w.out += struct.pack(">d", float(value))
            w.string(str(name))
        w.end_block()

    def _roi(self, a: NewAnnotation) -> None:
        w = self.w
        c, z, t = a.plane
        w.out.append(TC_OBJECT)
        w.desc(J.GEOMETRY_WKB)
        w.new_handle()
        w.out += struct.pack(">iii", c, t, z)
        w.out.append(TC_NULL)  # stats: computed by QuPath when needed
        w.out.append(TC_ARRAY)
        w.desc(J.BYTE_ARRAY)
        w.new_handle()
        w.out += struct.pack(">i", len(a.wkb)) + a.wkb

    def annotation(self, a: NewAnnotation, n_children: int, write_children: Callable[[], None]) -> None:
        """One annotation; ``write_children`` writes its ``n_children`` child objects."""
        w, obj = self.w, a.source
        w.out.append(TC_OBJECT)
        w.desc(J.ANNOTATION)
        w.new_handle()
        if obj.name is None:
            w.null()
        else:
            w.string(obj.name)
        if obj.color is None:
            w.null()
        else:
            self.t.integer(argb(obj.color))
        self._metadata(a)
        self._measurements(obj.measurements)
        w.block(struct.pack(">i", n_children))
        if n_children:
            write_children()
        self.t.boolean(bool(obj.locked))
        if obj.path_class is None:
            w.null()
        else:
            self.t.class_chain(obj.path_class, obj.class_color)
        self._roi(a)
        prob = obj.class_probability
        w.block(struct.pack(">d", math.nan if prob is None else float(prob)))
        w.end_block()


__all__ = ["AnnotationEmitter", "NewAnnotation", "class_colors", "prepare_annotations"]
