"""Pictures people look at: tile montages, strips, grids and heatmap overlays (PIL only)."""
