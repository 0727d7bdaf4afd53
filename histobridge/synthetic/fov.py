"""Matching a GAN tile to a classifier's field of view.

A GAN tile usually covers more tissue than a classifier tile (the paper's lung GAN: 512 px over
400 µm; its classifier: 299 px over 302 µm). Following the authors' code (docs/method.md), a GAN
image is **centre-cropped to the classifier's µm and then resized to its px**; resizing the whole tile would
show the classifier tissue at the wrong scale. histobridge resizes with Pillow's BICUBIC filter on
the uint8 image, which is antialiased when shrinking (its kernel support scales with the factor),
matching the paper's "bicubic with antialiasing". The uncropped image is always kept for display.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from histobridge.errors import CalibrationError, InputError, ModelError

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator

log = logging.getLogger(__name__)

_UM_TOLERANCE = 1e-6  # relative; µm values read from JSON may carry float noise


@dataclass(frozen=True)
class CropBox:
    """The centred square taken from a GAN tile: ``size`` px starting at (``left``, ``top``)."""

    left: int
    top: int
    size: int
    fraction: float


def crop_box(gan_px: int, gan_um: float, target_um: float) -> CropBox:
    """The paper's crop: ``w = int(f·gan_px)``, ``left = top = int(gan_px/2 − w/2)``, ``f = target/gan``.

    Refuses a target wider than the GAN tile: enlarging would invent tissue the GAN never drew.
    """
    if gan_px <= 0:
        raise InputError(f"GAN tile size must be positive, got {gan_px} px")
    if not (math.isfinite(gan_um) and gan_um > 0 and math.isfinite(target_um) and target_um > 0):
        raise CalibrationError(
            f"tile sizes must be positive µm, got GAN {gan_um!r} µm, target {target_um!r} µm"
        )
    if target_um > gan_um * (1 + _UM_TOLERANCE):
        raise ModelError(
            f"the target field of view ({target_um:g} µm) is wider than the GAN tile ({gan_um:g} µm); "
            "a GAN image can only be cropped to a smaller field, never extended"
        )
    f = min(target_um / gan_um, 1.0)
    size = gan_px if f >= 1 - _UM_TOLERANCE else int(f * gan_px + 1e-9)
    size = max(size, 1)
    offset = int(gan_px / 2 - size / 2)
    return CropBox(left=offset, top=offset, size=size, fraction=f)


def crop_then_resize(images: np.ndarray, gan_um: float, target_um: float, target_px: int) -> np.ndarray:
    """Centre-crop uint8 NHWC GAN tiles to ``target_um``, then resize to ``target_px`` (bicubic, antialiased).

    Cropping commutes with the float→uint8 conversion (both are per pixel), so the paper's order
    (crop, uint8, resize) is kept by passing already converted images.
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3:
        raise InputError(
            f"crop_then_resize needs uint8 NHWC RGB images, got {arr.dtype} {arr.shape}; convert generator "
            "output with histobridge.models.stylegan2.to_uint8 first"
        )
    if arr.shape[1] != arr.shape[2]:
        raise InputError(f"GAN tiles must be square, got {arr.shape[2]}x{arr.shape[1]} px")
    if target_px <= 0:
        raise InputError(f"target size must be positive, got {target_px} px")
    box = crop_box(arr.shape[1], gan_um, target_um)
    crop = arr[:, box.top : box.top + box.size, box.left : box.left + box.size]
    if box.size == target_px:
        return np.ascontiguousarray(crop)
    out = np.empty((arr.shape[0], target_px, target_px, 3), dtype=np.uint8)
    for i, tile in enumerate(crop):
        img = Image.fromarray(np.ascontiguousarray(tile), "RGB")
        out[i] = np.asarray(img.resize((target_px, target_px), Image.Resampling.BICUBIC))
    return out


def gan_tile_um(G: Generator, gan_um: float | None = None) -> float:
    """The GAN tile's physical width: the explicit override, else the generator's metadata."""
    meta_um = getattr(getattr(G, "meta", None), "tile_um", None)
    if gan_um is not None:
        if meta_um is not None and abs(float(meta_um) - float(gan_um)) > _UM_TOLERANCE * float(gan_um):
            log.warning("using gan_um=%g µm instead of the generator's recorded %g µm", gan_um, meta_um)
        return float(gan_um)
    if meta_um is None:
        source = getattr(getattr(G, "meta", None), "source", "") or "the generator"
        raise CalibrationError(f"{source} does not record its tile size in µm; pass gan_um (--gan-um)")
    return float(meta_um)


def classifier_view(raw: np.ndarray, gan_um: float, classifier: TileClassifier) -> np.ndarray:
    """GAN tiles (uint8 NHWC) as the classifier sees them: crop to its µm, resize to its px."""
    cfg = classifier.config
    return crop_then_resize(raw, gan_um, float(cfg.tile_um), int(cfg.patch_size_pixels))


def classify_tiles(
    raw: np.ndarray, gan_um: float, classifier: TileClassifier, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """(classifier view, float64 predictions) of uint8 GAN tiles."""
    ready = classifier_view(raw, gan_um, classifier)
    return ready, np.asarray(classifier.predict(ready, batch_size=batch_size), dtype=np.float64)


__all__ = [
    "CropBox",
    "classifier_view",
    "classify_tiles",
    "crop_box",
    "crop_then_resize",
    "gan_tile_um",
]
