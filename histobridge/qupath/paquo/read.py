"""Read annotations through paquo (QuPath's own Java code), in a child process.

paquo starts a JVM when it is imported and a JVM cannot be restarted in the same process,
so every paquo call runs in ``python -m histobridge.qupath.paquo._child``
and hands back QuPath GeoJSON on stdout. The parent parses it with the same reader as files, so
both backends give the same :class:`~histobridge.qupath.annotations.Annotation` records.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TypeAlias

from histobridge.errors import ProjectError
from histobridge.qupath.geojson import FeatureReadResult, read_features

CHILD = "histobridge.qupath.paquo._child"
CHECK_TIMEOUT_S = 180
READ_TIMEOUT_S = 900


QuPathDir: TypeAlias = "str | os.PathLike[str] | None"


def child_env(qupath_dir: QuPathDir = None) -> dict[str, str]:
    """The environment for a paquo child: ours, with ``PAQUO_QUPATH_DIR`` set when a QuPath folder is
    given (paquo reads it at import), so a caller can choose the installation without changing ours."""
    env = dict(os.environ)
    if qupath_dir is not None:
        env["PAQUO_QUPATH_DIR"] = str(Path(qupath_dir))
    return env


def _run_child(
    args: list[str], timeout: float, qupath_dir: QuPathDir = None
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", CHILD, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env=child_env(qupath_dir))


def _tail(text: str, lines: int = 4) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"


def paquo_status(qupath_dir: QuPathDir = None) -> tuple[bool, str]:
    """(usable, explanation): paquo installed and able to start QuPath (``qupath_dir``, else the one
    ``PAQUO_QUPATH_DIR`` or paquo's own search finds). Asked once per QuPath folder: it starts a JVM."""
    chosen = qupath_dir if qupath_dir is not None else os.environ.get("PAQUO_QUPATH_DIR")
    return _status(None if chosen is None else str(chosen))


@functools.lru_cache(maxsize=8)
def _status(qupath_dir: str | None) -> tuple[bool, str]:
    if importlib.util.find_spec("paquo") is None:
        return False, "paquo is not installed (pip install 'histobridge[qupath]')"
    try:
        proc = _run_child(["check"], CHECK_TIMEOUT_S, qupath_dir)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"could not start paquo: {err}"
    if proc.returncode != 0:
        where = f"from {qupath_dir}" if qupath_dir else "(set PAQUO_QUPATH_DIR to a QuPath folder)"
        return False, f"paquo cannot start QuPath {where}: {_tail(proc.stderr, 1)}"
    return True, proc.stdout.strip() or "paquo ready"


def read_annotations(
    project: str | os.PathLike[str], entry_id: int, *, timeout: float = READ_TIMEOUT_S,
    qupath_dir: QuPathDir = None,
) -> FeatureReadResult:
    """Annotations of image ``entry_id`` as QuPath itself reads them from the project."""
    path = Path(project)
    ok, why = paquo_status(qupath_dir)
    if not ok:
        raise ProjectError(f"{path}: cannot read annotations through paquo: {why}")
    try:
        proc = _run_child(["read", str(path), str(int(entry_id))], timeout, qupath_dir)
    except subprocess.TimeoutExpired as err:
        raise ProjectError(f"{path}: paquo did not answer within {timeout:.0f} s") from err
    if proc.returncode != 0:
        raise ProjectError(f"{path}: paquo could not read image {entry_id}: {_tail(proc.stderr)}")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise ProjectError(f"{path}: paquo returned something that is not GeoJSON: {err}") from err
    return read_features(doc)


__all__ = ["child_env", "paquo_status", "read_annotations"]
