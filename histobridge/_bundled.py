"""Where bundled data lives: the installed packages ``histobridge.sample_projects`` and
``histobridge.qupath_scripts``.

Both folders sit at the repository's top level (``sample_projects/``, ``qupath_scripts/``) and
pyproject.toml maps them into the package, for a wheel and for an editable install alike, so there
is one lookup: :func:`importlib.resources.files`.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable

from histobridge.errors import HistobridgeError


def bundled_roots(package: str, folder: str) -> list[Traversable]:
    """The installed data package ``package`` (the repository folder ``folder``) as a one-item list.

    Raises :class:`HistobridgeError` when histobridge is imported from a source tree that was
    never installed, which is the one way the package can be missing.
    """
    try:
        return [resources.files(package)]
    except ModuleNotFoundError as err:
        raise HistobridgeError(
            f"{package} is not installed: histobridge runs from a source folder that was never installed; "
            f"run `pip install -e .` in the folder that holds {folder}/"
        ) from err
