"""New tile objects in QuPath's own serial form (``PathTileObject``, rectangle ROI, float measurements).

Laid out as QuPath 0.4–0.7 write a tile by default: name, colour, a MetadataMap holding the
"Object ID", a closed float measurement list whose name map and name list are shared by every
tile, the child count, locked flag, PathClass, rectangle ROI proxy and a NaN class probability.
From QuPath 0.6 the name list is ``List.copyOf`` (serialized as ``java.util.CollSer``), before it an
unmodifiable ``ArrayList``; the writer follows the version of the file it adds to.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from histobridge.errors import QPDataError
from histobridge.qupath.qpdata import jwriter as J
from histobridge.qupath.qpdata.stream import TC_ARRAY, TC_ENDBLOCKDATA, TC_NULL, TC_OBJECT, TC_STRING

OBJECT_ID = "Object ID"
_NAN = struct.pack(">d", float("nan"))
_RECT_FIELDS = struct.Struct(">iidddd i")
_ZERO_CHILDREN = bytes((0x77, 4, 0, 0, 0, 0))
_PROB_BLOCK = bytes((0x77, 8)) + _NAN + bytes((TC_ENDBLOCKDATA,))


@dataclass(frozen=True)
class TileBatch:
    """Tiles to add: ``boxes`` (N, 4) x, y, w, h in level-0 px; ``class_index`` (N,) into ``classes``
    (-1: unclassified); ``values`` (N, M) measurements named ``names`` (stored as float32)."""

    boxes: np.ndarray
    class_index: np.ndarray
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int] | None, ...]
    names: tuple[str, ...]
    values: np.ndarray
    name: str | None = None
    locked: bool = True

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if (
            self.boxes.shape != (n, 4)
            or self.class_index.shape != (n,)
            or self.values.shape != (n, len(self.names))
        ):
            raise QPDataError(
                "tile batch arrays do not agree in shape (boxes (N,4), classes (N,), values (N,M))"
            )
        if len(self.colors) != len(self.classes):
            raise QPDataError("tile batch needs one colour (or None) per class")
        if n and not (np.isfinite(self.boxes).all() and (self.boxes[:, 2:] > 0).all()):
            raise QPDataError("tile boxes need finite coordinates and a positive width and height")
        if n and not (int(self.class_index.min()) >= -1 and int(self.class_index.max()) < len(self.classes)):
            raise QPDataError("tile class index out of range")

    def __len__(self) -> int:
        return len(self.boxes)


def empty_batch() -> TileBatch:
    """A batch of no tiles (for files that hold only annotations)."""
    return TileBatch(
        boxes=np.zeros((0, 4)),
        class_index=np.zeros(0, np.int64),
        classes=(),
        colors=(),
        names=(),
        values=np.zeros((0, 0), np.float32),
    )


def tiles_from_features(features: Iterable[Mapping[str, Any]], name: str | None = None) -> TileBatch:
    """A batch from QuPath GeoJSON ``tile`` features (as :func:`histobridge.qupath.geojson.tile_feature`
    makes them): bounding box, classification with colour, measurements (missing ones become NaN)."""
    boxes: list[tuple[float, float, float, float]] = []
    cls_idx: list[int] = []
    classes: dict[str, int] = {}
    colors: list[tuple[int, int, int] | None] = []
    names: dict[str, int] = {}
    rows: list[Mapping[str, Any]] = []
    names_seen: str | None = None
    for i, f in enumerate(features):
        props = f.get("properties") or {}
        coords = np.asarray((f.get("geometry") or {}).get("coordinates", [[]])[0], dtype=np.float64)
        if coords.ndim != 2 or len(coords) < 3:
            raise QPDataError(f"feature {i}: a tile needs a polygon geometry")
        x0, y0 = coords.min(axis=0)
        x1, y1 = coords.max(axis=0)
        boxes.append((float(x0), float(y0), float(x1 - x0), float(y1 - y0)))
        c = props.get("classification") or {}
        cname = c.get("name") or (": ".join(c["names"]) if c.get("names") else None)
        if cname is None:
            cls_idx.append(-1)
        else:
            if cname not in classes:
                classes[cname] = len(classes)
                col = c.get("color")
                colors.append((int(col[0]), int(col[1]), int(col[2])) if col is not None else None)
            cls_idx.append(classes[cname])
        meas = props.get("measurements") or {}
        for k in meas:
            names.setdefault(str(k), len(names))
        rows.append(meas)
        names_seen = names_seen or props.get("name")
    values = np.full((len(rows), len(names)), np.nan, np.float32)
    for r, meas in enumerate(rows):
        for k, v in meas.items():
            values[r, names[str(k)]] = float(v)
    return TileBatch(
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        class_index=np.asarray(cls_idx, np.int64),
        classes=tuple(classes),
        colors=tuple(colors),
        names=tuple(names),
        values=values,
        name=name if name is not None else names_seen,
    )


def argb(rgb: tuple[int, int, int]) -> int:
    v = (0xFF << 24) | (rgb[0] & 255) << 16 | (rgb[1] & 255) << 8 | (rgb[2] & 255)
    return v - (1 << 32)


def uuid4_strings(n: int) -> list[str]:
    """n random (version 4) UUIDs as strings, made in bulk."""
    raw = np.frombuffer(os.urandom(16 * n), np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexes = raw.tobytes().hex()
    return [
        f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        for h in (hexes[i * 32 : (i + 1) * 32] for i in range(n))
    ]


class TileEmitter:
    """Writes tiles of one batch into a :class:`JavaWriter`, sharing what QuPath shares."""

    def __init__(
        self,
        out: J.JavaWriter,
        batch: TileBatch,
        *,
        coll_ser: bool,
        class_colors: Mapping[str, tuple[int, int, int] | None] | None = None,
    ) -> None:
        self.w = out
        self.batch = batch
        self.coll_ser = coll_ser
        self._shared: dict[Any, int] = {}
        self._ids = uuid4_strings(len(batch))
        self._values = np.ascontiguousarray(batch.values, dtype=">f4")
        self._layouts: dict[int, list[tuple[str, Any]]] = {}
        self._colors = {**(class_colors or {}), **dict(zip(batch.classes, batch.colors, strict=True))}

    # -- shared objects (defined by the first tile that needs them) ------------------------------
    def _shared_ref(self, key: Any) -> bool:
        h = self._shared.get(key)
        if h is None:
            return False
        self.w.ref(h)
        return True

    def integer(self, v: int) -> None:
        if self._shared_ref(("int", v)):
            return
        w = self.w
        w.out.append(TC_OBJECT)
        w.desc(J.INTEGER)
        self._shared[("int", v)] = w.new_handle()
        w.out += struct.pack(">i", v)

    def boolean(self, v: bool) -> None:
        if self._shared_ref(("bool", v)):
            return
        w = self.w
        w.out.append(TC_OBJECT)
        w.desc(J.BOOLEAN)
        self._shared[("bool", v)] = w.new_handle()
        w.out.append(1 if v else 0)

    def _name_map(self) -> None:
        if self._shared_ref("map"):
            return
        w, names = self.w, self.batch.names
        cap = 16
        while cap * 0.75 < len(names):
            cap *= 2
        w.out.append(TC_OBJECT)
        w.desc(J.HASH_MAP)
        self._shared["map"] = w.new_handle()
        w.out += struct.pack(">fi", 0.75, int(cap * 0.75))
        w.block(struct.pack(">ii", cap, len(names)))
        for i, n in enumerate(names):
            w.string(n)
            self.integer(i)
        w.end_block()

    def _name_list(self) -> None:
        if self._shared_ref("names"):
            return
        w, names = self.w, self.batch.names
        w.out.append(TC_OBJECT)
        if self.coll_ser:
            w.desc(J.COLL_SER)
            self._shared["names"] = w.new_handle()
            w.out += struct.pack(">i", 1)  # tag: a List
            w.block(struct.pack(">i", len(names)))
            for n in names:
                w.string(n)
            w.end_block()
            return
        w.desc(J.UNMOD_LIST)
        self._shared["names"] = w.new_handle()
        w.out.append(TC_OBJECT)  # field c: the ArrayList; field list: the same one again
        w.desc(J.ARRAY_LIST)
        inner = w.new_handle()
        w.out += struct.pack(">i", len(names))
        w.block(struct.pack(">i", len(names)))
        for n in names:
            w.string(n)
        w.end_block()
        w.ref(inner)

    def _path_class(self, k: int) -> None:
        if k < 0:
            self.w.null()
            return
        self.class_chain(self.batch.classes[k], self.batch.colors[k])

    def class_chain(self, full: str, color: tuple[int, int, int] | None) -> None:
        """The PathClass ``full`` ("Tumor: Positive" with its parents), written once and then referred to."""
        if self._shared_ref(("class", full)):
            return
        w = self.w
        parts = full.split(": ")
        w.out.append(TC_OBJECT)
        w.desc(J.PATH_CLASS)
        h = w.new_handle()
        if color is None:
            w.null()
        else:
            self.integer(argb(color))
        w.string(parts[-1])
        if len(parts) > 1:
            parent = ": ".join(parts[:-1])
            self.class_chain(parent, self._colors.get(parent, color))
        else:
            w.null()
        self._shared[("class", full)] = h

    # -- one tile ---------------------------------------------------------------------------------
    def tile(self, i: int) -> None:
        w = self.w
        out = w.out
        b = self.batch
        out.append(TC_OBJECT)
        w.desc(J.TILE)
        w.new_handle()
        if b.name is None:
            out.append(TC_NULL)
        else:
            w.string(b.name)
        out.append(TC_NULL)  # colour: the class colour is used
        out.append(TC_OBJECT)  # MetadataMap: Integer(1), keys, values
        w.desc(J.METADATA_MAP)
        w.new_handle()
        self.integer(1)
        for text in (OBJECT_ID, self._ids[i]):
            out.append(TC_ARRAY)
            w.desc(J.OBJECT_ARRAY)
            w.new_handle()
            out += b"\x00\x00\x00\x01"
            if text is OBJECT_ID:
                w.string(text)
            else:
                data = text.encode("ascii")
                out += bytes((TC_STRING, 0, len(data))) + data
                w.new_handle()
        out.append(TC_ENDBLOCKDATA)
        out.append(TC_OBJECT)  # closed FloatList
        w.desc(J.FLOAT_LIST)
        w.new_handle()
        out.append(1)
        self._name_map()
        self._name_list()
        out.append(TC_ARRAY)
        w.desc(J.FLOAT_ARRAY)
        w.new_handle()
        out += struct.pack(">i", len(b.names))
        out += self._values[i].tobytes()
        out += _ZERO_CHILDREN
        self.boolean(b.locked)
        self._path_class(int(b.class_index[i]))
        out.append(TC_OBJECT)
        w.desc(J.RECTANGLE)
        w.new_handle()
        x, y, bw, bh = b.boxes[i]
        out += _RECT_FIELDS.pack(-1, 0, x, x + bw, y, y + bh, 0)
        out.append(TC_NULL)
        out += _PROB_BLOCK

    def tiles(self, indices: Sequence[int] | np.ndarray) -> None:
        """Write tiles; once everything they share has been written, in bulk (see :meth:`_bulk`)."""
        idx = np.asarray(indices, np.int64)
        ks = self.batch.class_index[idx]
        for k in dict.fromkeys(ks.tolist()):
            sel = idx[ks == k]
            while len(sel) and self._layout(k) is None:
                self.tile(int(sel[0]))  # defines what the following tiles refer back to
                sel = sel[1:]
            if len(sel):
                self._bulk(k, sel)

    def _layout(self, k: int) -> list[tuple[str, Any]] | None:
        layout = self._layouts.get(k)
        if layout is None:
            layout = self._template(k)
            if layout is not None:
                self._layouts[k] = layout
        return layout

    def _template(self, k: int) -> list[tuple[str, Any]] | None:
        """The byte layout of a tile of class k when it only refers back to shared things, else None.

        Such a tile holds no handle of its own in its bytes: it is constant bytes around its UUID,
        values, class reference and rectangle, and takes 8 new handles (tile, MetadataMap, 2 arrays,
        UUID string, measurement list, values array, ROI).
        """
        w, b = self.w, self.batch
        ref = J.JavaWriter.ref_bytes
        descs = [
            w.desc_handle(d)
            for d in (J.TILE, J.METADATA_MAP, J.OBJECT_ARRAY, J.FLOAT_LIST, J.FLOAT_ARRAY, J.RECTANGLE)
        ]
        shared = [self._shared.get(key) for key in (("int", 1), "map", "names", ("bool", b.locked))]
        oid = w.string_handle(OBJECT_ID)
        name = None if b.name is None else w.string_handle(b.name)
        cls = None if k < 0 else self._shared.get(("class", b.classes[k]))
        if None in descs or None in shared or oid is None or (b.name is not None and name is None):
            return None
        if k >= 0 and cls is None:
            return None
        t, mm, arr, fl, fa, rect = (int(h) for h in descs)  # type: ignore[arg-type]
        one, nmap, names, locked = (int(h) for h in shared)  # type: ignore[arg-type]
        head = (
            bytes((TC_OBJECT,))
            + ref(t)
            + (bytes((TC_NULL,)) if name is None else ref(name))
            + bytes((TC_NULL, TC_OBJECT))
            + ref(mm)
            + ref(one)
            + bytes((TC_ARRAY,))
            + ref(arr)
            + b"\x00\x00\x00\x01"
            + ref(oid)
            + bytes((TC_ARRAY,))
            + ref(arr)
            + b"\x00\x00\x00\x01"
            + bytes((TC_STRING, 0, 36))
        )
        mid = (
            bytes((TC_ENDBLOCKDATA, TC_OBJECT))
            + ref(fl)
            + b"\x01"
            + ref(nmap)
            + ref(names)
            + bytes((TC_ARRAY,))
            + ref(fa)
            + struct.pack(">i", len(b.names))
        )
        cls_bytes = bytes((TC_NULL,)) if cls is None else ref(cls)
        after = _ZERO_CHILDREN + ref(locked) + cls_bytes + bytes((TC_OBJECT,)) + ref(rect)
        return [
            ("head", head),
            ("uuid", 36),
            ("mid", mid),
            ("values", len(b.names)),
            ("after", after),
            ("rect", None),
            ("tail", bytes((TC_NULL,)) + _PROB_BLOCK),
        ]

    def _bulk(self, k: int, idx: np.ndarray) -> None:
        """Tiles of one class as one numpy record array: constant bytes plus their own data."""
        layout = self._layouts[k]
        fields: list[tuple[str, Any, Any]] = []
        for key, val in layout:
            if key == "uuid":
                fields.append((key, "S36", ()))
            elif key == "values":
                fields.append((key, ">f4", (val,)))
            elif key == "rect":
                fields += [("ct", ">i4", (2,)), ("box", ">f8", (4,)), ("z", ">i4", ())]
            else:
                fields.append((key, "u1", (len(val),)))
        rec = np.zeros(len(idx), np.dtype([(f, t, s) for f, t, s in fields]))
        for key, val in layout:
            if isinstance(val, bytes):
                rec[key] = np.frombuffer(val, np.uint8)
        rec["uuid"] = np.array([self._ids[i] for i in idx.tolist()], dtype="S36")
        rec["values"] = self.batch.values[idx]
        rec["ct"] = (-1, 0)
        x, y, bw, bh = self.batch.boxes[idx].T
        rec["box"] = np.stack([x, x + bw, y, y + bh], axis=1)
        self.w.out += rec.tobytes()
        self.w.next_handle += 8 * len(idx)
