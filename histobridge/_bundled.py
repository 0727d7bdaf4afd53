"""Where bundled data lives: installed package data, else the source checkout's top-level folder.

``sample_projects/`` and ``qupath_scripts/`` sit at the repository's top level and are installed as
the packages ``histobridge.sample_projects`` and ``histobridge.qupath_scripts`` (see ``setup.py``).
"""

from __future__ import annotations

import contextlib
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def bundled_roots(package: str, folder: str) -> list[Traversable]:
    """Installed package data first, then ``<checkout>/<folder>`` when it exists."""
    roots: list[Traversable] = []
    with contextlib.suppress(ModuleNotFoundError, TypeError):
        roots.append(resources.files(package))
    repo = _REPO / folder
    if repo.is_dir():
        roots.append(repo)
    return roots
