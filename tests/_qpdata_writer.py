"""TEST-ONLY writer of Java serialization streams shaped like QuPath ``.qpdata`` files.

It follows the Java Object Serialization Stream Protocol (spec chapter 6): block-data records of at
most 1024 bytes (primitives may straddle two records, as ``BlockDataOutputStream`` does), class
descriptors with sorted fields, handles and back-references for repeated objects and strings.
The QuPath part follows the layout described in docs/qpdata-format.md, for 0.2 through 0.7.
It builds whole files of any shape so the reader can be tested without QuPath; the package's own writer
(histobridge/qupath/qpdata/writer.py) only adds tiles to real files.
"""

from __future__ import annotations

import json
import struct
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

TC_NULL, TC_REFERENCE, TC_CLASSDESC, TC_OBJECT, TC_STRING, TC_ARRAY = 0x70, 0x71, 0x72, 0x73, 0x74, 0x75
TC_BLOCKDATA, TC_ENDBLOCKDATA, TC_BLOCKDATALONG, TC_LONGSTRING, TC_ENUM = 0x77, 0x78, 0x7A, 0x7C, 0x7E
SC_WRITE, SC_SER, SC_EXT, SC_BLOCK, SC_ENUM = 0x01, 0x02, 0x04, 0x08, 0x10
MAX_BLOCK = 1024


def mutf8(s: str) -> bytes:
    """Java modified UTF-8: UTF-16 code units, each encoded like UTF-8, NUL as C0 80."""
    units = s.encode("utf-16-be", "surrogatepass")
    chars = "".join(chr(int.from_bytes(units[i : i + 2], "big")) for i in range(0, len(units), 2))
    return chars.encode("utf-8", "surrogatepass").replace(b"\x00", b"\xc0\x80")


@dataclass(eq=False)
class Desc:
    name: str
    flags: int = SC_SER
    fields: list[tuple[str, str, str | None]] = field(default_factory=list)
    superclass: Desc | None = None
    suid: int = 1

    def __post_init__(self) -> None:  # Java orders primitives by name, then objects by name
        # an array-typed field has type code '[' (not 'L'), as a JVM writes it
        self.fields = [
            ("[" if c == "L" and (sig or "").startswith("[") else c, n, sig) for c, n, sig in self.fields
        ]
        prims = sorted((f for f in self.fields if f[0] not in "L["), key=lambda f: f[1])
        objs = sorted((f for f in self.fields if f[0] in "L["), key=lambda f: f[1])
        self.fields = prims + objs

    def chain(self) -> list[Desc]:
        return ([*self.superclass.chain()] if self.superclass else []) + [self]


@dataclass(eq=False)
class Obj:
    """An object: field values by name, and custom data per class (or external data)."""

    desc: Desc
    values: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, list[Any]] = field(default_factory=dict)
    external: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class Arr:
    desc: Desc
    items: Any


@dataclass(eq=False)
class Enum:
    desc: Desc
    constant: str


@dataclass(frozen=True)
class P:
    """A primitive written in block-data mode: code is one of i d f z b j utf raw."""

    code: str
    value: Any


_FMT = {"i": ">i", "d": ">d", "f": ">f", "z": ">?", "b": ">b", "j": ">q", "h": ">h"}
_FIELD_FMT = {"I": ">i", "D": ">d", "F": ">f", "Z": ">?", "B": ">b", "J": ">q", "S": ">h", "C": ">H"}
_ARRAY_FMT = {"F": "f", "D": "d", "I": "i", "J": "q", "S": "h", "Z": "?", "C": "H"}


class StreamWriter:
    """Writes one stream; ``write`` for objects, ``prim`` for block data at the current level."""

    def __init__(self) -> None:
        self.out = bytearray(b"\xac\xed\x00\x05")
        self.block = bytearray()
        self.handles: dict[Any, int] = {}
        self.alive: list[Any] = []  # written objects stay alive so their id() is never reused

    def _new_handle(self, key: Any, obj: Any = None) -> None:
        self.handles[key] = len(self.handles)
        self.alive.append(obj)

    def _ref(self, key: Any) -> bool:
        h = self.handles.get(key)
        if h is None:
            return False
        self.out += bytes([TC_REFERENCE]) + struct.pack(">i", 0x7E0000 + h)
        return True

    # block data -----------------------------------------------------------------------------
    def prim(self, p: P) -> None:
        if p.code == "utf":
            data = mutf8(p.value)
            raw = struct.pack(">H", len(data)) + data
        elif p.code == "raw":
            raw = bytes(p.value)
        else:
            raw = struct.pack(_FMT[p.code], p.value)
        for byte_chunk in (raw[i : i + MAX_BLOCK] for i in range(0, len(raw), MAX_BLOCK)):
            room = MAX_BLOCK - len(self.block)
            self.block += byte_chunk[:room]
            if len(self.block) == MAX_BLOCK:
                self.drain()
                self.block += byte_chunk[room:]

    def drain(self) -> None:
        if not self.block:
            return
        n = len(self.block)
        self.out += (
            bytes([TC_BLOCKDATA, n]) if n <= 0xFF else bytes([TC_BLOCKDATALONG]) + struct.pack(">i", n)
        )
        self.out += self.block
        self.block = bytearray()

    def items(self, items: list[Any]) -> None:
        """Custom data: primitives into block data, anything else as an object; then end marker."""
        for it in items:
            if isinstance(it, P):
                self.prim(it)
            else:
                self.write(it)
        self.drain()
        self.out.append(TC_ENDBLOCKDATA)

    # objects --------------------------------------------------------------------------------
    def write(self, o: Any) -> None:
        self.drain()
        if o is None:
            self.out.append(TC_NULL)
        elif isinstance(o, str):
            self._string(o)
        elif isinstance(o, Desc):
            self._desc(o)
        elif self._ref(id(o)):
            return
        elif isinstance(o, Obj):
            self._object(o)
        elif isinstance(o, Arr):
            self._array(o)
        elif isinstance(o, Enum):
            self.out.append(TC_ENUM)
            self._desc(o.desc)
            self._new_handle(id(o), o)
            self.write(o.constant)
        else:
            raise TypeError(f"cannot write {type(o).__name__}")

    def _string(self, s: str) -> None:
        if self._ref(("str", s)):
            return
        data = mutf8(s)
        if len(data) <= 0xFFFF:
            self.out += bytes([TC_STRING]) + struct.pack(">H", len(data))
        else:
            self.out += bytes([TC_LONGSTRING]) + struct.pack(">q", len(data))
        self._new_handle(("str", s))
        self.out += data

    def _desc(self, d: Desc | None) -> None:
        if d is None:
            self.out.append(TC_NULL)
            return
        if self._ref(id(d)):
            return
        name = mutf8(d.name)
        self.out += bytes([TC_CLASSDESC]) + struct.pack(">H", len(name)) + name + struct.pack(">q", d.suid)
        self._new_handle(id(d), d)
        self.out += bytes([d.flags]) + struct.pack(">H", len(d.fields))
        for code, fname, sig in d.fields:
            fn = mutf8(fname)
            self.out += code.encode() + struct.pack(">H", len(fn)) + fn
            if code in "L[":
                self._string(sig or "Ljava/lang/Object;")
        self.out.append(TC_ENDBLOCKDATA)  # no class annotation
        self._desc(d.superclass)

    def _object(self, o: Obj) -> None:
        self.out.append(TC_OBJECT)
        self._desc(o.desc)
        self._new_handle(id(o), o)
        if o.desc.flags & SC_EXT:
            self.items(o.external)
            return
        for cd in o.desc.chain():
            for code, fname, _ in cd.fields:
                v = o.values.get(fname)
                if code in "L[":
                    self.write(v)
                else:
                    self.out += struct.pack(_FIELD_FMT[code], v if v is not None else 0)
            if cd.flags & SC_WRITE:
                self.items(o.custom.get(cd.name, []))

    def _array(self, a: Arr) -> None:
        self.out.append(TC_ARRAY)
        self._desc(a.desc)
        self._new_handle(id(a), a)
        self.out += struct.pack(">i", len(a.items))
        code = a.desc.name[1]
        if code == "B":
            self.out += bytes(a.items)
        elif code in _ARRAY_FMT:
            self.out += struct.pack(f">{len(a.items)}{_ARRAY_FMT[code]}", *a.items)
        else:
            for it in a.items:
                self.write(it)


# -- JDK classes ----------------------------------------------------------------------------------
NUMBER = Desc("java.lang.Number", suid=-8742448824652078965)
INTEGER = Desc(
    "java.lang.Integer", fields=[("I", "value", None)], superclass=NUMBER, suid=1360826667806852920
)
DOUBLE = Desc("java.lang.Double", fields=[("D", "value", None)], superclass=NUMBER, suid=-9172774392245257468)
BOOLEAN = Desc("java.lang.Boolean", fields=[("Z", "value", None)], suid=-3665804199014368530)
OBJECT_ARRAY = Desc("[Ljava.lang.Object;", suid=-8012369246846506644)
FLOAT_ARRAY, DOUBLE_ARRAY = Desc("[F", suid=836686056779680834), Desc("[D", suid=4514449696888150558)
BYTE_ARRAY = Desc("[B", suid=-5984413125824719648)
FLOAT_2D = Desc("[[F")
ARRAY_LIST = Desc("java.util.ArrayList", SC_SER | SC_WRITE, [("I", "size", None)], suid=8683452581122892189)
UNMOD_COLL = Desc(
    "java.util.Collections$UnmodifiableCollection",
    fields=[("L", "c", "Ljava/util/Collection;")],
    suid=1820017752578914078,
)
UNMOD_LIST = Desc(
    "java.util.Collections$UnmodifiableList",
    fields=[("L", "list", "Ljava/util/List;")],
    superclass=UNMOD_COLL,
    suid=-283967356065247728,
)
# List.copyOf (QuPath >= 0.6 measurement names) serializes through this proxy. It is declared in
# ImmutableCollections.java but as a top-level class, so its name has no "ImmutableCollections$".
COLL_SER = Desc("java.util.CollSer", SC_SER | SC_WRITE, [("I", "tag", None)], suid=6309168927139932177)
HASH_MAP = Desc(
    "java.util.HashMap",
    SC_SER | SC_WRITE,
    [("F", "loadFactor", None), ("I", "threshold", None)],
    suid=362498820763181265,
)
LINKED_HASH_MAP = Desc(
    "java.util.LinkedHashMap",
    fields=[("Z", "accessOrder", None)],
    superclass=HASH_MAP,
    suid=3801124242820219131,
)
UUID_DESC = Desc(
    "java.util.UUID",
    fields=[("J", "leastSigBits", None), ("J", "mostSigBits", None)],
    suid=-4856846361193249489,
)
LOCALE = Desc(
    "java.util.Locale",
    SC_SER | SC_WRITE,
    [
        ("I", "hashcode", None),
        ("L", "country", "Ljava/lang/String;"),
        ("L", "extensions", "Ljava/lang/String;"),
        ("L", "language", "Ljava/lang/String;"),
        ("L", "script", "Ljava/lang/String;"),
        ("L", "variant", "Ljava/lang/String;"),
    ],
    suid=9149081749638150636,
)
ENUM = Desc("java.lang.Enum", SC_SER | SC_ENUM, suid=0)
IMAGE_TYPE = Desc("qupath.lib.images.ImageData$ImageType", SC_SER | SC_ENUM, superclass=ENUM, suid=0)


# QuPath's default H&E stains, in the text form its ColorDeconvolutionStains writes
HE_STAINS = (
    '{"Name" : "H&E default", "Stain 1" : "Hematoxylin", "Values 1" : "0.6511078257574492 0.7011930431234068 '
    '0.29049426072255424", "Stain 2" : "Eosin", "Values 2" : "0.21589893562087106 0.8011960501132093 '
    '0.5580972485873467", "Background" : " 255 255 255"}'
)


def integer(v: int) -> Obj:
    return Obj(INTEGER, {"value": v})


def boolean(v: bool) -> Obj:
    return Obj(BOOLEAN, {"value": v})


def array_list(items: list[Any]) -> Obj:
    return Obj(
        ARRAY_LIST, {"size": len(items)}, {"java.util.ArrayList": [P("i", max(10, len(items))), *items]}
    )


def unmodifiable_list(items: list[Any]) -> Obj:
    return Obj(UNMOD_LIST, {"c": (inner := array_list(items)), "list": inner})


def coll_ser_list(items: list[Any]) -> Obj:
    return Obj(COLL_SER, {"tag": 1}, {COLL_SER.name: [P("i", len(items)), *items]})


def hash_map(d: dict[Any, Any], linked: bool = False) -> Obj:
    pairs: list[Any] = [P("i", 16), P("i", len(d))]
    for k, v in d.items():
        pairs += [k, v]
    desc = LINKED_HASH_MAP if linked else HASH_MAP
    return Obj(desc, {"loadFactor": 0.75, "threshold": 12}, {HASH_MAP.name: pairs})


def uuid_obj(u: uuidlib.UUID) -> Obj:
    def signed(v: int) -> int:
        return v - (1 << 64) if v >= 1 << 63 else v

    return Obj(
        UUID_DESC, {"mostSigBits": signed(u.int >> 64), "leastSigBits": signed(u.int & ((1 << 64) - 1))}
    )


# -- QuPath classes -------------------------------------------------------------------------------
Q = "qupath.lib."
EXT = SC_EXT | SC_BLOCK
PATH_OBJECT = Desc(Q + "objects.PathObject", EXT)
ROI_OBJECT = Desc(Q + "objects.PathROIObject", EXT, superclass=PATH_OBJECT)
KIND_DESCS = {
    "root": Desc(Q + "objects.PathRootObject", EXT, superclass=PATH_OBJECT),
    "annotation": Desc(Q + "objects.PathAnnotationObject", EXT, superclass=ROI_OBJECT),
    "detection": (DETECTION := Desc(Q + "objects.PathDetectionObject", EXT, superclass=ROI_OBJECT)),
    "tile": Desc(Q + "objects.PathTileObject", EXT, superclass=DETECTION),
    "cell": Desc(Q + "objects.PathCellObject", EXT, superclass=DETECTION),
    "tmaCore": Desc(Q + "objects.TMACoreObject", EXT, superclass=ROI_OBJECT),
}
METADATA_MAP = Desc(Q + "objects.MetadataMap", EXT)
PATH_CLASS = Desc(
    Q + "objects.classes.PathClass",
    fields=[
        ("L", "colorRGB", "Ljava/lang/Integer;"),
        ("L", "name", "Ljava/lang/String;"),
        ("L", "parentClass", "Lqupath/lib/objects/classes/PathClass;"),
    ],
)
HIERARCHY = Desc(
    Q + "objects.hierarchy.PathObjectHierarchy",
    fields=[
        ("L", "rootObject", "Lqupath/lib/objects/PathObject;"),
        ("L", "tmaGrid", "Lqupath/lib/objects/hierarchy/TMAGrid;"),
    ],
)
TMA_GRID = Desc(
    Q + "objects.hierarchy.DefaultTMAGrid",
    fields=[("I", "gridHeight", None), ("I", "gridWidth", None), ("L", "cores", "Ljava/util/List;")],
)
STAINS = Desc(Q + "color.ColorDeconvolutionStains", EXT)
WORKFLOW = Desc(Q + "plugins.workflow.Workflow", EXT)
SCRIPT_STEP = Desc(
    Q + "plugins.workflow.DefaultScriptableWorkflowStep",
    fields=[
        ("L", "map", "Ljava/util/Map;"),
        ("L", "name", "Ljava/lang/String;"),
        ("L", "script", "Ljava/lang/String;"),
    ],
)
_PLANE = [("I", "c", None), ("I", "t", None), ("I", "z", None)]
_BOUNDS = [("D", k, None) for k in ("x", "y", "x2", "y2")]
_NAME = [("L", "name", "Ljava/lang/String;")]
_XY = [("L", "x", "[F"), ("L", "y", "[F")]
ROI = Q + "roi."
ROI_DESCS = {
    "rectangle": Desc(ROI + "RectangleROI$SerializationProxy", fields=_PLANE + _BOUNDS + _NAME),
    "ellipse": Desc(ROI + "EllipseROI$SerializationProxy", fields=_PLANE + _BOUNDS + _NAME),
    "line": Desc(ROI + "LineROI$SerializationProxy", fields=_PLANE + _BOUNDS + _NAME),
    "polygon": Desc(
        ROI + "PolygonROI$SerializationProxy",
        fields=_PLANE + _NAME + _XY + [("L", "stats", "Lqupath/lib/roi/ClosedShapeStatistics;")],
    ),
    "polyline": Desc(ROI + "PolylineROI$SerializationProxy", fields=_PLANE + _XY),
    "points": Desc(ROI + "PointsROI$SerializationProxy", fields=_PLANE + _NAME + _XY),
    "geometry": Desc(
        ROI + "GeometryROI$WKBSerializationProxy",
        fields=[*_PLANE, ("L", "wkb", "[B"), ("L", "stats", "Lqupath/lib/roi/GeometryROI$GeometryStats;")],
    ),
    "area": Desc(
        ROI + "AreaROI$SerializationProxy",
        fields=_PLANE
        + _NAME
        + [("L", "x", "[[F"), ("L", "y", "[[F"), ("L", "stats", "Lqupath/lib/roi/ClosedShapeStatistics;")],
    ),
}
SHAPE_STATS = Desc(
    ROI + "ClosedShapeStatistics",
    fields=[
        ("F" if k.startswith("centroid") else "D", k, None)  # QuPath caches the centroid as float
        for k in (
            "areaCached",
            "centroidXCached",
            "centroidYCached",
            "maxX",
            "maxY",
            "minX",
            "minY",
            "perimeterCached",
        )
    ]
    + [("I", "nVertices", None)],
)
ABSTRACT_ML = Desc(
    Q + "measurements.NumericMeasurementList$AbstractNumericMeasurementList",
    fields=[("Z", "isClosed", None), ("L", "map", "Ljava/util/Map;"), ("L", "names", "Ljava/util/List;")],
)
FLOAT_LIST = Desc(
    Q + "measurements.NumericMeasurementList$FloatList",
    fields=[("L", "values", "[F")],
    superclass=ABSTRACT_ML,
)
DOUBLE_LIST = Desc(
    Q + "measurements.NumericMeasurementList$DoubleList",
    fields=[("L", "values", "[D")],
    superclass=ABSTRACT_ML,
)
DEFAULT_ML = Desc(Q + "measurements.DefaultMeasurementList", fields=[("L", "list", "Ljava/util/ArrayList;")])
DOUBLE_MEASUREMENT = Desc(
    Q + "measurements.DoubleMeasurement", fields=[("D", "value", None), ("L", "name", "Ljava/lang/String;")]
)


def path_class(name: str, argb: int | None = None, parent: Obj | None = None) -> Obj:
    return Obj(
        PATH_CLASS, {"name": name, "colorRGB": None if argb is None else integer(argb), "parentClass": parent}
    )


def roi(kind: str, plane: tuple[int, int, int] = (-1, 0, 0), stats: Obj | None = None, **kw: Any) -> Obj:
    c, z, t = plane
    values: dict[str, Any] = {"c": c, "z": z, "t": t, "stats": stats}
    for key, v in kw.items():
        if key in ("x", "y") and kind in ("polygon", "polyline", "points"):
            v = Arr(FLOAT_ARRAY, list(v))
        elif key in ("x", "y") and kind == "area":
            v = Arr(FLOAT_2D, [Arr(FLOAT_ARRAY, list(r)) for r in v])
        elif key == "wkb":
            v = Arr(BYTE_ARRAY, bytes(v))
        values[key] = v
    return Obj(ROI_DESCS[kind], values)


def polygon_stats(area: float, bounds: tuple[float, float, float, float], n: int) -> Obj:
    x0, y0, x1, y1 = bounds
    return Obj(
        SHAPE_STATS,
        {
            "areaCached": area,
            "minX": x0,
            "minY": y0,
            "maxX": x1,
            "maxY": y1,
            "centroidXCached": (x0 + x1) / 2,
            "centroidYCached": (y0 + y1) / 2,
            "perimeterCached": 0.0,
            "nVertices": n,
        },
    )


def float_list(names: Obj, values: list[float], capacity: int = 0, double: bool = False) -> Obj:
    padded = list(values) + [0.0] * capacity  # unused capacity must be ignored
    arr = Arr(DOUBLE_ARRAY if double else FLOAT_ARRAY, padded)
    return Obj(
        DOUBLE_LIST if double else FLOAT_LIST, {"isClosed": True, "map": None, "names": names, "values": arr}
    )


def default_measurement_list(d: dict[str, float]) -> Obj:
    return Obj(
        DEFAULT_ML,
        {"list": array_list([Obj(DOUBLE_MEASUREMENT, {"name": k, "value": v}) for k, v in d.items()])},
    )


def metadata_map(d: dict[str, str]) -> Obj:
    return Obj(
        METADATA_MAP, external=[integer(1), Arr(OBJECT_ARRAY, list(d)), Arr(OBJECT_ARRAY, list(d.values()))]
    )


@dataclass(eq=False)
class PO:
    """A PathObject to write."""

    kind: str
    roi: Obj | None = None
    name: str | None = None
    color: int | None = None
    path_class: Obj | None = None
    locked: bool | None = False
    measurements: Obj | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    children: list[PO] = field(default_factory=list)
    probability: float = float("nan")
    nucleus: Obj | None = None
    missing: bool = False
    uid: uuidlib.UUID = field(default_factory=uuidlib.uuid4)



def tile_then_detection_sharing_refs() -> tuple[PO, PO]:
    """A "model" tile written first, so it defines the class and measurement-name list that the
    detection after it refers back to: removing the tile must move those definitions."""
    tumor = path_class("Tumor", -65536)
    names = coll_ser_list(["m1", "m2"])
    old = PO(
        "tile",
        roi=roi("rectangle", x=0, y=0, x2=10, y2=10),
        name="model",
        path_class=tumor,
        measurements=float_list(names, [0.1, 0.2]),
    )
    kept = PO(
        "detection",
        roi=roi("rectangle", x=20, y=0, x2=30, y2=10),
        path_class=tumor,
        measurements=float_list(names, [0.3, 0.4]),
    )
    return old, kept

def path_object(po: PO, layout: str) -> Obj:
    """External data of a PathObject in one of the layouts "0.2" (also 0.3), "0.4" (v3) or "v4"."""
    ext: list[Any] = [po.name, None if po.color is None else integer(po.color)]
    if layout == "v4":
        ext += [uuid_obj(po.uid), P("i", 1 + bool(po.metadata))]
        if po.metadata:
            ext.append(metadata_map(po.metadata))
        ext.append(po.measurements)
    elif layout == "0.4":
        ext += [metadata_map({**po.metadata, "Object ID": str(po.uid)}), po.measurements]
    else:
        if po.metadata:
            ext.append(metadata_map(po.metadata))
        ext.append(po.measurements)
    ext.append(P("i", len(po.children)))
    ext += [path_object(c, layout) for c in po.children]
    if po.kind != "root":
        if po.locked is not None:
            ext.append(boolean(po.locked))
        ext += [po.path_class, po.roi, P("d", po.probability)]
        if po.kind == "cell":
            ext.append(po.nucleus)
        if po.kind == "tmaCore":
            ext.append(P("z", po.missing))
    obj = Obj(KIND_DESCS[po.kind], external=ext)
    po.written = obj  # type: ignore[attr-defined]  # lets a TMA grid refer back to it
    return obj


def qpdata_bytes(
    root: PO,
    version: str = "0.4",
    *,
    layout: str | None = None,
    image_type: str = "BRIGHTFIELD_H_E",
    properties: dict[str, Any] | None = None,
    server_json: dict[str, Any] | None = None,
    tma_cores: list[PO] | None = None,
    tma_size: tuple[int, int] = (0, 0),
    eof: bool = True,
    extra_top: list[Any] | None = None,
) -> bytes:
    """A whole data file as QuPath ``version`` writes it (header, server, locale, type, stains, workflow,
    hierarchy, properties, "EOF")."""
    w = StreamWriter()
    w.prim(P("utf", f"Data file version {2 if version.startswith('0.2') else 3}"))
    if version.startswith("0.2"):
        w.write("Image path: /data/slide.svs")
    else:
        w.write(
            json.dumps(
                server_json
                or {
                    "dataVersion": 3,
                    "qupathVersion": version,
                    "server": {"builderType": "uri", "uri": "file:/data/slide.svs"},
                    "id": "slide.svs",
                }
            )
        )
    w.write(
        Obj(
            LOCALE,
            {
                "hashcode": -1,
                "country": "US",
                "extensions": "",
                "language": "en",
                "script": "",
                "variant": "",
            },
            {LOCALE.name: []},
        )
    )
    w.write(Enum(IMAGE_TYPE, image_type))
    w.write(Obj(STAINS, external=[P("i", 1), HE_STAINS]))
    step = Obj(
        SCRIPT_STEP,
        {
            "name": "Set image type",
            "script": "setImageType('X');",
            "map": hash_map({"Image type": image_type}),
        },
    )
    w.write(Obj(WORKFLOW, external=[P("i", 1), P("i", 1), step]))
    layout = layout or ("0.2" if version[:3] in ("0.2", "0.3") else "0.4")
    root_obj = path_object(root, layout)
    grid = None
    if tma_cores is not None:
        cores = [c.written for c in tma_cores]  # type: ignore[attr-defined]
        grid = Obj(
            TMA_GRID, {"gridWidth": tma_size[0], "gridHeight": tma_size[1], "cores": array_list(cores)}
        )
    w.write(Obj(HIERARCHY, {"rootObject": root_obj, "tmaGrid": grid}))
    for extra in extra_top or []:
        w.write(extra)
    w.write(hash_map(properties or {"PROJECT_ENTRY_ID": "/p/project.qpproj::1"}))
    if eof:
        w.write("EOF")
    w.drain()
    return bytes(w.out)
