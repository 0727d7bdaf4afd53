"""A Java Object Serialization Stream reader (protocol version 5, Java SE spec chapter 6), stdlib only.

It understands the whole grammar (class descriptors, block data, back-references, strings, arrays,
enums) and turns objects into plain Python values: JDK collections and boxed numbers become their
Python counterparts (see :mod:`.jdk`), everything else a :class:`JavaObject` walked structurally.

Memory stays proportional to the number of handles, not to the object graph: values that are
usually written once (primitive arrays, long strings, per-object records) are kept only as a byte
offset. A later back-reference to one of them re-reads it from that offset ("replay") and from then
on keeps the value, since it has proven to be shared.
"""

from __future__ import annotations

import logging
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from histobridge.errors import QPDataError

log = logging.getLogger(__name__)

MAGIC = 0xACED
TC_NULL, TC_REFERENCE, TC_CLASSDESC, TC_OBJECT, TC_STRING, TC_ARRAY, TC_CLASS = range(0x70, 0x77)
TC_BLOCKDATA, TC_ENDBLOCKDATA, TC_RESET, TC_BLOCKDATALONG, TC_EXCEPTION = range(0x77, 0x7C)
TC_LONGSTRING, TC_PROXYCLASSDESC, TC_ENUM = 0x7C, 0x7D, 0x7E
BASE_HANDLE = 0x7E0000
SC_WRITE_METHOD, SC_SERIALIZABLE, SC_EXTERNALIZABLE, SC_BLOCK_DATA, SC_ENUM = 0x01, 0x02, 0x04, 0x08, 0x10

_U1, _U2, _I4, _I8 = struct.Struct(">B"), struct.Struct(">H"), struct.Struct(">i"), struct.Struct(">q")
_F8 = struct.Struct(">d")
_PRIM = {
    "B": ("b", 1),
    "C": ("H", 2),
    "D": ("d", 8),
    "F": ("f", 4),
    "I": ("i", 4),
    "J": ("q", 8),
    "S": ("h", 2),
    "Z": ("?", 1),
}
_ARRAY_CODES = {"B": None, "C": "H", "D": "d", "F": "f", "I": "i", "J": "q", "S": "h", "Z": "B"}
MAX_DEPTH = 400


class _Token:
    """Stand-in stored in the handle table instead of a value (see module docstring)."""

    __slots__ = ("desc", "kind")

    def __init__(self, kind: str, desc: ClassDesc | None = None) -> None:
        self.kind = kind
        self.desc = desc


_IN_PROGRESS = _Token("in-progress")
_LAZY_STRING = _Token("string")
LONG_STRING_KEEP = 24  # strings longer than this are kept as offsets (object ids, paths)


@dataclass(eq=False)
class ClassDesc:
    """A class descriptor as written in the stream."""

    name: str
    suid: int
    flags: int
    fields: list[tuple[str, str, str | None]]  # (type code, field name, class signature)
    superclass: ClassDesc | None = None
    chain: list[ClassDesc] = field(default_factory=list)  # top superclass first, self last
    lazy: _Token | None = None  # token for instances that are not kept
    keep: bool = True
    reader: Callable[..., Any] | None = None  # handler chosen for this class
    prim_struct: struct.Struct | None = None  # leading primitive fields in one read
    n_prims: int = 0
    prim_names: tuple[str, ...] = ()
    obj_names: tuple[str, ...] | None = None  # set when every later field is an object

    def chain_names(self) -> list[str]:
        return [d.name for d in self.chain]


@dataclass(eq=False)
class JavaObject:
    """An object of a class without a dedicated handler: its fields and any custom data."""

    class_name: str
    fields: dict[str, Any] = field(default_factory=dict)
    custom: list[Any] = field(default_factory=list)  # bytes chunks and objects, in order


@dataclass(frozen=True)
class JavaEnum:
    class_name: str
    constant: str


@dataclass(frozen=True)
class JavaClass:
    class_name: str


Handler = Callable[["JavaStream", ClassDesc, int], Any]


class JavaStream:
    """Reads one serialization stream from a bytes-like buffer (bytes or mmap)."""

    def __init__(
        self,
        buf: Any,
        path: str,
        handlers: dict[str, Handler] | None = None,
        keep: Callable[[ClassDesc], bool] | None = None,
        fallback: Callable[[ClassDesc], Handler | None] | None = None,
    ) -> None:
        self.buf = buf
        self.path = path
        self.pos = 0
        self.end = len(buf)
        self.block_left = 0
        self.values: list[Any] = []
        self.offsets = array("I" if self.end < 2**32 else "q")  # 4 bytes a handle when the file allows
        self.next_handle = 0
        self.handlers = handlers or {}
        self.keep_policy = keep
        self.fallback = fallback
        self.skip_arrays = False
        self.depth = 0
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        if self.end < 4 or _U2.unpack_from(buf, 0)[0] != MAGIC:
            raise QPDataError(f"{path}: not a Java serialization stream (no AC ED magic at byte offset 0)")
        if _U2.unpack_from(buf, 2)[0] != 5:
            raise QPDataError(f"{path}: unsupported serialization stream version at byte offset 2")
        self.pos = 4

    # -- errors and warnings -------------------------------------------------------------------
    def error(self, msg: str, at: int | None = None) -> QPDataError:
        return QPDataError(f"{self.path}: {msg} at byte offset {self.pos if at is None else at}")

    def warn(self, msg: str, key: str | None = None) -> None:
        """Log a problem once per key and remember it for the caller's notes."""
        key = key or msg
        if key in self._warned:
            return
        self._warned.add(key)
        self.warnings.append(msg)
        log.warning("%s: %s", self.path, msg)

    # -- raw (non block-data) reads ------------------------------------------------------------
    def _need(self, n: int, what: str) -> int:
        p = self.pos
        if p + n > self.end:
            raise self.error(f"file ends inside {what} (truncated; {self.end} bytes)")
        self.pos = p + n
        return p

    def raw_u1(self, what: str = "a type code") -> int:
        return int(self.buf[self._need(1, what)])

    def raw_int(self, what: str = "an int") -> int:
        return int(_I4.unpack_from(self.buf, self._need(4, what))[0])

    def raw_bytes(self, n: int, what: str) -> bytes:
        if n < 0:
            raise self.error(f"negative length {n} for {what}")
        p = self._need(n, what)
        return bytes(self.buf[p : p + n])

    def raw_utf(self, long: bool = False) -> str:
        n = (_I8 if long else _U2).unpack_from(self.buf, self._need(8 if long else 2, "a string length"))[0]
        return decode_modified_utf8(self.raw_bytes(n, "a string"), self)

    # -- block-data reads (custom data of writeObject / writeExternal) -------------------------
    def _next_block(self) -> None:
        tc = self.raw_u1("block data")
        if tc == TC_BLOCKDATA:
            self.block_left = self.raw_u1("a block length")
        elif tc == TC_BLOCKDATALONG:
            self.block_left = self.raw_int("a block length")
            if self.block_left < 0:
                raise self.error("negative block-data length")
        else:
            raise self.error(f"expected primitive data, found type code 0x{tc:02X}", self.pos - 1)

    def block_bytes(self, n: int, what: str = "primitive data") -> bytes:
        """Take n bytes from consecutive block-data records (a value may straddle two)."""
        if self.block_left >= n:
            p = self._need(n, what)
            self.block_left -= n
            return bytes(self.buf[p : p + n])
        out = bytearray()
        while len(out) < n:
            if self.block_left == 0:
                self._next_block()
            k = min(n - len(out), self.block_left)
            p = self._need(k, what)
            out += self.buf[p : p + k]
            self.block_left -= k
        return bytes(out)

    def block_int(self) -> int:
        if not self.block_left:
            self._next_block()
        if self.block_left >= 4:
            self.block_left -= 4
            return int(_I4.unpack_from(self.buf, self._need(4, "an int"))[0])
        return int(_I4.unpack(self.block_bytes(4))[0])

    def block_double(self) -> float:
        if not self.block_left:
            self._next_block()
        if self.block_left >= 8:
            self.block_left -= 8
            return float(_F8.unpack_from(self.buf, self._need(8, "a double"))[0])
        return float(_F8.unpack(self.block_bytes(8))[0])

    def block_bool(self) -> bool:
        return self.block_bytes(1)[0] != 0

    def block_utf(self) -> str:
        n = _U2.unpack(self.block_bytes(2))[0]
        return decode_modified_utf8(self.block_bytes(n, "a string"), self)

    def end_block(self, context: str) -> None:
        """Consume the TC_ENDBLOCKDATA that closes custom data; anything left over is walked and noted."""
        extra = self.read_custom_items()
        if extra:
            self.warn(f"unexpected extra custom data in {context} ignored", key=f"extra:{context}")

    def read_custom_items(self) -> list[Any]:
        """Walk block data and objects up to TC_ENDBLOCKDATA (for classes we do not interpret)."""
        items: list[Any] = []
        while True:
            if self.block_left:
                items.append(self.block_bytes(self.block_left))
                continue
            tc = self.peek()
            if tc == TC_ENDBLOCKDATA:
                self.pos += 1
                return items
            if tc in (TC_BLOCKDATA, TC_BLOCKDATALONG):
                self._next_block()
            else:
                items.append(self.read_object())

    def peek(self) -> int:
        if self.pos >= self.end:
            raise self.error("file ends where an object was expected (truncated)")
        return int(self.buf[self.pos])

    # -- handles --------------------------------------------------------------------------------
    def assign(self, value: Any) -> int:
        h = self.next_handle
        self.next_handle = h + 1
        if h == len(self.values):
            self.values.append(value)
            self.offsets.append(self.pos)
        else:  # replaying: the same handle numbers come round again
            self.values[h] = value
        return h

    def resolve(self, h: int) -> Any:
        if not 0 <= h < len(self.values):
            raise self.error(f"back-reference to unknown handle 0x{h + BASE_HANDLE:X}", self.pos - 4)
        v = self.values[h]
        if type(v) is _Token:
            if v is _IN_PROGRESS:
                raise self.error("back-reference to an object that is still being read (cycle)", self.pos - 4)
            v = self._replay(h, v)
        return v

    def _replay(self, h: int, token: _Token) -> Any:
        """Re-read a value that was kept only as an offset, then keep it."""
        saved = (self.pos, self.block_left, self.next_handle, self.skip_arrays)
        self.pos, self.block_left, self.next_handle, self.skip_arrays = self.offsets[h], 0, h + 1, False
        try:
            if token is _LAZY_STRING:
                value = self.raw_utf(long=self.buf[self.pos - 1] == TC_LONGSTRING)
            elif token.desc is not None and token.desc.name.startswith("["):
                value = self._array_body(token.desc)
            else:
                assert token.desc is not None
                self.values[h] = _IN_PROGRESS
                value = self._object_body(token.desc, h)
        finally:
            self.pos, self.block_left, self.next_handle, self.skip_arrays = saved
        self.values[h] = value
        return value

    # -- objects --------------------------------------------------------------------------------
    def read_object(self) -> Any:
        """Read one object (the ``object`` production of the grammar) and return its value."""
        if self.block_left:
            raise self.error(f"{self.block_left} bytes of unread primitive data before an object")
        pos = self.pos
        if pos >= self.end:
            raise self.error("file ends where an object was expected (truncated)")
        tc = self.buf[pos]
        if tc == TC_REFERENCE and pos + 5 <= self.end:  # the most frequent case, kept short
            self.pos = pos + 5
            h = _I4.unpack_from(self.buf, pos + 1)[0] - BASE_HANDLE
            values = self.values
            if 0 <= h < len(values):
                v = values[h]
                if type(v) is not _Token:
                    return v
            return self.resolve(h)
        self.pos = pos + 1
        if tc == TC_NULL:
            return None
        if tc == TC_OBJECT:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error("objects nested too deeply")
            value = self.new_object(self.read_class_desc(required=True))
            self.depth -= 1  # not restored on errors: a failed parse is abandoned
            return value
        if tc in (TC_STRING, TC_LONGSTRING):
            return self._new_string(tc == TC_LONGSTRING)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error("objects nested too deeply")
        value = self._read_composite(tc)
        self.depth -= 1
        return value

    def _read_composite(self, tc: int) -> Any:
        if tc == TC_ARRAY:
            desc = self.read_class_desc(required=True)
            h = self.assign(_IN_PROGRESS)
            value = self._array_body(desc)
            self.values[h] = value if desc.keep else desc.lazy
            return value
        if tc == TC_ENUM:
            desc = self.read_class_desc(required=True)
            h = self.assign(_IN_PROGRESS)
            value = JavaEnum(desc.name, str(self.read_object()))
            self.values[h] = value
            return value
        if tc == TC_CLASS:
            desc = self.read_class_desc(required=True)
            value = JavaClass(desc.name)
            self.assign(value)
            return value
        if tc in (TC_CLASSDESC, TC_PROXYCLASSDESC):
            self.pos -= 1
            return self.read_class_desc()
        if tc == TC_RESET:
            self.values.clear()
            del self.offsets[:]  # TC_RESET: handles start again from the base
            self.next_handle = 0
            return self.read_object()
        if tc == TC_EXCEPTION:
            raise self.error("stream holds a serialized exception (the writer failed)", self.pos - 1)
        raise self.error(f"invalid type code 0x{tc:02X} where an object was expected", self.pos - 1)

    def _new_string(self, long: bool) -> str:
        h = self.assign(_IN_PROGRESS)
        s = self.raw_utf(long)
        self.values[h] = s if len(s) <= LONG_STRING_KEEP else _LAZY_STRING
        return s

    def new_object(self, desc: ClassDesc) -> Any:
        """Read a new object's handle and data (after its class descriptor)."""
        h = self.assign(_IN_PROGRESS)
        reader = desc.reader
        value = reader(self, desc, h) if reader is not None else self.generic_object(desc, h)
        values = self.values
        if values[h] is _IN_PROGRESS:
            values[h] = value if desc.keep else desc.lazy
        return value

    def _object_body(self, desc: ClassDesc, h: int) -> Any:
        reader = desc.reader
        return reader(self, desc, h) if reader is not None else self.generic_object(desc, h)

    def generic_object(self, desc: ClassDesc, h: int) -> JavaObject:
        """Walk an object of a class we do not interpret; custom data is kept, with a warning."""
        obj = JavaObject(desc.name)
        if desc.keep:
            self.values[h] = obj
        if desc.flags & SC_EXTERNALIZABLE:
            self.require_block_externalizable(desc)
            obj.custom = self.read_custom_items()
        else:
            for cd in desc.chain:
                obj.fields.update(self.read_fields(cd))
                if cd.flags & SC_WRITE_METHOD:
                    obj.custom.extend(self.read_custom_items())
        self.warn(f"unknown class {desc.name} walked structurally", key=f"unknown:{desc.name}")
        return obj

    def require_block_externalizable(self, desc: ClassDesc) -> None:
        if not desc.flags & SC_BLOCK_DATA:
            raise self.error(f"class {desc.name} uses externalizable protocol 1, which cannot be walked")

    def read_fields(self, cd: ClassDesc) -> dict[str, Any]:
        """Read one class's default-serialized field values (non block-data mode)."""
        ps = cd.prim_struct
        if ps is not None:
            p = self.pos
            if p + ps.size > self.end:
                raise self.error(f"file ends inside the fields of {cd.name} (truncated)")
            self.pos = p + ps.size
            out = dict(zip(cd.prim_names, ps.unpack_from(self.buf, p), strict=True))
        else:
            out = {}
        if cd.obj_names is not None:
            for name in cd.obj_names:
                out[name] = self.read_object()
            return out
        for code, name, _ in cd.fields[cd.n_prims :]:
            if code in "L[":
                out[name] = self.read_object()
            else:
                fmt, size = _PRIM[code]
                out[name] = struct.unpack_from(">" + fmt, self.buf, self._need(size, name))[0]
        return out

    def _array_body(self, desc: ClassDesc) -> Any:
        n = self.raw_int("an array length")
        if n < 0:
            raise self.error(f"negative array length {n}", self.pos - 4)
        code = desc.name[1:2]
        if code in "L[":
            return [self.read_object() for _ in range(n)]
        if code not in _ARRAY_CODES:
            raise self.error(f"unknown array class {desc.name!r}")
        typecode = _ARRAY_CODES[code]
        size = 1 if typecode is None else array(typecode).itemsize
        p = self._need(n * size, f"{desc.name} array data")
        if self.skip_arrays:
            return None
        if typecode is None:
            return bytes(self.buf[p : p + n])
        a = array(typecode)
        a.frombytes(self.buf[p : p + n * size])
        if a.itemsize > 1 and struct.pack("=H", 1) != struct.pack(">H", 1):
            a.byteswap()
        return a

    # -- class descriptors ----------------------------------------------------------------------
    @overload
    def read_class_desc(self, required: Literal[True]) -> ClassDesc: ...

    @overload
    def read_class_desc(self, required: bool = False) -> ClassDesc | None: ...

    def read_class_desc(self, required: bool = False) -> ClassDesc | None:
        pos = self.pos
        if pos + 5 <= self.end and self.buf[pos] == TC_REFERENCE:
            h = _I4.unpack_from(self.buf, pos + 1)[0] - BASE_HANDLE
            if 0 <= h < len(self.values):
                v = self.values[h]
                if type(v) is ClassDesc:
                    self.pos = pos + 5
                    return v
        tc = self.raw_u1("a class descriptor")
        if tc == TC_NULL:
            if required:
                raise self.error("null class descriptor", self.pos - 1)
            return None
        if tc == TC_REFERENCE:
            v = self.resolve(self.raw_int("a handle") - BASE_HANDLE)
            if not isinstance(v, ClassDesc):
                raise self.error("back-reference where a class descriptor was expected", self.pos - 5)
            return v
        if tc == TC_CLASSDESC:
            name = self.raw_utf()
            suid = _I8.unpack_from(self.buf, self._need(8, "a serialVersionUID"))[0]
            desc = ClassDesc(name, suid, 0, [])
            self.assign(desc)
            desc.flags = self.raw_u1("class flags")
            n = _U2.unpack_from(self.buf, self._need(2, "a field count"))[0]
            for _ in range(n):
                code = chr(self.raw_u1("a field type"))
                fname = self.raw_utf()
                sig = None
                if code in "L[":
                    sig = self.read_object()
                    if not isinstance(sig, str):
                        raise self.error(f"field {fname!r} of {name} has no type name")
                elif code not in _PRIM:
                    raise self.error(f"invalid field type {code!r} in class {name}", self.pos - 1)
                desc.fields.append((code, fname, sig))
            self._class_annotation(name)
            desc.superclass = self.read_class_desc()
            self._finish_desc(desc)
            return desc
        if tc == TC_PROXYCLASSDESC:
            desc = ClassDesc("<proxy>", 0, SC_SERIALIZABLE, [])
            self.assign(desc)
            n = self.raw_int("an interface count")
            desc.name = "<proxy " + ",".join(self.raw_utf() for _ in range(n)) + ">"
            self._class_annotation(desc.name)
            desc.superclass = self.read_class_desc()
            self._finish_desc(desc)
            return desc
        raise self.error(f"invalid type code 0x{tc:02X} where a class descriptor was expected", self.pos - 1)

    def _class_annotation(self, name: str) -> None:
        if self.read_custom_items():
            self.warn(f"class annotation of {name} ignored", key=f"annotation:{name}")

    def _finish_desc(self, desc: ClassDesc) -> None:
        desc.chain = ([*desc.superclass.chain] if desc.superclass else []) + [desc]
        n = 0
        for code, _, _ in desc.fields:
            if code in "L[":
                break
            n += 1
        desc.n_prims = n
        if n:
            desc.prim_struct = struct.Struct(">" + "".join(_PRIM[c][0] for c, _, _ in desc.fields[:n]))
            desc.prim_names = tuple(f[1] for f in desc.fields[:n])
        rest = desc.fields[n:]
        if all(code in "L[" for code, _, _ in rest):
            desc.obj_names = tuple(f[1] for f in rest)
        desc.lazy = _Token("object", desc)
        for d in reversed(desc.chain):
            if d.name in self.handlers:
                desc.reader = self.handlers[d.name]
                break
        if desc.reader is None and self.fallback is not None:
            desc.reader = self.fallback(desc)
        if desc.flags & SC_ENUM:
            desc.reader = _enum_as_object
        if desc.name.startswith("["):
            desc.keep = False
        elif self.keep_policy is not None:
            desc.keep = self.keep_policy(desc)


def _enum_as_object(s: JavaStream, desc: ClassDesc, h: int) -> Any:
    raise s.error(f"enum class {desc.name} written as an ordinary object")


def decode_modified_utf8(data: bytes, stream: JavaStream | None = None) -> str:
    """Java's modified UTF-8: NUL as C0 80 and supplementary characters as surrogate pairs."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = data.replace(b"\xc0\x80", b"\x00").decode("utf-8", "surrogatepass")
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeError as err:
        if stream is not None:
            raise stream.error(f"invalid modified UTF-8 string ({getattr(err, 'reason', err)})") from None
        raise QPDataError(f"invalid modified UTF-8 string ({err})") from None
