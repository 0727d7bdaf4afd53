"""Equalised-learning-rate layers shared by the generator and the discriminator.

Weights are stored at unit scale and multiplied by ``lr_mul / √fan_in`` at run time, so Adam
moves every layer at a similar speed (Karras et al., progressive GANs); the bias is scaled by
``lr_mul``. Parameter names (``weight``, ``bias``) follow published StyleGAN2 state dicts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from histobridge.models._stylegan2_ops import bias_act, setup_filter

_SQRT2 = math.sqrt(2.0)


class FullyConnectedLayer(nn.Module):
    """Dense layer: stored weight ``randn / lr_mul``; optional lrelu (gain √2) after the bias."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation: str = "linear",
        lr_mul: float = 1.0,
        bias: bool = True,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b: torch.Tensor | None = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act(x, b, act=self.activation, gain=_SQRT2 if self.activation == "lrelu" else 1.0)


def blur_down(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Low-pass with the binomial [1,3,3,1]² filter, then keep every other pixel (anti-aliased 2×)."""
    ch = x.shape[1]
    weight = kernel.to(x.dtype)[None, None].expand(ch, 1, *kernel.shape)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, stride=2, groups=ch)


class EqualConv2d(nn.Module):
    """k×k convolution (padding k // 2) with weight gain ``1/√(in·k·k)``; optional blur-and-halve first."""

    blur: torch.Tensor

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True, down: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias: nn.Parameter | None
        if bias:
            self.bias = nn.Parameter(torch.zeros([out_channels]))
        else:
            self.register_parameter("bias", None)
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.down = down
        if down:
            self.register_buffer("blur", setup_filter(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = blur_down(x, self.blur)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, self.weight.to(x.dtype) * self.weight_gain, b, padding=self.padding)


__all__ = ["EqualConv2d", "FullyConnectedLayer", "blur_down"]
