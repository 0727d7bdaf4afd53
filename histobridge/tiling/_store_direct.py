"""An image group's metadata and record chunks written as plain files, equal to what zarr writes.

Why: each zarr call on a local store goes through zarr's event-loop thread and then a file-I/O
thread, and creating, filling and finishing one image group took about 25 such round trips: tens
of milliseconds of mostly waiting (much more on a loaded machine), which dominated small images
of ~100 tiles. The files written here (``zarr.json`` of the group and of its four arrays, the one
chunk of each record array) parse to the same metadata and hold the same chunk bytes as zarr's;
a test compares them on the installed zarr, and on zarr releases outside the verified range a
one-time in-memory probe decides, as for the shard encoder (:mod:`histobridge.tiling._shards`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from histobridge.tiling._shards import BLOSC, COMPRESSIONS, DEFAULT_COMPRESSION, VERIFIED_ZARR, _zarr_version

_KEY_ENCODING = {"name": "default", "configuration": {"separator": "/"}}
_ZSTD = {"name": "zstd", "configuration": {"level": 0, "checksum": False}}  # zarr's default compressor
RECORDS = {"coords": ("float64", 0.0), "labels": ("int16", 0), "regions": ("int32", 0)}


def _array(shape: list[int], chunks: list[int], dtype: str, fill: Any, codecs: list[Any]) -> dict[str, Any]:
    return {
        "shape": shape,
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": _KEY_ENCODING,
        "fill_value": fill,
        "codecs": codecs,
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def tiles_meta(n: int, px: int, shard: int, compression: str = DEFAULT_COMPRESSION) -> dict[str, Any]:
    """``tiles/zarr.json``: uint8 (n, px, px, 3), one tile per inner chunk, ``shard`` tiles a shard."""
    inner: list[dict[str, Any]] = [{"name": "bytes"}]
    if compression == "lz4":
        inner.append({"name": "blosc", "configuration": {**BLOSC, "blocksize": 0}})
    sharding = {
        "name": "sharding_indexed",
        "configuration": {
            "chunk_shape": [1, px, px, 3],
            "codecs": inner,
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
            "index_location": "end",
        },
    }
    meta = _array([n, px, px, 3], [shard, px, px, 3], "uint8", 0, [sharding])
    meta["dimension_names"] = ["tile", "y", "x", "c"]
    return meta


def record_meta(name: str, n: int) -> dict[str, Any]:
    """``zarr.json`` of a record array (coords (n, 4), labels and regions (n,)): one chunk of all rows."""
    dtype, fill = RECORDS[name]
    rows = max(1, n)
    shape, chunks = ([n, 4], [rows, 4]) if name == "coords" else ([n], [rows])
    codecs = [{"name": "bytes", "configuration": {"endian": "little"}}, _ZSTD]
    return _array(shape, chunks, dtype, fill, codecs)


def group_meta(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {"attributes": dict(attrs), "zarr_format": 3, "node_type": "group"}


def dumps(meta: Mapping[str, Any]) -> bytes:
    """JSON as zarr formats it (2-space indent, NaN allowed)."""
    return json.dumps(meta, indent=2, allow_nan=True).encode()


def record_chunks(coords: np.ndarray, labels: np.ndarray, regions: np.ndarray) -> dict[str, bytes]:
    """Chunk files of the record arrays (relative paths), skipping all-fill chunks as zarr does."""
    from numcodecs import Zstd

    codec = Zstd(level=0, checksum=False)
    arrays = {
        "coords/c/0/0": np.ascontiguousarray(coords, "<f8"),
        "labels/c/0": np.ascontiguousarray(labels, "<i2"),
        "regions/c/0": np.ascontiguousarray(regions, "<i4"),
    }
    return {key: bytes(codec.encode(a.tobytes())) for key, a in arrays.items() if a.size and a.any()}


def group_files(
    attrs: Mapping[str, Any], n: int, px: int, shard: int, compression: str = DEFAULT_COMPRESSION
) -> dict[str, bytes]:
    """Every ``zarr.json`` of a new image group (relative paths -> bytes)."""
    tiles = dumps(tiles_meta(n, px, shard, compression))
    files = {"zarr.json": dumps(group_meta(attrs)), "tiles/zarr.json": tiles}
    for name in RECORDS:
        files[f"{name}/zarr.json"] = dumps(record_meta(name, n))
    return files


def write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` under ``folder`` (no fsync: a group becomes visible only by its final rename)."""
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def is_v3_group(store_path: Path) -> bool:
    """The store's root ``zarr.json`` exists and says: Zarr v3 group (else zarr opens or creates it)."""
    try:
        meta = json.loads((store_path / "zarr.json").read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("zarr_format") == 3 and meta.get("node_type") == "group"


def direct_group_problem(folder: Path, n: int, px: int) -> str | None:
    """:func:`image_group_problem` for a group written directly, from its arrays' ``zarr.json``."""
    expected = {"tiles": [n, px, px, 3], "coords": [n, 4], "labels": [n], "regions": [n]}
    for name, shape in expected.items():
        try:
            meta = json.loads((folder / name / "zarr.json").read_bytes())
        except (OSError, ValueError):
            return f"its {name!r} array is missing"
        if not isinstance(meta, dict) or meta.get("node_type") != "array" or meta.get("shape") != shape:
            return f"its {name!r} array does not have shape {'x'.join(map(str, shape))}"
    return None


@functools.lru_cache(maxsize=1)
def direct_allowed() -> bool:
    """Whether group files may bypass zarr: a verified zarr release, or a probe group came out equal."""
    lo, hi = VERIFIED_ZARR
    return lo <= _zarr_version() <= hi or probe_matches()


def zarr_group_files(
    attrs: Mapping[str, Any],
    n: int,
    px: int,
    shard: int,
    records: bool,
    compression: str = DEFAULT_COMPRESSION,
) -> dict[str, bytes]:
    """What zarr itself writes for such a group (in memory): the reference the files above must equal."""
    import zarr
    import zarr.storage

    from histobridge.tiling._shards import compressors

    store = zarr.storage.MemoryStore()
    group = zarr.create_group(store, zarr_format=3, attributes=dict(attrs))
    group.create_array(
        "tiles", shape=(n, px, px, 3), dtype="uint8", chunks=(1, px, px, 3), shards=(shard, px, px, 3),
        compressors=compressors(compression), fill_value=0, dimension_names=("tile", "y", "x", "c"),
    )  # fmt: skip
    rows = max(1, n)
    coords = group.create_array("coords", shape=(n, 4), dtype="float64", chunks=(rows, 4))
    labels = group.create_array("labels", shape=(n,), dtype="int16", chunks=(rows,))
    regions = group.create_array("regions", shape=(n,), dtype="int32", chunks=(rows,))
    if records and n:
        coords[:], labels[:], regions[:] = _probe_records(n)
    return {k: bytes(v.to_bytes()) for k, v in store._store_dict.items()}


def _probe_records(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coords = np.arange(n * 4, dtype=np.float64).reshape(n, 4) * 1.5
    labels = (np.arange(n) % 3).astype(np.int16)
    regions = np.zeros(n, np.int32)  # all fill: zarr writes no chunk for it
    return coords, labels, regions


def same_files(ours: Mapping[str, bytes], theirs: Mapping[str, bytes]) -> bool:
    """Same keys; ``zarr.json`` files parse equal, chunk files are byte-identical."""
    if set(ours) != set(theirs):
        return False
    for key, data in ours.items():
        if key.endswith("zarr.json"):
            if json.loads(data) != json.loads(theirs[key]):
                return False
        elif data != theirs[key]:
            return False
    return True


def probe_matches(n: int = 70, px: int = 4, shard: int = 64) -> bool:
    """Write small groups with zarr (in memory) and with the functions above, each compression; compare."""
    attrs = {"tile_px": px, "mpp": 0.25, "classes": ["a"], "complete": False}
    try:
        for compression in COMPRESSIONS:
            ours = group_files(attrs, n, px, shard, compression)
            ours.update(record_chunks(*_probe_records(n)))
            if not same_files(ours, zarr_group_files(attrs, n, px, shard, True, compression)):
                return False
        return True
    except Exception:  # any surprise in zarr's internals means: do not bypass it
        return False


__all__ = [
    "direct_allowed",
    "direct_group_problem",
    "dumps",
    "group_files",
    "group_meta",
    "is_v3_group",
    "probe_matches",
    "record_chunks",
    "record_meta",
    "same_files",
    "tiles_meta",
    "write_files",
    "zarr_group_files",
]
