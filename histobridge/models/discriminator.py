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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from histobridge.errors import ModelError

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


def _blur_down(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Low-pass with the binomial [1,3,3,1]² filter, then keep every other pixel (anti-aliased 2×)."""
    ch = x.shape[1]
    weight = kernel.to(x.dtype)[None, None].expand(ch, 1, *kernel.shape)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, stride=2, groups=ch)


class EqualLinear(nn.Module):
    """Linear layer whose weights are scaled by ``lr_mul/√fan_in`` at run time."""

    def __init__(self, in_features: int, out_features: int, lr_mul: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)


class EqualConv2d(nn.Module):
    """k×k convolution with equalised learning rate; optional anti-aliased 2× down-sampling first."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, bias: bool = True, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.down = down
        self.padding = kernel // 2
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        self.register_buffer("blur", torch.outer(taps, taps) / taps.sum() ** 2, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = _blur_down(x, self.blur)
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3×3 convs (the second halves the size) plus a 1×1 down-sampled shortcut."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, down=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(x)
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
        self.embed = EqualLinear(c_dim, cmap_dim)
        self.fcs = nn.ModuleList(EqualLinear(cmap_dim, cmap_dim, lr_mul=0.01) for _ in range(layers))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        x = self.embed(c.to(torch.float32))
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
        self.fc = EqualLinear(c4 * 16, c4)
        self.out = EqualLinear(c4, self.cmap_dim if cfg.c_dim > 0 else 1)
        self.mapping = LabelMapping(cfg.c_dim, self.cmap_dim, cfg.mapping_layers) if cfg.c_dim > 0 else None

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = _lrelu(self.from_rgb(img))
        for block in self.blocks:
            x = block(x)
        x = minibatch_stddev(x, self.config.mbstd_group, self.config.mbstd_channels)
        x = _lrelu(self.conv(x))
        x = _lrelu(self.fc(x.flatten(1)))
        x = self.out(x)
        if self.mapping is None:
            return x
        if c is None:
            raise ModelError(f"this discriminator is conditional (c_dim={self.config.c_dim}); pass a label c")
        cmap = self.mapping(c)
        return (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)


__all__ = ["Discriminator", "DiscriminatorBlock", "DiscriminatorConfig", "minibatch_stddev"]
