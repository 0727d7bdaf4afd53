"""The pool of teaching items: real tiles from annotated regions, synthetic tiles and class-swapped pairs.

Real tiles are cut at the generator's own field of view (its px and µm), so real and synthetic tiles
look alike in size and scale and a learner judges content, not resolution. Every item carries the
classifier's prediction on the view the classifier sees (crop-then-resize), for feedback.

Real tiles that are the nearest neighbour of some synthetic tile (in a small, fixed pixel feature
space: 8 × 8 mean RGB, standardised per channel) are held out of the quiz, so a learner is never asked
to tell a synthetic tile from the real tile it most resembles — see docs/teaching.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from histobridge.errors import InputError

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator
    from histobridge.qupath.project import Project

Kind = Literal["real", "synthetic", "swapped"]
FEATURE_GRID = 8


@dataclass(frozen=True)
class TeachingItem:
    """One tile a learner sees, with what it is and what the classifier made of it."""

    item_id: str
    kind: Kind
    true_class: str
    image: np.ndarray = field(repr=False, compare=False)  # (px, px, 3) uint8
    prediction: tuple[float, ...] = ()
    predicted_class: str = ""
    seed: int | None = None
    source: str = ""  # "entry 1, region 3" or "seed 12"
    pair: str | None = None  # for swapped twins: the item_id of the other half


@dataclass(frozen=True)
class ItemPool:
    """All candidate items plus the real tiles held out by the nearest-neighbour rule."""

    classes: tuple[str, ...]
    classifier_classes: tuple[str, ...]
    items: tuple[TeachingItem, ...]
    held_out_real: tuple[str, ...]
    tile_px: int
    tile_um: float

    def of_kind(self, kind: Kind) -> list[TeachingItem]:
        return [i for i in self.items if i.kind == kind]


def pixel_features(tiles: np.ndarray) -> np.ndarray:
    """(N, 8·8·3) block means of uint8 tiles: a coarse, model-free description for nearest neighbours."""
    tiles = np.asarray(tiles, dtype=np.float32)
    n, h, w, c = tiles.shape
    g = FEATURE_GRID
    hs, ws = h // g, w // g
    if hs == 0 or ws == 0:
        raise InputError(f"tiles of {h}×{w} px are too small for {g}×{g} features")
    blocks = tiles[:, : hs * g, : ws * g].reshape(n, g, hs, g, ws, c).mean(axis=(2, 4))
    return np.asarray(blocks.reshape(n, -1), dtype=np.float32)


def nearest_real(real: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Index of each synthetic tile's nearest real tile (Euclidean, features standardised on the real set)."""
    fr, fs = pixel_features(real), pixel_features(synthetic)
    mu, sd = fr.mean(axis=0), fr.std(axis=0) + 1e-6
    fr, fs = (fr - mu) / sd, (fs - mu) / sd
    d2 = (fs**2).sum(1)[:, None] - 2 * fs @ fr.T + (fr**2).sum(1)[None, :]
    return np.asarray(d2.argmin(axis=1), dtype=np.int64)


def _predict(classifier: TileClassifier, raw: np.ndarray, gan_um: float) -> np.ndarray:
    from histobridge.synthetic.fov import classifier_view

    if len(raw) == 0:
        return np.zeros((0, len(classifier.config.class_names)))
    return np.asarray(classifier.predict(classifier_view(raw, gan_um, classifier)), dtype=np.float64)


def _top(names: Sequence[str], p: np.ndarray) -> str:
    return str(names[int(np.argmax(p))]) if len(p) else ""


def real_tiles(
    project: Project,
    work_dir: Path,
    classes: Sequence[str],
    tile_px: int,
    tile_um: float,
    *,
    workers: int = 1,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Tile the project's annotations of ``classes`` at the generator's field of view.

    Returns (tiles, class per tile, source per tile); tiles are kept in ``work_dir/real.zarr`` so a
    rerun reuses them.
    """
    from histobridge.tiling import TileSpec, TilingOptions, open_store, tile_project

    known = {c.name for c in project.classes}
    wanted = tuple(c for c in classes if c in known) or None  # unlisted classes still come from annotations
    store = work_dir / "real.zarr"
    tile_project(
        project,
        store,
        TileSpec(tile_px=tile_px, tile_um=tile_um),
        TilingOptions(classes=wanted, workers=workers),
    )
    images: list[np.ndarray] = []
    labels: list[str] = []
    sources: list[str] = []
    for group in open_store(store).groups():
        if len(group) == 0:
            continue
        names = group.classes
        lab = np.asarray(group.labels[:])
        reg = np.asarray(group.regions[:])
        tiles = np.asarray(group.tiles[:])
        keep = lab >= 0
        images.append(tiles[keep])
        labels += [names[int(k)] for k in lab[keep]]
        sources += [f"entry {group.entry_id}, region {int(r)}" for r in reg[keep]]
    if not images:
        raise InputError(f"{project.path}: no annotated tiles of {list(classes)} to teach from")
    return np.concatenate(images), labels, sources


def collect_items(
    project: Project,
    G: Generator,
    classifier: TileClassifier,
    work_dir: str | Path,
    *,
    synthetic_per_class: int = 24,
    swaps_per_direction: int = 8,
    seed0: int = 0,
    gan_um: float | None = None,
    workers: int = 1,
) -> ItemPool:
    """Gather real, synthetic and swapped items for every generator class annotated in ``project``.

    Synthetic seeds run consecutively from ``seed0`` (class by class), swapped pairs use the seeds
    after them, so the pool is reproducible from its arguments.
    """
    from histobridge.synthetic import conditioning as cond
    from histobridge.synthetic import synthesis as syn
    from histobridge.synthetic.fov import gan_tile_um

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    gen_classes = cond.class_names(G)
    if len(gen_classes) < 2:
        raise InputError("teaching needs a class-conditional generator with at least two classes")
    um = gan_tile_um(G, gan_um)
    px = int(G.img_resolution)
    clf_names = tuple(classifier.config.class_names)
    raw_real, real_cls, real_src = real_tiles(project, work, gen_classes, px, um, workers=workers)
    present = [c for c in gen_classes if c in set(real_cls)]
    if len(present) < 2:
        raise InputError(
            f"{project.path}: teaching needs annotations of at least two generator classes "
            f"{list(gen_classes)}; found {sorted(set(real_cls)) or 'none'}"
        )
    items: list[TeachingItem] = []
    p_real = _predict(classifier, raw_real, um)
    for i, (img, cls, src) in enumerate(zip(raw_real, real_cls, real_src, strict=True)):
        items.append(
            TeachingItem(f"r{i}", "real", cls, img, tuple(p_real[i]), _top(clf_names, p_real[i]), None, src)
        )

    def drawn(kind: Kind, cls: str, seeds: list[int], ids: list[str], pairs: list[str | None]) -> np.ndarray:
        """Generate ``seeds`` under ``cls`` and add them as items; returns the raw tiles."""
        tiles = syn.generate(G, seeds, cls, classifier=classifier, gan_um=um)
        preds = tiles.predictions if tiles.predictions is not None else np.zeros((len(seeds), 0))
        for s, img, p, item_id, pair in zip(seeds, tiles.raw, preds, ids, pairs, strict=True):
            source = f"seed {s}" if kind == "synthetic" else f"seed {s} as {cls}"
            items.append(TeachingItem(item_id, kind, cls, img, tuple(p), _top(clf_names, p), s, source, pair))
        return tiles.raw

    seed = int(seed0)
    synth_raw: list[np.ndarray] = []
    for cls in present:
        seeds = list(range(seed, seed + synthetic_per_class))
        seed += synthetic_per_class
        synth_raw.append(drawn("synthetic", cls, seeds, [f"s{s}" for s in seeds], [None] * len(seeds)))
    index = {c: k for k, c in enumerate(gen_classes)}
    for a, b in ((present[0], present[1]), (present[1], present[0])):
        seeds = list(range(seed, seed + swaps_per_direction))
        seed += swaps_per_direction
        ids_a, ids_b = [f"w{s}c{index[a]}" for s in seeds], [f"w{s}c{index[b]}" for s in seeds]
        synth_raw.append(drawn("swapped", a, seeds, ids_a, list(ids_b)))
        synth_raw.append(drawn("swapped", b, seeds, ids_b, list(ids_a)))
    near = nearest_real(raw_real, np.concatenate(synth_raw)) if synth_raw else np.zeros(0, np.int64)
    held = tuple(sorted({f"r{int(i)}" for i in near}, key=lambda s: int(s[1:])))
    return ItemPool(tuple(present), clf_names, tuple(items), held, px, float(um))
