"""QuPath's ``.qpdata`` layout on top of the Java stream reader: header, hierarchy, objects.

Objects are produced while the stream is read (children before their parent, because QuPath writes
a parent's ROI after its children), so a caller that keeps only some types never holds the rest.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import re
import struct
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from histobridge.errors import InputError, QPDataError
from histobridge.qupath.qpdata import rois
from histobridge.qupath.qpdata.jdk import HANDLERS, serial_data
from histobridge.qupath.qpdata.records import (
    OBJECT_TYPES,
    Header,
    PathClassValue,
    QPData,
    QPObject,
    argb_to_rgb,
)
from histobridge.qupath.qpdata.stream import (
    _IN_PROGRESS,
    SC_EXTERNALIZABLE,
    SC_WRITE_METHOD,
    TC_BLOCKDATA,
    TC_BLOCKDATALONG,
    TC_OBJECT,
    ClassDesc,
    JavaEnum,
    JavaObject,
    JavaStream,
)

OBJ = "qupath.lib.objects."
PATH_OBJECT, ROI_OBJECT = OBJ + "PathObject", OBJ + "PathROIObject"
HIERARCHY = OBJ + "hierarchy.PathObjectHierarchy"
METADATA_MAP, PATH_CLASS = OBJ + "MetadataMap", OBJ + "classes.PathClass"
_KINDS = {
    OBJ + "PathRootObject": "root",
    OBJ + "TMACoreObject": "tmaCore",
    OBJ + "PathCellObject": "cell",
    OBJ + "PathTileObject": "tile",
    OBJ + "PathDetectionObject": "detection",
    OBJ + "PathAnnotationObject": "annotation",
}
_QUIET_PREFIXES = (
    "qupath.lib.roi.",
    "qupath.lib.measurements.",
    "qupath.lib.plugins.workflow.",
    "qupath.lib.color.",
    "qupath.lib.objects.hierarchy.",
    "qupath.lib.images.",
)
_OBJECT_ID = "Object ID"
_HEADER = re.compile(r"Data file version (\d+)")


class _Ref:
    """Handle-table stand-in for a PathObject (only TMA cores are referenced again, by the TMA grid)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


_PATH_OBJECT = _Ref(-1)


def _keep(desc: ClassDesc) -> bool:
    """Per-object QuPath records are kept as offsets only; shared things (classes, names) as values."""
    name = desc.name
    return not (name.startswith(("qupath.lib.roi.", "qupath.lib.measurements.")) or name == METADATA_MAP)


def _quiet(s: JavaStream, desc: ClassDesc, h: int) -> JavaObject:
    """Known QuPath classes whose fields we read as they are (ROI proxies, measurement lists…)."""
    obj = JavaObject(desc.name)
    if desc.keep:
        s.values[h] = obj
    if desc.flags & SC_EXTERNALIZABLE:
        s.require_block_externalizable(desc)
        obj.custom = s.read_custom_items()
        return obj
    for cd in desc.chain:
        obj.fields.update(s.read_fields(cd))
        if cd.flags & SC_WRITE_METHOD:
            obj.custom.extend(s.read_custom_items())
    return obj


def _fallback(desc: ClassDesc) -> Any:
    return _quiet if desc.name.startswith(_QUIET_PREFIXES) else None


def _path_class(s: JavaStream, desc: ClassDesc, h: int) -> PathClassValue:
    f, _ = serial_data(s, desc)
    name, parent = f.get("name"), f.get("parentClass")
    if isinstance(parent, PathClassValue) and parent.name and name:
        name = f"{parent.name}: {name}"
    return PathClassValue(name if isinstance(name, str) else None, argb_to_rgb(f.get("colorRGB")))


def _metadata_map(s: JavaStream, desc: ClassDesc, h: int) -> dict[str, Any]:
    s.require_block_externalizable(desc)
    items = s.read_custom_items()
    if len(items) >= 3 and isinstance(items[-2], list) and isinstance(items[-1], list):
        keys, values = items[-2], items[-1]
        return {str(k): v for k, v in zip(keys, values, strict=False)}
    s.warn(f"MetadataMap in an unknown layout ({len(items)} items) ignored", key="metadata-layout")
    return {}


def _handlers() -> dict[str, Any]:
    out = dict(HANDLERS)
    out[PATH_CLASS] = _path_class
    out[METADATA_MAP] = _metadata_map
    return out


class _Parse:
    """One pass over one file; ``run()`` yields objects and fills ``header``."""

    def __init__(self, path: Path, buf: Any, types: frozenset[str] | None) -> None:
        self.path = path
        self.types = types
        self.header = Header(path)
        self.s = JavaStream(buf, str(path), _handlers(), keep=_keep, fallback=_fallback)
        self._seen_server = False
        self.count = 0
        self._kind_cache: dict[ClassDesc, str | None] = {}

    def kind(self, desc: ClassDesc) -> str | None:
        """Object type of a PathObject class (nearest known class in its chain), None if not one."""
        key = desc  # by identity (ClassDesc compares by identity), which keeps it alive
        if key not in self._kind_cache:
            names = desc.chain_names()
            kind = None
            if PATH_OBJECT in names:
                kind = next((_KINDS[n] for n in reversed(names) if n in _KINDS), "unknown")
                if kind == "unknown":
                    self.s.warn(f"unknown PathObject class {desc.name}; reported as 'unknown'")
            self._kind_cache[key] = kind
        return self._kind_cache[key]

    def run(self) -> Iterator[QPObject]:
        s = self.s
        text = s.block_utf()
        m = _HEADER.fullmatch(text)
        if not m:
            raise s.error(f"not a QuPath data file (header {text[:40]!r})")
        self.header.data_version = int(m.group(1))
        while True:
            if s.block_left or (s.pos < s.end and s.buf[s.pos] in (TC_BLOCKDATA, TC_BLOCKDATALONG)):
                s.warn("unexpected primitive data between top-level objects skipped", key="toplevel-data")
                if s.block_left:
                    s.block_bytes(s.block_left)
                else:
                    s._next_block()
                continue
            if s.pos >= s.end:
                raise s.error('file ends before the "EOF" marker (truncated)')
            if s.buf[s.pos] == TC_OBJECT:
                s.pos += 1
                desc = s.read_class_desc(required=True)
                assert desc is not None
                if desc.name == HIERARCHY:
                    yield from self._hierarchy(desc)
                    continue
                if self.kind(desc):
                    s.warn("PathObject outside the hierarchy ignored", key="stray")
                    for _ in self._path_object(desc, 0, None):
                        pass
                    continue
                value = s.new_object(desc)
            else:
                value = s.read_object()
            if isinstance(value, str) and value == "EOF":
                break
            self._top_value(value)
        if s.pos != s.end:
            s.warn(f"{s.end - s.pos} bytes after the EOF marker ignored", key="trailing")
        self.header.complete = True
        self.header.notes = list(s.warnings)

    def _top_value(self, value: Any) -> None:
        h = self.header
        if isinstance(value, str) and not self._seen_server:
            self._seen_server = True
            if value.startswith("Image path: "):
                h.image_path = value[len("Image path: ") :]
                return
            with contextlib.suppress(ValueError):
                wrapper = json.loads(value)
                if isinstance(wrapper, dict):
                    h.server = wrapper.get("server") if isinstance(wrapper.get("server"), dict) else None
                    h.qupath_version = wrapper.get("qupathVersion")
                    h.server_id = wrapper.get("id")
                    return
            self.s.warn("unrecognised server description string ignored", key="server")
        elif isinstance(value, JavaEnum) and value.class_name.endswith("ImageData$ImageType"):
            h.image_type = value.constant
        elif isinstance(value, dict):
            h.properties.update({str(k): v for k, v in value.items()})
        elif isinstance(value, JavaObject) and value.class_name.endswith("ColorDeconvolutionStains"):
            h.stains = next((v for v in value.custom if isinstance(v, str)), None)

    def _hierarchy(self, desc: ClassDesc) -> Iterator[QPObject]:
        s = self.s
        h = s.assign(_IN_PROGRESS)
        fields: dict[str, Any] = {}
        for cd in desc.chain:
            for code, name, _ in cd.fields:
                if name == "rootObject" and s.pos < s.end and s.buf[s.pos] == TC_OBJECT:
                    s.pos += 1
                    root = s.read_class_desc(required=True)
                    assert root is not None
                    if self.kind(root):
                        yield from self._path_object(root, 0, None)
                    else:
                        fields[name] = s.new_object(root)
                elif code in "L[":
                    fields[name] = s.read_object()
                else:
                    raise s.error(f"unexpected primitive field {name!r} in {cd.name}")
            if cd.flags & SC_WRITE_METHOD:
                s.read_custom_items()
        grid = fields.get("tmaGrid")
        if isinstance(grid, JavaObject):
            w, hh = grid.fields.get("gridWidth"), grid.fields.get("gridHeight")
            if isinstance(w, int) and isinstance(hh, int):
                self.header.tma_grid = (w, hh)
        s.values[h] = JavaObject(desc.name)

    def _id_fields(self) -> tuple[Any, Any, Any]:
        """The three metadata layouts: (v4 UUID | MetadataMap? ) then measurements; see the format doc."""
        s = self.s
        first = s.read_object()
        if isinstance(first, uuid.UUID):
            n = s.block_int()
            if n < 0 or n > 1000:
                raise s.error(f"implausible field count {n} in a PathObject")
            metadata: Any = None
            measurements: Any = None
            for _ in range(n):
                item = s.read_object()
                if isinstance(item, dict):
                    metadata = item
                elif item is not None:
                    measurements = item
            return first, metadata, measurements
        if isinstance(first, dict):
            return None, first, s.read_object()
        return None, None, first

    def _path_object(self, desc: ClassDesc, depth: int, parent: int | None) -> Iterator[QPObject]:
        s = self.s
        start = s.pos
        kind = self.kind(desc) or "unknown"
        if not desc.flags & SC_EXTERNALIZABLE:
            raise s.error(f"PathObject class {desc.name} is not externalizable")
        s.require_block_externalizable(desc)
        h = s.assign(_IN_PROGRESS)
        index = self.count
        self.count += 1
        want = self.types is None or kind in self.types
        s.skip_arrays = not want
        name, color = s.read_object(), s.read_object()
        uid, metadata, measurements = self._id_fields()
        n = s.block_int()
        if n < 0:
            raise s.error(f"negative child count {n}")
        for i in range(n):
            if s.block_left or s.peek() != TC_OBJECT:
                raise s.error(
                    f"child {i + 1} of {n} of the {kind} starting at byte {start} is not a new object"
                )
            s.pos += 1
            child = s.read_class_desc(required=True)
            assert child is not None
            if not self.kind(child):
                raise s.error(f"child {i + 1} of the {kind} starting at byte {start} is a {child.name}")
            yield from self._path_object(child, depth + 1, index)
        s.skip_arrays = not want
        roi = pc = nucleus = None
        locked = missing = False
        prob = math.nan
        roi_at = s.pos
        if ROI_OBJECT in desc.chain_names():
            pc = s.read_object()
            if isinstance(pc, bool):
                locked, pc = pc, s.read_object()
            roi_at = s.pos
            roi = s.read_object()
            prob = s.block_double()
            if kind == "cell":
                nucleus = s.read_object()
            elif kind == "tmaCore":
                missing = s.block_bool()
        s.end_block(desc.name)
        s.skip_arrays = False
        s.values[h] = _Ref(index) if kind == "tmaCore" else _PATH_OBJECT
        if want:
            yield self._build(
                kind,
                index,
                parent,
                depth,
                name,
                color,
                uid,
                metadata,
                measurements,
                locked,
                pc,
                roi,
                prob,
                nucleus,
                missing,
                roi_at,
            )

    def _build(
        self,
        kind: str,
        index: int,
        parent: int | None,
        depth: int,
        name: Any,
        color: Any,
        uid: Any,
        metadata: Any,
        measurements: Any,
        locked: bool,
        pc: Any,
        roi: Any,
        prob: float,
        nucleus: Any,
        missing: bool,
        roi_at: int,
    ) -> QPObject:
        meta = dict(metadata) if isinstance(metadata, dict) else {}
        object_id = str(uid) if uid is not None else None
        if object_id is None and isinstance(meta.get(_OBJECT_ID), str):
            object_id = meta.pop(_OBJECT_ID)
        elif _OBJECT_ID in meta and object_id is not None:
            meta.pop(_OBJECT_ID)
        pcv = pc if isinstance(pc, PathClassValue) else None
        try:
            geometry, nuc = rois.roi_geometry(roi), rois.roi_geometry(nucleus)
        except rois.CorruptROI as err:
            raise self.s.error(f"{kind} #{index} has a damaged ROI: {err}", roi_at) from None
        except rois.UnsupportedROI as err:
            self.s.warn(f"{kind} #{index}: {err}; its geometry is left empty", key=f"roi:{err}")
            geometry, nuc = None, None
        return QPObject(
            object_type=kind,
            index=index,
            parent_index=parent,
            depth=depth,
            object_id=object_id,
            name=name if isinstance(name, str) else None,
            color=argb_to_rgb(color),
            locked=bool(locked),
            path_class=pcv.name if pcv else None,
            class_color=pcv.color if pcv else None,
            measurements=_measurements(measurements),
            class_probability=None if math.isnan(prob) else prob,
            geometry=geometry,
            nucleus=nuc,
            plane=rois.roi_plane(roi),
            is_missing=missing,
            roi_type=rois.roi_type(roi),
            metadata=meta,
            roi_stats=rois.roi_stats(roi),
        )


def _measurements(ml: Any) -> dict[str, float]:
    """NumericMeasurementList (names + float/double values) or DefaultMeasurementList to a dict."""
    if not isinstance(ml, JavaObject):
        return {}
    f = ml.fields
    if "names" in f:
        names, values = f.get("names") or [], f.get("values")
        if values is None:
            return {}
        return {str(n): float(v) for n, v in zip(names, values, strict=False)}
    items = f.get("list")
    if isinstance(items, list):
        return {
            str(m.fields.get("name")): float(m.fields.get("value", math.nan))
            for m in items
            if isinstance(m, JavaObject)
        }
    return {}


def _check_types(types: Collection[str] | None) -> frozenset[str] | None:
    if types is None:
        return None
    if isinstance(types, str):
        types = [t.strip() for t in types.split(",") if t.strip()]
    bad = sorted(set(types) - set(OBJECT_TYPES) - {"unknown"})
    if bad:
        raise InputError(f"unknown object type(s) {', '.join(bad)}; choose from {', '.join(OBJECT_TYPES)}")
    return frozenset(types)


@contextlib.contextmanager
def _open_buffer(path: Path) -> Iterator[Any]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as err:
        raise QPDataError(f"{path}: cannot open ({err.strerror})") from err
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise QPDataError(f"{path}: empty file at byte offset 0")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            yield mm


def _guarded(parse: _Parse) -> Iterator[QPObject]:
    """Run a parse, turning low-level failures into QPDataError with the file and offset."""
    try:
        yield from parse.run()
    except QPDataError:
        raise
    except (
        struct.error,
        IndexError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        RecursionError,
        OverflowError,
        MemoryError,
    ) as err:
        raise parse.s.error(f"corrupt data ({type(err).__name__}: {err})") from err


class QPDataStream:
    """Objects of one file as an iterable; ``header`` is filled as the stream is read.

    The header (versions, server, image type, properties) is complete once iteration has finished.
    """

    def __init__(self, path: str | os.PathLike[str], types: Collection[str] | None = None) -> None:
        self.path = Path(path)
        self.types = _check_types(types)
        self.header = Header(self.path)

    def __iter__(self) -> Iterator[QPObject]:
        with _open_buffer(self.path) as buf:
            parse = _Parse(self.path, buf, self.types)
            parse.header = self.header
            yield from _guarded(parse)


def iter_objects(path: str | os.PathLike[str], types: Collection[str] | None = None) -> Iterator[QPObject]:
    """Yield the objects of a ``.qpdata`` file as they are read (children before their parent).

    ``types`` keeps only those object types; the others are walked without building geometry or
    measurements. A truncated or corrupt file raises :class:`QPDataError` during iteration.
    """
    return iter(QPDataStream(path, types))


def read_qpdata(path: str | os.PathLike[str], types: Collection[str] | None = None) -> QPData:
    """Read a ``.qpdata`` file: header, image type, properties and objects in hierarchy order."""
    stream = QPDataStream(path, types)
    objects = sorted(stream, key=lambda o: o.index)
    h = stream.header
    return QPData(
        path=stream.path,
        data_version=h.data_version,
        qupath_version=h.qupath_version,
        server=h.server,
        image_type=h.image_type,
        objects=objects,
        properties=h.properties,
        server_id=h.server_id,
        image_path=h.image_path,
        stains=h.stains,
        tma_grid=h.tma_grid,
        notes=tuple(h.notes),
    )
