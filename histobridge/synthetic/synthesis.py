"""Synthetic tiles from a class-conditional generator, optionally seen and classified the way a tile
classifier sees real tissue (crop to its µm, resize to its px: :mod:`histobridge.synthetic.fov`).

Class lookup, labels, latents and rendering come from :mod:`histobridge.synthetic.conditioning`; the
field-of-view geometry and matched synthetic tiles for annotated regions are re-exported here so
callers find every synthesis operation in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from histobridge.synthetic import conditioning as cond
from histobridge.synthetic.fov import (
    CropBox,
    classifier_view,
    classify_tiles,
    crop_box,
    crop_then_resize,
    gan_tile_um,
)
from histobridge.synthetic.matched import MatchedReport, matched_synthetic

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator


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
    klass: int | str | float | np.ndarray | None,
    *,
    classifier: TileClassifier | None = None,
    gan_um: float | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
) -> SyntheticTiles:
    """One tile per seed under a class: a name or index, a weight vector or one row per seed
    (soft labels), or ``None`` for an unconditional generator."""
    seed_list = cond.check_seeds(seeds)
    weights = cond.class_rows(G, klass, len(seed_list))
    um = None if classifier is None else gan_tile_um(G, gan_um)
    if classifier is not None and um is not None:  # refuse a too-wide classifier before rendering
        crop_box(int(G.img_resolution), um, float(classifier.config.tile_um))
    raw = cond.render_uint8(
        G, seed_list, weights, truncation_psi=truncation_psi, noise_mode=noise_mode, batch_size=batch_size
    )
    ready = preds = None
    if classifier is not None and um is not None:
        ready, preds = classify_tiles(raw, um, classifier, batch_size)
    return SyntheticTiles(tuple(seed_list), weights, raw, ready, preds)


__all__ = [
    "CropBox",
    "MatchedReport",
    "SyntheticTiles",
    "classifier_view",
    "classify_tiles",
    "crop_box",
    "crop_then_resize",
    "gan_tile_um",
    "generate",
    "matched_synthetic",
]
