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

from histobridge.errors import ProjectError
from histobridge.qupath.geojson import FeatureReadResult, read_features

CHILD = "histobridge.qupath.paquo._child"
CHECK_TIMEOUT_S = 180
READ_TIMEOUT_S = 900


def _run_child(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", CHILD, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _tail(text: str, lines: int = 4) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"


@functools.lru_cache(maxsize=1)
def paquo_status() -> tuple[bool, str]:
    """(usable, explanation): paquo installed and able to start QuPath on this machine."""
    if importlib.util.find_spec("paquo") is None:
        return False, "paquo is not installed (pip install 'histobridge[qupath]')"
    try:
        proc = _run_child(["check"], CHECK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"could not start paquo: {err}"
    if proc.returncode != 0:
        return False, f"paquo cannot start QuPath (set PAQUO_QUPATH_DIR): {_tail(proc.stderr)}"
    return True, proc.stdout.strip() or "paquo ready"


def read_annotations(
    project: str | os.PathLike[str], entry_id: int, *, timeout: float = READ_TIMEOUT_S
) -> FeatureReadResult:
    """Annotations of image ``entry_id`` as QuPath itself reads them from the project."""
    path = Path(project)
    ok, why = paquo_status()
    if not ok:
        raise ProjectError(f"{path}: cannot read annotations through paquo: {why}")
    try:
        proc = _run_child(["read", str(path), str(int(entry_id))], timeout)
    except subprocess.TimeoutExpired as err:
        raise ProjectError(f"{path}: paquo did not answer within {timeout:.0f} s") from err
    if proc.returncode != 0:
        raise ProjectError(f"{path}: paquo could not read image {entry_id}: {_tail(proc.stderr)}")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise ProjectError(f"{path}: paquo returned something that is not GeoJSON: {err}") from err
    return read_features(doc)


__all__ = ["paquo_status", "read_annotations"]
