"""Records returned by the ``.qpdata`` reader."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapely.geometry.base import BaseGeometry

OBJECT_TYPES = ("annotation", "detection", "tile", "cell", "tmaCore", "root")


@dataclass(frozen=True)
class QPObject:
    """One QuPath object as stored in the file.

    Linkage: ``index`` numbers every object of the file in hierarchy (pre-)order, the root being 0,
    whether or not a type filter kept it; ``parent_index`` is the parent's index (None for the root)
    and ``depth`` the distance from the root.
    """

    object_type: str
    index: int
    parent_index: int | None
    depth: int
    object_id: str | None = None
    name: str | None = None
    color: tuple[int, int, int] | None = None
    locked: bool = False
    path_class: str | None = None
    class_color: tuple[int, int, int] | None = None
    measurements: Mapping[str, float] = field(default_factory=dict)
    class_probability: float | None = None
    geometry: BaseGeometry | None = None
    nucleus: BaseGeometry | None = None
    plane: tuple[int, int, int] | None = None  # (c, z, t); c = -1 means all channels
    is_missing: bool = False
    roi_type: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    roi_stats: Mapping[str, Any] | None = None  # statistics QuPath cached in the ROI (area, bounds…)


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
    objects: list[QPObject]
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


def argb_to_rgb(value: int | None) -> tuple[int, int, int] | None:
    """Packed (signed) Java ARGB int to an RGB tuple."""
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        return None
    return ((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF)
