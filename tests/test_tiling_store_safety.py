"""Tile store integrity: two writers, broken 'complete' groups, layout changes, disk errors."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from histobridge._locks import FileLock
from histobridge.errors import StoreError
from histobridge.tiling import _store_write
from histobridge.tiling.store import GroupWriter, group_lock, open_store

ROOT = Path(__file__).resolve().parents[1]
GROUP_JSON = '{"zarr_format": 3, "node_type": "group", "attributes": {}}'

# A writer process: writes group "1" of N tiles of value V, sleeping between tiles; with a "go" file
# named, it holds the lock (before finishing) until that file exists. Prints "started", then "done".
WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from histobridge.tiling.store import GroupWriter
    store, value, go = sys.argv[1], int(sys.argv[2]), sys.argv[5]
    pause, wait = float(sys.argv[3]), float(sys.argv[4])
    n = 6
    w = GroupWriter(store, "1", n, 8, {"entry_id": "1", "tile_px": 8, "tile_um": 4.0}, lock_timeout=wait)
    print("started", flush=True)
    w.write_meta(np.zeros((n, 4)), np.zeros(n), np.zeros(n))
    for i in range(n):
        time.sleep(pause)
        w.write_tiles(i, np.full((1, 8, 8, 3), value, np.uint8))
    deadline = time.monotonic() + 120
    while go and not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.05)
    w.finish()
    print("done", flush=True)
    """
)


def _spawn(store: Path, value: int, pause: float, wait: float, go: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", WRITER, str(store), str(value), str(pause), str(wait), go]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _write(path: Path, name: str, n: int = 4, *, tile_um: float = 4.0, **kw: object) -> GroupWriter:
    attrs = {"entry_id": name, "tile_px": 8, "tile_um": tile_um, "params": {"tile_px": 8, "tile_um": tile_um}}
    w = GroupWriter(path, name, n, 8, attrs, **kw)  # type: ignore[arg-type]
    w.write_meta(np.zeros((n, 4)), np.zeros(n), np.zeros(n))
    w.write_tiles(0, np.full((n, 8, 8, 3), 7, np.uint8))
    w.finish()
    return w


def test_second_process_refuses_naming_the_holder_then_the_first_finishes(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    go = tmp_path / "go"
    first = _spawn(store, 1, 0.0, 5.0, str(go))  # holds the lock until `go` exists
    assert first.stdout is not None and first.stdout.readline().strip() == "started"
    second = _spawn(store, 2, 0.0, 0.2)  # waits 0.2 s, then must refuse
    _, err = second.communicate(timeout=60)
    go.touch()
    assert second.returncode != 0 and "StoreError" in err
    assert f"pid {first.pid}" in err and "s.zarr" in err and "'1'" in err
    rest, err1 = first.communicate(timeout=60)
    assert first.returncode == 0 and "done" in rest, err1
    group = open_store(store).group(1)
    assert group.problem() is None and (group.tiles[:] == 1).all()  # the second writer touched nothing
    assert not (store / "1.partial").exists()


def test_two_processes_writing_one_group_take_turns(tmp_path: Path) -> None:
    """Both wait long enough: the writes are serialised and the result is one whole group."""
    store = tmp_path / "s.zarr"
    procs = [_spawn(store, v, 0.1, 60.0) for v in (3, 4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "done" in out, err
    group = open_store(store).group(1)
    tiles = group.tiles[:]
    assert group.problem() is None and len(np.unique(tiles)) == 1 and int(tiles[0, 0, 0, 0]) in (3, 4)
    assert not (store / "1.partial").exists()


def test_held_lock_gives_a_clear_error_and_the_partial_is_not_touched(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    w = GroupWriter(store, "5", 2, 8, {"tile_px": 8, "tile_um": 4.0})
    with pytest.raises(StoreError, match=rf"s\.zarr, group '5' is being written by pid {os.getpid()}"):
        GroupWriter(store, "5", 2, 8, {"tile_px": 8, "tile_um": 4.0}, lock_timeout=0.1)
    assert (store / "5.partial" / "tiles").is_dir()  # the other writer's partial group is intact
    w.write_meta(np.zeros((2, 4)), np.zeros(2), np.zeros(2))
    w.write_tiles(0, np.zeros((2, 8, 8, 3), np.uint8))
    assert w.finish().problem() is None
    _write(store, "5", 2)  # lock released by finish()


def test_complete_but_broken_group_is_hidden_then_rewritten_with_a_note(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    _write(store, "1")
    _write(store, "2")
    import shutil

    shutil.rmtree(store / "1" / "tiles")  # what a second writer used to leave behind
    s = open_store(store)
    assert s.names() == ["2"] and "1" not in s
    with pytest.raises(StoreError, match="group '1' is marked complete but its 'tiles' array is missing"):
        s.group(1)
    w = _write(store, "1")
    assert any("rewriting group '1'" in n and "'tiles' array is missing" in n for n in w.notes)
    assert open_store(store).names() == ["1", "2"]


def test_wrong_shape_counts_as_broken(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    _write(store, "1", 4)
    import json

    meta = store / "1" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["n_tiles"] = 5  # recorded 5 tiles, arrays hold 4
    meta.write_text(json.dumps(doc))
    assert "has shape 4x8x8x3, not 5x8x8x3" in (open_store(store)._group("1").problem() or "")
    assert open_store(store).names() == []


def test_other_tile_size_is_refused_unless_replace(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    _write(store, "1", tile_um=4.0)
    with pytest.raises(StoreError, match=r"other parameters \(tile_um 4\.0 -> 2\.0\).*replace=True"):
        _write(store, "1", tile_um=2.0)
    assert open_store(store).group(1).attrs["tile_um"] == 4.0 and not (store / "1.partial").exists()
    w = _write(store, "1", tile_um=2.0, replace=True)
    assert w.notes == ["replacing group '1' (tile_um 4.0 -> 2.0)"]
    assert open_store(store).group(1).attrs["tile_um"] == 2.0
    new = {"tile_px": 8, "tile_um": 2.0, "params": {"tile_px": 8, "tile_um": 2.0, "regions_sha": "b"}}
    w = GroupWriter(store, "1", 1, 8, new)  # annotations edited in QuPath: replaced, with a note
    assert w.notes == ["replacing group '1': regions_sha changed"]
    w.abort()


def test_disk_full_while_writing_removes_the_partial_and_says_so(tmp_path: Path, monkeypatch) -> None:
    store = tmp_path / "s.zarr"

    def full(path: Path, parts: list[bytes]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(_store_write, "_write_parts", full)
    w = GroupWriter(store, "1", 64, 8, {"tile_px": 8, "tile_um": 4.0})
    with pytest.raises(StoreError) as info:
        w.write_tiles(0, np.zeros((64, 8, 8, 3), np.uint8))
    msg = str(info.value)
    assert "\n" not in msg and "s.zarr" in msg and "group '1'" in msg
    assert "no space left on the device" in msg and "partial copy was removed" in msg
    assert not (store / "1.partial").exists()
    with pytest.raises(StoreError, match="stopped after an error"):
        w.finish()
    GroupWriter(store, "1", 1, 8, {}, lock_timeout=0).abort()  # the lock was released


def test_read_only_store_is_one_clear_line(tmp_path: Path, monkeypatch) -> None:
    store = tmp_path / "ro.zarr"
    real_mkdir = os.mkdir

    def read_only(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        if "ro.zarr" + os.sep in os.fspath(path) or os.fspath(path).endswith("ro.zarr"):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(StoreError) as info:
        GroupWriter(store, "1", 1, 8, {})
    assert "\n" not in str(info.value) and "read-only" in str(info.value) and "ro.zarr" in str(info.value)
    GroupWriter(tmp_path / "ok.zarr", "1", 1, 8, {}).abort()  # other stores unaffected


def test_failed_move_keeps_the_old_group(tmp_path: Path, monkeypatch) -> None:
    store = tmp_path / "s.zarr"
    _write(store, "1", 3)
    real_replace = os.replace

    def failing(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src).name == "1.partial":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    w = GroupWriter(store, "1", 3, 8, {"tile_px": 8, "tile_um": 4.0, "params": {"x": 2}})
    w.write_meta(np.zeros((3, 4)), np.zeros(3), np.zeros(3))
    w.write_tiles(0, np.full((3, 8, 8, 3), 9, np.uint8))
    with pytest.raises(StoreError, match="finishing it"):
        w.finish()
    group = open_store(store).group(1)  # the old group is back in place, whole
    assert group.problem() is None and (group.tiles[:] == 7).all()
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith("zarr")) == ["1"]


def test_lock_file_lives_beside_the_store_and_records_the_holder(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    lock = group_lock(store, "3").acquire(0)
    assert lock.path == tmp_path / ".s.zarr.locks" / "3.lock"
    other = FileLock(lock.path, "x")
    assert f"pid {os.getpid()}" in other.holder()
    t0 = time.monotonic()
    with pytest.raises(StoreError, match=r"waited 0\.3 s"):
        group_lock(store, "3").acquire(0.3)
    assert time.monotonic() - t0 >= 0.3
    lock.release()
    assert other.acquire(0).held
    other.release()


def test_leftovers_of_dead_writers_are_removed_but_not_a_live_partial(tmp_path: Path) -> None:
    """Partial groups left by a full disk or a kill would keep the disk full: the next writer clears them."""
    store = tmp_path / "s.zarr"
    _write(store, "1")
    for leftover in ("7.partial", ".8.abcd1234.old", "9.partial"):
        (store / leftover / "tiles").mkdir(parents=True)
        (store / leftover / "tiles" / "big").write_bytes(b"x" * 1000)
        (store / leftover / "zarr.json").write_text(GROUP_JSON)
    live = group_lock(store, "9").acquire(0)  # group 9 is being written by someone right now
    try:
        _write(store, "2")
    finally:
        live.release()
    assert not (store / "7.partial").exists() and not (store / ".8.abcd1234.old").exists()
    assert (store / "9.partial" / "tiles" / "big").exists()
    assert open_store(store).names() == ["1", "2"]
