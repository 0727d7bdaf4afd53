"""Build a generator only after its declared shapes agree with the tensors a file holds.

The names and shapes a configuration implies are computed arithmetically (no memory), their total
is held to a budget and every shape is compared with the file's; only then is the model built on
the CPU and filled. A small file declaring a huge model is refused before anything large exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from histobridge.errors import CheckpointError, ModelError
from histobridge.models.stylegan2 import Generator, GeneratorConfig, state_shapes

MAX_GENERATOR_VALUES = 400_000_000  # 1.6 GB of float32; the largest published StyleGAN2 G has ~30 M


def build_checked(cfg: GeneratorConfig, tensors: Mapping[str, torch.Tensor], source: str) -> Generator:
    """A CPU :class:`Generator` for ``cfg`` filled from ``tensors``, which must match it exactly."""
    expected = state_shapes(cfg)
    total = sum(math.prod(s) for s in expected.values())
    if total > MAX_GENERATOR_VALUES:
        raise CheckpointError(
            f"{source}: the declared generator has {total} weights, more than the {MAX_GENERATOR_VALUES}"
            " this loader accepts"
        )
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: the tensors do not match the declared generator"
            f" (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    for name, shape in expected.items():
        got = tuple(tensors[name].shape)
        if got != shape:
            raise CheckpointError(
                f"{source}: tensor {name} has shape {list(got)}, the config needs {list(shape)}"
            )
        if not (tensors[name].is_floating_point() and torch.isfinite(tensors[name]).all()):
            raise CheckpointError(f"{source}: tensor {name} is not finite floating-point data")
    try:
        G = Generator(cfg)
    except ModelError as err:
        raise CheckpointError(f"{source}: {err}") from err
    G.load_state_dict(dict(tensors), strict=True)
    return G
