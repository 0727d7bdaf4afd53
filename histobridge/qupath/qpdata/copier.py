"""Re-emit a ``.qpdata`` stream byte for byte, while removing and adding PathObjects in its hierarchy.

Java serialization numbers every object, string and class descriptor in stream order and refers
back to them by number, so adding or removing anything shifts the numbers after it. The copier
walks the grammar, copies every token's bytes unchanged and rewrites only back-references
(old handle → new handle). A removed object may have been the first to write something shared
(a class descriptor, a measurement-name list, a string): a later reference to it then gets that
definition re-emitted in its place ("materialised", replayed from its original offset).

Hooks, by PathObject index (pre-order, numbered as the reader numbers them): ``drop_child(i)`` says
whether object i is left out, ``add_children(i)`` how many new children object i gets and
``write_children(i)`` writes them, after its kept children.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from histobridge.errors import QPDataError
from histobridge.qupath.qpdata.jwriter import JavaWriter
from histobridge.qupath.qpdata.stream import (
    BASE_HANDLE,
    SC_BLOCK_DATA,
    SC_EXTERNALIZABLE,
    SC_WRITE_METHOD,
    TC_ARRAY,
    TC_BLOCKDATA,
    TC_BLOCKDATALONG,
    TC_CLASS,
    TC_CLASSDESC,
    TC_ENDBLOCKDATA,
    TC_ENUM,
    TC_EXCEPTION,
    TC_LONGSTRING,
    TC_NULL,
    TC_OBJECT,
    TC_PROXYCLASSDESC,
    TC_REFERENCE,
    TC_RESET,
    TC_STRING,
)

_I4, _U2, _I8 = struct.Struct(">i"), struct.Struct(">H"), struct.Struct(">q")
_SIZES = {"B": 1, "C": 2, "D": 8, "F": 4, "I": 4, "J": 8, "S": 2, "Z": 1}
PATH_OBJECT = "qupath.lib.objects.PathObject"
HIERARCHY = "qupath.lib.objects.hierarchy.PathObjectHierarchy"
METADATA_MAP = "qupath.lib.objects.MetadataMap"
EMIT, SKIP, DRY = 0, 1, 2


@dataclass(eq=False)
class _Desc:
    name: str
    flags: int
    fields: list[tuple[str, str]]  # (type code, name)
    chain: list[_Desc]
    is_path_object: bool = False


class StreamCopier:
    """Copies one stream into ``out`` (see module docstring)."""

    def __init__(
        self,
        buf: Any,
        path: str,
        out: JavaWriter,
        drop_child: Callable[[int], bool],
        add_children: Callable[[int], int],
        write_children: Callable[[int], None],
    ) -> None:
        self.buf, self.path, self.out = buf, path, out
        self.pos, self.end = 4, len(buf)
        self.mode = EMIT
        self.old_next = 0
        self.hmap: list[int] = []  # old handle -> new handle, -1 while not emitted
        self.hsrc: list[tuple[int, int]] = []  # old handle -> (token offset, old_next there)
        self.descs: dict[int, _Desc] = {}
        self.count = 0
        self.drop_child, self.add_children, self.write_children = drop_child, add_children, write_children

    def error(self, msg: str, at: int | None = None) -> QPDataError:
        return QPDataError(f"{self.path}: {msg} at byte offset {self.pos if at is None else at}")

    # -- raw access ----------------------------------------------------------------------------
    def _take(self, n: int) -> int:
        p = self.pos
        if p + n > self.end:
            raise self.error("file ends early (truncated)")
        self.pos = p + n
        return p

    def _copy(self, start: int) -> None:
        if self.mode == EMIT:
            self.out.out += self.buf[start : self.pos]

    def _define(self, token: int, old_next: int) -> None:
        """Give the next old handle its new number (or record where it was skipped)."""
        h = self.old_next
        self.old_next = h + 1
        if h == len(self.hmap):
            self.hmap.append(self.out.new_handle() if self.mode == EMIT else -1)
            self.hsrc.append((token, old_next))
        elif self.mode == EMIT and self.hmap[h] < 0:
            self.hmap[h] = self.out.new_handle()

    def _already(self) -> int:
        """During a replay: the new handle of the definition about to be read, if it has one."""
        h = self.old_next
        return self.hmap[h] if h < len(self.hmap) else -1

    # -- references and replays ----------------------------------------------------------------
    def _reference(self) -> Any:
        p = self._take(5)
        h = _I4.unpack_from(self.buf, p + 1)[0] - BASE_HANDLE
        if not 0 <= h < len(self.hmap):
            raise self.error(f"back-reference to unknown handle 0x{h + BASE_HANDLE:X}", p)
        if self.mode == EMIT:
            if self.hmap[h] < 0:
                self._materialise(h)
            else:
                self.out.ref(self.hmap[h])
        return self.descs.get(h)

    def _materialise(self, h: int) -> None:
        saved = (self.pos, self.old_next, self.mode)
        self.pos, self.old_next = self.hsrc[h]
        try:
            self.content()
        finally:
            self.pos, self.old_next, self.mode = saved
        if self.hmap[h] < 0:
            raise self.error(f"cannot re-create handle 0x{h + BASE_HANDLE:X} of a removed object")

    def _as_reference(self, start: int, new: int, walk: Callable[[], Any]) -> Any:
        """A definition that was emitted before: write a reference and walk past its bytes."""
        self.out.ref(new)
        self.mode = DRY
        try:
            self.pos = start
            return walk()
        finally:
            self.mode = EMIT

    # -- the grammar ---------------------------------------------------------------------------
    def content(self) -> _Desc | None:
        """One ``content`` item; returns the class descriptor of an object (None otherwise)."""
        if self.pos >= self.end:
            raise self.error("file ends where an object was expected (truncated)")
        tc = self.buf[self.pos]
        if tc == TC_NULL:
            self.pos += 1
            if self.mode == EMIT:
                self.out.out.append(TC_NULL)
            return None
        if tc == TC_REFERENCE:
            self._reference()
            return None
        if tc in (TC_STRING, TC_LONGSTRING):
            self._string()
            return None
        if tc == TC_OBJECT:
            return self._object()
        if tc in (TC_ARRAY, TC_ENUM, TC_CLASS):
            self._with_desc(tc)
            return None
        if tc in (TC_CLASSDESC, TC_PROXYCLASSDESC):
            self.class_desc()
            return None
        if tc in (TC_BLOCKDATA, TC_BLOCKDATALONG):
            raise self.error("primitive data where an object was expected")
        if tc == TC_RESET:
            raise self.error("stream reset (TC_RESET) is not something QuPath writes; cannot rewrite it")
        if tc == TC_EXCEPTION:
            raise self.error("stream holds a serialized exception (the writer failed)")
        raise self.error(f"invalid type code 0x{tc:02X}")

    def _string(self) -> None:
        start = self.pos
        if self.mode == EMIT and (new := self._already()) >= 0:
            self._as_reference(start, new, self._string)
            return
        long = self.buf[start] == TC_LONGSTRING
        p = self._take(9 if long else 3)
        n = _I8.unpack_from(self.buf, p + 1)[0] if long else _U2.unpack_from(self.buf, p + 1)[0]
        self._take(n)
        self._define(start, self.old_next)
        self._copy(start)

    def class_desc(self) -> _Desc | None:
        """``classDesc``: a new descriptor, a reference or null."""
        tc = self.buf[self.pos] if self.pos < self.end else -1
        if tc == TC_NULL:
            self.pos += 1
            if self.mode == EMIT:
                self.out.out.append(TC_NULL)
            return None
        if tc == TC_REFERENCE:
            d = self._reference()
            if not isinstance(d, _Desc):
                raise self.error("back-reference where a class descriptor was expected", self.pos - 5)
            return d
        start = self.pos
        if tc not in (TC_CLASSDESC, TC_PROXYCLASSDESC):
            raise self.error(f"invalid type code 0x{tc:02X} where a class descriptor was expected")
        if self.mode == EMIT and (new := self._already()) >= 0:
            return self._as_reference(start, new, self.class_desc)  # type: ignore[no-any-return]
        old = self.old_next
        self.pos += 1
        if tc == TC_CLASSDESC:
            n = _U2.unpack_from(self.buf, self._take(2))[0]
            name = bytes(self.buf[self._take(n) : self.pos]).decode("utf-8", "replace")
            self._take(8)
        else:
            name = "<proxy>"
        self._copy(start)
        self._define(start, old)
        h = self.old_next - 1
        d = _Desc(name, 0, [], [])
        if tc == TC_CLASSDESC:
            p = self._take(3)
            d.flags = self.buf[p]
            nf = _U2.unpack_from(self.buf, p + 1)[0]
            self._copy(p)
            for _ in range(nf):
                p = self._take(3)
                code = chr(self.buf[p])
                ln = _U2.unpack_from(self.buf, p + 1)[0]
                fname = bytes(self.buf[self._take(ln) : self.pos]).decode("utf-8", "replace")
                self._copy(p)
                if code in "L[":
                    self.content()  # the field's type name (a String or a reference to one)
                elif code not in _SIZES:
                    raise self.error(f"invalid field type {code!r} in class {name}")
                d.fields.append((code, fname))
        else:
            p = self._take(4)
            for _ in range(_I4.unpack_from(self.buf, p)[0]):
                self._take(_U2.unpack_from(self.buf, self._take(2))[0])
            self._copy(p)
        self.custom()  # class annotation
        sup = self.class_desc()
        d.chain = [*(sup.chain if sup else []), d]
        d.is_path_object = any(c.name == PATH_OBJECT for c in d.chain)
        self.descs[h] = d
        return d

    def _with_desc(self, tc: int) -> None:
        """Arrays, enums and class objects: type code, descriptor, handle, then their data."""
        start, old = self.pos, self.old_next
        if self.mode == EMIT and self.old_next < len(self.hmap):
            new = self._handle_after_desc(start)
            if new >= 0:
                self._as_reference(start, new, lambda: self._with_desc(tc))
                return
        self.pos += 1
        if self.mode == EMIT:
            self.out.out.append(tc)
        d = self.class_desc()
        if d is None:
            raise self.error("null class descriptor")
        self._define(start, old)
        if tc == TC_ENUM:
            self.content()
        elif tc == TC_ARRAY:
            p = self._take(4)
            n = _I4.unpack_from(self.buf, p)[0]
            if n < 0:
                raise self.error(f"negative array length {n}", p)
            code = d.name[1:2]
            if code in "L[":
                self._copy(p)
                for _ in range(n):
                    self.content()
            else:
                if code not in _SIZES:
                    raise self.error(f"unknown array class {d.name!r}")
                self._take(n * _SIZES[code])
                self._copy(p)

    def _handle_after_desc(self, start: int) -> int:
        """New handle of the object at ``start`` if it was already emitted (a dry walk of its descriptor)."""
        saved = (self.pos, self.old_next, self.mode)
        self.mode, self.pos = DRY, start + 1
        try:
            self.class_desc()
            return self._already()
        finally:
            self.pos, self.old_next, self.mode = saved

    def custom(self) -> None:
        """Block data and objects up to TC_ENDBLOCKDATA (custom data, external data, annotations)."""
        while True:
            if self.pos >= self.end:
                raise self.error("file ends inside custom data (truncated)")
            tc = self.buf[self.pos]
            if tc == TC_ENDBLOCKDATA:
                self.pos += 1
                if self.mode == EMIT:
                    self.out.out.append(TC_ENDBLOCKDATA)
                return
            if tc in (TC_BLOCKDATA, TC_BLOCKDATALONG):
                self._block()
            else:
                self.content()

    def _block(self) -> bytes:
        start = self.pos
        if self.buf[start] == TC_BLOCKDATA:
            n = self.buf[self._take(2) + 1]
        else:
            n = _I4.unpack_from(self.buf, self._take(5) + 1)[0]
            if n < 0:
                raise self.error("negative block-data length", start)
        p = self._take(n)
        self._copy(start)
        return bytes(self.buf[p : p + n])

    def _object(self) -> _Desc:
        start, old = self.pos, self.old_next
        if self.mode == EMIT and self.old_next < len(self.hmap):
            new = self._handle_after_desc(start)
            if new >= 0:
                return self._as_reference(start, new, self._object)  # type: ignore[no-any-return]
        self.pos += 1
        if self.mode == EMIT:
            self.out.out.append(TC_OBJECT)
        d = self.class_desc()
        if d is None:
            raise self.error("null class descriptor", start)
        self._define(start, old)
        self.object_data(d)
        return d

    def object_data(self, d: _Desc) -> None:
        if d.flags & SC_EXTERNALIZABLE:
            if not d.flags & SC_BLOCK_DATA:
                raise self.error(f"class {d.name} uses externalizable protocol 1, which cannot be walked")
            self.custom()
            return
        self._fields(d)

    def _fields(self, d: _Desc, hierarchy: bool = False) -> None:
        """Serializable fields, class by class; in the hierarchy its root object is walked as a tree."""
        for cd in d.chain:
            for code, fname in cd.fields:
                if hierarchy and fname == "rootObject" and self.buf[self.pos] == TC_OBJECT:
                    self._path_object()
                elif code in "L[":
                    self.content()
                else:
                    self._copy(self._take(_SIZES[code]))
            if cd.flags & SC_WRITE_METHOD:
                self.custom()

    # -- QuPath's hierarchy ----------------------------------------------------------------------
    def top_level(self) -> None:
        """Header record, then top-level objects up to and including the "EOF" string."""
        self._block()
        while True:
            if self.pos >= self.end:
                raise self.error('file ends before the "EOF" marker (truncated)')
            tc = self.buf[self.pos]
            if tc == TC_STRING:
                start = self.pos
                self._string()
                if bytes(self.buf[start + 3 : self.pos]) == b"EOF":
                    return
                continue
            if tc == TC_OBJECT:
                self._top_object()
            elif tc in (TC_BLOCKDATA, TC_BLOCKDATALONG):
                self._block()
            else:
                self.content()

    def _top_object(self) -> None:
        start, old = self.pos, self.old_next
        self.pos += 1
        self.out.out.append(TC_OBJECT)
        d = self.class_desc()
        if d is None:
            raise self.error("null class descriptor", start)
        self._define(start, old)
        if d.name != HIERARCHY:
            self.object_data(d)
            return
        self._fields(d, hierarchy=True)

    def _path_object(self) -> None:
        start, old = self.pos, self.old_next
        self.pos += 1
        self.out.out.append(TC_OBJECT)
        d = self.class_desc()
        if d is None or not d.is_path_object:
            raise self.error("expected a PathObject in the hierarchy", start)
        if not d.flags & SC_EXTERNALIZABLE or not d.flags & SC_BLOCK_DATA:
            raise self.error(f"PathObject class {d.name} is not block-data externalizable", start)
        self._define(start, old)
        index = self.count
        self.count += 1
        self.content()  # name
        self.content()  # colour
        meta = self.content()
        if meta is None or meta.name != METADATA_MAP:
            what = (
                "a UUID (the opt-in 'v4' layout)"
                if meta is not None and meta.name == "java.util.UUID"
                else ("no MetadataMap (a QuPath 0.2/0.3 layout)")
            )
            raise self.error(
                f"object #{index} starts with {what}; only QuPath's default 0.4+ layout is rewritten"
            )
        self.content()  # measurement list (or null)
        if self.pos + 6 > self.end or self.buf[self.pos] != TC_BLOCKDATA or self.buf[self.pos + 1] < 4:
            raise self.error(f"child count of object #{index} is not where QuPath writes it")
        rec_start = self.pos
        rec = bytes(self.buf[self.pos + 2 : self.pos + 2 + self.buf[self.pos + 1]])
        self.pos += 2 + len(rec)
        n = _I4.unpack_from(rec, 0)[0]
        rest = rec[4:]
        if n < 0 or (n and rest):
            raise self.error(f"implausible child count {n} in object #{index}", rec_start)
        count_pos = len(self.out.out)
        self.out.block(_I4.pack(0))  # the count precedes the children: patched once they are known
        dropped = 0
        for _ in range(n):
            if self.pos >= self.end or self.buf[self.pos] != TC_OBJECT:
                raise self.error(f"a child of object #{index} is not a new object")
            if self.drop_child(self.count):
                dropped += 1
                self.count += 1
                self.mode = SKIP
                try:
                    self._object()
                finally:
                    self.mode = EMIT
            else:
                self._path_object()
        added = self.add_children(index)
        if added:
            self.write_children(index)
        struct.pack_into(">i", self.out.out, count_pos + 2, n - dropped + added)
        if rest:
            self.out.block(rest)
        self.custom()  # the rest of the object's external data
