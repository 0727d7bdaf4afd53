"""Blends that carry the classifier's verdict: animated class blends and annotated layer blends.

- :func:`dense_blend` samples a class blend finely where the classifier changes its mind, so the
  transition window (end-class probability between the low and high swap thresholds) holds several
  frames of the animation instead of falling between two of them.
- :func:`write_blend_gif` draws ``t``, the end-class probability and the top class on every frame.
- :func:`annotate_layer_grid` classifies every cell of a layer-blend grid and writes the prediction
  into the cell; :func:`layer_sensitivity` takes one w vector at a time from the other class and
  reports how far the prediction moves. Which layers matter is measured, not assumed from the
  generic StyleGAN reading (docs/method.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from histobridge._atomic import atomic_path
from histobridge.errors import InputError
from histobridge.synthetic import conditioning as cond
from histobridge.synthetic.blending import ClassBlend, LayerBlendGrid, _class_ws, class_blend
from histobridge.synthetic.fov import classify_tiles, gan_tile_um
from histobridge.synthetic.seeds import classifier_column

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator

WINDOW = (0.25, 0.75)  # the swap thresholds' low and high: the transition window


def window_frames(probs: np.ndarray, window: tuple[float, float] = WINDOW) -> int:
    """How many frames have an end-class probability strictly inside ``window``."""
    p = np.asarray(probs)
    return int(((p > window[0]) & (p < window[1])).sum())


def dense_blend(
    G: Generator, seed: int, class_from: int | str, class_to: int | str, classifier: TileClassifier,
    *, steps: int = 25, extra: int = 8, gan_um: float | None = None,
) -> ClassBlend:
    """A blend with ``steps`` even positions plus ``extra`` positions inside the transition window.

    The window is bracketed on the coarse pass (last position below the low threshold, first above
    the high one); if the classifier never crosses, the coarse blend is returned as is.
    """
    coarse = class_blend(G, seed, class_from, class_to, steps, classifier=classifier, gan_um=gan_um)
    assert coarse.predictions is not None
    col = classifier_column(coarse.class_to, cond.resolve_class(G, class_to), coarse.classifier_classes)
    p = coarse.predictions[:, col]
    below, above = np.flatnonzero(p <= WINDOW[0]), np.flatnonzero(p >= WINDOW[1])
    if not len(below) or not len(above) or extra < 1:
        return coarse
    hi_i = int(above[above > below[0]][0]) if (above > below[0]).any() else None
    if hi_i is None:
        return coarse
    lo_i = int(below[below < hi_i][-1])
    inner = np.linspace(coarse.ts[lo_i], coarse.ts[hi_i], extra + 2)[1:-1]
    ts = np.unique(np.concatenate([coarse.ts, inner]))
    return class_blend(G, seed, class_from, class_to, ts, classifier=classifier, gan_um=gan_um)


def label_image(image: np.ndarray, lines: Sequence[str], *, scale: int = 4,
                colour: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """The image enlarged ``scale``× (nearest) with a caption band below it."""
    tile = Image.fromarray(np.ascontiguousarray(image[..., :3]), "RGB")
    tile = tile.resize((tile.width * scale, tile.height * scale), Image.Resampling.NEAREST)
    band = 12 * len(lines) + 6
    out = Image.new("RGB", (tile.width, tile.height + band), (20, 20, 20))
    out.paste(tile, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((4, tile.height + 3 + 12 * i), line, fill=colour)
    return out


def blend_frames(blend: ClassBlend, *, scale: int = 4) -> list[Image.Image]:
    """One captioned frame per blend position, with a bar for the end-class probability."""
    if blend.predictions is None:
        raise InputError("an animated blend needs the classifier's predictions (pass a classifier)")
    names = [n.lower() for n in blend.classifier_classes]
    col = names.index(blend.class_to.lower()) if blend.class_to.lower() in names else None
    frames = []
    for i, t in enumerate(blend.ts):
        probs = blend.predictions[i]
        top = blend.classifier_classes[int(np.argmax(probs))]
        p_end = float(probs[col]) if col is not None else float("nan")
        img = label_image(blend.raw[i], [f"seed {blend.seed}  t={t:.3f}",
                                          f"P({blend.class_to})={p_end:.2f}", f"top: {top}"], scale=scale)
        draw = ImageDraw.Draw(img)
        w = img.width - 8
        y = img.height - 4
        draw.rectangle([4, y - 2, 4 + w, y], fill=(80, 80, 80))
        if np.isfinite(p_end):
            draw.rectangle([4, y - 2, 4 + int(w * p_end), y], fill=(240, 160, 40))
        frames.append(img)
    return frames


def write_blend_gif(blend: ClassBlend, path: str | Path, *, frame_ms: int = 120, scale: int = 4) -> Path:
    """An animated GIF of the blend (there and back), each frame carrying its prediction."""
    frames = blend_frames(blend, scale=scale)
    seq = frames + frames[-2:0:-1]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        seq[0].save(tmp, format="GIF", save_all=True, append_images=seq[1:], duration=frame_ms, loop=0)
    return path


@dataclass(frozen=True)
class AnnotatedGrid:
    """A layer-blend grid with the classifier's probabilities per cell (rows, cols, C)."""

    grid: LayerBlendGrid
    predictions: np.ndarray
    classifier_classes: tuple[str, ...]

    def records(self) -> list[dict[str, Any]]:
        out = []
        for rec in self.grid.records():
            p = self.predictions[rec["row"], rec["col"]]
            preds = {f"pred_{n}": float(v) for n, v in zip(self.classifier_classes, p, strict=True)}
            out.append({**rec, **preds, "top": self.classifier_classes[int(np.argmax(p))]})
        return out


def annotate_layer_grid(
    G: Generator, grid: LayerBlendGrid, classifier: TileClassifier, *, gan_um: float | None = None
) -> AnnotatedGrid:
    """Classify every cell of ``grid`` the way synthetic tiles are classified (crop, then resize)."""
    imgs = np.stack([c.image for row in grid.cells for c in row])
    _, preds = classify_tiles(imgs, gan_tile_um(G, gan_um), classifier, batch_size=64)
    rows, cols = len(grid.cells), len(grid.cells[0])
    return AnnotatedGrid(grid, preds.reshape(rows, cols, -1), tuple(classifier.config.class_names))


def annotated_grid_picture(ag: AnnotatedGrid, class_to: str) -> Image.Image:
    """The grid with each cell's P(``class_to``) and top class written into it."""
    from histobridge.viz.pictures import montage

    names = [n.lower() for n in ag.classifier_classes]
    col = names.index(class_to.lower()) if class_to.lower() in names else 0
    cells = []
    for r, row in enumerate(ag.grid.cells):
        line = []
        for c, cell in enumerate(row):
            p = ag.predictions[r, c]
            top = ag.classifier_classes[int(np.argmax(p))]
            line.append(label_image(cell.image, [f"P={p[col]:.2f}", top[:9]], scale=2))
        cells.append(line)
    first = ag.grid.cells[0]
    col_labels = [f"seed {c.seed}" for c in first]
    col_labels[0] = f"A={first[0].class_a}\nB={first[0].class_b}\n" + col_labels[0]
    row_labels = [f"A: {_span(row[0].layers_a)}\nB: {_span(row[0].layers_b)}" for row in ag.grid.cells]
    return montage(cells, row_labels=row_labels, col_labels=col_labels)


def _span(layers: Sequence[int]) -> str:
    if not layers:
        return "none"
    return f"{layers[0]}..{layers[-1]}" if len(layers) > 1 else str(layers[0])


def layer_sensitivity(
    G: Generator, classifier: TileClassifier, seeds: Sequence[int], class_a: int | str, class_b: int | str,
    *, gan_um: float | None = None,
) -> list[dict[str, Any]]:
    """Per w index k: mean change of P(B) when only w_k is taken from B in an A image, and of P(A)
    when only w_k is taken from A in a B image (mean over ``seeds``)."""
    if not seeds:
        raise InputError("layer sensitivity needs at least one seed")
    names = cond.class_names(G)
    ia, ib = cond.resolve_class(G, class_a), cond.resolve_class(G, class_b)
    clf_names = tuple(classifier.config.class_names)
    col_a, col_b = classifier_column(names[ia], ia, clf_names), classifier_column(names[ib], ib, clf_names)
    w_a, w_b = _class_ws(G, seeds, ia, ib, 1.0)
    um = gan_tile_um(G, gan_um)

    def probs(ws: Any) -> np.ndarray:
        return classify_tiles(cond.to_uint8(cond.render_ws(G, ws)), um, classifier, batch_size=64)[1]

    base_a, base_b = probs(w_a), probs(w_b)
    rows = []
    for k in range(int(G.num_ws)):
        a_with_b = w_a.clone()
        a_with_b[:, k] = w_b[:, k]
        b_with_a = w_b.clone()
        b_with_a[:, k] = w_a[:, k]
        pa, pb = probs(a_with_b), probs(b_with_a)
        top_b = int((pa.argmax(axis=1) == col_b).sum()) - int((base_a.argmax(axis=1) == col_b).sum())
        rows.append({
            "layer": k,
            f"dP({names[ib]}) of {names[ia]} image, w_k from {names[ib]}":
                float((pa[:, col_b] - base_a[:, col_b]).mean()),
            f"{names[ia]} images turned {names[ib]}": top_b,
            f"dP({names[ia]}) of {names[ib]} image, w_k from {names[ia]}":
                float((pb[:, col_a] - base_b[:, col_a]).mean()),
            "seeds": len(seeds),
        })
    return rows


__all__ = [
    "WINDOW",
    "AnnotatedGrid",
    "annotate_layer_grid",
    "annotated_grid_picture",
    "blend_frames",
    "dense_blend",
    "label_image",
    "layer_sensitivity",
    "window_frames",
    "write_blend_gif",
]
