"""Finding QuPath installations for the QuPath-checked tier and running the JPype driver against one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
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


def installed() -> list[tuple[str, Path]]:
    """(version, install) for every QuPath version found, oldest first."""
    return [(v, p) for v in VERSIONS if (p := find_install(v)) is not None]


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



def imagej_project(folder: Path, images: list[tuple[str, Path]], version: str = "0.5.1") -> Path:
    """A QuPath project whose entries (ids 1…n) open through QuPath's ImageJ server (plain TIFFs),
    the one server mini-QuPath has; returns ``folder/project.qpproj``."""
    def entry(i: int, name: str, image: Path) -> dict[str, Any]:
        builder = {
            "builderType": "uri",
            "providerClassName": "qupath.imagej.images.servers.ImageJServerBuilder",
            "uri": image.as_uri(),
            "args": [],
        }
        return {"serverBuilder": builder, "entryID": i, "imageName": name, "metadata": {}}

    doc = {
        "version": version,
        "createTimestamp": 1700000000000,
        "modifyTimestamp": 1700000000000,
        "uri": (folder / "project.qpproj").as_uri(),
        "lastID": len(images),
        "images": [entry(i, name, image) for i, (name, image) in enumerate(images, start=1)],
    }
    folder.mkdir(parents=True)
    (folder / "project.qpproj").write_text(json.dumps(doc))
    return folder / "project.qpproj"


def _start(install: Path, jobs: list[dict[str, Any]], driver: Path = DRIVER) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(install)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(jobs))
    proc.stdin.close()
    proc.stdin = None  # communicate() must not touch it again
    return proc


def _finish(proc: subprocess.Popen[str], timeout: float) -> QuPathRun:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"QuPath driver did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise AssertionError(f"QuPath driver failed ({proc.returncode}):\n{err[-4000:]}")
    doc = json.loads(out)
    return QuPathRun(doc["version"], doc["results"])


def run_quPath(
    install: Path, jobs: list[dict[str, Any]], timeout: float = 180, driver: Path = DRIVER
) -> QuPathRun:
    """One JVM for all ``jobs``; a JVM cannot be restarted in a process, hence the subprocess.
    ``driver``: a script that adds operations to the driver's (it runs the driver's ``main``)."""
    return _finish(_start(install, jobs, driver), timeout)


_RUNS: dict[tuple[str, str], tuple[QuPathRun, Any]] = {}


def run_each_version(
    key: str, version: str, prepare: Callable[[str], tuple[list[dict[str, Any]], Any]], timeout: float = 180
) -> tuple[QuPathRun, Any]:
    """The run for ``version``; on first use, ``prepare(v)`` (jobs, extra) for every installed version
    and one JVM per version, all at once (they are independent)."""
    require_install(version)
    if (key, version) not in _RUNS:
        started = []
        for v in VERSIONS:
            install = find_install(v)
            if install is not None and (key, v) not in _RUNS:
                jobs, extra = prepare(v)
                started.append((v, _start(install, jobs), extra))
        for v, proc, extra in started:
            _RUNS[(key, v)] = (_finish(proc, timeout), extra)
    return _RUNS[(key, version)]
