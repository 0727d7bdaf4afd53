"""The ``synthetic`` sub-group of an image group: generated tiles beside the real ones.

Same protocol as :class:`~histobridge.tiling.store.GroupWriter` (the group's lock held while
writing, ``synthetic.partial`` renamed into place only once ``complete``, old copy set aside until
the new one is in), plus resuming: progress is recorded in ``attrs["filled"]`` after every batch,
so an interrupted run continues where it stopped when its parameters are unchanged.

Arrays (one row per synthetic tile): ``tiles`` and ``swapped`` uint8 (N, px, px, 3), the per-tile
records the caller gives (1-D, e.g. ``seeds``, ``classes``), and with ``n_out`` classifier outputs
``predictions`` / ``swap_predictions`` float32 (N, n_out).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.codecs

from histobridge._atomic import replace_dir
from histobridge.errors import StoreError
from histobridge.tiling.store import (
    PARTIAL_SUFFIX,
    TileGroup,
    TileStore,
    array_problem,
    group_lock,
    image_group_problem,
    jsonable,
    member,
    open_root,
    remove_tree,
    write_error,
)

SYNTHETIC = "synthetic"
SYNTHETIC_PARTIAL = SYNTHETIC + PARTIAL_SUFFIX
TILE_ARRAYS = ("tiles", "swapped")
PREDICTION_ARRAYS = ("predictions", "swap_predictions")


class SyntheticWriter:
    """Writes (or resumes, or finds up to date) one image group's ``synthetic`` sub-group.

    ``status`` after opening: ``"up-to-date"`` (a complete sub-group with equal ``params`` exists:
    nothing to write), ``"resumed"`` (a partial one with equal ``params``: continue at
    :attr:`filled`) or ``"written"`` (started afresh). Use as a context manager: leaving the block
    releases the lock and keeps a partial sub-group for the next run to resume.
    """

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        group_name: str,
        *,
        params: Mapping[str, Any],
        tile_px: int,
        records: Mapping[str, np.ndarray],
        n_out: int | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        self.store_path = Path(store_path)
        self.name = str(group_name)
        self.params = jsonable(dict(params))
        self.tile_px = int(tile_px)
        lengths = {len(v) for v in records.values()}
        if len(lengths) > 1:
            raise StoreError(f"{self.store_path}/{self.name}: synthetic records differ in length {lengths}")
        self.n = lengths.pop() if lengths else 0
        self.n_out = n_out
        self._expected: dict[str, tuple[int | None, ...]] = {
            **{a: (self.n, self.tile_px, self.tile_px, 3) for a in TILE_ARRAYS},
            **{k: (self.n,) for k in records},
            **({a: (self.n, n_out) for a in PREDICTION_ARRAYS} if n_out is not None else {}),
        }
        self._dir = self.store_path / self.name
        self._lock = group_lock(self.store_path, self.name).acquire(lock_timeout)
        self._mutex = threading.Lock()
        try:
            root = open_root(self.store_path, timeout=lock_timeout)
            image = self._image_group(root)
            self.status = self._open(image, records)
        except OSError as err:
            raise self._fail(err, "creating its synthetic sub-group") from err
        except BaseException:
            self._lock.release()
            raise

    def _image_group(self, root: zarr.Group) -> zarr.Group:
        image = member(root, self.name)
        if not isinstance(image, zarr.Group) or not image.attrs.get("complete", False):
            raise StoreError(
                f"{self.store_path}: no complete tile group {self.name!r} to add synthetic tiles to"
            )
        problem = image_group_problem(image)
        if problem is not None:
            raise StoreError(
                f"{self.store_path}: group {self.name!r} is marked complete but {problem}; "
                "run `histobridge tile` again to rewrite it"
            )
        return image

    def _matches(self, sub: object, *, complete: bool) -> bool:
        return (
            isinstance(sub, zarr.Group)
            and bool(sub.attrs.get("complete", False)) == complete
            and sub.attrs.get("params") == self.params
            and array_problem(sub, self._expected) is None
        )

    def _open(self, image: zarr.Group, records: Mapping[str, np.ndarray]) -> str:
        if self._matches(member(image, SYNTHETIC), complete=True):
            return "up-to-date"
        partial = member(image, SYNTHETIC_PARTIAL)
        if isinstance(partial, zarr.Group) and self._matches(partial, complete=False):
            self.group = partial
            return "resumed"
        if partial is not None and not remove_tree(self._dir / SYNTHETIC_PARTIAL):
            raise StoreError(f"{self._dir / SYNTHETIC_PARTIAL}: cannot remove an outdated partial sub-group")
        self.group = self._create(image, records)
        return "written"

    def _create(self, image: zarr.Group, records: Mapping[str, np.ndarray]) -> zarr.Group:
        n, px = self.n, self.tile_px
        sub = image.create_group(SYNTHETIC_PARTIAL)
        sub.attrs.update({"params": self.params, "filled": 0, "complete": False, "tile_px": px, "n_tiles": n})
        zstd = (zarr.codecs.ZstdCodec(level=1),)
        for name in TILE_ARRAYS:
            sub.create_array(
                name,
                shape=(n, px, px, 3),
                dtype="uint8",
                chunks=(1, px, px, 3),
                shards=(max(1, min(64, n)), px, px, 3),
                compressors=zstd,
                fill_value=0,
            )
        for name, values in records.items():
            arr = np.asarray(values)
            created = sub.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(max(1, n),))
            if n:
                created[:] = arr
        if self.n_out is not None:
            for name in PREDICTION_ARRAYS:
                sub.create_array(name, shape=(n, self.n_out), dtype="float32", chunks=(max(1, n), self.n_out))
        return sub

    def _fail(self, err: OSError, doing: str) -> StoreError:
        """A write failed (disk full, read-only): drop the partial sub-group, release the lock, one line."""
        with self._mutex:
            removed = remove_tree(self._dir / SYNTHETIC_PARTIAL)
            self._lock.release()
            return write_error(self.store_path, f"{self.name}/{SYNTHETIC}", doing, err, removed)

    @property
    def filled(self) -> int:
        """Rows written so far (all of them once finished or up to date)."""
        if self.status == "up-to-date":
            return self.n
        return int(self.group.attrs.get("filled", 0))  # type: ignore[arg-type]

    def read(self, name: str) -> np.ndarray:
        """One whole array of the partial sub-group (the per-tile records, for resuming)."""
        arr = member(self.group, name)
        if not isinstance(arr, zarr.Array):
            raise StoreError(f"{self._dir / SYNTHETIC_PARTIAL}: no {name!r} array")
        return np.asarray(arr[:])

    def write_batch(self, start: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write rows ``start:start+k`` of the given arrays, then record the progress.

        Batches come in order: ``start`` must equal :attr:`filled` (what a resumed run continues at).
        """
        if self.status == "up-to-date" or not self._lock.held:
            raise StoreError(f"{self._dir / SYNTHETIC}: writer is not open for writing")
        if start != self.filled:
            raise StoreError(
                f"{self._dir / SYNTHETIC_PARTIAL}: batch starts at {start}, not at {self.filled}"
            )
        stop = start + len(next(iter(arrays.values()))) if arrays else start
        try:
            for name, values in arrays.items():
                arr = member(self.group, name)
                if not isinstance(arr, zarr.Array):
                    raise StoreError(f"{self._dir / SYNTHETIC_PARTIAL}: no {name!r} array")
                arr[start:stop] = values
            self.group.attrs["filled"] = stop
        except OSError as err:
            raise self._fail(err, f"writing rows {start}:{stop}") from err

    def finish(self, extra_attrs: Mapping[str, Any] | None = None) -> TileGroup:
        """Mark the sub-group complete and move it into place; returns the image group."""
        if self.status != "up-to-date":
            if self.filled != self.n:
                raise StoreError(f"{self._dir / SYNTHETIC_PARTIAL}: wrote {self.filled} of {self.n} rows")
            try:
                self.group.attrs.update({**jsonable(dict(extra_attrs or {})), "complete": True})
                replace_dir(self._dir / SYNTHETIC_PARTIAL, self._dir / SYNTHETIC)
            except OSError as err:
                raise self._fail(err, "finishing it") from err
            finally:
                self._lock.release()
        self._lock.release()
        root = zarr.open_group(str(self.store_path), mode="r", zarr_format=3)
        return TileStore(self.store_path, root).group(self.name)

    def close(self) -> None:
        """Release the lock; a partial sub-group stays for the next run to resume."""
        self._lock.release()

    def __enter__(self) -> SyntheticWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PREDICTION_ARRAYS", "SYNTHETIC", "SYNTHETIC_PARTIAL", "TILE_ARRAYS", "SyntheticWriter"]
