"""Records returned by the ``.qpdata`` reader: the shared :class:`PathObject`, the header and the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histobridge.qupath.annotations import OBJECT_TYPES, PathObject
from histobridge.qupath.classes import argb_to_rgb_or_none

# One object model for every source: the .qpdata reader yields the package's PathObject record.
# ``QPObject`` and the None-tolerant ``argb_to_rgb`` below are the names this module used before;
# they stay as aliases so that code written against them keeps working.
QPObject = PathObject
argb_to_rgb = argb_to_rgb_or_none


@dataclass(frozen=True)
class QPData:
    """Header and objects of one ``.qpdata`` file.

    ``server`` is the image server builder from the 0.3+ JSON header (``None`` for 0.2 files, which
    carry only ``image_path``); ``notes`` lists what was noticed but not fatal (unknown classes…).
    """

    path: Path
    data_version: int
    qupath_version: str | None
    server: dict[str, Any] | None
    image_type: str | None
    objects: list[PathObject]
    properties: dict[str, Any]
    server_id: str | None = None
    image_path: str | None = None
    stains: str | None = None
    tma_grid: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Number of objects per type."""
        out: dict[str, int] = {}
        for o in self.objects:
            out[o.object_type] = out.get(o.object_type, 0) + 1
        return out


@dataclass(frozen=True)
class PathClassValue:
    """A PathClass as read: full display name (levels joined with ": ") and RGB colour."""

    name: str | None
    color: tuple[int, int, int] | None


@dataclass
class Header:
    """What the top-level stream said before and after the hierarchy (filled while reading)."""

    path: Path
    data_version: int = 0
    qupath_version: str | None = None
    server: dict[str, Any] | None = None
    server_id: str | None = None
    image_path: str | None = None
    image_type: str | None = None
    stains: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    tma_grid: tuple[int, int] | None = None
    complete: bool = False
    notes: list[str] = field(default_factory=list)


__all__ = [
    "OBJECT_TYPES",
    "Header",
    "PathClassValue",
    "PathObject",
    "QPData",
    "QPObject",
    "argb_to_rgb",
    "argb_to_rgb_or_none",
]
