"""Conditioning a class-conditional generator: the one place that turns what a user typed into labels,
latents and images.

* **Classes**: :func:`lookup_class` is the only rule for naming a class, used by every command and
  library function: an index (``1``, ``"1"``), or a name matched case-insensitively, or an
  unambiguous prefix of one (``squ`` for ``Squamous``). Anything else is an error that lists the
  generator's classes.
* **Labels**: rows of class weights (one-hot, or soft for blending) become the generator's ``c``
  with :func:`labels_for`; a scalar-label generator (two ends, Slideflow's interpolated embedding)
  takes the weight of its second end, so soft weights mean the same thing for both kinds.
* **Latents**: ``z`` for a seed is ``RandomState(seed).randn(z_dim)``
  (:func:`histobridge.models.stylegan2.z_from_seed`), the convention of the official scripts.
* **Rendering**: mapping + synthesis in batches without autograd, and conversion to uint8 per batch
  so a long seed list never holds every float image at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from histobridge.errors import InputError, ModelError
from histobridge.ranges import SEED_MAX

if TYPE_CHECKING:
    import torch

    from histobridge.models.stylegan2 import Generator, NoiseMode

NOISE_MODES = ("const", "random", "none")


# ----------------------------------------------------------------------------- classes


def num_classes(G: Generator) -> int:
    """Classes the generator can be conditioned on (a scalar-label model has two ends; 0: unconditional)."""
    if G.config.interp_embed:
        return 2
    return int(G.c_dim)


def is_scalar_label(G: Generator) -> bool:
    """True for a generator whose label is one number in [0, 1] between two end classes."""
    return bool(G.config.interp_embed)


def class_names(G: Generator) -> tuple[str, ...]:
    """The generator's class names, or ``class0``… when its metadata has none (or the wrong count)."""
    n = num_classes(G)
    names = tuple(str(x) for x in (getattr(getattr(G, "meta", None), "class_names", ()) or ()))
    return names if len(names) == n else tuple(f"class{i}" for i in range(n))


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"{i}={n}" for i, n in enumerate(names))


def lookup_class(names: Sequence[str], value: int | str, *, what: str = "class") -> int:
    """Index of a class given as an index or a name: exact name (case-insensitive; case decides only
    between names that differ in case alone), then a whole-number index, then a unique prefix."""
    if not names:
        raise ModelError(f"this generator is unconditional (c_dim=0); it has no {what} to choose from")
    if isinstance(value, (bool, float)):
        raise InputError(f"{what} {value!r}: give a class name or an index; classes: {_listing(names)}")
    if isinstance(value, (int, np.integer)):
        return _index(int(value), names, what)
    key = str(value).strip()
    if not key:
        raise InputError(f"{what}: empty name; classes: {_listing(names)}")
    folded = [n.casefold() for n in names]
    exact = [i for i, n in enumerate(folded) if n == key.casefold()]
    if len(exact) > 1:
        exact = [i for i in exact if names[i] == key] or exact
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise InputError(f"{what} {key!r} is ambiguous: it names {[names[i] for i in exact]}")
    if key.lstrip("+-").isdigit():
        return _index(int(key), names, what)
    starts = [i for i, n in enumerate(folded) if n.startswith(key.casefold())]
    if len(starts) == 1:
        return starts[0]
    if starts:
        matches = ", ".join(names[i] for i in starts)
        raise InputError(f"{what} {key!r} is ambiguous: it starts {matches}; classes: {_listing(names)}")
    raise InputError(f"unknown {what} {key!r}; classes: {_listing(names)}")


def _index(idx: int, names: Sequence[str], what: str) -> int:
    if not 0 <= idx < len(names):
        raise InputError(f"{what} index {idx} is out of range; classes: {_listing(names)}")
    return idx


def resolve_class(G: Generator, value: int | str) -> int:
    """The generator's class index for a name or an index (see :func:`lookup_class`)."""
    return lookup_class(class_names(G), value)


# ----------------------------------------------------------------------------- labels


def class_weights(n_classes: int, index: int, n: int = 1) -> np.ndarray:
    """[n, n_classes] one-hot class weights."""
    if not 0 <= index < n_classes:
        raise InputError(f"class index {index} is out of range for {n_classes} classes")
    w = np.zeros((n, n_classes), dtype=np.float64)
    w[:, index] = 1.0
    return w


def blend_weights(n_classes: int, a: int, b: int, ts: Sequence[float] | np.ndarray) -> np.ndarray:
    """[len(ts), n_classes] soft labels ``(1−t)·onehot_a + t·onehot_b``."""
    t = np.asarray(ts, dtype=np.float64).reshape(-1)
    w = np.zeros((t.size, n_classes), dtype=np.float64)
    w[:, a] += 1.0 - t
    w[:, b] += t
    return w


def weights_for(G: Generator, value: int | str | float) -> np.ndarray:
    """[n_classes] weights for one class (name or index) or, on a scalar-label generator, for a
    label value in [0, 1] such as ``"0.25"`` (weight ``1−v`` on the first end, ``v`` on the second)."""
    names = class_names(G)
    if is_scalar_label(G) and not isinstance(value, (int, np.integer)):
        number = _scalar(value)
        if number is not None:
            if not 0.0 <= number <= 1.0:
                raise InputError(f"label {number:g} is outside [0, 1] for this scalar-label generator")
            row: np.ndarray = blend_weights(2, 0, 1, [number])[0]
            return row
    if isinstance(value, float):
        raise InputError(f"class {value!r}: give a class name or an index; classes: {_listing(names)}")
    onehot: np.ndarray = class_weights(len(names), lookup_class(names, value))[0]
    return onehot


def class_rows(G: Generator, klass: int | str | float | np.ndarray | None, n: int) -> np.ndarray:
    """[n, n_classes] weights for ``n`` images: one class (name, index, scalar label value) for all,
    a weight vector broadcast to every row, or one row per image; ``None`` only when unconditional."""
    n_cls = num_classes(G)
    if klass is None:
        if n_cls:
            raise InputError(f"this generator is conditional; choose a class: {_listing(class_names(G))}")
        return np.zeros((n, 0))
    if isinstance(klass, np.ndarray):
        w = np.asarray(klass, dtype=np.float64)
        if w.shape not in ((n_cls,), (n, n_cls)):
            raise InputError(f"class weights must be [{n_cls}] or [{n}, {n_cls}], got shape {w.shape}")
        rows: np.ndarray = np.broadcast_to(w, (n, n_cls)).copy()
        return rows
    one: np.ndarray = weights_for(G, klass)[None, :]
    return np.repeat(one, n, axis=0)


def _scalar(value: str | float) -> float | None:
    if isinstance(value, float):
        return value
    text = str(value).strip()
    if text.lstrip("+-").isdigit():
        return None  # an index, not a label value
    try:
        return float(text)
    except ValueError:
        return None


def labels_for(G: Generator, weights: np.ndarray | Sequence[Sequence[float]]) -> torch.Tensor | None:
    """Generator labels ``c`` from class weights [N, n_classes]; ``None`` for an unconditional one."""
    import torch

    n_cls = num_classes(G)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != n_cls:
        raise InputError(f"class weights must be [N, {n_cls}], got shape {w.shape}")
    if n_cls == 0:
        return None
    if is_scalar_label(G):
        w = w[:, 1:2]
    return torch.from_numpy(np.ascontiguousarray(w)).to(torch.float32)


# ----------------------------------------------------------------------------- latents


def check_seeds(seeds: Sequence[int] | np.ndarray) -> list[int]:
    """Seeds as ints, each in ``0..2**32−1`` (what ``RandomState`` accepts)."""
    out = [int(s) for s in seeds]
    bad = [s for s in out if not 0 <= s <= SEED_MAX]
    if bad:
        raise InputError(f"seeds must be in 0..{SEED_MAX}; got {bad[:5]}")
    return out


def latents(G: Generator, seeds: Sequence[int] | np.ndarray) -> torch.Tensor:
    """[N, z_dim] latents, one ``RandomState(seed)`` each (the official scripts' seeds)."""
    from histobridge.models.stylegan2 import z_from_seeds

    return z_from_seeds(check_seeds(seeds), G.z_dim)


# ----------------------------------------------------------------------------- rendering


def device_of(G: Generator) -> torch.device:
    """Where the generator's weights live (CPU for a parameterless module)."""
    import torch

    for p in G.parameters():
        return p.device
    return torch.device("cpu")


def check_noise_mode(noise_mode: str) -> NoiseMode:
    """The synthesis network's per-layer noise: ``const`` (reproducible), ``random`` or ``none``."""
    if noise_mode not in NOISE_MODES:
        raise InputError(f"noise mode {noise_mode!r} is not one of {', '.join(NOISE_MODES)}")
    return cast("NoiseMode", noise_mode)


def _batches(n: int, batch_size: int) -> range:
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    return range(0, n, batch_size)


def mapping_ws(
    G: Generator, z: torch.Tensor, c: torch.Tensor | None, *, truncation_psi: float = 1.0
) -> torch.Tensor:
    """w vectors [N, num_ws, w_dim] on the CPU for latents and labels, without autograd."""
    import torch

    dev = device_of(G)
    with torch.no_grad():
        ws: torch.Tensor = G.mapping(
            z.to(dev), None if c is None else c.to(dev), truncation_psi=truncation_psi
        )
    return ws.cpu()


def render_ws(
    G: Generator, ws: torch.Tensor, *, noise_mode: str = "const", batch_size: int = 16
) -> torch.Tensor:
    """Float NCHW images on the CPU from w vectors [N, num_ws, w_dim] (used by layer blending)."""
    import torch

    mode = check_noise_mode(noise_mode)
    dev = device_of(G)
    out = []
    with torch.no_grad():
        for i in _batches(ws.shape[0], batch_size):
            out.append(G.synthesis(ws[i : i + batch_size].to(dev), noise_mode=mode).cpu())
    return torch.cat(out) if out else _empty(G)


def render(
    G: Generator,
    z: torch.Tensor,
    c: torch.Tensor | None,
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
) -> torch.Tensor:
    """Float NCHW images on the CPU for latents ``z`` and labels ``c``, in batches, without autograd."""
    import torch

    steps = _batches(z.shape[0], batch_size)
    out = [_forward(G, z, c, i, batch_size, truncation_psi, noise_mode) for i in steps]
    return torch.cat(out) if out else _empty(G)


def _forward(
    G: Generator,
    z: torch.Tensor,
    c: torch.Tensor | None,
    i: int,
    batch_size: int,
    psi: float,
    noise_mode: str,
) -> torch.Tensor:
    import torch

    mode = check_noise_mode(noise_mode)
    dev = device_of(G)
    zb = z[i : i + batch_size].to(dev)
    cb = None if c is None else c[i : i + batch_size].to(dev)
    with torch.no_grad():
        img: torch.Tensor = G(zb, cb, truncation_psi=psi, noise_mode=mode)
    return img.cpu()


def _empty(G: Generator) -> torch.Tensor:
    import torch

    return torch.zeros((0, G.img_channels, G.img_resolution, G.img_resolution))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """NCHW floats → NHWC uint8 with the generator module's convention (``x·127.5+128``, clamp, truncate)."""
    from histobridge.models.stylegan2 import to_uint8 as _to_uint8

    return _to_uint8(images)


def render_uint8(
    G: Generator,
    seeds: Sequence[int] | np.ndarray,
    weights: np.ndarray | Sequence[Sequence[float]],
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
) -> np.ndarray:
    """uint8 NHWC tiles, one per seed, under the class weights of the same row (mapping + synthesis,
    converted batch by batch)."""
    z = latents(G, seeds)
    c = labels_for(G, weights)
    if c is not None and c.shape[0] != z.shape[0]:
        raise InputError(f"{z.shape[0]} seeds but {c.shape[0]} rows of class weights")
    res, ch = int(G.img_resolution), int(G.img_channels)
    out = np.empty((z.shape[0], res, res, ch), dtype=np.uint8)
    for i in _batches(z.shape[0], batch_size):
        out[i : i + batch_size] = to_uint8(_forward(G, z, c, i, batch_size, truncation_psi, noise_mode))
    return out


def generator_record(G: Generator, gan_um: float | None = None) -> dict[str, Any]:
    """What to store next to outputs so they can be reproduced."""
    meta = getattr(G, "meta", None)
    um = getattr(meta, "tile_um", None) if gan_um is None else gan_um
    return {
        "source": getattr(meta, "source", ""),
        "variant": getattr(meta, "variant", ""),
        "class_names": list(class_names(G)),
        "tile_px": int(G.img_resolution),
        "tile_um": None if um is None else float(um),
        "num_ws": int(G.num_ws),
    }


__all__ = [
    "NOISE_MODES",
    "blend_weights",
    "check_noise_mode",
    "check_seeds",
    "class_names",
    "class_rows",
    "class_weights",
    "device_of",
    "generator_record",
    "is_scalar_label",
    "labels_for",
    "latents",
    "lookup_class",
    "mapping_ws",
    "num_classes",
    "render",
    "render_uint8",
    "render_ws",
    "resolve_class",
    "to_uint8",
    "weights_for",
]
