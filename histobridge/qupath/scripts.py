"""The Groovy side of histobridge, placed where QuPath lists it.

QuPath shows every ``*.groovy`` file in ``<project>/scripts/`` under *Automate → Project scripts*, so
copying ours there saves pathologists from hunting for them on disk.
"""

from __future__ import annotations

from importlib.abc import Traversable
from pathlib import Path

from histobridge._atomic import write_bytes
from histobridge._bundled import bundled_roots
from histobridge.errors import ProjectError

PACKAGE = "histobridge.qupath_scripts"
SCRIPTS = (
    "export_annotations.groovy",
    "import_results.groovy",
    "histobridge_live.groovy",
    "histobridge_synthetic.groovy",
)


def _root() -> Traversable:
    for root in bundled_roots(PACKAGE, "qupath_scripts"):
        if (root / SCRIPTS[0]).is_file():
            return root
    raise ProjectError("histobridge's QuPath scripts are missing from this installation")


def script_source(name: str) -> str:
    """The text of one bundled script (``export_annotations.groovy`` or ``import_results.groovy``)."""
    if name not in SCRIPTS:
        raise ProjectError(f"unknown script {name!r}; bundled: {', '.join(SCRIPTS)}")
    return (_root() / name).read_text(encoding="utf-8")


def install_scripts(project_folder: str | Path) -> list[Path]:
    """Copy the bundled scripts into ``<project>/scripts/``; returns the files written."""
    folder = Path(project_folder)
    if folder.suffix == ".qpproj":
        folder = folder.parent
    if not folder.is_dir():
        raise ProjectError(f"{folder}: not a QuPath project folder")
    out = []
    for name in SCRIPTS:
        target = folder / "scripts" / name
        write_bytes(target, script_source(name).encode("utf-8"))
        out.append(target)
    return out
