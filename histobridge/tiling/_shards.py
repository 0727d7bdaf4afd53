"""Whole tile shards encoded in the calling thread, byte for byte what zarr itself would write.

Why: zarr encodes chunks on its own event loop, so tiler threads queue behind it; Blosc releases
the GIL, so encoding a shard in the worker thread that read its tiles lets them compress in
parallel (``benchmarks/bench_tiling.py --store-only`` measures both paths in one run). Used only
when the array's metadata is exactly the layout below (checked, not assumed); any other layout,
and any partial shard, goes through zarr.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

# zarr releases whose shards were checked byte-identical to encode_shard (tests/test_tiling_store.py);
# on others a one-time in-memory comparison decides. zarr 3.4's fused codec pipeline writes these
# shards at ~0.3x the encoder's rate (benchmarks/bench_tiling.py --store-only), so the encoder stays.
VERIFIED_ZARR = ((3, 0), (3, 4))

BLOSC: dict[str, Any] = {"cname": "lz4", "clevel": 5, "shuffle": "noshuffle", "typesize": 1}
NO_CHUNK = 2**64 - 1


def compressors() -> tuple[Any, ...]:
    """The inner-chunk codecs of the ``tiles`` array."""
    import zarr.codecs

    # LZ4 inside Blosc: ~0.1 ms per 256-px tile against ~0.35 ms for zstd-1, and decoded H&E
    # tiles shrink about as much (to ~80-90 %) either way, so the cheaper codec wins.
    return (zarr.codecs.BloscCodec(**BLOSC),)


def encode_shard(tiles: np.ndarray, n_chunks: int) -> bytes:
    """Bytes of one Zarr v3 shard of ``tiles``: one tile per inner chunk, Blosc-LZ4, index + crc32c last."""
    return b"".join(shard_parts(tiles, n_chunks))


def shard_parts(tiles: np.ndarray, n_chunks: int) -> list[bytes]:
    """:func:`encode_shard` as a list of byte strings (written without joining 10+ MB)."""
    import google_crc32c
    from numcodecs import Blosc

    codec = Blosc(cname=BLOSC["cname"], clevel=BLOSC["clevel"], shuffle=Blosc.NOSHUFFLE)
    parts: list[bytes] = [bytes(codec.encode(np.ascontiguousarray(t))) for t in tiles]
    index = np.full((n_chunks, 2), NO_CHUNK, dtype="<u8")
    offset = 0
    for i, part in enumerate(parts):
        index[i] = (offset, len(part))
        offset += len(part)
    index_bytes = index.tobytes()
    crc = np.array([google_crc32c.value(index_bytes)], dtype="<u4").tobytes()
    return [*parts, index_bytes, crc]


def uses_default_layout(arr: Any) -> bool:
    """True when ``arr``'s metadata is exactly what :func:`encode_shard` writes."""
    try:
        meta = arr.metadata.to_dict()
        codecs = meta["codecs"]
        sharding = codecs[0]["configuration"]
        inner = sharding["codecs"]
        ok = (
            len(codecs) == 1
            and codecs[0]["name"] == "sharding_indexed"
            and [c["name"] for c in inner] == ["bytes", "blosc"]
            and {k: inner[1]["configuration"].get(k) for k in BLOSC} == BLOSC
            and [c["name"] for c in sharding["index_codecs"]] == ["bytes", "crc32c"]
            and sharding["index_location"] == "end"
            and meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}
        )
        return bool(ok)
    except (KeyError, IndexError, TypeError, AttributeError):
        return False


def _zarr_version() -> tuple[int, int]:
    import zarr

    try:
        major, minor = (int(p) for p in zarr.__version__.split(".")[:2])
    except ValueError:
        return (0, 0)
    return major, minor


@functools.lru_cache(maxsize=1)
def encoder_allowed() -> bool:
    """Whether whole shards may bypass zarr: a verified zarr release, or a probe shard came out equal."""
    lo, hi = VERIFIED_ZARR
    return lo <= _zarr_version() <= hi or probe_matches()


def probe_matches() -> bool:
    """Write a 3-of-4-tile shard with zarr (in memory) and with :func:`encode_shard`; compare bytes."""
    import zarr
    import zarr.storage

    tiles = (np.arange(3 * 4 * 4 * 3, dtype=np.uint8) % 7).reshape(3, 4, 4, 3)
    tiles[1] = 200  # one compressible and two less compressible chunks
    store = zarr.storage.MemoryStore()
    try:
        arr = zarr.create_array(
            store, shape=(3, 4, 4, 3), dtype="uint8", chunks=(1, 4, 4, 3), shards=(4, 4, 4, 3),
            compressors=compressors(), fill_value=0, zarr_format=3,
        )  # fmt: skip
        arr[:] = tiles
        key = "c/0/0/0/0"
        ours = encode_shard(tiles, 4)
        theirs = store._store_dict.get(key)
        return uses_default_layout(arr) and theirs is not None and bytes(theirs.to_bytes()) == ours
    except Exception:  # any surprise in zarr's internals means: do not bypass it
        return False


__all__ = [
    "BLOSC",
    "NO_CHUNK",
    "VERIFIED_ZARR",
    "compressors",
    "encode_shard",
    "encoder_allowed",
    "probe_matches",
    "shard_parts",
    "uses_default_layout",
]
