"""Java Object Serialization output (protocol 5): handles, class descriptors, strings, block data.

Only what a ``.qpdata`` writer needs. Class descriptors are spelled exactly as QuPath's JVM writes
them (names, serialVersionUIDs, flags, fields in Java's order: primitives by name, then objects by
name), because a JVM checks each descriptor against its own class when it reads the stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from histobridge.qupath.qpdata.stream import (
    BASE_HANDLE,
    SC_BLOCK_DATA,
    SC_ENUM,
    SC_EXTERNALIZABLE,
    SC_SERIALIZABLE,
    SC_WRITE_METHOD,
    TC_BLOCKDATA,
    TC_BLOCKDATALONG,
    TC_CLASSDESC,
    TC_ENDBLOCKDATA,
    TC_LONGSTRING,
    TC_NULL,
    TC_REFERENCE,
    TC_STRING,
)

_REF = struct.Struct(">Bi")
_U2 = struct.Struct(">H")
EXT = SC_EXTERNALIZABLE | SC_BLOCK_DATA


@dataclass(frozen=True, eq=False)
class JDesc:
    """A class descriptor: fields as (type code, name, type signature or None)."""

    name: str
    suid: int
    flags: int = SC_SERIALIZABLE
    fields: tuple[tuple[str, str, str | None], ...] = ()
    superclass: JDesc | None = None


def mutf8(text: str) -> bytes:
    """Java's modified UTF-8 (NUL as C0 80, supplementary characters as surrogate pairs)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = b""
    else:
        if b"\x00" not in data and all(ord(c) < 0x10000 for c in text):
            return data
    units = text.encode("utf-16-be", "surrogatepass")
    chars = "".join(chr(int.from_bytes(units[i : i + 2], "big")) for i in range(0, len(units), 2))
    return chars.encode("utf-8", "surrogatepass").replace(b"\x00", b"\xc0\x80")


class JavaWriter:
    """One output stream. ``out`` is appended to directly by fast paths that know the grammar."""

    def __init__(self, *, magic: bool = True) -> None:
        self.out = bytearray(b"\xac\xed\x00\x05" if magic else b"")
        self.next_handle = 0
        self._descs: dict[int, int] = {}
        self._strings: dict[str, int] = {}
        self._keep: list[JDesc] = []  # descriptors stay alive so their id() is never reused

    def new_handle(self) -> int:
        h = self.next_handle
        self.next_handle = h + 1
        return h

    @staticmethod
    def ref_bytes(handle: int) -> bytes:
        return _REF.pack(TC_REFERENCE, BASE_HANDLE + handle)

    def ref(self, handle: int) -> None:
        self.out += _REF.pack(TC_REFERENCE, BASE_HANDLE + handle)

    def null(self) -> None:
        self.out.append(TC_NULL)

    def block(self, data: bytes) -> None:
        """One block-data record (primitive data of writeObject/writeExternal)."""
        n = len(data)
        if n <= 0xFF:
            self.out += bytes((TC_BLOCKDATA, n))
        else:
            self.out += struct.pack(">Bi", TC_BLOCKDATALONG, n)
        self.out += data

    def end_block(self) -> None:
        self.out.append(TC_ENDBLOCKDATA)

    def string(self, text: str, shared: bool = True) -> int:
        """Write a String (a back-reference when ``shared`` and already written); return its handle."""
        if shared:
            h = self._strings.get(text)
            if h is not None:
                self.ref(h)
                return h
        data = mutf8(text)
        if len(data) <= 0xFFFF:
            self.out += _U2.pack(len(data)).join((bytes((TC_STRING,)), data))
        else:
            self.out += struct.pack(">Bq", TC_LONGSTRING, len(data)) + data
        h = self.new_handle()
        if shared:
            self._strings[text] = h
        return h

    def desc(self, d: JDesc | None) -> None:
        if d is None:
            self.null()
            return
        h = self._descs.get(id(d))
        if h is not None:
            self.ref(h)
            return
        name = mutf8(d.name)
        self.out += bytes((TC_CLASSDESC,)) + _U2.pack(len(name)) + name + struct.pack(">q", d.suid)
        self._descs[id(d)] = self.new_handle()
        self._keep.append(d)
        self.out += bytes((d.flags,)) + _U2.pack(len(d.fields))
        for code, fname, sig in d.fields:
            self.out += code.encode("ascii") + _U2.pack(len(fname)) + mutf8(fname)
            if code in "L[":
                self.string(sig or "Ljava/lang/Object;")
        self.end_block()  # no class annotation
        self.desc(d.superclass)

    def desc_handle(self, d: JDesc) -> int | None:
        return self._descs.get(id(d))

    def string_handle(self, text: str) -> int | None:
        return self._strings.get(text)


def _obj(sig: str, name: str) -> tuple[str, str, str]:
    return ("[" if sig.startswith("[") else "L", name, sig)


S = SC_SERIALIZABLE
Q = "qupath.lib."
NUMBER = JDesc("java.lang.Number", -8742448824652078965)
INTEGER = JDesc("java.lang.Integer", 1360826667806852920, S, (("I", "value", None),), NUMBER)
BOOLEAN = JDesc("java.lang.Boolean", -3665804199014368530, S, (("Z", "value", None),))
ENUM = JDesc("java.lang.Enum", 0, S | SC_ENUM)
OBJECT_ARRAY = JDesc("[Ljava.lang.Object;", -8012369246846506644)
FLOAT_ARRAY = JDesc("[F", 836686056779680834)
BYTE_ARRAY = JDesc("[B", -5984413125824719648)
HASH_MAP = JDesc(
    "java.util.HashMap",
    362498820763181265,
    S | SC_WRITE_METHOD,
    (("F", "loadFactor", None), ("I", "threshold", None)),
)
ARRAY_LIST = JDesc("java.util.ArrayList", 8683452581122892189, S | SC_WRITE_METHOD, (("I", "size", None),))
UNMOD_COLLECTION = JDesc(
    "java.util.Collections$UnmodifiableCollection",
    1820017752578914078,
    S,
    (_obj("Ljava/util/Collection;", "c"),),
)
UNMOD_LIST = JDesc(
    "java.util.Collections$UnmodifiableList",
    -283967356065247728,
    S,
    (_obj("Ljava/util/List;", "list"),),
    UNMOD_COLLECTION,
)
COLL_SER = JDesc("java.util.CollSer", 6309168927139932177, S | SC_WRITE_METHOD, (("I", "tag", None),))
PATH_OBJECT = JDesc(Q + "objects.PathObject", 1, EXT)
ROI_OBJECT = JDesc(Q + "objects.PathROIObject", 1, EXT, (), PATH_OBJECT)
ROOT_OBJECT = JDesc(Q + "objects.PathRootObject", 1, EXT, (), PATH_OBJECT)
DETECTION = JDesc(Q + "objects.PathDetectionObject", 1, EXT, (), ROI_OBJECT)
TILE = JDesc(Q + "objects.PathTileObject", 1, EXT, (), DETECTION)
ANNOTATION = JDesc(Q + "objects.PathAnnotationObject", 1, EXT, (), ROI_OBJECT)  # no data of its own
METADATA_MAP = JDesc(Q + "objects.MetadataMap", 1, EXT)
PATH_CLASS = JDesc(
    Q + "objects.classes.PathClass",
    1,
    S,
    (
        _obj("Ljava/lang/Integer;", "colorRGB"),
        _obj("Ljava/lang/String;", "name"),
        _obj("Lqupath/lib/objects/classes/PathClass;", "parentClass"),
    ),
)
ABSTRACT_ML = JDesc(
    Q + "measurements.NumericMeasurementList$AbstractNumericMeasurementList",
    1,
    S,
    (("Z", "isClosed", None), _obj("Ljava/util/Map;", "map"), _obj("Ljava/util/List;", "names")),
)
FLOAT_LIST = JDesc(
    Q + "measurements.NumericMeasurementList$FloatList", 1, S, (_obj("[F", "values"),), ABSTRACT_ML
)
RECTANGLE = JDesc(
    Q + "roi.RectangleROI$SerializationProxy",
    1,
    S,
    (
        ("I", "c", None),
        ("I", "t", None),
        ("D", "x", None),
        ("D", "x2", None),
        ("D", "y", None),
        ("D", "y2", None),
        ("I", "z", None),
        _obj("Ljava/lang/String;", "name"),
    ),
)
DEFAULT_ML = JDesc(Q + "measurements.DefaultMeasurementList", 1, S, (_obj("Ljava/util/ArrayList;", "list"),))
DOUBLE_MEASUREMENT = JDesc(
    Q + "measurements.DoubleMeasurement", 1, S, (("D", "value", None), _obj("Ljava/lang/String;", "name"))
)
GEOMETRY_WKB = JDesc(  # GeometryROI's proxy: the geometry as 2D big-endian WKB, cached statistics or null
    Q + "roi.GeometryROI$WKBSerializationProxy",
    1,
    S,
    (
        ("I", "c", None),
        ("I", "t", None),
        ("I", "z", None),
        _obj("Lqupath/lib/roi/GeometryROI$GeometryStats;", "stats"),
        _obj("[B", "wkb"),
    ),
)
HIERARCHY = JDesc(
    Q + "objects.hierarchy.PathObjectHierarchy",
    1,
    S,
    (
        _obj("Lqupath/lib/objects/PathObject;", "rootObject"),
        _obj("Lqupath/lib/objects/hierarchy/TMAGrid;", "tmaGrid"),
    ),
)
IMAGE_TYPE = JDesc(Q + "images.ImageData$ImageType", 0, S | SC_ENUM, (), ENUM)
