"""Models: tile classifiers and class-conditional StyleGAN2 generators.

Nothing heavy is imported here; names resolve on first use so ``import histobridge.models``
stays cheap (no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from histobridge._lazy import lazy_getattr

if TYPE_CHECKING:
    from histobridge.models.checkpoints import load_generator, require_tile_um, save_generator
    from histobridge.models.stylegan2 import (
        GanMeta,
        Generator,
        GeneratorConfig,
        onehot,
        to_uint8,
        z_from_seed,
        z_from_seeds,
    )

_LAZY = {
    "GanMeta": "histobridge.models.stylegan2",
    "Generator": "histobridge.models.stylegan2",
    "GeneratorConfig": "histobridge.models.stylegan2",
    "onehot": "histobridge.models.stylegan2",
    "to_uint8": "histobridge.models.stylegan2",
    "z_from_seed": "histobridge.models.stylegan2",
    "z_from_seeds": "histobridge.models.stylegan2",
    "load_generator": "histobridge.models.checkpoints",
    "require_tile_um": "histobridge.models.checkpoints",
    "save_generator": "histobridge.models.checkpoints",
}

__all__ = [
    "GanMeta",
    "Generator",
    "GeneratorConfig",
    "load_generator",
    "onehot",
    "require_tile_um",
    "save_generator",
    "to_uint8",
    "z_from_seed",
    "z_from_seeds",
]

__getattr__ = lazy_getattr(__name__, _LAZY)
