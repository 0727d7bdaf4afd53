"""Slide readers (tiffslide or openslide behind one interface) and tissue detection."""

from __future__ import annotations

from histobridge.slides.slide import Slide, open_slide, resample_box
from histobridge.slides.tissue import thumbnail_tissue, tissue_geometry, tissue_mask

__all__ = ["Slide", "open_slide", "resample_box", "thumbnail_tissue", "tissue_geometry", "tissue_mask"]
