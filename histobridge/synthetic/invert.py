"""Counterfactuals of real tiles: project a real tile into the generator's W+ space, then move the
projection along the class direction and ask the classifier again.

Why: class blends of random seeds explain what the generator ties to a class, but a pathologist asks
about *this* tile. Projection gives a synthetic twin of a real tile; shifting it to the other class
shows what would have to change for the classifier to change its mind.

- **Projection** (ours, docs/method.md; the method's authors do not invert real tiles): W+ (one w per layer),
  started from the class's mean w, optimised with Adam. The loss compares the generator's image, cut
  to the real tile's field of view and resized as for classification (crop, then resize), with the
  real tile: pixel L1 + L2, plus a feature loss in a *fixed random* convolutional network (weights from
  a seeded generator, nothing downloaded; random conv features summarise local texture), plus a small
  pull of every w toward the mean w. Noise inputs stay at the generator's constant buffers
  (``noise_mode='const'``), so there is no noise to regularise.
- **Counterfactual**: ``w + t·(w̄_B − w̄_A)``, with ``w̄_k`` the mean of ``mapping(z, class k)`` over
  many z — the class direction in W. ``t = 1`` is the counterfactual; intermediate ``t`` is a blend.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from histobridge.errors import InputError
from histobridge.synthetic import conditioning as cond
from histobridge.synthetic.fov import classify_tiles, crop_box, gan_tile_um

if TYPE_CHECKING:
    import torch

    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator

FEATURE_NET = "fixed random 3-layer conv net (seed 0, 16-32-64 channels, ReLU, average pooling)"


@dataclass(frozen=True)
class InvertSettings:
    """How hard to try; the defaults suit the 64-px sample generator on a CPU."""

    steps: int = 200
    lr: float = 0.05
    feature_weight: float = 0.5
    w_reg: float = 1e-3
    mean_samples: int = 512
    blend_steps: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.mean_samples < 2 or self.blend_steps < 2:
            raise InputError(f"inversion needs steps ≥ 1, mean_samples ≥ 2, blend_steps ≥ 2; got {self}")
        if not (self.lr > 0 and self.feature_weight >= 0 and self.w_reg >= 0):
            raise InputError(f"inversion needs lr > 0 and non-negative weights; got {self}")


@dataclass(frozen=True)
class Counterfactual:
    """One real tile, its reconstruction and its counterfactuals, with the classifier's verdicts."""

    index: int
    class_from: str
    class_to: str
    original: np.ndarray  # classifier view, uint8 HWC
    reconstruction: np.ndarray  # classifier view
    blend: np.ndarray  # (blend_steps, H, W, 3) classifier view, t from 0 (reconstruction) to 1
    ts: np.ndarray
    mse: float  # reconstruction, on [0, 1] pixels
    psnr: float
    p_original: np.ndarray
    p_reconstruction: np.ndarray
    p_blend: np.ndarray  # (blend_steps, C)

    @property
    def counterfactual(self) -> np.ndarray:
        return np.asarray(self.blend[-1])

    def record(self, names: Sequence[str]) -> dict[str, Any]:
        def named(p: np.ndarray) -> dict[str, float]:
            return {n: round(float(v), 4) for n, v in zip(names, p, strict=True)}

        return {"tile": self.index, "class_from": self.class_from, "class_to": self.class_to,
                "mse": self.mse, "psnr_db": self.psnr, "p_original": named(self.p_original),
                "p_reconstruction": named(self.p_reconstruction), "p_counterfactual": named(self.p_blend[-1]),
                "p_blend_end_class": [float(p[list(names).index(self.class_to)]) if self.class_to in names
                                      else float("nan") for p in self.p_blend]}


def _feature_net(dtype: Any, device: Any) -> Any:
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    layers: list[nn.Module] = []
    chans = (3, 16, 32, 64)
    for cin, cout in itertools.pairwise(chans):
        conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2 / (9 * cin)) ** 0.5)
        layers += [conv, nn.ReLU(), nn.AvgPool2d(2)]
    net = nn.Sequential(*layers).to(dtype=dtype, device=device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def class_mean_ws(G: Generator, samples: int, seed: int = 0) -> torch.Tensor:
    """Mean w per class, shape (C, num_ws, w_dim), over the same ``samples`` latents for every class."""
    n_cls = cond.num_classes(G)
    rng = np.random.RandomState(seed)
    seeds = [int(s) for s in rng.randint(0, 2**31 - 1, samples)]
    z = cond.latents(G, seeds)
    import torch

    return torch.stack([
        cond.mapping_ws(G, z, cond.labels_for(G, cond.class_weights(n_cls, k, samples))).mean(dim=0)
        for k in range(n_cls)
    ])


def _view(G: Generator, img: torch.Tensor, gan_um: float, target_um: float, target_px: int) -> torch.Tensor:
    """Differentiable crop-then-resize of float NCHW images in [−1, 1] to [0, 1]."""
    import torch.nn.functional as F

    box = crop_box(int(img.shape[-1]), gan_um, target_um)
    crop = img[:, :, box.top : box.top + box.size, box.left : box.left + box.size]
    if box.size != target_px:
        crop = F.interpolate(crop, size=(target_px, target_px), mode="bicubic", align_corners=False,
                             antialias=True)
    return ((crop + 1) / 2).clamp(0, 1)


def project(
    G: Generator, tiles: np.ndarray, classes: Sequence[int], tile_um: float, *,
    settings: InvertSettings = InvertSettings(), gan_um: float | None = None,
    means: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """W+ codes (N, num_ws, w_dim) whose images, cut to ``tile_um``, match ``tiles`` (uint8 NHWC).

    Returns the codes and the loss per step (for checking convergence).
    """
    import torch

    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or len(tiles) != len(classes) or not len(tiles):
        raise InputError(f"projection needs uint8 (N, H, W, 3) tiles with one class each, got {tiles.shape} "
                         f"and {len(classes)} classes")
    um = gan_tile_um(G, gan_um)
    crop_box(int(G.img_resolution), um, tile_um)  # refuses a tile wider than the GAN's field
    dev = cond.device_of(G)
    means = class_mean_ws(G, settings.mean_samples, settings.seed) if means is None else means
    start = means[list(classes)].clone().to(dev)
    w = start.clone().requires_grad_(True)
    target = torch.as_tensor(tiles, device=dev).permute(0, 3, 1, 2).float() / 255.0
    net = _feature_net(target.dtype, dev)
    with torch.no_grad():
        target_feat = net(target)
    opt = torch.optim.Adam([w], lr=settings.lr)
    losses = []
    frozen = [(p, p.requires_grad) for p in G.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)  # only w is optimised; no gradients for the generator's weights
    try:
        for _ in range(settings.steps):
            img = _view(G, G.synthesis(w, noise_mode="const"), um, tile_um, tiles.shape[1])
            loss = (img - target).abs().mean() + ((img - target) ** 2).mean()
            loss = loss + settings.feature_weight * ((net(img) - target_feat) ** 2).mean()
            loss = loss + settings.w_reg * ((w - start) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    return w.detach().cpu(), losses


def counterfactuals(
    G: Generator, classifier: TileClassifier, tiles: np.ndarray, classes: Sequence[str], *,
    settings: InvertSettings = InvertSettings(), gan_um: float | None = None,
) -> tuple[list[Counterfactual], list[float]]:
    """Project each real tile (in the classifier's view) and move it to the next class (two classes:
    the other one); returns one :class:`Counterfactual` per tile and the projection's loss curve."""
    import torch

    names = cond.class_names(G)
    idx = [cond.resolve_class(G, c) for c in classes]
    um = gan_tile_um(G, gan_um)
    tile_um = float(classifier.config.tile_um)
    means = class_mean_ws(G, settings.mean_samples, settings.seed)
    ws, losses = project(G, tiles, idx, tile_um, settings=settings, gan_um=gan_um, means=means)
    ts = np.linspace(0.0, 1.0, settings.blend_steps)
    p_orig = classifier.predict(np.asarray(tiles))
    out = []
    for i, (w, k) in enumerate(zip(ws, idx, strict=True)):
        to = (k + 1) % len(names)
        delta = means[to] - means[k]
        codes = torch.stack([w + float(t) * delta for t in ts])
        raw = cond.to_uint8(cond.render_ws(G, codes))
        view, preds = classify_tiles(raw, um, classifier)
        view = _resize_to(view, tiles.shape[1])
        diff = (view[0].astype(np.float64) - np.asarray(tiles[i], np.float64)) / 255.0
        mse = float((diff**2).mean())
        psnr = float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf")
        out.append(Counterfactual(i, names[k], names[to], np.asarray(tiles[i]), view[0], view, ts, mse, psnr,
                                  p_orig[i], preds[0], preds))
    return out, losses


def _resize_to(view: np.ndarray, px: int) -> np.ndarray:
    if view.shape[1] == px:
        return view
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(v).resize((px, px), Image.Resampling.BICUBIC)) for v in view])


def counterfactual_picture(items: Sequence[Counterfactual], names: Sequence[str]) -> Any:
    """One row per tile: original | reconstruction | blend to the other class; captions carry P."""
    from histobridge.viz.pictures import montage

    rows, row_labels = [], []
    for cf in items:
        col = list(names).index(cf.class_to) if cf.class_to in names else 0
        rows.append([cf.original, cf.reconstruction, *cf.blend[1:]])
        p = [cf.p_original[col], cf.p_reconstruction[col], *cf.p_blend[1:, col]]
        row_labels.append(f"{cf.class_from} tile {cf.index}\nP({cf.class_to}): " +
                          " ".join(f"{v:.2f}" for v in p))
    n_t = len(items[0].ts) if items else 0
    col_labels = ["real", "projection"] + [f"to {items[0].class_to if items else ''} t={t:.2f}"
                                           for t in (items[0].ts[1:] if items else [])]
    return montage(rows, row_labels=row_labels, col_labels=col_labels[: 2 + max(0, n_t - 1)])


__all__ = ["FEATURE_NET", "Counterfactual", "InvertSettings", "class_mean_ws", "counterfactual_picture",
           "counterfactuals", "project"]
