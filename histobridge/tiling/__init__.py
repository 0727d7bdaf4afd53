"""Tile grids over annotations and tissue, the Zarr tile store, and the project tiler."""

from __future__ import annotations

from histobridge.tiling.grid import TileSpec, grid_for_geometry
from histobridge.tiling.options import TilingOptions
from histobridge.tiling.store import GroupWriter, TileGroup, TileStore, open_store
from histobridge.tiling.tiler import TiledImage, TilingReport, tile_project

__all__ = [
    "GroupWriter",
    "TileGroup",
    "TileSpec",
    "TileStore",
    "TiledImage",
    "TilingOptions",
    "TilingReport",
    "grid_for_geometry",
    "open_store",
    "tile_project",
]
