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

from histobridge.errors import InputError

# zarr releases whose shards were checked byte-identical to encode_shard (tests/test_tiling_store.py);
# on others a one-time in-memory comparison decides. zarr 3.4's fused codec pipeline writes these
# shards at ~0.3x the encoder's rate (benchmarks/bench_tiling.py --store-only), so the encoder stays.
VERIFIED_ZARR = ((3, 0), (3, 4))

BLOSC: dict[str, Any] = {"cname": "lz4", "clevel": 5, "shuffle": "noshuffle", "typesize": 1}
NO_CHUNK = 2**64 - 1
# Tile compression choices: Blosc-LZ4 (the default) or none. Decoded H&E barely compresses (LZ4 keeps
# ~89 % of the bytes) while Blosc costs about a fifth of a native tiler's CPU; `none` trades ~12 %
# more disk for that time (benchmarks/bench_tiling.py --codecs measures both on real H&E tiles).
COMPRESSIONS = ("lz4", "none")
DEFAULT_COMPRESSION = "lz4"


def check_compression(compression: str) -> str:
    """``compression`` itself when it is one of :data:`COMPRESSIONS`; InputError otherwise."""
    if compression not in COMPRESSIONS:
        raise InputError(f"tile compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    return compression


def compressors(compression: str = DEFAULT_COMPRESSION) -> tuple[Any, ...]:
    """The inner-chunk codecs of the ``tiles`` array."""
    import zarr.codecs

    # LZ4 inside Blosc: ~0.1 ms per 256-px tile against ~0.8 ms for zstd-1, which shrinks decoded
    # H&E only a little more (to ~85 % against ~89 %), so the cheaper codec wins.
    return (zarr.codecs.BloscCodec(**BLOSC),) if check_compression(compression) == "lz4" else ()


def encode_shard(tiles: np.ndarray, n_chunks: int, compression: str = DEFAULT_COMPRESSION) -> bytes:
    """Bytes of one Zarr v3 shard of ``tiles``: one tile per inner chunk, Blosc-LZ4 or raw, index last."""
    return b"".join(bytes(p) for p in shard_parts(tiles, n_chunks, compression))


def shard_parts(tiles: np.ndarray, n_chunks: int, compression: str = DEFAULT_COMPRESSION) -> list[Any]:
    """:func:`encode_shard` as a list of buffers (written without joining 10+ MB).

    Uncompressed tiles are consecutive in a C-contiguous batch, so they go out as one view of it.
    """
    import google_crc32c

    tiles = np.ascontiguousarray(tiles)
    index = np.full((n_chunks, 2), NO_CHUNK, dtype="<u8")
    parts: list[Any]
    if check_compression(compression) == "none":
        size = tiles[0].nbytes if len(tiles) else 0
        index[: len(tiles), 0] = np.arange(len(tiles), dtype="<u8") * size
        index[: len(tiles), 1] = size
        parts = [tiles.reshape(-1).data] if len(tiles) else []
    else:
        from numcodecs import Blosc

        codec = Blosc(cname=BLOSC["cname"], clevel=BLOSC["clevel"], shuffle=Blosc.NOSHUFFLE)
        parts = [bytes(codec.encode(t)) for t in tiles]
        offset = 0
        for i, part in enumerate(parts):
            index[i] = (offset, len(part))
            offset += len(part)
    index_bytes = index.tobytes()
    crc = np.array([google_crc32c.value(index_bytes)], dtype="<u4").tobytes()
    return [*parts, index_bytes, crc]


def uses_default_layout(arr: Any, compression: str = DEFAULT_COMPRESSION) -> bool:
    """True when ``arr``'s metadata is exactly what :func:`encode_shard` writes with ``compression``."""
    try:
        meta = arr.metadata.to_dict()
        codecs = meta["codecs"]
        sharding = codecs[0]["configuration"]
        inner = sharding["codecs"]
        names = ["bytes", "blosc"] if compression == "lz4" else ["bytes"]
        ok = (
            len(codecs) == 1
            and codecs[0]["name"] == "sharding_indexed"
            and [c["name"] for c in inner] == names
            and (compression != "lz4" or {k: inner[1]["configuration"].get(k) for k in BLOSC} == BLOSC)
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


@functools.cache
def encoder_allowed(compression: str = DEFAULT_COMPRESSION) -> bool:
    """Whether whole shards may bypass zarr: a verified zarr release, or a probe shard came out equal."""
    lo, hi = VERIFIED_ZARR
    return lo <= _zarr_version() <= hi or probe_matches(compression)


def probe_matches(compression: str = DEFAULT_COMPRESSION) -> bool:
    """Write a 3-of-4-tile shard with zarr (in memory) and with :func:`encode_shard`; compare bytes."""
    import zarr
    import zarr.storage

    tiles = (np.arange(3 * 4 * 4 * 3, dtype=np.uint8) % 7).reshape(3, 4, 4, 3)
    tiles[1] = 200  # one compressible and two less compressible chunks
    store = zarr.storage.MemoryStore()
    try:
        arr = zarr.create_array(
            store, shape=(3, 4, 4, 3), dtype="uint8", chunks=(1, 4, 4, 3), shards=(4, 4, 4, 3),
            compressors=compressors(compression), fill_value=0, zarr_format=3,
        )  # fmt: skip
        arr[:] = tiles
        key = "c/0/0/0/0"
        ours = encode_shard(tiles, 4, compression)
        theirs = store._store_dict.get(key)
        return (
            uses_default_layout(arr, compression) and theirs is not None and bytes(theirs.to_bytes()) == ours
        )
    except Exception:  # any surprise in zarr's internals means: do not bypass it
        return False


__all__ = [
    "BLOSC",
    "COMPRESSIONS",
    "DEFAULT_COMPRESSION",
    "NO_CHUNK",
    "VERIFIED_ZARR",
    "check_compression",
    "compressors",
    "encode_shard",
    "encoder_allowed",
    "probe_matches",
    "shard_parts",
    "uses_default_layout",
]
