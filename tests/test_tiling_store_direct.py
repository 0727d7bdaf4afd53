"""Image groups written as plain files: the same metadata and chunk bytes as zarr writes itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from histobridge.errors import StoreError
from histobridge.tiling import _store_direct, _store_write
from histobridge.tiling.store import GroupWriter, open_store


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _write(store: Path, name: str, tiles: np.ndarray, labels: np.ndarray, compression: str = "lz4") -> None:
    n, px = len(tiles), tiles.shape[1]
    attrs = {"entry_id": name, "classes": ["a", "b"], "mpp": 0.4999, "regions": [{"id": 1}], "tile_px": px}
    w = GroupWriter(store, name, n, px, attrs, compression=compression)
    w.write_meta(np.arange(n * 4, dtype=float).reshape(n, 4) * 0.5, labels, np.arange(n) % 3)
    for start in range(0, n, w.shard):
        w.write_tiles(start, tiles[start : start + w.shard])
    w.commit({"extra": [1, 2]})


@pytest.mark.parametrize(
    ("n", "px", "zero_labels", "compression"),
    [(150, 8, False, "lz4"), (5, 16, True, "lz4"), (1, 4, False, "lz4"), (150, 8, False, "none")],
)
def test_direct_group_equals_what_zarr_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, px: int, zero_labels: bool, compression: str
) -> None:
    """Group files, record chunks and (through the shard encoder) tiles: as zarr writes them."""
    tiles = np.random.default_rng(n).integers(0, 255, (n, px, px, 3), dtype=np.uint8)
    labels = np.zeros(n, int) if zero_labels else np.arange(n) % 2  # all-fill: zarr writes no chunk
    _write(tmp_path / "a.zarr", "1", tiles, labels, compression)
    probe = GroupWriter(tmp_path / "a.zarr", "9", 1, px, {})
    assert probe._direct  # the fast path is taken on this zarr
    probe.abort()
    monkeypatch.setattr(_store_write, "direct_allowed", lambda: False)
    monkeypatch.setattr(_store_write, "encoder_allowed", lambda compression: False)
    _write(tmp_path / "b.zarr", "1", tiles, labels, compression)
    ours, theirs = _files(tmp_path / "a.zarr" / "1"), _files(tmp_path / "b.zarr" / "1")
    assert ours.keys() == theirs.keys()
    for key, data in ours.items():
        if key.endswith("zarr.json"):
            assert json.loads(data) == json.loads(theirs[key]), key
        else:
            assert data == theirs[key], key
    group = open_store(tmp_path / "a.zarr").group(1)
    np.testing.assert_array_equal(group.tiles[:], tiles)
    np.testing.assert_array_equal(group.labels[:], labels)
    assert group.attrs["complete"] and group.attrs["extra"] == [1, 2] and group.attrs["n_tiles"] == n


def test_probe_guards_the_direct_path(tmp_path: Path, monkeypatch) -> None:
    """Outside the verified zarr releases the probe decides; a mismatch sends everything through zarr."""
    assert _store_direct.probe_matches() and _store_direct.probe_matches(n=0, px=8, shard=1)
    monkeypatch.setattr(_store_direct, "record_chunks", lambda *a: {"coords/c/0/0": b"not zarr's bytes"})
    assert not _store_direct.probe_matches()
    _store_direct.direct_allowed.cache_clear()
    monkeypatch.setattr(_store_direct, "_zarr_version", lambda: (9, 0))
    try:
        assert not _store_direct.direct_allowed()
    finally:
        _store_direct.direct_allowed.cache_clear()


def test_direct_group_is_never_marked_complete_with_an_array_missing(tmp_path: Path) -> None:
    w = GroupWriter(tmp_path / "m.zarr", "3", 2, 4, {})
    w.write_meta(np.zeros((2, 4)), np.zeros(2), np.zeros(2))
    w.write_tiles(0, np.zeros((2, 4, 4, 3), np.uint8))
    (tmp_path / "m.zarr" / "3.partial" / "labels" / "zarr.json").unlink()
    with pytest.raises(StoreError, match="'labels' array is missing"):
        w.commit()
    assert not (tmp_path / "m.zarr" / "3").exists()
    w.abort()


def test_a_root_that_is_not_a_v3_group_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "array", "shape": [1]}))
    with pytest.raises(StoreError, match=r"bad\.zarr"):
        GroupWriter(bad, "1", 1, 4, {})


def test_a_new_store_root_is_what_zarr_writes(tmp_path: Path) -> None:
    import zarr

    _write(tmp_path / "new.zarr", "1", np.zeros((2, 4, 4, 3), np.uint8), np.zeros(2))
    zarr.create_group(str(tmp_path / "ref.zarr"), zarr_format=3)
    ours = json.loads((tmp_path / "new.zarr" / "zarr.json").read_bytes())
    assert ours == json.loads((tmp_path / "ref.zarr" / "zarr.json").read_bytes())
    assert sorted(p.name for p in (tmp_path / "new.zarr").iterdir()) == ["1", "zarr.json"]  # no temp left
    assert open_store(tmp_path / "new.zarr").names() == ["1"]
