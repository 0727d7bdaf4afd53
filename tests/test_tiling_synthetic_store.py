"""The synthetic sub-group writer: resumable, locked, replaced only once complete, clear disk errors."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from histobridge.errors import StoreError
from histobridge.tiling.store import GroupWriter, group_lock, open_store
from histobridge.tiling.synthetic_store import SyntheticWriter


def _store(path: Path, n: int = 3) -> Path:
    w = GroupWriter(path, "1", n, 8, {"entry_id": "1", "tile_px": 8, "tile_um": 4.0})
    w.write_meta(np.zeros((n, 4)), np.zeros(n), np.zeros(n))
    w.write_tiles(0, np.zeros((n, 8, 8, 3), np.uint8))
    w.finish()
    return path


def _writer(store: Path, params: dict[str, object], n: int = 5, **kw: object) -> SyntheticWriter:
    records = {"seeds": np.arange(n, dtype=np.int64), "regions": np.zeros(n, np.int32)}
    return SyntheticWriter(store, "1", params=params, tile_px=8, records=records, n_out=2, **kw)  # type: ignore[arg-type]


def _batch(value: int, k: int) -> dict[str, np.ndarray]:
    tiles = np.full((k, 8, 8, 3), value, np.uint8)
    return {"tiles": tiles, "swapped": tiles, "predictions": np.full((k, 2), value, np.float32)}


def test_resume_finish_up_to_date_and_replace(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.zarr")
    with _writer(store, {"run": 1}) as w:
        assert w.status == "written" and w.filled == 0
        w.write_batch(0, _batch(1, 2))
    assert open_store(store).group(1).synthetic() is None  # only a partial sub-group so far
    with _writer(store, {"run": 1}) as w:
        assert w.status == "resumed" and w.filled == 2 and list(w.read("seeds")) == [0, 1, 2, 3, 4]
        with pytest.raises(StoreError, match="batch starts at 0, not at 2"):
            w.write_batch(0, _batch(1, 2))
        with pytest.raises(StoreError, match="wrote 2 of 5 rows"):
            w.finish()
        w.write_batch(2, _batch(1, 3))
        sub = w.finish({"note": "x"}).synthetic()
    assert sub is not None and sub.attrs["complete"] and sub.attrs["note"] == "x"
    assert (sub["tiles"][:] == 1).all() and sub["predictions"].shape == (5, 2)
    with _writer(store, {"run": 1}) as w:
        assert w.status == "up-to-date" and w.filled == 5
    with _writer(store, {"run": 2}) as w:  # other parameters: start afresh...
        assert w.status == "written"
        w.write_batch(0, _batch(2, 5))
        sub = open_store(store).group(1).synthetic()
        assert sub is not None and (sub["tiles"][:] == 1).all()  # ...the old one stays until finish
        w.finish()
    sub = open_store(store).group(1).synthetic()
    assert sub is not None and (sub["tiles"][:] == 2).all()
    assert sorted(p.name for p in (store / "1").iterdir() if p.is_dir()) == [
        "coords", "labels", "regions", "synthetic", "tiles",
    ]  # fmt: skip


def test_refuses_while_the_group_is_being_written(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.zarr")
    lock = group_lock(store, "1").acquire(0)
    try:
        with pytest.raises(StoreError, match=r"group '1' is being written by pid \d+"):
            _writer(store, {}, lock_timeout=0.1)
    finally:
        lock.release()


def test_refuses_a_broken_image_group(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.zarr")
    shutil.rmtree(store / "1" / "labels")
    with pytest.raises(StoreError, match="marked complete but its 'labels' array is missing"):
        _writer(store, {})


def test_disk_full_drops_the_partial_with_one_clear_line(tmp_path: Path, monkeypatch) -> None:
    store = _store(tmp_path / "s.zarr")
    w = _writer(store, {})

    def full(self: object, key: object, value: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr.Array, "__setitem__", full)
    with pytest.raises(StoreError) as info:
        w.write_batch(0, _batch(1, 2))
    msg = str(info.value)
    assert "\n" not in msg and "1/synthetic" in msg and "no space left" in msg and "removed" in msg
    assert not (store / "1" / "synthetic.partial").exists()
    monkeypatch.undo()
    _writer(store, {}).close()  # the lock was released
