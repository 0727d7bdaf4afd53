"""Tensor operations of the StyleGAN2 generator, written from their published semantics.

FIR up-sampling with the [1, 3, 3, 1] filter is done with strided transposed convolutions (no
zero-insertion buffers, no custom kernels); the modulated convolution has a fused grouped-conv
path (the reference numerics) and an activation-scaling path for training batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from histobridge.errors import ModelError


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square (pixel norm over features)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Separable FIR filter as a 2-D outer product normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :]  # outer product (torch.outer on 'meta' pulls in a slow import)
    return f / f.sum()


def _depthwise(f: torch.Tensor, channels: int, gain: float, dtype: torch.dtype) -> torch.Tensor:
    # upfirdn2d convolves (flips the filter); conv2d correlates, so flip here.
    k = (f * gain).flip([0, 1]).to(dtype)
    return k[None, None].expand(channels, 1, *k.shape)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2× zero-insertion up-sampling + FIR (gain 4, pad [2,1]) as one strided transposed conv."""
    c = x.shape[1]
    return F.conv_transpose2d(x, _depthwise(f, c, 4.0, x.dtype), stride=2, padding=1, groups=c)


def _fir_pad1(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """FIR filter with gain 4 and one pixel of padding: 2H+1 → 2H after the transposed conv."""
    c = x.shape[1]
    return F.conv2d(x, _depthwise(f, c, 4.0, x.dtype), padding=1, groups=c)


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None,
    act: str = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
    *,
    inplace: bool = False,
) -> torch.Tensor:
    """Bias over dim 1, activation, gain, clamp, in that order.

    ``inplace`` lets a caller that owns a fresh ``x`` skip four full-size allocations when no
    gradient is being recorded (inference); with autograd active it is ignored.
    """
    if inplace and not (x.requires_grad or (b is not None and b.requires_grad)):
        return _bias_act_(x, b, act, gain, clamp)
    if b is not None:
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    elif act != "linear":
        raise ModelError(f"unsupported activation {act!r}")
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _bias_act_(
    x: torch.Tensor, b: torch.Tensor | None, act: str, gain: float, clamp: float | None
) -> torch.Tensor:
    if b is not None:
        x.add_(b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2)))
    if act == "lrelu":
        F.leaky_relu_(x, 0.2)
    elif act != "linear":
        raise ModelError(f"unsupported activation {act!r}")
    if gain != 1:
        x.mul_(gain)
    if clamp is not None and clamp >= 0:
        x.clamp_(-clamp, clamp)
    return x


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """Per-sample modulated convolution.

    ``fused``: the weights are modulated per sample and applied as one grouped conv (the reference
    order of operations, used for single images). Otherwise the activations are scaled by the
    styles, one conv with the shared weight serves the whole batch, and the output is scaled by
    per-sample demodulation coefficients computed as ``rsqrt(styles² @ Σₖ W² + ε)`` without forming
    per-sample weights; the two agree to float rounding (≤ 1e-5 on the reference fixture).
    """
    n = x.shape[0]
    o, i, kh, kw = weight.shape
    weight = weight.to(x.dtype)
    s = styles.to(x.dtype)
    if fused:
        w = weight.unsqueeze(0) * s.reshape(n, 1, -1, 1, 1)  # [N, O, I, kh, kw]
        if demodulate:
            dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
            w = w * dcoefs.reshape(n, -1, 1, 1, 1)
        x = x.reshape(1, n * i, *x.shape[2:])
        x = _conv(x, w.reshape(n * o, i, kh, kw), up, padding, resample_filter, groups=n)
        x = x.reshape(n, o, *x.shape[2:])
        return x if noise is None else _add_noise(x, noise)
    x = x * s.reshape(n, -1, 1, 1)
    x = _conv(x, weight, up, padding, resample_filter, groups=1)
    if demodulate:
        dcoefs = (s.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
        x = x * dcoefs.reshape(n, -1, 1, 1) if x.requires_grad else x.mul_(dcoefs.reshape(n, -1, 1, 1))
    return x if noise is None else _add_noise(x, noise)


def _add_noise(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``x + noise``; in place on the fresh conv output when autograd is not recording."""
    if x.requires_grad or noise.requires_grad:
        return x + noise
    return x.add_(noise)


def _conv(
    x: torch.Tensor, w: torch.Tensor, up: int, padding: int, f: torch.Tensor | None, groups: int
) -> torch.Tensor:
    if up == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    if up != 2 or f is None or w.shape[-1] != 3 or padding != 1:
        raise ModelError("only 3x3 convolutions with padding 1 support 2x up-sampling")
    # [G·O, I, k, k] -> [G·I, O, k, k]: transposed conv weight layout, no spatial flip.
    og, i, kh, kw = w.shape
    wt = w.reshape(groups, og // groups, i, kh, kw).transpose(1, 2).reshape(groups * i, og // groups, kh, kw)
    # channels-last input: the CPU transposed conv is about 3x faster on it than on NCHW (same values)
    x = F.conv_transpose2d(x.contiguous(memory_format=torch.channels_last), wt, stride=2, groups=groups)
    return _fir_pad1(x, f)
