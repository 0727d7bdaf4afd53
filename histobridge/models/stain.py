"""Stain normalisation for classifier preprocessing: Reinhard (CIELAB statistics) and Macenko (stain
vectors from optical density).

Why here: the method's classifiers normalise every tile to reference statistics stored with the model,
after the tile is cropped and resized and before it is standardised (docs/method.md). The reference
travels in the model's ``config.json`` as a ``StainNormalize`` transform step, so a model is always
run with the normalisation it was trained with.

Both work on float RGB tensors in [0, 1], shape (N, 3, H, W), on any device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from histobridge.errors import ModelError

if TYPE_CHECKING:
    import torch

METHODS = ("reinhard", "macenko")
# Widely used Macenko reference (H and E optical-density vectors, columns) and 99th-percentile
# concentrations; a fitted model stores its own.
MACENKO_STAINS = ((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581))
MACENKO_MAX_C = (1.9705, 1.0308)

_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169),
                 (0.019334, 0.119193, 0.950227))
_WHITE = (0.950456, 1.0, 1.088754)  # D65


def _srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)


def _linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    import torch

    x = x.clamp(min=0.0)
    return torch.where(x > 0.0031308, 1.055 * x ** (1 / 2.4) - 0.055, 12.92 * x)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] (N, 3, H, W) → CIELAB (L in 0..100), D65 white."""
    import torch

    m = torch.tensor(_XYZ_FROM_RGB, dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,njhw->nihw", m, _srgb_to_linear(rgb))
    xyz = xyz / torch.tensor(_WHITE, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    eps, kappa = 216 / 24389, 24389 / 27
    f = torch.where(xyz > eps, xyz.clamp(min=1e-12) ** (1 / 3), (kappa * xyz + 16) / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB → sRGB in [0, 1] (clipped)."""
    import torch

    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], dim=1)
    eps, kappa = 6 / 29, 24389 / 27
    xyz = torch.where(f > eps, f**3, (116 * f - 16) / kappa)
    xyz = xyz * torch.tensor(_WHITE, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1)
    inv = torch.linalg.inv(torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64)).to(lab.dtype).to(lab.device)
    return _linear_to_srgb(torch.einsum("ij,njhw->nihw", inv, xyz)).clamp(0.0, 1.0)


# A channel spread below one CIELAB unit (about one just-noticeable difference) is treated as flat:
# stretching it to the target SD would turn rounding noise (a grey tile's a and b) into colour.
FLAT_LAB_SD = 1.0


def reinhard(rgb: torch.Tensor, target_means: Sequence[float], target_stds: Sequence[float]) -> torch.Tensor:
    """Each image's per-channel LAB mean and SD moved to the target's (flat channels only shifted)."""
    import torch

    lab = rgb_to_lab(rgb)
    mu = lab.mean(dim=(2, 3), keepdim=True)
    sd = lab.std(dim=(2, 3), keepdim=True, unbiased=False).clamp(min=FLAT_LAB_SD)
    tm = torch.tensor(list(target_means), dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    ts = torch.tensor(list(target_stds), dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return lab_to_rgb((lab - mu) / sd * ts + tm)


def fit_reinhard(images: np.ndarray) -> dict[str, list[float]]:
    """Reference statistics from uint8 NHWC tiles: the mean over tiles of their LAB means and SDs."""
    import torch

    x = torch.as_tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double() / 255.0
    lab = rgb_to_lab(x)
    means = lab.mean(dim=(2, 3)).mean(dim=0)
    stds = lab.std(dim=(2, 3), unbiased=False).mean(dim=0)
    return {"target_means": [float(v) for v in means], "target_stds": [float(v) for v in stds]}


def _stain_vectors(od: torch.Tensor, beta: float, alpha: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(stain matrix 3×2 with H first, optical densities kept) for one image's OD pixels (P, 3)."""
    import torch

    keep = od[(od > beta).all(dim=1)]
    if keep.shape[0] < 10:
        return None
    _, vecs = torch.linalg.eigh(torch.cov(keep.T))
    plane = vecs[:, 1:3]  # the two largest eigenvectors
    proj = keep @ plane
    phi = torch.atan2(proj[:, 1], proj[:, 0])
    lo, hi = torch.quantile(phi, alpha / 100), torch.quantile(phi, 1 - alpha / 100)
    v1 = plane @ torch.stack([torch.cos(lo), torch.sin(lo)])
    v2 = plane @ torch.stack([torch.cos(hi), torch.sin(hi)])
    he = torch.stack([v1, v2], dim=1) if v1[0] > v2[0] else torch.stack([v2, v1], dim=1)
    he = he * torch.sign(he.sum(dim=0, keepdim=True))  # optical densities are positive
    return he / he.norm(dim=0, keepdim=True), keep


def macenko(rgb: torch.Tensor, stain_matrix: Sequence[Sequence[float]], max_concentrations: Sequence[float],
            *, beta: float = 0.15, alpha: float = 1.0) -> torch.Tensor:
    """Each image's H and E concentrations re-expressed with the reference stains and 99th percentiles.

    An image with too few stained pixels (mostly glass) is returned unchanged.
    """
    import torch

    ref = torch.tensor([list(r) for r in stain_matrix], dtype=torch.float64)
    ref_max = torch.tensor(list(max_concentrations), dtype=torch.float64)
    out = []
    for img in rgb.double().cpu():
        od = -torch.log(img.clamp(min=1 / 255).reshape(3, -1).T)  # (P, 3)
        found = _stain_vectors(od, beta, alpha)
        if found is None:
            out.append(img)
            continue
        he, _ = found
        conc = torch.linalg.lstsq(he, od.T).solution  # (2, P)
        max_c = torch.quantile(conc, 0.99, dim=1).clamp(min=1e-6)
        conc = conc * (ref_max / max_c)[:, None]
        out.append(torch.exp(-(ref @ conc)).reshape(3, img.shape[1], img.shape[2]))
    return torch.stack(out).clamp(0.0, 1.0).to(rgb.dtype).to(rgb.device)


def fit_macenko(images: np.ndarray, *, beta: float = 0.15, alpha: float = 1.0) -> dict[str, Any]:
    """Reference stains and 99th-percentile concentrations from uint8 NHWC tiles, pooled."""
    import torch

    x = torch.as_tensor(np.ascontiguousarray(images)).double() / 255.0  # N, H, W, 3
    od = -torch.log(x.clamp(min=1 / 255).reshape(-1, 3))
    found = _stain_vectors(od, beta, alpha)
    if found is None:
        raise ModelError("Macenko fit: too few stained pixels in the reference tiles")
    he, keep = found
    conc = torch.linalg.lstsq(he, keep.T).solution
    return {"stain_matrix": [[float(v) for v in row] for row in he],
            "max_concentrations": [float(v) for v in torch.quantile(conc, 0.99, dim=1)]}


def check_arguments(args: Mapping[str, Any]) -> list[str]:
    """Problems with a ``StainNormalize`` step's arguments (empty when fine)."""
    method = args.get("method")
    if method not in METHODS:
        return [f"method must be one of {', '.join(METHODS)}, got {method!r}"]
    if method == "reinhard":
        bad = [k for k in ("target_means", "target_stds") if not _numbers(args.get(k), 3)]
        if not bad and any(v <= 0 for v in args["target_stds"]):
            bad.append("target_stds (not positive)")
        return [f"{', '.join(bad)} must be lists of 3 numbers"] if bad else []
    problems = []
    m = args.get("stain_matrix")
    if not (isinstance(m, list) and len(m) == 3 and all(_numbers(r, 2) for r in m)):
        problems.append("stain_matrix must be 3 rows of 2 numbers (H and E optical densities)")
    if not _numbers(args.get("max_concentrations"), 2):
        problems.append("max_concentrations must be a list of 2 numbers")
    return problems


def _numbers(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )


def apply(rgb: torch.Tensor, args: Mapping[str, Any]) -> torch.Tensor:
    """Run the step described by checked ``args`` on [0, 1] RGB."""
    if args["method"] == "reinhard":
        return reinhard(rgb, args["target_means"], args["target_stds"])
    return macenko(rgb, args["stain_matrix"], args["max_concentrations"])


__all__ = ["FLAT_LAB_SD", "MACENKO_MAX_C", "MACENKO_STAINS", "METHODS", "apply", "check_arguments",
           "fit_macenko", "fit_reinhard", "lab_to_rgb", "macenko", "reinhard", "rgb_to_lab"]
