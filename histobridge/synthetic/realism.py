"""Realism and memorisation of synthetic tiles without downloaded weights.

Why (docs/method.md): "the classifier agrees with the label" says nothing about whether synthetic
tiles look like tissue, nor whether the generator copies its training tiles. These measures compare
synthetic with real tiles in a feature space that needs nothing from the internet:

- **Features**: per-channel mean and SD of the activations of a *fixed random* convolutional net
  (:data:`histobridge.synthetic.invert.FEATURE_NET`, seeded weights), at each of its three layers,
  standardised by the real tiles' spread. Random conv features summarise colour and local texture;
  they are weaker than ImageNet features, so read the numbers comparatively (real vs real split
  halves give the ceiling).
- **Precision / recall** (k-NN manifolds, Kynkäänniemi et al. 2019) and **density / coverage**
  (Naeem et al. 2020), k = 3 and 5 by default.
- **Nearest real neighbour**: each synthetic tile's distance to the closest real tile, against the
  same distance for real tiles to the *other* real tiles. Synthetic tiles much closer than real tiles
  are to each other are candidates for memorisation.
- **Blinded sheet**: real and synthetic tiles shuffled with a seed, numbered, and a separate key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from histobridge.errors import InputError


def features(tiles: np.ndarray) -> np.ndarray:
    """(N, 224) activation means and SDs of the fixed random conv net for uint8 NHWC tiles."""
    import torch

    from histobridge.synthetic.invert import _feature_net

    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3:
        raise InputError(f"realism features need uint8 (N, H, W, 3) tiles, got {tiles.shape}")
    net = _feature_net(torch.float32, "cpu")
    out = []
    with torch.no_grad():
        for i in range(0, len(tiles), 64):
            x = torch.as_tensor(np.ascontiguousarray(tiles[i : i + 64])).permute(0, 3, 1, 2).float() / 255.0
            parts = []
            for layer in net:
                x = layer(x)
                if isinstance(layer, torch.nn.ReLU):
                    parts += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
            out.append(torch.cat(parts, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 224), np.float32)


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T
    return np.asarray(np.sqrt(np.maximum(d2, 0.0)))


def _kth(d: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row's point to its k-th nearest other point (``d`` square, self at 0)."""
    return np.asarray(np.sort(d, axis=1)[:, k])


@dataclass(frozen=True)
class Realism:
    precision: float
    recall: float
    density: float
    coverage: float
    nn_synthetic_to_real: np.ndarray  # per synthetic tile
    nn_real_to_real: np.ndarray  # per real tile, leaving itself out
    k: int

    def summary(self) -> dict[str, Any]:
        s, r = self.nn_synthetic_to_real, self.nn_real_to_real
        floor = float(np.percentile(r, 5)) if len(r) else float("nan")
        return {
            "precision": self.precision, "recall": self.recall, "density": self.density,
            "coverage": self.coverage, "k": self.k,
            "nn_synthetic_to_real_median": float(np.median(s)) if len(s) else float("nan"),
            "nn_real_to_real_median": float(np.median(r)) if len(r) else float("nan"),
            "synthetic_closer_than_real_5th_percentile":
                float((s < floor).mean()) if len(s) else float("nan"),
        }


def realism(real: np.ndarray, synthetic: np.ndarray, *, k: int = 3) -> Realism:
    """Precision/recall, density/coverage and nearest-neighbour distances of ``synthetic`` vs ``real``."""
    if len(real) <= k or len(synthetic) <= k:
        raise InputError(f"realism needs more than k={k} real and synthetic tiles, got {len(real)} and "
                         f"{len(synthetic)}")
    fr, fs = features(real), features(synthetic)
    mu, sd = fr.mean(0), fr.std(0) + 1e-6
    fr, fs = (fr - mu) / sd, (fs - mu) / sd
    return realism_from_features(fr, fs, k=k)


def realism_from_features(fr: np.ndarray, fs: np.ndarray, *, k: int = 3) -> Realism:
    """The measures on precomputed features (rows are tiles)."""
    d_rr, d_ss, d_sr = _dist(fr, fr), _dist(fs, fs), _dist(fs, fr)
    r_real, r_syn = _kth(d_rr, k), _kth(d_ss, k)
    inside_real = d_sr <= r_real[None, :]  # synthetic i inside real j's ball
    precision = float(inside_real.any(axis=1).mean())
    recall = float((r_syn[None, :] >= d_sr.T).any(axis=1).mean())
    density = float(inside_real.sum(axis=1).mean() / k)
    coverage = float((d_sr.min(axis=0) <= r_real).mean())
    np.fill_diagonal(d_rr, np.inf)
    return Realism(precision, recall, density, coverage, d_sr.min(axis=1), d_rr.min(axis=1), k)


def blinded_sheet(
    real: np.ndarray, synthetic: np.ndarray, *, n: int = 12, seed: int = 0
) -> tuple[Any, list[dict[str, Any]]]:
    """A numbered grid of ``n`` real and ``n`` synthetic tiles in shuffled order, and its answer key."""
    from histobridge.viz.pictures import montage

    rng = np.random.default_rng(seed)
    r = rng.choice(len(real), min(n, len(real)), replace=False)
    s = rng.choice(len(synthetic), min(n, len(synthetic)), replace=False)
    items = [("real", int(i), real[i]) for i in r] + [("synthetic", int(i), synthetic[i]) for i in s]
    order = rng.permutation(len(items))
    cols = 6
    cells: list[list[np.ndarray | None]] = []
    key = []
    for pos, j in enumerate(order):
        kind, idx, img = items[j]
        if pos % cols == 0:
            cells.append([])
        cells[-1].append(img)
        key.append({"number": pos + 1, "source": kind, "index": idx})
    while cells and len(cells[-1]) < cols:
        cells[-1].append(None)
    col_labels = [str(c + 1) for c in range(cols)]
    row_labels = [f"row {i + 1}\n(no. {i * cols + 1}-)" for i in range(len(cells))]
    return montage(cells, row_labels=row_labels, col_labels=col_labels), key


def split_half_ceiling(real: np.ndarray, *, k: int = 3, seed: int = 0) -> dict[str, float]:
    """The same measures between two random halves of the real tiles: what "as real as real" scores."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(real))
    half = len(idx) // 2
    res = realism(real[idx[:half]], real[idx[half:]], k=k)
    return {k_: v for k_, v in res.summary().items() if k_ in ("precision", "recall", "density", "coverage")}


__all__ = ["Realism", "blinded_sheet", "features", "realism", "realism_from_features", "split_half_ceiling"]
