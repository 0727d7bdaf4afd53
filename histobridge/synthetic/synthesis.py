"""Synthetic tiles from a class-conditional generator, matched to a classifier's field of view.

A GAN tile usually covers more tissue than a classifier tile (the paper's lung GAN: 512 px over
400 µm; its classifier: 299 px over 302 µm). Following the paper (paper-method.md §3), a GAN image is
**centre-cropped to the classifier's µm and then resized to its px**; resizing the whole tile would
show the classifier tissue at the wrong scale. histobridge resizes with Pillow's BICUBIC filter on
the uint8 image, which is antialiased when shrinking (its kernel support scales with the factor),
matching the paper's "bicubic with antialiasing". The uncropped image is always kept for display.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from histobridge.errors import CalibrationError, InputError, ModelError

# Matched synthetic tiles for annotated regions live in their own module (store I/O, resume);
# re-exported here so callers find every synthesis operation in one place.
from histobridge.synthetic.matched import MatchedReport, matched_synthetic

if TYPE_CHECKING:
    import torch

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


# ----------------------------------------------------------------------------- classes and labels


def num_classes(G: Generator) -> int:
    """Classes the generator can be conditioned on (a scalar-label model has two ends)."""
    if getattr(G.mapping, "interp_embed", False):
        return 2
    return int(G.c_dim)


def class_names(G: Generator) -> tuple[str, ...]:
    """The generator's class names, or ``class0``… when its metadata has none."""
    n = num_classes(G)
    names = tuple(getattr(getattr(G, "meta", None), "class_names", ()) or ())
    return names if len(names) == n else tuple(f"class{i}" for i in range(n))


def resolve_class(G: Generator, value: int | str) -> int:
    """A class index from an index or a name (case-insensitive), with a clear error otherwise."""
    names = class_names(G)
    if not names:
        raise ModelError("this generator is unconditional (c_dim=0); it has no classes to choose from")
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().isdigit()):
        idx = int(value)
        if not 0 <= idx < len(names):
            raise InputError(f"class index {idx} is out of range; the generator has classes {list(names)}")
        return idx
    lowered = [n.lower() for n in names]
    key = str(value).strip().lower()
    if key in lowered:
        return lowered.index(key)
    raise InputError(f"unknown class {value!r}; the generator has classes {list(names)}")


def class_weights(n_classes: int, index: int, n: int = 1) -> np.ndarray:
    """[n, n_classes] one-hot class weights."""
    w = np.zeros((n, n_classes), dtype=np.float64)
    w[:, index] = 1.0
    return w


def labels_for(G: Generator, weights: np.ndarray | Sequence[Sequence[float]]) -> torch.Tensor:
    """Generator labels c from class weights (rows summing to 1): soft one-hot, or a scalar for
    scalar-label models (weight of the second end), so class blending is a weighted label."""
    import torch

    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != num_classes(G):
        raise InputError(f"class weights must be [N, {num_classes(G)}], got shape {w.shape}")
    if getattr(G.mapping, "interp_embed", False):
        w = w[:, 1:2]
    return torch.from_numpy(w).to(torch.float32)


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


# ----------------------------------------------------------------------------- generation


def _device(G: Generator) -> torch.device:
    import torch

    for p in G.parameters():
        return p.device
    return torch.device("cpu")


def render(
    G: Generator,
    z: torch.Tensor,
    c: torch.Tensor | None,
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
) -> torch.Tensor:
    """Float NCHW images on the CPU for latents ``z`` and labels ``c``, in batches, without autograd."""
    import torch

    dev = _device(G)
    out = []
    with torch.no_grad():
        for i in range(0, z.shape[0], max(1, batch_size)):
            zb = z[i : i + batch_size].to(dev)
            cb = None if c is None else c[i : i + batch_size].to(dev)
            out.append(G(zb, cb, truncation_psi=truncation_psi, noise_mode=noise_mode).cpu())
    if not out:
        return torch.zeros((0, G.img_channels, G.img_resolution, G.img_resolution))
    return torch.cat(out)


def render_ws(
    G: Generator, ws: torch.Tensor, *, noise_mode: str = "const", batch_size: int = 16
) -> torch.Tensor:
    """Float NCHW images from given w vectors [N, num_ws, w_dim] (used by layer blending)."""
    import torch

    dev = _device(G)
    out = []
    with torch.no_grad():
        for i in range(0, ws.shape[0], max(1, batch_size)):
            out.append(G.synthesis(ws[i : i + batch_size].to(dev), noise_mode=noise_mode).cpu())
    return torch.cat(out)


def mapping_ws(
    G: Generator, z: torch.Tensor, c: torch.Tensor | None, *, truncation_psi: float = 1.0
) -> torch.Tensor:
    """w vectors [N, num_ws, w_dim] on the CPU for latents and labels, without autograd."""
    import torch

    dev = _device(G)
    with torch.no_grad():
        return G.mapping(z.to(dev), None if c is None else c.to(dev), truncation_psi=truncation_psi).cpu()


def latents(G: Generator, seeds: Sequence[int]) -> torch.Tensor:
    """[N, z_dim] latents, one ``RandomState(seed)`` each (the paper's seeds)."""
    from histobridge.models.stylegan2 import z_from_seeds

    return z_from_seeds([int(s) for s in seeds], G.z_dim)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """NCHW floats → NHWC uint8 with the generator module's convention."""
    from histobridge.models.stylegan2 import to_uint8 as _to_uint8

    return _to_uint8(images)


def classifier_view(raw: np.ndarray, gan_um: float, classifier: TileClassifier) -> np.ndarray:
    """GAN tiles (uint8 NHWC) as the classifier sees them: crop to its µm, resize to its px."""
    cfg = classifier.config
    return crop_then_resize(raw, gan_um, float(cfg.tile_um), int(cfg.patch_size_pixels))


@dataclass(frozen=True)
class SyntheticTiles:
    """Generated tiles and how they were made: ``raw`` full GAN tiles, ``ready`` the classifier view."""

    seeds: tuple[int, ...]
    class_weights: np.ndarray  # (N, n_classes)
    raw: np.ndarray  # (N, gan_px, gan_px, 3) uint8
    ready: np.ndarray | None = None  # (N, px, px, 3) uint8, when a classifier was given
    predictions: np.ndarray | None = None  # (N, C)


def generate(
    G: Generator,
    seeds: Sequence[int],
    klass: int | str | np.ndarray,
    *,
    classifier: TileClassifier | None = None,
    gan_um: float | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
) -> SyntheticTiles:
    """Generate one tile per seed under a class (index, name, or a weight vector over classes)."""
    seeds = [int(s) for s in seeds]
    n_cls = num_classes(G)
    if isinstance(klass, np.ndarray):
        weights = np.broadcast_to(np.asarray(klass, dtype=np.float64), (len(seeds), n_cls)).copy()
    else:
        weights = class_weights(n_cls, resolve_class(G, klass), len(seeds))
    c = labels_for(G, weights) if n_cls else None
    images = render(
        G, latents(G, seeds), c, truncation_psi=truncation_psi, noise_mode=noise_mode, batch_size=batch_size
    )
    raw = to_uint8(images)
    ready = preds = None
    if classifier is not None:
        ready = classifier_view(raw, gan_tile_um(G, gan_um), classifier)
        preds = np.asarray(classifier.predict(ready, batch_size=batch_size), dtype=np.float64)
    return SyntheticTiles(tuple(seeds), weights, raw, ready, preds)


def generator_record(G: Generator, gan_um: float | None = None) -> dict[str, Any]:
    """What to store next to outputs so they can be reproduced."""
    meta = getattr(G, "meta", None)
    um = getattr(meta, "tile_um", None) if gan_um is None else gan_um
    return {
        "source": getattr(meta, "source", ""),
        "variant": getattr(meta, "variant", ""),
        "class_names": list(class_names(G)),
        "tile_px": int(G.img_resolution),
        "tile_um": None if um is None else float(um),
        "num_ws": int(G.num_ws),
    }


__all__ = [
    "CropBox",
    "MatchedReport",
    "SyntheticTiles",
    "class_names",
    "class_weights",
    "classifier_view",
    "crop_box",
    "crop_then_resize",
    "gan_tile_um",
    "generate",
    "generator_record",
    "labels_for",
    "latents",
    "mapping_ws",
    "matched_synthetic",
    "num_classes",
    "render",
    "render_ws",
    "resolve_class",
]
