"""Reading the tile store: image groups whose ``complete`` flag is checked against their arrays."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr

from histobridge.errors import StoreError

log = logging.getLogger("histobridge.tiling.store")

PARTIAL_SUFFIX = ".partial"
ARRAYS = ("tiles", "coords", "labels", "regions")
REQUIRED_ATTRS = ("slide_path", "entry_id", "entry_name", "mpp", "tile_px", "tile_um", "classes", "complete")


def member(group: zarr.Group, name: str) -> zarr.Array[Any] | zarr.Group | None:
    """``group[name]``, or None when absent."""
    try:
        return group[name]
    except KeyError:
        return None


def array_problem(group: zarr.Group, expected: Mapping[str, tuple[int | None, ...]]) -> str | None:
    """Why ``group``'s arrays do not match ``expected`` shapes (None entries: any size); None if fine."""
    for name, shape in expected.items():
        arr = member(group, name)
        if not isinstance(arr, zarr.Array):
            return f"its {name!r} array is missing"
        got = tuple(int(s) for s in arr.shape)
        if len(got) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got, strict=True)):
            want = "x".join("?" if e is None else str(e) for e in shape)
            return f"its {name!r} array has shape {'x'.join(map(str, got)) or '()'}, not {want}"
    return None


def _int_attr(attrs: Mapping[str, Any], key: str) -> int | None:
    value = attrs.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def image_group_problem(group: zarr.Group) -> str | None:
    """Why an image group cannot be used although it may say ``complete``; None if it is whole."""
    attrs = group.attrs.asdict()
    n, px = _int_attr(attrs, "n_tiles"), _int_attr(attrs, "tile_px")
    if n is None:  # groups from before ``n_tiles`` was recorded: the arrays must at least agree
        tiles = member(group, "tiles")
        n = int(tiles.shape[0]) if isinstance(tiles, zarr.Array) and tiles.ndim == 4 else None
    return array_problem(group, {"tiles": (n, px, px, 3), "coords": (n, 4), "labels": (n,), "regions": (n,)})


@dataclass(frozen=True)
class TileGroup:
    """One image's tiles in a store (arrays are lazy zarr arrays; index them to read)."""

    group: zarr.Group
    name: str

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def tiles(self) -> zarr.Array[Any]:
        return self.array("tiles")

    @property
    def coords(self) -> zarr.Array[Any]:
        return self.array("coords")

    @property
    def labels(self) -> zarr.Array[Any]:
        return self.array("labels")

    @property
    def regions(self) -> zarr.Array[Any]:
        return self.array("regions")

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.group.attrs.get("classes", [])]  # type: ignore[union-attr]

    @property
    def entry_id(self) -> str:
        return str(self.group.attrs.get("entry_id", self.name))

    @property
    def complete(self) -> bool:
        return bool(self.group.attrs.get("complete", False))

    def problem(self) -> str | None:
        """Why this image group is unusable (missing array, wrong shape); None when whole."""
        return image_group_problem(self.group)

    def __len__(self) -> int:
        return int(self.tiles.shape[0])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and isinstance(member(self.group, name), zarr.Array)

    def __getitem__(self, name: str) -> zarr.Array[Any]:
        return self.array(name)

    def synthetic(self) -> TileGroup | None:
        """The complete ``synthetic`` sub-group (generated tiles), if one was written."""
        sub = member(self.group, "synthetic")
        if not isinstance(sub, zarr.Group) or not sub.attrs.get("complete", False):
            return None
        return TileGroup(sub, "synthetic")

    def array(self, name: str) -> zarr.Array[Any]:
        """One array of the group; StoreError naming the store and group when it is absent."""
        arr = member(self.group, name)
        if arr is None:
            raise StoreError(f"{self.group.store}: group {self.name!r} has no {name!r} array")
        if not isinstance(arr, zarr.Array):
            raise StoreError(f"{self.group.store}: {self.name}/{name} is not an array")
        return arr


def _sort_key(name: str) -> tuple[int, int, str]:
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


class TileStore:
    """A tile store on disk (a Zarr v3 group of image groups)."""

    def __init__(self, path: Path, root: zarr.Group) -> None:
        self.path = path
        self.root = root

    def _image_groups(self) -> Iterator[tuple[str, zarr.Group]]:
        for name, node in self.root.members():
            if isinstance(node, zarr.Group) and not name.endswith(PARTIAL_SUFFIX):
                yield name, node

    def names(self, *, include_incomplete: bool = False) -> list[str]:
        """Usable group names (entry ids), sorted numerically where possible.

        A group that says ``complete`` but lacks an array (or has the wrong shape) is left out with
        a warning, unless ``include_incomplete``; rerunning ``tile`` rewrites it.
        """
        out = []
        for name, node in self._image_groups():
            if include_incomplete:
                out.append(name)
            elif bool(node.attrs.get("complete", False)):
                problem = image_group_problem(node)
                if problem is None:
                    out.append(name)
                else:
                    log.warning("%s: group %r is marked complete but %s; skipped", self.path, name, problem)
        return sorted(out, key=_sort_key)

    def groups(self, *, include_incomplete: bool = False) -> list[TileGroup]:
        """Complete image groups (incomplete or broken ones are skipped unless asked for)."""
        return [self._group(n) for n in self.names(include_incomplete=include_incomplete)]

    def _group(self, name: str) -> TileGroup:
        found = member(self.root, name)
        if found is None:
            raise StoreError(f"{self.path}: no tile group for entry {name!r}")
        if not isinstance(found, zarr.Group):
            raise StoreError(f"{self.path}: {name!r} is not a group")
        return TileGroup(found, name)

    def group(self, entry_id: str | int) -> TileGroup:
        """One image group; StoreError when absent, or marked complete but missing arrays."""
        group = self._group(str(entry_id))
        if group.complete:
            problem = group.problem()
            if problem is not None:
                raise StoreError(
                    f"{self.path}: group {group.name!r} is marked complete but {problem}; "
                    "run `histobridge tile` again to rewrite it"
                )
        return group

    def __contains__(self, entry_id: object) -> bool:
        return str(entry_id) in self.names()

    def __iter__(self) -> Iterator[TileGroup]:
        return iter(self.groups())


def open_store(path: str | os.PathLike[str]) -> TileStore:
    """Open an existing tile store for reading; StoreError when it is not one."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p}: tile store not found")
    try:
        root = zarr.open_group(str(p), mode="r", zarr_format=3)
    except Exception as err:
        raise StoreError(f"{p}: not a Zarr v3 tile store ({type(err).__name__}: {err})") from err
    return TileStore(p, root)
