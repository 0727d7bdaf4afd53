"""Write annotations and classifier tiles into QuPath's ``data/<id>/data.qpdata`` (pure Python, no JVM).

A new file holds the given annotations (see :mod:`.annotation_out`) under the root and the tiles
nested as below. Tiles for an existing file: it is re-emitted token for token (see :mod:`.copier`):
every object, field, class, workflow step and property stays byte-identical apart from renumbered
back-references, earlier tiles of the same model (tiles named after the model's prefix) are left
out, and the new tiles are nested where ``resolveHierarchy`` would put them: under the smallest
annotation (or TMA core) on the same plane whose area contains the tile's centroid, else under the
root. As QuPath does when it saves, the previous file is kept as ``data.qpdata.bkp`` and
``summary.json`` is rewritten; the new file replaces the old one atomically. Only QuPath 0.4+ files
(data file version 3, object IDs in a MetadataMap) are rewritten; anything else is refused with
the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import mmap
import os
import re
import shutil
import struct
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from histobridge._atomic import atomic_path
from histobridge.errors import ProjectError, QPDataError
from histobridge.qupath import layout
from histobridge.qupath.annotations import PathObject
from histobridge.qupath.qpdata import jwriter as J
from histobridge.qupath.qpdata.annotation_out import (
    AnnotationEmitter,
    NewAnnotation,
    class_colors,
    prepare_annotations,
)
from histobridge.qupath.qpdata.copier import StreamCopier
from histobridge.qupath.qpdata.reader import read_qpdata
from histobridge.qupath.qpdata.records import QPData, QPObject
from histobridge.qupath.qpdata.stream import TC_ENDBLOCKDATA, TC_ENUM, TC_NULL, TC_OBJECT
from histobridge.qupath.qpdata.tiles import (
    OBJECT_ID,
    TileBatch,
    TileEmitter,
    empty_batch,
    tiles_from_features,
    uuid4_strings,
)

BACKUP_SUFFIX = ".bkp"  # QuPath's DefaultProject moves data.qpdata to data.qpdata.bkp while saving
SUMMARY_NAMES = {
    "root": "Root objects",
    "annotation": "Annotations",
    "detection": "Detections",
    "tile": "Tiles",
    "cell": "Cells",
    "tmaCore": "TMA cores",
}
DETECTION_TYPES = ("detection", "tile", "cell")


@dataclass(frozen=True)
class QPDataWriteReport:
    """What one write did: tiles added and removed, where they went, the backup kept."""

    path: Path
    added: int
    removed: int
    created: bool
    backup: Path | None
    in_annotations: int
    qupath_version: str | None
    annotations: int = 0


def version_tuple(text: str | None) -> tuple[int, ...]:
    nums = re.findall(r"\d+", (text or "").split("-")[0])
    return tuple(int(n) for n in nums[:3])


def check_rewritable(data: QPData) -> None:
    """Refuse files whose object layout this writer cannot reproduce."""
    if data.data_version != 3:
        raise QPDataError(
            f"{data.path}: data file version {data.data_version} (QuPath 0.2) cannot be rewritten; "
            "open and save it once in QuPath 0.4 or later"
        )
    if version_tuple(data.qupath_version) < (0, 4):
        raise QPDataError(
            f"{data.path}: written by QuPath {data.qupath_version or 'before 0.4'}, whose objects carry no "
            "IDs; only files of QuPath 0.4 or later are rewritten (open and save it once in a newer QuPath)"
        )
    if data.notes:
        raise QPDataError(
            f"{data.path}: not rewritten, the file holds things the reader did not expect: "
            + "; ".join(data.notes)
        )


def _roi_area(o: QPObject) -> float:
    """``ROI.getArea()`` as QuPath sorts possible parents by it (exact for ellipses)."""
    if o.roi_type == "ellipse" and o.roi_stats is None and o.geometry is not None:
        x0, y0, x1, y1 = o.geometry.bounds
        return float(math.pi * (x1 - x0) * (y1 - y0) / 4.0)
    return float(o.geometry.area) if o.geometry is not None else 0.0


def plan_parents(objects: list[QPObject], batch: TileBatch, removed: set[int], tma: bool) -> np.ndarray:
    """Parent index of every new tile, by QuPath's rule for detections (see module docstring)."""
    out = np.zeros(len(batch), np.int64)  # the root
    kinds = ("annotation", "tmaCore") if tma else ("annotation",)
    cands = [
        o
        for o in objects
        if o.object_type in kinds
        and o.index not in removed
        and o.geometry is not None
        and o.geometry.geom_type in ("Polygon", "MultiPolygon")
        and not o.geometry.is_empty
        and (o.plane or (-1, 0, 0))[1:] == (0, 0)
    ]
    if not cands or not len(batch):
        return out
    centroids = shapely.points(
        batch.boxes[:, 0] + batch.boxes[:, 2] / 2, batch.boxes[:, 1] + batch.boxes[:, 3] / 2
    )
    tree = shapely.STRtree([o.geometry for o in cands])
    tile_i, cand_i = tree.query(centroids, predicate="intersects")  # boundary counts as inside
    if not len(tile_i):
        return out
    area = np.array([_roi_area(o) for o in cands])
    depth = np.array([o.depth for o in cands])
    order = np.lexsort((-depth[cand_i], area[cand_i], tile_i))  # per tile: smallest, then deepest
    first = np.ones(len(order), bool)
    first[1:] = tile_i[order][1:] != tile_i[order][:-1]
    chosen = order[first]
    index = np.array([o.index for o in cands])
    out[tile_i[chosen]] = index[cand_i[chosen]]
    return out


def _groups(parents: np.ndarray) -> dict[int, np.ndarray]:
    if not len(parents):
        return {}
    order = np.argsort(parents, kind="stable")
    keys, starts = np.unique(parents[order], return_index=True)
    bounds = [*starts[1:], len(order)]
    return {int(k): order[s:e] for k, s, e in zip(keys, starts, bounds, strict=True)}


def _removed(data: QPData, name: str | None) -> set[int]:
    """Earlier tiles of this model: tiles carrying its name and no children."""
    if not name:
        return set()
    parents = Counter(o.parent_index for o in data.objects)
    return {
        o.index for o in data.objects if o.object_type == "tile" and o.name == name and not parents[o.index]
    }


def rewrite_qpdata(src: Path, batch: TileBatch) -> tuple[bytes, QPData, set[int], np.ndarray]:
    """The bytes of ``src`` with ``batch`` added (and earlier tiles of the same name removed)."""
    data = read_qpdata(src)
    check_rewritable(data)
    removed = _removed(data, batch.name)
    parents = plan_parents(data.objects, batch, removed, data.tma_grid is not None)
    groups = _groups(parents)
    out = J.JavaWriter()
    emitter = TileEmitter(out, batch, coll_ser=version_tuple(data.qupath_version) >= (0, 6))
    with open(src, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        copier = StreamCopier(
            buf,
            str(src),
            out,
            drop_child=removed.__contains__,
            add_children=lambda i: len(groups.get(i, ())),
            write_children=lambda i: emitter.tiles(groups[i]),
        )
        try:
            copier.top_level()
        except (IndexError, struct.error, UnicodeDecodeError) as err:
            raise copier.error(f"corrupt data ({type(err).__name__}: {err})") from err
    if copier.count != len(data.objects):
        raise QPDataError(f"{src}: rewrote {copier.count} objects but read {len(data.objects)}; not written")
    return bytes(out.out), data, removed, parents


def _annotation_records(annotations: Sequence[NewAnnotation]) -> list[QPObject]:
    """The annotations as candidate parents for :func:`plan_parents`, numbered 1..n."""
    return [
        dataclasses.replace(
            a.source, index=i + 1, depth=1, object_type="annotation", plane=a.plane, roi_type="geometry"
        )
        for i, a in enumerate(annotations)
    ]


def new_qpdata_bytes(
    server_json: str,
    batch: TileBatch | None = None,
    *,
    annotations: Sequence[PathObject] = (),
    image_type: str = "UNSET",
    entry_property: str | None = None,
    coll_ser: bool = True,
    root_id: str | None = None,
) -> bytes:
    """A whole data file as QuPath writes one: header, server, image type, hierarchy, properties, EOF.

    The annotations go under the root in the given order (as QuPath adds imported objects); each
    tile goes under the annotation ``resolveHierarchy`` would choose (see :func:`plan_parents`), else
    under the root after the annotations. ``root_id`` fixes the root's object ID (reproducible files).
    """
    prepared = prepare_annotations(annotations)
    batch = batch if batch is not None else empty_batch()
    groups = _groups(plan_parents(_annotation_records(prepared), batch, set(), False))
    w = J.JavaWriter()
    header = b"Data file version 3"
    w.block(struct.pack(">H", len(header)) + header)
    w.string(server_json, shared=False)
    w.out.append(TC_ENUM)
    w.desc(J.IMAGE_TYPE)
    w.new_handle()
    w.string(image_type)
    w.out.append(TC_OBJECT)
    w.desc(J.HIERARCHY)
    w.new_handle()
    emitter = TileEmitter(w, batch, coll_ser=coll_ser, class_colors=class_colors(prepared))
    annotation_emitter = AnnotationEmitter(emitter)
    w.out.append(TC_OBJECT)  # rootObject
    w.desc(J.ROOT_OBJECT)
    w.new_handle()
    w.out += bytes((TC_NULL, TC_NULL, TC_OBJECT))  # name, colour, MetadataMap with the root's ID
    w.desc(J.METADATA_MAP)
    w.new_handle()
    emitter.integer(1)
    for text in (OBJECT_ID, root_id or uuid4_strings(1)[0]):
        w.out.append(0x75)
        w.desc(J.OBJECT_ARRAY)
        w.new_handle()
        w.out += struct.pack(">i", 1)
        w.string(text)
    w.out.append(TC_ENDBLOCKDATA)
    w.null()  # no measurements
    at_root = groups.get(0, np.zeros(0, np.int64))
    w.block(struct.pack(">i", len(prepared) + len(at_root)))
    for i, a in enumerate(prepared):
        mine = groups.get(i + 1, np.zeros(0, np.int64))
        annotation_emitter.annotation(a, len(mine), functools.partial(emitter.tiles, mine))
    emitter.tiles(at_root)
    w.end_block()
    w.null()  # tmaGrid
    props = {"PROJECT_ENTRY_ID": entry_property} if entry_property else {}
    w.out.append(TC_OBJECT)
    w.desc(J.HASH_MAP)
    w.new_handle()
    w.out += struct.pack(">fi", 0.75, 12)
    w.block(struct.pack(">ii", 16, len(props)))
    for k, v in props.items():
        w.string(k)
        w.string(v)
    w.end_block()
    w.string("EOF")
    return bytes(w.out)


# ---------------------------------------------------------------------------------- project level


def _entry(project_folder: Path, entry_id: int) -> tuple[Path, dict[str, Any], dict[str, Any] | None]:
    qpproj = next(iter(sorted(project_folder.glob("*.qpproj"))), None)
    if qpproj is None:
        raise ProjectError(f"{project_folder}: no QuPath project file (*.qpproj)")
    try:
        doc = json.loads(qpproj.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ProjectError(f"{qpproj}: cannot read the project file ({err})") from err
    for e in doc.get("images", []):
        if str(e.get("entryID")) == str(entry_id):
            return qpproj, doc, e
    return qpproj, doc, None


def _server_json(project: dict[str, Any], entry: dict[str, Any]) -> str:
    builder = entry.get("serverBuilder")
    if not isinstance(builder, dict):
        raise ProjectError(f"entry {entry.get('entryID')}: no server builder; QuPath could not open its data")
    wrapper = {
        "dataVersion": 3,
        "qupathVersion": str(project.get("version") or "0.5.1"),
        "server": builder,
        "id": str(builder.get("uri") or entry.get("imageName") or entry.get("entryID")),
    }
    return json.dumps(wrapper, separators=(",", ":"), ensure_ascii=False)


def summary(
    objects: Iterable[tuple[str, str | None]],
    image_type: str | None,
    server: Mapping[str, Any] | None,
    timestamp_ms: int,
) -> dict[str, Any]:
    """QuPath's ``summary.json`` (``DefaultProject.ImageDataSummary``) for (type, class) pairs."""
    types: Counter[str] = Counter()
    ann: Counter[str] = Counter()
    det: Counter[str] = Counter()
    n = 0
    for kind, cls in objects:
        n += 1
        types[SUMMARY_NAMES.get(kind, kind)] += 1
        if kind == "annotation":
            ann[cls or "Unclassified"] += 1
        elif kind in DETECTION_TYPES:
            det[cls or "Unclassified"] += 1
    out: dict[str, Any] = {"timestamp": timestamp_ms, "imageType": image_type or "UNSET"}
    if server:
        out["server"] = dict(server)
    out["hierarchy"] = {
        "nObjects": n,
        "objectTypeCounts": dict(types),
        "annotationClassificationCounts": dict(ann),
        "detectionClassificationCounts": dict(det),
    }
    return out


def _server_summary(old: Path, entry: dict[str, Any]) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        server = json.loads(old.read_text(encoding="utf-8")).get("server")
        if isinstance(server, dict):
            return server
    meta = (entry.get("serverBuilder") or {}).get("metadata") or {}
    if "width" in meta and "height" in meta:
        return {
            "width": meta["width"],
            "height": meta["height"],
            "sizeC": len(meta.get("channels") or []) or 3,
            "sizeZ": meta.get("sizeZ", 1),
            "sizeT": meta.get("sizeT", 1),
        }
    return None


def _as_batch(tiles: TileBatch | Iterable[Mapping[str, Any]] | None, prefix: str | None) -> TileBatch:
    if tiles is None:
        batch = empty_batch()
    else:
        batch = tiles if isinstance(tiles, TileBatch) else tiles_from_features(tiles)
    if prefix is not None and batch.name is None:
        return dataclasses.replace(batch, name=prefix)
    if prefix is not None and batch.name != prefix:
        raise QPDataError(f"tiles are named {batch.name!r}, not after the model prefix {prefix!r}")
    return batch


def write_objects_qpdata(
    project_folder: str | os.PathLike[str],
    entry_id: int | str,
    *,
    annotations: Sequence[PathObject] | None = None,
    tiles: TileBatch | Iterable[Mapping[str, Any]] | None = None,
    prefix: str | None = None,
    replace: bool = False,
    server: Mapping[str, Any] | None = None,
    root_id: str | None = None,
    timestamp_ms: int | None = None,
    entry_property: str | None = None,
) -> QPDataWriteReport:
    """Write annotations and/or tiles into one image's ``data/<id>/data.qpdata`` (the one writer).

    Tiles (a :class:`TileBatch` or QuPath GeoJSON tile features) are added to an existing file
    (earlier tiles named ``prefix``, the model, are replaced) or go into a new one. ``annotations``
    make a new file; an existing file is refused unless ``replace`` (then it is kept as
    ``data.qpdata.bkp``), since its objects would be lost. Tiles are nested under the annotations as
    ``resolveHierarchy`` nests them. Nothing to write changes nothing. ``server`` (width, height,
    sizeC, sizeZ, sizeT) goes into ``summary.json`` when the entry does not record its size;
    ``root_id``, ``timestamp_ms`` and ``entry_property`` (QuPath's ``PROJECT_ENTRY_ID``, by default
    ``<project file>::<id>``; QuPath resets it when it opens the image) make a new file reproducible.
    """
    folder = Path(project_folder)
    batch = _as_batch(tiles, prefix)
    eid = int(entry_id)
    qpproj, project, found = _entry(folder, eid)
    path = layout.qpdata_path(folder, eid)
    if not len(batch) and not annotations:
        return QPDataWriteReport(path, 0, 0, False, None, 0, None)
    exists = path.exists()
    if annotations and exists and not replace:
        raise QPDataError(
            f"{path}: the image already has QuPath data; new annotations would replace its objects "
            "(pass replace to keep the old file as data.qpdata.bkp and write a new one)"
        )
    created = bool(annotations) or not exists
    if found is None and created:
        raise ProjectError(f"{qpproj}: no image entry with ID {eid}")
    entry = found or {}
    backup: Path | None = None
    if exists:
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        shutil.copy2(path, backup)
    version: str | None
    image_type: str | None
    if created:
        version = str(project.get("version") or "0.5.1")
        data_bytes = new_qpdata_bytes(
            _server_json(project, entry),
            batch,
            annotations=annotations or (),
            entry_property=entry_property or f"{qpproj.resolve()}::{eid}",
            coll_ser=version_tuple(version) >= (0, 6),
            root_id=root_id,
        )
        objects: list[tuple[str, str | None]] = [("root", None)]
        objects += [("annotation", a.path_class) for a in annotations or ()]
        image_type, removed = "UNSET", 0
        parents = plan_parents(
            _annotation_records(prepare_annotations(annotations or ())), batch, set(), False
        )
        n_in = int((parents != 0).sum())
    else:
        data_bytes, data, gone, parents = rewrite_qpdata(path, batch)
        objects = [(o.object_type, o.path_class) for o in data.objects if o.index not in gone]
        image_type, removed, n_in, version = (
            data.image_type,
            len(gone),
            int((parents != 0).sum()),
            data.qupath_version,
        )
    objects += [("tile", batch.classes[k] if k >= 0 else None) for k in batch.class_index.tolist()]
    with atomic_path(path) as tmp:
        tmp.write_bytes(data_bytes)
    if timestamp_ms is not None:
        os.utime(path, ns=(timestamp_ms * 1_000_000, timestamp_ms * 1_000_000))
    stamp = path.stat().st_mtime_ns // 1_000_000
    summary_file = layout.summary_path(folder, eid)
    size = _server_summary(summary_file, entry) or (dict(server) if server else None)
    doc = summary(objects, image_type, size, stamp)
    with atomic_path(summary_file) as tmp:
        tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    return QPDataWriteReport(
        path, len(batch), removed, created, backup, n_in, version, len(annotations or ())
    )


def write_tiles_qpdata(
    project_folder: str | os.PathLike[str],
    entry_id: int | str,
    tiles: TileBatch | Iterable[Mapping[str, Any]],
    *,
    prefix: str | None = None,
) -> QPDataWriteReport:
    """Add tiles to one image's data.qpdata (see :func:`write_objects_qpdata`); a missing file is
    created, an empty batch changes nothing (a run that produced nothing never replaces results)."""
    return write_objects_qpdata(project_folder, entry_id, tiles=tiles, prefix=prefix)


__all__ = [
    "QPDataWriteReport",
    "TileBatch",
    "check_rewritable",
    "new_qpdata_bytes",
    "plan_parents",
    "rewrite_qpdata",
    "summary",
    "tiles_from_features",
    "write_objects_qpdata",
    "write_tiles_qpdata",
]
