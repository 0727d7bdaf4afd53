"""Image augmentations for training, as batched torch ops on NCHW float tensors.

Histology has no preferred orientation, so the eight flips/right-angle rotations are free extra
data. Light colour jitter imitates stain and scanner variation. The colour ops are differentiable,
so the GAN loop can apply them to real and generated images alike (ADA-style): applied with a
probability well below 1 they do not leak into what the generator learns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# ITU-R BT.601 luma weights, used as the grey axis for saturation changes.
_LUMA = (0.299, 0.587, 0.114)
# Ruifrok & Johnston optical-density vectors of haematoxylin, eosin and DAB (rows, unit length).
_HED = ((0.650, 0.704, 0.286), (0.072, 0.990, 0.105), (0.268, 0.570, 0.776))
HED_VECTORS = _HED


@dataclass(frozen=True)
class StainJitter:
    """Per-image changes of stain amounts in HED space, and a chance of dropping colour altogether.

    ``scale``: each stain's concentration is multiplied by U(1 − scale, 1 + scale); ``shift``: then
    U(−shift, shift) is added (optical density units); ``grayscale``: probability of a grey tile.
    Why: a classifier trained on one slide learns its colours; varying the stains keeps the classes
    but takes colour away as a shortcut (the recolour control in docs/method.md measures the effect).
    """

    scale: float = 0.3
    shift: float = 0.05
    grayscale: float = 0.0
    probability: float = 1.0
    mix: float = 0.0  # probability of taking another tile's per-channel mean and SD (colour statistics)


def hed_jitter(x: torch.Tensor, jitter: StainJitter, gen: torch.Generator | None = None) -> torch.Tensor:
    """Random stain changes for RGB images in [0, 1] (NCHW)."""
    if jitter.probability <= 0 or x.shape[0] == 0:
        return x
    n = x.shape[0]
    m = torch.tensor(_HED, dtype=x.dtype, device=x.device)
    m = m / m.norm(dim=1, keepdim=True)
    od = -torch.log(x.clamp(min=1e-3))  # N, 3, H, W
    conc = torch.einsum("nchw,cs->nshw", od, torch.linalg.inv(m))
    apply = (_rand(n, x, gen) < jitter.probability).to(x.dtype).reshape(n, 1, 1, 1)

    def draw(amount: float) -> torch.Tensor:
        u = torch.stack([_rand(n, x, gen) for _ in range(3)], dim=1).to(x.dtype)
        return ((u * 2 - 1) * amount).reshape(n, 3, 1, 1) * apply

    conc = conc * (1 + draw(jitter.scale)) + draw(jitter.shift)
    out = torch.exp(-torch.einsum("nshw,sc->nchw", conc, m)).clamp(0.0, 1.0)
    if jitter.mix > 0 and n > 1:
        other = torch.randperm(n, generator=gen, device=gen.device if gen is not None else "cpu").to(x.device)
        mu, sd = out.mean(dim=(2, 3), keepdim=True), out.std(dim=(2, 3), keepdim=True).clamp(min=1e-4)
        moved = ((out - mu) / sd * sd[other] + mu[other]).clamp(0.0, 1.0)
        pick = (_rand(n, x, gen) < jitter.mix).reshape(n, 1, 1, 1)
        out = torch.where(pick, moved, out)
    if jitter.grayscale > 0:
        luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
        grey = (out * luma).sum(dim=1, keepdim=True).expand_as(out)
        pick = (_rand(n, x, gen) < jitter.grayscale).reshape(n, 1, 1, 1)
        out = torch.where(pick, grey, out)
    return out


@dataclass(frozen=True)
class ColorJitter:
    """Maximum per-image colour changes; amounts are fractions of the value range."""

    brightness: float = 0.05
    contrast: float = 0.1
    saturation: float = 0.1
    probability: float = 1.0


def _rand(n: int, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device if gen is not None else x.device).to(x.device)


def random_dihedral(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Apply one of the 8 square symmetries, chosen independently for each image of a batch."""
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"random_dihedral needs square NCHW images, got shape {tuple(x.shape)}")
    n = x.shape[0]
    masks = [(_rand(n, x, gen) < 0.5).reshape(n, 1, 1, 1) for _ in range(3)]
    x = torch.where(masks[0], x.flip(3), x)
    x = torch.where(masks[1], x.flip(2), x)
    return torch.where(masks[2], x.transpose(2, 3), x)


def color_jitter(
    x: torch.Tensor,
    jitter: ColorJitter,
    *,
    value_range: tuple[float, float] = (-1.0, 1.0),
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Random brightness, contrast and saturation per image (differentiable in ``x``)."""
    if jitter.probability <= 0 or x.shape[0] == 0:
        return x
    n = x.shape[0]
    span = value_range[1] - value_range[0]
    apply = (_rand(n, x, gen) < jitter.probability).to(x.dtype).reshape(n, 1, 1, 1)

    def uniform(amount: float) -> torch.Tensor:
        return ((_rand(n, x, gen) * 2 - 1) * amount).to(x.dtype).reshape(n, 1, 1, 1) * apply

    out = x + uniform(jitter.brightness) * span
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * (1 + uniform(jitter.contrast)) + mean
    if x.shape[1] == 3:
        luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
        grey = (out * luma).sum(dim=1, keepdim=True)
        out = (out - grey) * (1 + uniform(jitter.saturation)) + grey
    return out


def random_translate(
    x: torch.Tensor, max_frac: float = 0.125, probability: float = 1.0, gen: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each image by whole pixels (up to ``max_frac`` of its size), filling by reflection.

    Differentiable in ``x`` (it is a gather), so it can sit between the generator and D.
    """
    n, _, h, w = x.shape
    m = round(max_frac * min(h, w))
    if m == 0 or probability <= 0 or n == 0:
        return x
    apply = _rand(n, x, gen) < probability
    dy = torch.where(apply, (_rand(n, x, gen) * (2 * m + 1)).floor().long() - m, 0).to(x.device)
    dx = torch.where(apply, (_rand(n, x, gen) * (2 * m + 1)).floor().long() - m, 0).to(x.device)
    padded = torch.nn.functional.pad(x, (m, m, m, m), mode="reflect")
    rows = (torch.arange(h, device=x.device).reshape(1, h) + m - dy.reshape(n, 1)).reshape(n, 1, h, 1)
    cols = (torch.arange(w, device=x.device).reshape(1, w) + m - dx.reshape(n, 1)).reshape(n, 1, 1, w)
    c = x.shape[1]
    out = padded.gather(2, rows.expand(n, c, h, w + 2 * m))
    return out.gather(3, cols.expand(n, c, h, w))


def augment_batch(
    x: torch.Tensor,
    jitter: ColorJitter | None,
    *,
    dihedral: bool = True,
    value_range: tuple[float, float] = (-1.0, 1.0),
    gen: torch.Generator | None = None,
    stain: StainJitter | None = None,
) -> torch.Tensor:
    """Symmetries, stain jitter (images in [0, 1] only), then colour jitter: the classifier's training
    augmentation."""
    if dihedral:
        x = random_dihedral(x, gen)
    if stain is not None:
        if value_range != (0.0, 1.0):
            raise ValueError("stain jitter needs images in [0, 1]")
        x = hed_jitter(x, stain, gen)
    if jitter is not None:
        x = color_jitter(x, jitter, value_range=value_range, gen=gen)
        x = x.clamp(*value_range)
    return x


__all__ = ["HED_VECTORS", "ColorJitter", "StainJitter", "augment_batch", "color_jitter", "hed_jitter",
           "random_dihedral"]
