"""Finding QuPath installations for the QuPath-checked tier and running the JPype driver against one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DRIVER = Path(__file__).with_name("_qupath_driver.py")
VERSIONS = ("0.5.1", "0.6.0")
GROOVY = Path("/usr/share/java/groovy-all.jar")  # Debian's 'groovy' package


def find_install(version: str) -> Path | None:
    """``/opt/mini-qupath-<v>`` or ``PAQUO_QUPATH_DIR`` when that holds QuPath ``version``."""
    candidates = [Path(f"/opt/mini-qupath-{version}")]
    env = os.environ.get("PAQUO_QUPATH_DIR")
    if env:
        candidates.append(Path(env))
    for c in candidates:
        if any((c / "lib" / "app").glob(f"qupath-core-{version}*.jar")):
            return c
    return None


def require_install(version: str) -> Path:
    found = find_install(version)
    if found is None:
        pytest.skip(f"QuPath {version} not found (/opt/mini-qupath-{version} or PAQUO_QUPATH_DIR)")
    try:
        import jpype  # noqa: F401
    except ImportError:
        pytest.skip("JPype (brought by paquo) is not installed")
    return found


class QuPathRun:
    """Results of one driver process: ``value(i)`` is job i's result (raises with QuPath's error)."""

    def __init__(self, version: str, results: list[dict[str, Any]]) -> None:
        self.version = version
        self.results = results

    def value(self, i: int) -> Any:
        r = self.results[i]
        if not r["ok"]:
            raise AssertionError(f"QuPath {self.version} failed job {i}: {r['error']}")
        return r["value"]


def run_quPath(install: Path, jobs: list[dict[str, Any]], timeout: float = 120) -> QuPathRun:
    """One JVM for all ``jobs``; a JVM cannot be restarted in a process, hence the subprocess."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(install)],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        raise AssertionError(f"QuPath driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout)
    return QuPathRun(out["version"], out["results"])
