"""The Zarr v3 tile store: the only writer of it, and the safe way to read it back.

Import from here; the code lives in ``_store_read`` (validated reading), ``_store_write`` (locked
image-group writer), ``_shards`` (the shard encoder) and ``synthetic_store`` (the sub-group writer).

Layout (DEVELOPERS.md): group ``"<entryID>"`` with ``tiles`` uint8 (N, px, px, 3), ``coords``
float64 (N, 4) x, y, w, h in level-0 QuPath px, ``labels`` int16 (N,), ``regions`` int32 (N,), and
attributes including ``complete``; generated tiles in its ``synthetic`` sub-group
(:mod:`histobridge.tiling.synthetic_store`).

Writing protocol, shared by both writers: a group is written under ``<name>.partial`` and moved
into place only after ``complete`` is set (old copy renamed aside, new one moved in, old one
deleted), so a crash never leaves a half-written group that looks finished. Each group is guarded
by an OS file lock (in ``.<store>.locks/`` beside the store), so a second process writing the same
group waits a little, then refuses naming the holder. Readers never trust ``complete`` alone: the
arrays must exist with the recorded shapes, and a group that fails that check is rewritten on rerun.

Tiles are stored one per chunk (random access for training), grouped into shards of up to
``SHARD_TILES`` tiles (~16 MB) so a store of a million tiles is not a million files, compressed with
Blosc-LZ4 (cheap to write and read; decoded JPEG tiles do not compress much with anything).
"""

from __future__ import annotations

from histobridge.tiling._shards import BLOSC, NO_CHUNK, encode_shard, shard_parts
from histobridge.tiling._store_read import (
    ARRAYS,
    PARTIAL_SUFFIX,
    REQUIRED_ATTRS,
    TileGroup,
    TileStore,
    array_problem,
    image_group_problem,
    member,
    open_store,
)
from histobridge.tiling._store_write import (
    LAYOUT_KEYS,
    LOCKS_SUFFIX,
    SHARD_BYTES,
    SHARD_TILES,
    GroupWriter,
    group_lock,
    jsonable,
    layout_changes,
    lock_dir,
    open_root,
    remove_group,
    remove_stale,
    remove_tree,
    shard_tiles,
    write_error,
)

__all__ = [
    "ARRAYS",
    "BLOSC",
    "LAYOUT_KEYS",
    "LOCKS_SUFFIX",
    "NO_CHUNK",
    "PARTIAL_SUFFIX",
    "REQUIRED_ATTRS",
    "SHARD_BYTES",
    "SHARD_TILES",
    "GroupWriter",
    "TileGroup",
    "TileStore",
    "array_problem",
    "encode_shard",
    "group_lock",
    "image_group_problem",
    "jsonable",
    "layout_changes",
    "lock_dir",
    "member",
    "open_root",
    "open_store",
    "remove_group",
    "remove_stale",
    "remove_tree",
    "shard_parts",
    "shard_tiles",
    "write_error",
]
