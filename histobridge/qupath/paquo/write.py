"""Write heatmap tiles straight into a QuPath project through paquo (QuPath's own Java code).

paquo starts a JVM on import and a JVM cannot be restarted in one process, so the writing runs in
``python -m histobridge.qupath.paquo.write write …`` (with ``PAQUO_QUPATH_DIR`` set when the caller
names a QuPath). The child opens the image as QuPath does (``entry.readImageData()``, which needs a
QuPath that can open the image file), removes tiles of earlier runs of the same model (same name or
measurement prefix, as ``import_results.groovy`` does), adds the new ones (locked, with the GeoJSON
ids, nested by ``resolveHierarchy``) and saves through ``entry.saveImageData``: only ``data.qpdata``
and ``summary.json`` change; ``project.qpproj`` is not rewritten. It refuses, writing nothing, when
QuPath cannot open the image or could not read the existing data file (QuPath itself would then
start from an empty hierarchy). The parent keeps copies first (:func:`backup_before_write`).
Measurements are passed to paquo as Python floats (it rejects ints and numpy scalars). QuPath must
not have the project open.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from histobridge.errors import ProjectError
from histobridge.qupath.paquo.read import QuPathDir, child_env, paquo_status

CHILD = "histobridge.qupath.paquo.write"
WRITE_TIMEOUT_S = 1800
PENDING_BACKUP = ".data.qpdata.before-paquo"  # becomes data.qpdata.bkp once QuPath has saved


def paquo_ready(qupath_dir: QuPathDir = None) -> tuple[bool, str]:
    """(usable, explanation), from the QuPath layer's check (which starts QuPath in a child)."""
    return paquo_status(qupath_dir)


def backup_before_write(project_file: Path, entry_id: int) -> list[Path]:
    """Keep what a write may replace: the ``.qpproj`` in histobridge's backups folder (QuPath's own
    ``project.qpproj.backup`` is left alone) and the image's data file, which :func:`keep_data_backup`
    puts at ``data.qpdata.bkp`` once QuPath has saved (QuPath deletes its own ``.bkp`` after a good save)."""
    from histobridge.qupath import layout

    kept: list[Path] = []
    backups = layout.backups_dir(project_file.parent)
    backups.mkdir(parents=True, exist_ok=True)
    copy = backups / f"{project_file.name}.{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.copy2(project_file, copy)
    kept.append(copy)
    data = layout.qpdata_path(project_file.parent, entry_id)
    if data.exists():
        pending = data.with_name(PENDING_BACKUP)
        shutil.copy2(data, pending)
        kept.append(pending)
    return kept


def keep_data_backup(project_file: Path, entry_id: int) -> Path | None:
    """The data file as it was before the write, as ``data.qpdata.bkp`` (the name QuPath uses)."""
    from histobridge.qupath import layout

    data = layout.qpdata_path(project_file.parent, entry_id)
    pending = data.with_name(PENDING_BACKUP)
    if not pending.exists():
        return None
    target = data.with_name(data.name + ".bkp")
    os.replace(pending, target)
    return target


def write_tiles_paquo(
    project_file: str | os.PathLike[str], entry_id: int, features_path: str | os.PathLike[str], *,
    prefix: str, timeout: float = WRITE_TIMEOUT_S, qupath_dir: QuPathDir = None,
) -> int:
    """Replace ``prefix`` tiles of image ``entry_id`` with those in ``features_path``; returns the number
    of ``prefix`` tiles QuPath holds after saving."""
    project_file = Path(project_file)
    ok, why = paquo_ready(qupath_dir)
    if not ok:
        raise ProjectError(f"{project_file}: cannot write tiles through paquo: {why}; "
                           "use --write-back geojson and qupath_scripts/import_results.groovy instead")
    backup_before_write(project_file, int(entry_id))
    cmd = [sys.executable, "-m", CHILD, "write", str(project_file), str(int(entry_id)),
           str(features_path), prefix]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env=child_env(qupath_dir))
    except subprocess.TimeoutExpired as err:
        raise ProjectError(f"{project_file}: paquo did not finish writing within {timeout:.0f} s") from err
    finally:
        keep_data_backup(project_file, int(entry_id))
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-4:]) or "no output"
        raise ProjectError(f"{project_file}: paquo could not write tiles for image {entry_id}: {tail}")
    words = proc.stdout.strip().split()
    if len(words) < 2 or words[-2] != "written" or not words[-1].isdigit():
        raise ProjectError(f"{project_file}: paquo wrote image {entry_id} but did not say how many tiles "
                           f"QuPath holds: {proc.stdout.strip()[-200:] or 'no output'}")
    return int(words[-1])


# ------------------------------------------------------------------------- child process (JVM side)


def _load_features(path: str) -> list[dict[str, Any]]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        doc = json.load(fh)
    return doc["features"] if isinstance(doc, dict) else list(doc)


def _is_ours(obj: Any, prefix: str) -> bool:
    if getattr(obj, "name", None) == prefix:
        return True
    return any(str(k).startswith(prefix + ": ") for k in dict(obj.measurements))


def _path_class(qp: Any, feature: dict[str, Any]) -> Any:
    from paquo.classes import QuPathPathClass

    cls = feature["properties"].get("classification") or {}
    name = cls.get("name")
    if not name or ":" in name:  # paquo refuses derived-class names
        return None
    for pc in qp.path_classes:
        if pc.name == name:
            return pc
    return QuPathPathClass(name, color=tuple(cls.get("color") or (128, 128, 128)))


def _fail(message: str) -> int:
    sys.stderr.write(message + "\n")
    return 2


def _write(project: str, entry_id: int, features_path: str, prefix: str) -> int:
    """Open the image as QuPath does, swap the tiles, save through the entry (QuPath's own save).

    The project is opened read-only: its ``.qpproj`` is not rewritten (QuPath would give every entry
    a new random name); only the image's data file and ``summary.json`` change, as when QuPath saves.
    """
    from paquo.hierarchy import QuPathPathObjectHierarchy
    from paquo.jpype_backend import JClass
    from paquo.projects import QuPathProject
    from shapely.geometry import shape

    uuid = JClass("java.util.UUID")

    features = _load_features(features_path)
    qp = QuPathProject(project, mode="r")
    image = next((im for im in qp.images if int(im.entry_id) == entry_id), None)
    if image is None:
        return _fail(f"{project}: no image with entryID {entry_id}")
    entry = image.java_object
    data_file = Path(str(entry.getEntryPath())) / "data.qpdata"
    try:
        data = entry.readImageData()
        if data is None:
            raise RuntimeError("no image server")
        data.getServer()  # QuPath 0.6 opens the image lazily; saving needs it
    except Exception as err:  # Java's exceptions arrive as their own types
        return _fail(f"QuPath cannot open image {entry_id} ({image.uri}): {err}; nothing was written "
                     "(use --write-back qpdata, or a QuPath that reads this format)")
    read_from = None if data.getLastSavedPath() is None else Path(str(data.getLastSavedPath()))
    if data_file.exists() and read_from != data_file:
        return _fail(f"{data_file}: QuPath could not read this data file (it logged why); "
                     "nothing was written")
    hierarchy = QuPathPathObjectHierarchy(data.getHierarchy(), image_name=image.image_name)
    with hierarchy.no_autoflush():
        for old in [d for d in hierarchy.detections if _is_ours(d, prefix)]:
            hierarchy.detections.discard(old)
        for f in features:
            values = (f["properties"].get("measurements") or {}).items()
            meas = {str(k): float(v) for k, v in values if v is not None}
            tile = hierarchy.add_tile(roi=shape(f["geometry"]), path_class=_path_class(qp, f),
                                      measurements=meas)
            tile.name = prefix
            tile.locked = True  # as the GeoJSON route: tiles are results, not for editing
            if f.get("id"):  # the id the GeoJSON copies carry, so both routes name a tile alike
                tile.java_object.setID(uuid.fromString(str(f["id"])))
    data.getHierarchy().resolveHierarchy()  # tiles under the annotation that holds them
    entry.saveImageData(data)
    held = sum(1 for t in data.getHierarchy().getTileObjects() if str(t.getName()) == prefix)
    sys.stdout.write(f"written {held}\n")
    return 0


def _main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "write":
        return _write(argv[1], int(argv[2]), argv[3], argv[4])
    sys.stderr.write(f"usage: python -m {CHILD} write PROJECT ENTRY_ID GEOJSON PREFIX\n")
    return 64


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
