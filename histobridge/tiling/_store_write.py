"""Writing the tile store: locked, atomic image groups (see :mod:`histobridge.tiling.store`)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from histobridge._atomic import replace_dir
from histobridge._locks import FileLock, describe_oserror, hold
from histobridge.errors import StoreError
from histobridge.tiling._shards import (
    DEFAULT_COMPRESSION,
    check_compression,
    compressors,
    encoder_allowed,
    shard_parts,
)
from histobridge.tiling._shards import uses_default_layout as _uses_default_layout
from histobridge.tiling._store_direct import (
    direct_allowed,
    direct_group_problem,
    dumps,
    group_files,
    group_meta,
    is_v3_group,
    record_chunks,
    write_files,
)
from histobridge.tiling._store_read import PARTIAL_SUFFIX, TileGroup, TileStore, image_group_problem, member

log = logging.getLogger("histobridge.tiling.store")

SHARD_TILES = 64
SHARD_BYTES = 16 << 20  # fewer tiles per shard for big tiles: a batch stays ~16 MB in memory
LOCKS_SUFFIX = ".locks"
# Tile size in px and µm make a group a different data set: changing them needs replace=True.
# Other changes (coverage, stride, classes, annotations, slide) replace the group with a note.
LAYOUT_KEYS = ("tile_px", "tile_um")
_ROOT_LOCK = threading.Lock()
STALE_TEMP_S = 60.0  # a zarr metadata temp file older than this was left by a killed writer


def shard_tiles(tile_px: int, n: int | None = None) -> int:
    """Tiles per shard (and per tiler batch) for ``tile_px`` tiles."""
    by_size = max(1, SHARD_BYTES // (tile_px * tile_px * 3))
    return max(1, min(SHARD_TILES, by_size, n if n is not None else SHARD_TILES))


def _compressors(compression: str = DEFAULT_COMPRESSION) -> tuple[Any, ...]:
    return compressors(compression)


def lock_dir(store_path: str | os.PathLike[str]) -> Path:
    """``.<store name>.locks`` beside the store: lock files stay out of the Zarr hierarchy."""
    p = Path(store_path).absolute()
    return p.parent / f".{p.name}{LOCKS_SUFFIX}"


def group_lock(store_path: str | os.PathLike[str], name: str) -> FileLock:
    """The (not yet acquired) lock guarding image group ``name`` and its sub-groups."""
    return FileLock(
        lock_dir(store_path) / f"{name}.lock", f"tile store {store_path}, group {name!r}", error=StoreError
    )


def write_error(store_path: Path, name: str, doing: str, err: OSError, removed: bool | None) -> StoreError:
    """One clear line for an OS error while writing (disk full, read-only...)."""
    tail = ""
    if removed is not None:
        tail = "; its partial copy was removed" if removed else "; its partial copy could not be removed"
    return StoreError(
        f"{store_path}: cannot write tile group {name!r} ({doing}): {describe_oserror(err)}{tail}"
    )


def open_root(store_path: Path, *, timeout: float | None = None) -> zarr.Group:
    """The store's root group for writing, created under a store-wide lock when absent."""
    try:
        if (store_path / "zarr.json").is_file():
            return zarr.open_group(str(store_path), mode="r+", zarr_format=3)
        store_path.mkdir(parents=True, exist_ok=True)
        with (
            _ROOT_LOCK,
            hold(
                lock_dir(store_path) / "store.lock",
                f"tile store {store_path}",
                timeout=timeout,
                error=StoreError,
            ),
        ):
            return zarr.open_group(str(store_path), mode="a", zarr_format=3)
    except OSError as err:
        raise StoreError(
            f"{store_path}: cannot open the tile store for writing: {describe_oserror(err)}"
        ) from err
    except StoreError:
        raise
    except Exception as err:
        raise StoreError(f"{store_path}: not a Zarr v3 tile store ({type(err).__name__}: {err})") from err


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready attributes (tuples -> lists, paths -> str, numpy scalars -> Python)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _layout(attrs: Mapping[str, Any]) -> dict[str, Any]:
    params = attrs.get("params")
    source: Mapping[str, Any] = params if isinstance(params, Mapping) else attrs
    return {k: jsonable(source[k]) for k in LAYOUT_KEYS if k in source}


def layout_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Tile-layout parameters that differ between two groups' attributes, as ``key old -> new``."""
    a, b = _layout(old), _layout(new)
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in LAYOUT_KEYS if k in a and k in b and a[k] != b[k]]


def remove_tree(path: Path) -> bool:
    """Delete a directory if present; False when it could not be removed."""
    if not path.exists():
        return True
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


class GroupWriter:
    """Writes one image group under a temporary name; :meth:`finish` marks it complete and moves it in.

    Holds the group's lock from construction to :meth:`finish` / :meth:`abort` / :meth:`close`.
    An existing complete group made with another tile layout (``LAYOUT_KEYS``) is replaced only with
    ``replace=True``; any replacement is logged and listed in :attr:`notes`. Memory stays bounded:
    callers hand over tiles in batches (whole shards are best).
    """

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        name: str,
        n: int,
        tile_px: int,
        attrs: Mapping[str, Any],
        *,
        replace: bool = False,
        lock_timeout: float | None = None,
        compression: str = DEFAULT_COMPRESSION,
    ) -> None:
        self.store_path = Path(store_path)
        self.compression = check_compression(compression)
        self.name = str(name)
        self.n = int(n)
        self.tile_px = int(tile_px)
        self.tmp_name = self.name + PARTIAL_SUFFIX
        self.notes: list[str] = []
        self.written = 0
        self._lock = threading.Lock()
        self._failed: StoreError | None = None
        self._file_lock = group_lock(self.store_path, self.name).acquire(lock_timeout)
        self._direct = direct_allowed()
        self._zarr_group: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array[Any]] = {}
        try:
            fast = self._direct and _direct_root(self.store_path, lock_timeout)
            root = None if fast else open_root(self.store_path, timeout=lock_timeout)
            if (self.store_path / self.tmp_name).exists():  # left by a crashed run: we hold the lock now
                _remove_member(self.store_path, self.tmp_name)
            remove_stale(self.store_path)  # other groups' leftovers nobody is writing
            if (self.store_path / self.name).exists():  # rare (a rerun): zarr reads the old group
                root = root or open_root(self.store_path, timeout=lock_timeout)
                self._check_existing(root, attrs, replace)
            if self._direct:
                self._create_direct(attrs)
            else:
                self._create(root or open_root(self.store_path, timeout=lock_timeout), attrs)
        except OSError as err:
            raise self._fail(err, "creating it") from err
        except BaseException:
            self._file_lock.release()
            raise

    def _check_existing(self, root: zarr.Group, attrs: Mapping[str, Any], replace: bool) -> None:
        old = member(root, self.name)
        if not isinstance(old, zarr.Group):
            return
        old_attrs = old.attrs.asdict()
        problem = image_group_problem(old) if old_attrs.get("complete") else "it was never completed"
        if problem is not None:
            self._note(f"rewriting group {self.name!r}: the existing one {problem}")
            return
        changes = layout_changes(old_attrs, attrs)
        if changes and not replace:
            raise StoreError(
                f"{self.store_path}: group {self.name!r} already holds tiles made with other parameters "
                f"({'; '.join(changes)}); pass replace=True to replace them, or write to another store"
            )
        if changes:
            self._note(f"replacing group {self.name!r} ({'; '.join(changes)})")
            return
        old_params, new_params = old_attrs.get("params"), jsonable(attrs.get("params"))
        if old_params != new_params:
            a = old_params if isinstance(old_params, dict) else {}
            b = new_params if isinstance(new_params, dict) else {}
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)) or ["parameters"]
            self._note(f"replacing group {self.name!r}: {', '.join(keys)} changed")

    def _note(self, text: str) -> None:
        log.warning("%s: %s", self.store_path, text)
        self.notes.append(text)

    def _create_direct(self, attrs: Mapping[str, Any]) -> None:
        """The group's files written directly (:mod:`histobridge.tiling._store_direct`)."""
        self.shard = shard_tiles(self.tile_px, self.n)
        self._attrs = jsonable({**attrs, "complete": False, "n_tiles": self.n})
        files = group_files(self._attrs, self.n, self.tile_px, self.shard, self.compression)
        write_files(self.store_path / self.tmp_name, files)
        self._direct_shards = encoder_allowed(self.compression)

    @property
    def group(self) -> zarr.Group:
        """The partial group through zarr (opened on first use when its files were written directly)."""
        if self._zarr_group is None:
            self._zarr_group = zarr.open_group(str(self.store_path / self.tmp_name), mode="r+", zarr_format=3)
        return self._zarr_group

    @property
    def tiles(self) -> zarr.Array[Any]:
        return self._member_array("tiles")

    @property
    def coords(self) -> zarr.Array[Any]:
        return self._member_array("coords")

    @property
    def labels(self) -> zarr.Array[Any]:
        return self._member_array("labels")

    @property
    def regions(self) -> zarr.Array[Any]:
        return self._member_array("regions")

    def _member_array(self, name: str) -> zarr.Array[Any]:
        arr = self._arrays.get(name)
        if arr is None:
            found = self.group[name]
            if not isinstance(found, zarr.Array):  # pragma: no cover - we wrote it as an array
                raise StoreError(f"{self.store_path}/{self.tmp_name}/{name} is not an array")
            arr = self._arrays[name] = found
        return arr

    def _create(self, root: zarr.Group, attrs: Mapping[str, Any]) -> None:
        self._zarr_group = group = root.create_group(self.tmp_name)
        group.attrs.update(jsonable({**attrs, "complete": False, "n_tiles": self.n}))
        shard = shard_tiles(self.tile_px, self.n)
        px = self.tile_px
        tiles = group.create_array(
            "tiles",
            shape=(self.n, px, px, 3),
            dtype="uint8",
            chunks=(1, px, px, 3),
            shards=(shard, px, px, 3),
            compressors=_compressors(self.compression),
            fill_value=0,
            dimension_names=("tile", "y", "x", "c"),
        )
        rows = max(1, self.n)
        group.create_array("coords", shape=(self.n, 4), dtype="float64", chunks=(rows, 4))
        group.create_array("labels", shape=(self.n,), dtype="int16", chunks=(rows,))
        group.create_array("regions", shape=(self.n,), dtype="int32", chunks=(rows,))
        self.shard = shard
        self._direct_shards = _uses_default_layout(tiles, self.compression) and encoder_allowed(
            self.compression
        )

    def _fail(self, err: OSError, doing: str) -> StoreError:
        """Remove our partial group (it cannot be resumed), release the lock, and say why in one line."""
        with self._lock:
            if self._failed is None:
                removed = _remove_member(self.store_path, self.tmp_name)
                self._file_lock.release()
                self._failed = write_error(self.store_path, self.name, doing, err, removed)
            return self._failed

    def _check_alive(self) -> None:
        if self._failed is not None:
            raise StoreError(f"{self.store_path}/{self.name}: writer stopped after an error: {self._failed}")

    def write_meta(self, coords: np.ndarray, labels: np.ndarray, regions: np.ndarray) -> None:
        """Write the per-tile records (small: 30 bytes a tile) in one go."""
        self._check_alive()
        if len(coords) != self.n or len(labels) != self.n or len(regions) != self.n:
            raise StoreError(f"{self.store_path}/{self.name}: metadata length differs from {self.n} tiles")
        if not self.n:
            return
        coords = np.asarray(coords, np.float64).reshape(self.n, 4)
        labels, regions = np.asarray(labels, np.int16), np.asarray(regions, np.int32)
        try:
            if self._direct:
                write_files(self.store_path / self.tmp_name, record_chunks(coords, labels, regions))
                return
            self.coords[:] = coords
            self.labels[:] = labels
            self.regions[:] = regions
        except OSError as err:
            raise self._fail(err, "writing tile records") from err

    def write_tiles(self, start: int, tiles: np.ndarray) -> None:
        """Write tiles ``start .. start+len(tiles)`` (uint8 NHWC); whole shards are written directly.

        Safe to call from several threads for disjoint shard-aligned ranges (what the tiler does).
        """
        self._check_alive()
        stop = start + len(tiles)
        if start < 0 or stop > self.n:
            raise StoreError(f"{self.store_path}/{self.name}: tiles {start}:{stop} outside 0:{self.n}")
        try:
            self._write_tiles(start, stop, tiles)
        except OSError as err:
            raise self._fail(err, f"writing tiles {start}:{stop}") from err
        with self._lock:
            self.written += len(tiles)

    def _write_tiles(self, start: int, stop: int, tiles: np.ndarray) -> None:
        pos = start
        while pos < stop:
            shard_end = min((pos // self.shard + 1) * self.shard, self.n)
            end = min(shard_end, stop)
            piece = tiles[pos - start : end - start]
            if self._direct_shards and pos % self.shard == 0 and end == shard_end:
                # No fsync or temp file per shard: the whole group becomes visible only at finish().
                key = (
                    self.store_path / self.tmp_name / "tiles" / "c" / str(pos // self.shard) / "0" / "0" / "0"
                )
                _write_parts(key, shard_parts(np.asarray(piece, np.uint8), self.shard, self.compression))
            else:
                self.tiles[pos:end] = piece
            pos = end

    def finish(self, extra_attrs: Mapping[str, Any] | None = None) -> TileGroup:
        """Mark the group complete and move it to its final name (replacing an older group)."""
        self.commit(extra_attrs)
        root = zarr.open_group(str(self.store_path), mode="r", zarr_format=3)
        return TileStore(self.store_path, root).group(self.name)

    def commit(self, extra_attrs: Mapping[str, Any] | None = None) -> None:
        """:meth:`finish` without opening the finished group again (what the tiler needs)."""
        self._check_alive()
        if self.written != self.n:
            raise StoreError(f"{self.store_path}/{self.name}: wrote {self.written} of {self.n} tiles")
        try:
            if self._zarr_group is None and self._direct:
                self._mark_complete_direct(extra_attrs)
            else:
                if extra_attrs:
                    self.group.attrs.update(jsonable(dict(extra_attrs)))
                problem = image_group_problem(self.group)
                if problem is not None:  # never mark a group complete that readers would reject
                    raise StoreError(f"{self.store_path}/{self.tmp_name}: {problem}")
                self.group.attrs["complete"] = True
            replace_dir(self.store_path / self.tmp_name, self.store_path / self.name)
        except OSError as err:
            raise self._fail(err, "finishing it") from err
        finally:
            self._file_lock.release()

    def _mark_complete_direct(self, extra_attrs: Mapping[str, Any] | None) -> None:
        folder = self.store_path / self.tmp_name
        problem = direct_group_problem(folder, self.n, self.tile_px)
        if problem is not None:  # never mark a group complete that readers would reject
            raise StoreError(f"{folder}: {problem}")
        attrs = {**self._attrs, **jsonable(dict(extra_attrs or {})), "complete": True}
        write_files(folder, {"zarr.json": dumps(group_meta(attrs))})

    def abort(self) -> None:
        """Remove the partial group (used when an image fails cleanly) and release the lock."""
        if self._file_lock.held:
            _remove_member(self.store_path, self.tmp_name)
        self._file_lock.release()

    def close(self) -> None:
        """Release the lock, leaving any partial group for the next run to clear."""
        self._file_lock.release()

    def __enter__(self) -> GroupWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and issubclass(exc_type, Exception):
            self.abort()
        else:
            self.close()


def _direct_root(store_path: Path, timeout: float | None) -> bool:
    """True when the store's root is a Zarr v3 group, written here first if the store is new.

    A new root is written as zarr writes it (under the store-wide lock, through a temp file so a
    reader never sees half of it); anything else already there is left to :func:`open_root`.
    """
    if is_v3_group(store_path):
        return True
    if (store_path / "zarr.json").exists():
        return False
    try:
        store_path.mkdir(parents=True, exist_ok=True)
        lock = lock_dir(store_path) / "store.lock"
        with _ROOT_LOCK, hold(lock, f"tile store {store_path}", timeout=timeout, error=StoreError):
            if not (store_path / "zarr.json").exists():  # a temp name the leftover cleanup knows
                tmp = store_path / f"zarr.{os.urandom(8).hex()}.partial"
                tmp.write_bytes(dumps(group_meta({})))
                os.replace(tmp, store_path / "zarr.json")
    except OSError as err:
        raise StoreError(
            f"{store_path}: cannot open the tile store for writing: {describe_oserror(err)}"
        ) from err
    return is_v3_group(store_path)


def _write_parts(path: Path, parts: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.writelines(parts)


def _remove_member(store_path: Path, name: str) -> bool:
    return remove_tree(store_path / name)


def _stale_owner(entry: str) -> str | None:
    """The group a leftover belongs to: ``<name>.partial`` or a set-aside ``.<name>.<random>.old``."""
    if entry.endswith(PARTIAL_SUFFIX) and not entry.startswith("."):
        return entry[: -len(PARTIAL_SUFFIX)]
    if entry.startswith(".") and entry.endswith(".old") and entry.count(".") >= 3:
        return entry[1:-4].rsplit(".", 1)[0]
    return None


def remove_stale(store_path: str | os.PathLike[str], *, temp_age_s: float = STALE_TEMP_S) -> list[str]:
    """Delete leftovers of crashed or failed writers (partial groups, set-aside old copies) whose
    group nobody is writing now, so they do not keep a full disk full; returns what was removed."""
    root = Path(store_path)
    removed = []
    try:
        entries = sorted(p.name for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    for entry in entries:
        owner = _stale_owner(entry)
        if owner is None:
            continue
        lock = group_lock(root, owner)
        try:
            lock.acquire(0)
        except StoreError:
            continue  # being written right now: not a leftover
        try:
            if remove_tree(root / entry):
                removed.append(entry)
        finally:
            lock.release()
    removed += _remove_root_temp_files(root, temp_age_s)
    if removed:
        log.info("%s: removed leftovers of earlier runs: %s", root, ", ".join(removed))
    return removed


def _remove_root_temp_files(root: Path, min_age_s: float) -> list[str]:
    """zarr writes metadata through ``zarr.<hex>.partial`` files renamed into place (the root's
    ``zarr.json`` is rewritten whenever a group is created); a writer killed meanwhile leaves one.
    Such a write takes milliseconds, so a temp file older than ``min_age_s`` is nobody's."""
    now = time.time()
    gone = []
    for p in sorted(root.glob("zarr.*.partial")):
        try:
            if p.is_file() and now - p.stat().st_mtime >= min_age_s:
                p.unlink()
                gone.append(p.name)
        except OSError:
            continue
    return gone


def remove_group(store_path: str | os.PathLike[str], name: str, *, lock_timeout: float | None = None) -> None:
    """Delete one image group (and any partial copy of it), under the group's lock."""
    with group_lock(store_path, str(name)).acquire(lock_timeout):
        _remove_member(Path(store_path), str(name))
        _remove_member(Path(store_path), str(name) + PARTIAL_SUFFIX)
