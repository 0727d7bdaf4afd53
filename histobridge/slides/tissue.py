"""Tissue detection on a thumbnail (numpy only) and its outline as level-0 polygons.

Stained tissue is coloured while glass is near-white or grey, so saturation separates them better
than brightness (brightness also picks up dust and shadows). The threshold is a fixed saturation
floor that any stain clears and clean glass does not. Otsu's threshold is NOT the cut: on a slide
that is all tissue it splits the tissue into a darker and a paler half, and with glass present it
lands between glass and the *average* tissue, dropping pale stroma. Otsu only serves to find the
glass population: when its lower class is bright and narrow (glass, possibly tinted), the cut is
raised just above that glass, never above Otsu's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

if TYPE_CHECKING:
    from histobridge.slides.slide import Slide

MIN_SATURATION = 0.07  # pale eosin on a thumbnail stays above this; clean glass (with JPEG noise) below
GLASS_MIN_FRACTION = 0.05
GLASS_MIN_BRIGHTNESS = 200
GLASS_MAX_SPREAD = 0.03
DARK_GRAY = 60


def otsu_threshold(
    values: np.ndarray, bins: int = 256, value_range: tuple[float, float] = (0.0, 1.0)
) -> float:
    """Otsu's threshold of ``values`` (maximises the between-class variance of the histogram)."""
    hist, edges = np.histogram(values, bins=bins, range=value_range)
    hist = hist.astype(np.float64)
    total = hist.sum()
    if total == 0:
        return float(value_range[1])
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * centers)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1] of an (H, W, 3) uint8 image."""
    arr = rgb[..., :3].astype(np.float32)
    mx = arr.max(axis=-1)
    mn = arr.min(axis=-1)
    sat: np.ndarray = np.divide(mx - mn, mx, out=np.zeros_like(mx), where=mx > 0)
    return sat


def _smooth(mask: np.ndarray) -> np.ndarray:
    """3x3 majority vote: removes isolated pixels and fills pinholes without scipy."""
    padded = np.pad(mask.astype(np.uint8), 1)
    h, w = mask.shape
    count = np.zeros((h, w), np.uint8)
    for dy in range(3):
        for dx in range(3):
            count += padded[dy : dy + h, dx : dx + w]
    smoothed: np.ndarray = count >= 5
    return smoothed


def glass_threshold(rgb: np.ndarray, sat: np.ndarray, floor: float) -> float:
    """Saturation above which a pixel is not glass: ``floor``, raised above tinted glass if there is any.

    Glass is the lower Otsu class only when that class is bright (median max-channel >= 200) and
    narrow (robust spread <= 0.03); the cut is then its median + 4 spreads, kept within
    [``floor``, Otsu]. Anything else (no glass, all tissue) keeps the floor.
    """
    otsu = otsu_threshold(sat)
    low = sat <= otsu
    if low.mean() < GLASS_MIN_FRACTION or otsu <= floor:
        return floor
    low_sat = sat[low]
    centre = float(np.median(low_sat))
    spread = 1.4826 * float(np.median(np.abs(low_sat - centre)))
    bright = float(np.median(rgb[..., :3].max(axis=-1)[low]))
    if bright < GLASS_MIN_BRIGHTNESS or spread > GLASS_MAX_SPREAD:
        return floor
    return float(min(max(floor, centre + 4 * spread), otsu))


def tissue_mask(rgb: np.ndarray, *, min_saturation: float = MIN_SATURATION) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail (True = tissue)."""
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"tissue_mask expects an (H, W, 3) RGB image, got shape {rgb.shape}")
    sat = saturation(rgb)
    gray = rgb[..., :3].astype(np.float32).mean(axis=-1)
    threshold = glass_threshold(rgb, sat, min_saturation)
    # Very dark pixels (pen, folds) are kept as tissue; pure black padding is not.
    mask = ((sat > threshold) | ((gray < DARK_GRAY) & (sat > 0.02))) & (gray > 10)
    return _smooth(mask)


def mask_to_geometry(mask: np.ndarray, scale: float = 1.0, *, min_area_px: float = 4.0) -> MultiPolygon:
    """Vectorise a boolean mask into polygons (holes kept), scaled by ``scale``, specks dropped.

    The pixel edges between tissue and background are unit segments that only meet at their ends,
    so GEOS can polygonize them directly; each face is tissue or glass throughout and is kept when
    an interior point of it falls on tissue. Much faster than a union of per-pixel-run boxes.
    """
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), bool)
    padded[1:-1, 1:-1] = mask
    hy, hx = np.nonzero(padded[1:, 1:-1] != padded[:-1, 1:-1])  # horizontal edge at y, from x to x+1
    vy, vx = np.nonzero(padded[1:-1, 1:] != padded[1:-1, :-1])  # vertical edge at x, from y to y+1
    if len(hy) == 0:
        return MultiPolygon()
    segments = np.empty((len(hy) + len(vy), 2, 2), np.float64)
    segments[: len(hy), 0] = np.c_[hx, hy]
    segments[: len(hy), 1] = np.c_[hx + 1, hy]
    segments[len(hy) :, 0] = np.c_[vx, vy]
    segments[len(hy) :, 1] = np.c_[vx, vy + 1]
    edges = np.asarray(shapely.linestrings(segments), dtype=object)
    lines = shapely.get_parts(shapely.line_merge(shapely.multilinestrings(edges)))
    faces = shapely.get_parts(shapely.polygonize(lines))
    pts = shapely.get_coordinates(shapely.point_on_surface(faces))
    tissue = mask[np.clip(pts[:, 1].astype(int), 0, h - 1), np.clip(pts[:, 0].astype(int), 0, w - 1)]
    faces = faces[tissue & (shapely.area(faces) >= min_area_px)]
    if scale != 1.0:
        faces = shapely.transform(faces, lambda xy: xy * scale)
    faces = shapely.simplify(faces, scale * 0.5)
    polys = [g for f in faces for g in shapely.get_parts(f) if isinstance(g, Polygon) and not g.is_empty]
    return MultiPolygon(polys)


def thumbnail_tissue(thumbnail: tuple[np.ndarray, float], *, min_area_px: float = 16.0) -> MultiPolygon:
    """Tissue outline in level-0 QuPath pixels from a thumbnail and its downsample.

    Callers that already hold the thumbnail (the heatmap draws its overlays on it, the server keeps
    it per image) get the outline without reading the slide's overview again.
    """
    thumb, ds = thumbnail
    return mask_to_geometry(tissue_mask(thumb), ds, min_area_px=min_area_px)


def tissue_geometry(slide: Slide, *, max_px: int = 1024, min_area_px: float = 16.0) -> MultiPolygon:
    """Tissue outline of ``slide`` as a MultiPolygon in level-0 QuPath pixels (from a thumbnail)."""
    return thumbnail_tissue(slide.thumbnail(max_px), min_area_px=min_area_px)
