"""Tiny generators, classifiers and tile stores for the explain tests (fast on two CPU cores)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from histobridge.models.classifier import load_classifier, make_config, save_classifier
from histobridge.models.stylegan2 import Generator, GeneratorConfig


def tiny_generator(
    c_dim: int = 2,
    res: int = 16,
    tile_um: float | None = 64.0,
    names: Sequence[str] | None = None,
    seed: int = 0,
) -> Generator:
    """A randomly initialised conditional generator with a fixed torch seed."""
    torch.manual_seed(seed)
    cfg = GeneratorConfig(
        z_dim=32,
        w_dim=32,
        c_dim=c_dim,
        img_resolution=res,
        mapping_layers=2,
        channel_base=256,
        channel_max=32,
    )
    G = Generator(cfg).eval()
    # randomise the per-layer noise strengths and biases so every tensor shapes the image
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    meta = dataclasses.replace(
        G.meta, tile_um=tile_um, class_names=tuple(names) if names else G.meta.class_names, source="tiny"
    )
    G.meta = meta
    return G


class RedMinusBlue(nn.Module):
    """Logits that are a known function of the pixels: class k gets ``gain·k'·(mean R − mean B − offset)``
    with ``k' = k − (C−1)/2`` (inputs normalised to [−1, 1])."""

    def __init__(self, n_classes: int, gain: float = 8.0, offset: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("k", torch.arange(n_classes, dtype=torch.float32) - (n_classes - 1) / 2)
        self.gain = gain
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x[:, 0].mean(dim=(1, 2)) - x[:, 2].mean(dim=(1, 2)) - self.offset
        return self.gain * d[:, None] * self.k[None, :]


def reference_probs(tiles: np.ndarray, n_classes: int, gain: float = 8.0, offset: float = 0.0) -> np.ndarray:
    """What :class:`RedMinusBlue` returns for uint8 NHWC tiles (Normalize mean 0.5, std 0.5)."""
    x = tiles.astype(np.float64) / 255.0 * 2 - 1
    d = x[..., 0].mean(axis=(1, 2)) - x[..., 2].mean(axis=(1, 2)) - offset
    k = np.arange(n_classes) - (n_classes - 1) / 2
    logits = gain * d[:, None] * k[None, :]
    if n_classes == 1:
        return 1 / (1 + np.exp(-logits))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def tiny_classifier(
    tmp: Path, names: Sequence[str], px: int = 12, um_px: float = 4.0, gain: float = 8.0, offset: float = 0.0
):
    """A WSInfer model directory written and loaded back (px at um_px: a px·um_px µm field)."""
    out = tmp / f"clf_{len(names)}_{px}_{gain:g}_{offset:g}"
    save_classifier(RedMinusBlue(len(names), gain, offset), make_config(list(names), px, um_px), out)
    return load_classifier(out)


def tiny_store(
    path: Path,
    regions: Sequence[tuple[str | None, int]],
    *,
    tile_px: int = 16,
    tile_um: float = 64.0,
    entry: str = "0",
    classes: Sequence[str] = ("class0", "class1"),
) -> Path:
    """A tile store with one image group whose regions have the given (class, real tile count)."""
    from histobridge.tiling.store import GroupWriter

    n = sum(k for _, k in regions)
    region_meta = [
        {"id": f"r{i}", "name": f"region {i}", "class": c, "bounds": [0, 0, 10, 10]}
        for i, (c, _) in enumerate(regions)
    ]
    attrs = {
        "slide_path": "slide.tif",
        "entry_id": entry,
        "entry_name": "img",
        "mpp": 0.5,
        "tile_px": tile_px,
        "tile_um": tile_um,
        "classes": list(classes),
        "regions": region_meta,
    }
    writer = GroupWriter(path, entry, n, tile_px, attrs)
    region_idx = np.repeat(np.arange(len(regions)), [k for _, k in regions]).astype(np.int32)
    labels = np.array(
        [list(classes).index(regions[r][0]) if regions[r][0] in classes else -1 for r in region_idx], np.int16
    )
    writer.write_meta(np.zeros((n, 4)), labels, region_idx)
    rng = np.random.default_rng(0)
    writer.write_tiles(0, rng.integers(0, 255, (n, tile_px, tile_px, 3), dtype=np.uint8))
    writer.finish()
    return path


class LinearProbe(nn.Module):
    """Two-class logits ``[0, gain·(⟨x, direction⟩ − bias)]``: a fixed linear function of the pixels."""

    def __init__(self, direction: torch.Tensor, bias: float, gain: float) -> None:
        super().__init__()
        self.register_buffer("direction", direction)
        self.bias = bias
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gain * ((x * self.direction).sum(dim=(1, 2, 3)) - self.bias)
        return torch.stack([torch.zeros_like(s), s], dim=1)


def _normalised(tiles: np.ndarray) -> np.ndarray:
    return tiles.astype(np.float64).transpose(0, 3, 1, 2) / 255.0 * 2 - 1


def probe_classifier(
    tmp: Path,
    names: Sequence[str],
    ready_a: np.ndarray,
    ready_b: np.ndarray,
    um_px: float,
    scale: float = 3.0,
    quantile: float = 0.5,
):
    """A probe pointing from class-A tiles to class-B tiles (so some seeds swap), saved and loaded back."""
    xa, xb = _normalised(ready_a), _normalised(ready_b)
    direction = (xb - xa).mean(axis=0)
    proj = np.concatenate([(xa * direction).sum(axis=(1, 2, 3)), (xb * direction).sum(axis=(1, 2, 3))])
    bias, gain = float(np.quantile(proj, quantile)), float(scale / (proj.std() + 1e-9))
    px = ready_a.shape[1]
    module = LinearProbe(torch.from_numpy(direction).float(), bias, gain)
    out = tmp / "probe"
    save_classifier(module, make_config(list(names), px, um_px), out)
    return load_classifier(out), (direction, bias, gain)


def probe_probs(tiles: np.ndarray, params: tuple[np.ndarray, float, float]) -> np.ndarray:
    """What :class:`LinearProbe` returns (softmax over the two logits)."""
    direction, bias, gain = params
    s = gain * ((_normalised(tiles) * direction).sum(axis=(1, 2, 3)) - bias)
    p1 = 1 / (1 + np.exp(-s))
    return np.stack([1 - p1, p1], axis=1)
