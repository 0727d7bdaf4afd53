"""Class-conditional residual discriminator for training the StyleGAN2 generator.

Follows the architecture described in the StyleGAN2 paper (Karras et al., CVPR 2020, residual
discriminator, config E/F) with the projection-style conditioning of StyleGAN2-ADA (Karras et al.,
NeurIPS 2020): image features are projected onto a class map produced from the label by a small
mapping network. Equalised learning rate (weights scaled at run time) keeps the learning speed of
every layer alike under Adam. Only used for training; inference never needs it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from histobridge.errors import ModelError
from histobridge.models._equalized import EqualConv2d, FullyConnectedLayer

_SQRT2 = math.sqrt(2.0)
_SQRT_HALF = math.sqrt(0.5)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Sizes of the discriminator; mirrors the generator's channel rule ``min(base // res, max)``."""

    c_dim: int
    img_resolution: int
    img_channels: int = 3
    channel_base: int = 4096
    channel_max: int = 128
    cmap_dim: int | None = None  # None: the 4-px channel count
    mapping_layers: int = 2
    mbstd_group: int = 4
    mbstd_channels: int = 1

    def __post_init__(self) -> None:
        res = self.img_resolution
        if res < 8 or res & (res - 1):
            raise ModelError(f"discriminator img_resolution must be a power of two >= 8, got {res!r}")
        if self.c_dim < 0 or self.channel_base <= 0 or self.channel_max <= 0:
            raise ModelError(f"invalid discriminator sizes: {self}")

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with the gain that keeps activations at unit variance."""
    return F.leaky_relu(x, 0.2) * _SQRT2


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3×3 convs (the second halves the size) plus a 1×1 down-sampled shortcut."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, down=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = cast(torch.Tensor, self.skip(x))
        x = _lrelu(self.conv1(_lrelu(self.conv0(x))))
        return (x + y) * _SQRT_HALF


def minibatch_stddev(x: torch.Tensor, group: int, channels: int) -> torch.Tensor:
    """Append the per-group standard deviation of features, so D can see a lack of variety."""
    n, c, h, w = x.shape
    g = min(group, n)
    while n % g:
        g -= 1
    y = x.reshape(g, n // g, channels, c // channels, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # [n/g, channels]
    y = y.reshape(n // g, channels, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class LabelMapping(nn.Module):
    """Label → class map (``cmap``) that the final features are projected onto."""

    def __init__(self, c_dim: int, cmap_dim: int, layers: int):
        super().__init__()
        self.embed = FullyConnectedLayer(c_dim, cmap_dim)
        self.fcs = nn.ModuleList(FullyConnectedLayer(cmap_dim, cmap_dim, lr_mul=0.01) for _ in range(layers))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        x = cast(torch.Tensor, self.embed(c.to(torch.float32)))
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for fc in self.fcs:
            x = _lrelu(fc(x))
        return x


class Discriminator(nn.Module):
    """``D(img, c)`` → one realness logit per image (NCHW images in [−1, 1], one-hot ``c``)."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        cfg = config
        top = cfg.img_resolution
        self.from_rgb = EqualConv2d(cfg.img_channels, cfg.channels(top), 1)
        blocks = []
        res = top
        while res > 4:
            blocks.append(DiscriminatorBlock(cfg.channels(res), cfg.channels(res // 2)))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        c4 = cfg.channels(4)
        self.cmap_dim = cfg.cmap_dim or c4
        self.conv = EqualConv2d(c4 + cfg.mbstd_channels, c4, 3)
        self.fc = FullyConnectedLayer(c4 * 16, c4)
        self.out = FullyConnectedLayer(c4, self.cmap_dim if cfg.c_dim > 0 else 1)
        self.mapping = LabelMapping(cfg.c_dim, self.cmap_dim, cfg.mapping_layers) if cfg.c_dim > 0 else None

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = _lrelu(self.from_rgb(img))
        for block in self.blocks:
            x = block(x)
        x = minibatch_stddev(x, self.config.mbstd_group, self.config.mbstd_channels)
        x = _lrelu(self.conv(x))
        x = _lrelu(self.fc(x.flatten(1)))
        x = cast(torch.Tensor, self.out(x))
        if self.mapping is None:
            return x
        if c is None:
            raise ModelError(f"this discriminator is conditional (c_dim={self.config.c_dim}); pass a label c")
        cmap = cast(torch.Tensor, self.mapping(c))
        return (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)


__all__ = ["Discriminator", "DiscriminatorBlock", "DiscriminatorConfig", "minibatch_stddev"]
