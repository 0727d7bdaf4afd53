"""Class blending and layer blending for one seed (docs/method.md).

**Class blending** interpolates the class embedding linearly between two classes. The embedding is
an affine map of the label and the weights sum to one, so blending at ``t`` is exactly generating
with the soft label ``c = (1−t)·onehot_A + t·onehot_B``; histobridge does that, with no wrapper
around the mapping network. (Interpolating the two w vectors instead gives different images.)
For a scalar-label generator (Slideflow's interpolated embedding) the label is ``t`` itself and the
generator's own slerp between its two end embeddings applies.

**Layer blending** computes ``w_A`` and ``w_B`` for the same z and keeps class A's w at the chosen
layer indices (``layers_a``); every other index ``L`` takes ``α·w_B[L] + (1−α)·w_A[L]`` (α = 1 is a
plain swap to B). Low indices drive coarse structure, high indices texture and colour.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histobridge._atomic import write_csv, write_json
from histobridge._names import safe_name
from histobridge.errors import InputError
from histobridge.ranges import parse_floats, parse_ints
from histobridge.synthetic import conditioning as cond
from histobridge.synthetic.conditioning import blend_weights
from histobridge.synthetic.fov import classify_tiles, gan_tile_um

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator


MAX_STEPS = 1_000


def blend_steps(steps: int | Sequence[float] | np.ndarray) -> np.ndarray:
    """``steps`` evenly spaced t in [0, 1] (both ends included), or the given positions, checked."""
    if isinstance(steps, (int, np.integer)):
        if not 2 <= steps <= MAX_STEPS:
            raise InputError(f"class blending needs 2..{MAX_STEPS} steps, got {steps}")
        return np.linspace(0.0, 1.0, int(steps))
    ts = np.asarray(steps, dtype=np.float64).reshape(-1)
    if ts.size == 0 or not np.all(np.isfinite(ts)) or ts.min() < 0.0 or ts.max() > 1.0:
        raise InputError(f"blend positions must be numbers in [0, 1], got {ts.tolist()}")
    return ts


def blend_positions(text: str, *, what: str = "--steps") -> np.ndarray:
    """A count (``"7"``: evenly spaced, ends included) or explicit positions (``"0,0.3,0.5,1"``)."""
    spec = text.strip()
    if "," not in spec and "." not in spec:
        (count,) = parse_ints(spec, what=what, lo=2, hi=MAX_STEPS, max_count=1)
        return blend_steps(count)
    return blend_steps(parse_floats(spec, what=what, lo=0.0, hi=1.0, max_count=MAX_STEPS))


def class_blend_images(
    G: Generator,
    seed: int,
    a: int | str,
    b: int | str,
    ts: Sequence[float] | np.ndarray,
    *,
    truncation_psi: float = 1.0,
) -> torch.Tensor:
    """Float NCHW images of one seed at each blend position ``t`` (exact, for comparisons)."""
    ia, ib = cond.resolve_class(G, a), cond.resolve_class(G, b)
    c = cond.labels_for(G, blend_weights(cond.num_classes(G), ia, ib, ts))
    z = cond.latents(G, [seed]).repeat(len(ts), 1)
    return cond.render(G, z, c, truncation_psi=truncation_psi)


@dataclass(frozen=True)
class ClassBlend:
    """One seed blended from class A to class B; ``ready``/``predictions`` only with a classifier."""

    seed: int
    class_from: str
    class_to: str
    ts: np.ndarray
    raw: np.ndarray  # (steps, gan_px, gan_px, 3) uint8
    ready: np.ndarray | None = None
    predictions: np.ndarray | None = None  # (steps, C)
    classifier_classes: tuple[str, ...] = ()

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, t in enumerate(self.ts):
            row: dict[str, Any] = {
                "step": i,
                "t": float(t),
                "seed": self.seed,
                "class_from": self.class_from,
                "class_to": self.class_to,
            }
            if self.predictions is not None:
                for name, p in zip(self.classifier_classes, self.predictions[i], strict=True):
                    row[f"pred_{name}"] = float(p)
            out.append(row)
        return out


def class_blend(
    G: Generator,
    seed: int,
    class_from: int | str,
    class_to: int | str,
    steps: int | Sequence[float] | np.ndarray = 7,
    *,
    classifier: TileClassifier | None = None,
    gan_um: float | None = None,
    truncation_psi: float = 1.0,
) -> ClassBlend:
    """Blend one seed from ``class_from`` to ``class_to`` in ``steps`` (a count, or positions t) and
    classify each step."""
    names = cond.class_names(G)
    ia, ib = cond.resolve_class(G, class_from), cond.resolve_class(G, class_to)
    ts = blend_steps(steps)
    raw = cond.to_uint8(class_blend_images(G, seed, ia, ib, ts, truncation_psi=truncation_psi))
    ready = preds = None
    clf_names: tuple[str, ...] = ()
    if classifier is not None:
        ready, preds = classify_tiles(raw, gan_tile_um(G, gan_um), classifier, batch_size=64)
        clf_names = _output_names(classifier, preds.shape[1])
    return ClassBlend(int(seed), names[ia], names[ib], ts, raw, ready, preds, clf_names)


def _output_names(classifier: TileClassifier, n: int) -> tuple[str, ...]:
    names = tuple(classifier.config.class_names)
    return names if len(names) == n else tuple(f"output{i}" for i in range(n))


def class_blend_strip(blend: ClassBlend) -> Image.Image:
    """The blend as one captioned strip: ``t``, the classifier's probability of the end class (when it
    has one of that name) and its top class under each image."""
    from histobridge.viz.pictures import strip

    lowered = [c.lower() for c in blend.classifier_classes]
    target = lowered.index(blend.class_to.lower()) if blend.class_to.lower() in lowered else None
    captions = []
    for i, t in enumerate(blend.ts):
        text = f"t={t:.2f}"
        if blend.predictions is not None:
            p = blend.predictions[i]
            if target is not None:
                text += f"\nP({blend.classifier_classes[target]})={p[target]:.2f}"
            k = int(np.argmax(p))
            text += f"\ntop: {blend.classifier_classes[k]}"
        captions.append(text)
    title = f"seed {blend.seed}\n{blend.class_from}\n-> {blend.class_to}"
    return strip(list(blend.raw), captions, title=title)


def write_class_blend(blend: ClassBlend, out_dir: str | Path) -> dict[str, Path]:
    """``blend_seed<S>.png`` (strip), ``.csv`` and ``.json`` (one row per step)."""
    from histobridge.viz.pictures import save_png

    out = Path(out_dir)
    stem = f"blend_seed{blend.seed}_{_slug(blend.class_from)}_to_{_slug(blend.class_to)}"
    paths = {"png": out / f"{stem}.png", "csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
    save_png(class_blend_strip(blend), paths["png"])
    rows = blend.rows()
    _write_csv(paths["csv"], rows)
    write_json(
        paths["json"],
        {
            "seed": blend.seed,
            "class_from": blend.class_from,
            "class_to": blend.class_to,
            "method": "soft one-hot label (1-t)*onehot_from + t*onehot_to",
            "rows": rows,
        },
    )
    return paths


# ----------------------------------------------------------------------------- layer blending


def parse_layers(text: str, num_ws: int | None = None, *, what: str = "--layers") -> tuple[int, ...]:
    """``"0-5"``, ``"0,2,4-6"`` or ``""`` (no layer) → sorted unique w indices
    (:mod:`histobridge.ranges` grammar), checked against ``num_ws`` when given."""
    layers = parse_ints(text, what=what, lo=0, allow_empty=True)
    return tuple(sorted(layers)) if num_ws is None else check_layers(layers, num_ws)


def check_layers(layers: Iterable[int], num_ws: int) -> tuple[int, ...]:
    """Sorted unique indices, refusing any outside ``0..num_ws−1``."""
    idx = sorted({int(i) for i in layers})
    bad = [i for i in idx if not 0 <= i < num_ws]
    if bad:
        raise InputError(f"layer indices {bad} are outside 0..{num_ws - 1} (this generator has {num_ws} ws)")
    return tuple(idx)


def parse_splits(text: str, num_ws: int | None = None, *, what: str = "--splits") -> tuple[int, ...] | None:
    """``auto`` (``None``: every split ``0..num_ws``) or split points such as ``0,4,8`` or ``0-6``,
    checked against ``0..num_ws`` when given (rows keep the written order)."""
    if text.strip().casefold() == "auto":
        return None
    return parse_ints(text, what=what, lo=0, hi=num_ws)


def check_splits(splits: Iterable[int], num_ws: int) -> tuple[int, ...]:
    """Split points as given, refusing any outside ``0..num_ws``."""
    out = tuple(int(k) for k in splits)
    bad = [k for k in out if not 0 <= k <= num_ws]
    if bad:
        raise InputError(f"split points {bad} are outside 0..{num_ws} (this generator has {num_ws} ws)")
    return out


def mix_ws(w_a: torch.Tensor, w_b: torch.Tensor, layers_a: Sequence[int], alpha: float) -> torch.Tensor:
    """Keep ``w_a`` at ``layers_a``; elsewhere ``α·w_b + (1−α)·w_a``. Shapes [N, num_ws, w_dim]."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    out = w_a.clone()
    rest = [i for i in range(w_a.shape[1]) if i not in set(layers_a)]
    if rest:
        out[:, rest] = alpha * w_b[:, rest] + (1.0 - alpha) * w_a[:, rest]
    return out


@dataclass(frozen=True)
class LayerBlendImage:
    """One layer-blended image and exactly how it was made."""

    seed: int
    class_a: str
    class_b: str
    layers_a: tuple[int, ...]
    layers_b: tuple[int, ...]
    alpha: float
    image: np.ndarray  # (gan_px, gan_px, 3) uint8

    def record(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "class_a": self.class_a,
            "class_b": self.class_b,
            "layers_a": list(self.layers_a),
            "layers_b": list(self.layers_b),
            "alpha": self.alpha,
        }


def layer_blend_images(
    G: Generator,
    seeds: Sequence[int],
    class_a: int | str,
    class_b: int | str,
    layers_a: Sequence[int],
    alpha: float = 1.0,
    *,
    truncation_psi: float = 1.0,
) -> torch.Tensor:
    """Float NCHW images, one per seed, with class A's w at ``layers_a`` and B (mixed by α) elsewhere."""
    layers = check_layers(layers_a, G.num_ws)
    w_a, w_b = _class_ws(G, seeds, class_a, class_b, truncation_psi)
    return cond.render_ws(G, mix_ws(w_a, w_b, layers, alpha))


def _class_ws(
    G: Generator, seeds: Sequence[int], class_a: int | str, class_b: int | str, psi: float
) -> tuple[torch.Tensor, torch.Tensor]:
    n_cls, n = cond.num_classes(G), len(seeds)
    z = cond.latents(G, seeds)
    ia, ib = cond.resolve_class(G, class_a), cond.resolve_class(G, class_b)
    w_a = cond.mapping_ws(G, z, cond.labels_for(G, cond.class_weights(n_cls, ia, n)), truncation_psi=psi)
    w_b = cond.mapping_ws(G, z, cond.labels_for(G, cond.class_weights(n_cls, ib, n)), truncation_psi=psi)
    return w_a, w_b


@dataclass(frozen=True)
class LayerBlendGrid:
    """Rows: splits (layers ``0..k−1`` from A); columns: seeds or α values."""

    cells: tuple[tuple[LayerBlendImage, ...], ...]
    splits: tuple[int, ...]
    num_ws: int

    def records(self) -> list[dict[str, Any]]:
        return [
            {"row": r, "col": c, "split": self.splits[r], **img.record()}
            for r, row in enumerate(self.cells)
            for c, img in enumerate(row)
        ]


def auto_splits(num_ws: int) -> tuple[int, ...]:
    """Every split point 0..num_ws (k = 0: all from B; k = num_ws: all from A)."""
    return tuple(range(num_ws + 1))


def layer_blend(
    G: Generator,
    seeds: Sequence[int],
    class_a: int | str,
    class_b: int | str,
    *,
    splits: Sequence[int] | None = None,
    layers_a: Sequence[int] | None = None,
    alphas: Sequence[float] = (1.0,),
    truncation_psi: float = 1.0,
) -> LayerBlendGrid:
    """A grid of layer blends: one row per split ``k`` (A at layers ``0..k−1``) or one row for an
    explicit ``layers_a``; columns are the seeds × α values."""
    names = cond.class_names(G)
    ia, ib = cond.resolve_class(G, class_a), cond.resolve_class(G, class_b)
    if not seeds:
        raise InputError("layer blending needs at least one seed")
    if not alphas:
        raise InputError("layer blending needs at least one alpha")
    if layers_a is not None:
        rows = [check_layers(layers_a, G.num_ws)]
        split_ids: tuple[int, ...] = (-1,)
    else:
        split_ids = auto_splits(G.num_ws) if splits is None else check_splits(splits, G.num_ws)
        if not split_ids:
            raise InputError("layer blending needs at least one split point")
        rows = [tuple(range(k)) for k in split_ids]
    w_a, w_b = _class_ws(G, seeds, ia, ib, truncation_psi)
    cells = []
    for layers in rows:
        layers_b = tuple(i for i in range(G.num_ws) if i not in layers)
        row = []
        for alpha in alphas:
            imgs = cond.to_uint8(cond.render_ws(G, mix_ws(w_a, w_b, layers, float(alpha))))
            row += [
                LayerBlendImage(int(s), names[ia], names[ib], layers, layers_b, float(alpha), img)
                for s, img in zip(seeds, imgs, strict=True)
            ]
        cells.append(tuple(row))
    return LayerBlendGrid(tuple(cells), split_ids, int(G.num_ws))


def _span(layers: Sequence[int]) -> str:
    if not layers:
        return "none"
    if list(layers) == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}" if len(layers) > 1 else str(layers[0])
    return ",".join(str(i) for i in layers)


def layer_blend_picture(grid: LayerBlendGrid) -> Image.Image:
    """The grid with row labels (which layers come from which class) and column labels (seed, α)."""
    from histobridge.viz.pictures import montage

    first = grid.cells[0]
    col_labels = [f"seed {c.seed}\nalpha={c.alpha:g}" for c in first]
    row_labels = [f"A: {_span(row[0].layers_a)}\nB: {_span(row[0].layers_b)}" for row in grid.cells]
    title_a, title_b = first[0].class_a, first[0].class_b
    col_labels[0] = f"A={title_a}\nB={title_b}\n" + col_labels[0]
    return montage(
        [[c.image for c in row] for row in grid.cells], row_labels=row_labels, col_labels=col_labels
    )


def write_layer_blend(grid: LayerBlendGrid, out_dir: str | Path) -> dict[str, Path]:
    """``layer_blend_<A>_<B>.png`` plus ``.csv``/``.json``: indices, α, classes and seed of every image."""
    from histobridge.viz.pictures import save_png

    first = grid.cells[0][0]
    out = Path(out_dir)
    stem = f"layer_blend_{_slug(first.class_a)}_{_slug(first.class_b)}"
    paths = {"png": out / f"{stem}.png", "csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
    save_png(layer_blend_picture(grid), paths["png"])
    records = grid.records()
    _write_csv(
        paths["csv"],
        [{**r, "layers_a": _span(r["layers_a"]), "layers_b": _span(r["layers_b"])} for r in records],
    )
    write_json(
        paths["json"],
        {
            "num_ws": grid.num_ws,
            "rule": "w[L] = w_a[L] for L in layers_a; alpha*w_b[L] + (1-alpha)*w_a[L] otherwise",
            "images": records,
        },
    )
    return paths


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(rows[0]) if rows else []
    write_csv(path, fields, [[r.get(f, "") for f in fields] for r in rows])


def _slug(name: str) -> str:
    return safe_name(name, "class")


__all__ = [
    "ClassBlend",
    "LayerBlendGrid",
    "LayerBlendImage",
    "auto_splits",
    "blend_positions",
    "blend_steps",
    "blend_weights",
    "check_layers",
    "check_splits",
    "class_blend",
    "class_blend_images",
    "class_blend_strip",
    "layer_blend",
    "layer_blend_images",
    "layer_blend_picture",
    "mix_ws",
    "parse_layers",
    "parse_splits",
    "write_class_blend",
    "write_layer_blend",
]
