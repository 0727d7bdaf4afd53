"""Tile grids over annotations and tissue, the Zarr tile store, and the project tiler."""

from __future__ import annotations

from histobridge.tiling.store import GroupWriter, TileGroup, TileStore, open_store

__all__ = ["GroupWriter", "TileGroup", "TileStore", "open_store"]
