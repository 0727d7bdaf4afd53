"""Tile grids over annotations and tissue, the Zarr tile store, and the project tiler.

Names resolve on first use, so ``histobridge.tiling.grid`` (shapely only) can be imported where the
store's zarr and the slide readers are not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from histobridge._lazy import lazy_getattr

if TYPE_CHECKING:
    from histobridge.tiling.grid import TileSpec, grid_for_geometry
    from histobridge.tiling.options import TilingOptions
    from histobridge.tiling.store import GroupWriter, TileGroup, TileStore, open_store
    from histobridge.tiling.tiler import TiledImage, TilingReport, tile_project

_LAZY = {
    "TileSpec": "histobridge.tiling.grid",
    "grid_for_geometry": "histobridge.tiling.grid",
    "TilingOptions": "histobridge.tiling.options",
    "GroupWriter": "histobridge.tiling.store",
    "TileGroup": "histobridge.tiling.store",
    "TileStore": "histobridge.tiling.store",
    "open_store": "histobridge.tiling.store",
    "TiledImage": "histobridge.tiling.tiler",
    "TilingReport": "histobridge.tiling.tiler",
    "tile_project": "histobridge.tiling.tiler",
}

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

__getattr__ = lazy_getattr(__name__, _LAZY)
