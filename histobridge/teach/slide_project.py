"""Synthetic slides as a QuPath project: mosaics a teacher walks through like a slide.

Per generator class a mosaic of synthetic tiles, and per class pair a "transitions" mosaic whose rows
are seeds blended from one class to the other (the first and last columns are the class-swapped pair).
Each mosaic is a tiled, pyramidal TIFF at the generator's µm/px (resolution tags in cm, which tiffslide,
OpenSlide and QuPath read), and each tile is outlined by an annotation whose class, name and
measurements say what it is: as tile objects in each image's ``data.qpdata`` (QuPath shows them on
opening) and as annotations in ``<image>.geojson`` beside it (drag it onto the image in QuPath).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from shapely.geometry import box

from histobridge.qupath.annotations import Annotation, PathClass
from histobridge.qupath.create import NewImage, create_project
from histobridge.qupath.geojson import tile_feature
from histobridge.qupath.qpdata.writer import write_tiles_qpdata
from histobridge.teach.items import ItemPool

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator

PAD = 4  # white gap between tiles, px
OBJECT_NAME = "histobridge teach"  # the name of every tile object written into data.qpdata
WHITE = 255


@dataclass(frozen=True)
class Mosaic:
    """Tiles laid out in rows; ``objects`` outline each tile in the mosaic's pixel space."""

    name: str
    pixels: np.ndarray
    objects: tuple[Annotation, ...]


def layout(tiles: Sequence[np.ndarray], cols: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Paste tiles row by row with a white gap; returns the image and each tile's top-left corner."""
    px = tiles[0].shape[0]
    rows = math.ceil(len(tiles) / cols)
    out = np.full((PAD + rows * (px + PAD), PAD + cols * (px + PAD), 3), WHITE, np.uint8)
    corners = []
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        x, y = PAD + c * (px + PAD), PAD + r * (px + PAD)
        out[y : y + px, x : x + px] = tile
        corners.append((x, y))
    return out, corners


def _outline(x: int, y: int, px: int, cls: str | None, name: str, values: dict[str, float]) -> Annotation:
    return Annotation(box(x, y, x + px, y + px), path_class=cls, name=name, measurements=values, locked=True)


def class_mosaic(pool: ItemPool, cls: str) -> Mosaic:
    items = [i for i in pool.of_kind("synthetic") if i.true_class == cls]
    pixels, corners = layout([i.image for i in items], max(1, math.ceil(math.sqrt(len(items)))))
    objects = []
    for item, (x, y) in zip(items, corners, strict=True):
        values = {"seed": float(item.seed or 0), "synthetic": 1.0, "swapped": 0.0}
        values.update(
            {f"P({c})": float(p) for c, p in zip(pool.classifier_classes, item.prediction, strict=False)}
        )
        objects.append(_outline(x, y, pool.tile_px, cls, f"synthetic {cls}, seed {item.seed}", values))
    return Mosaic(f"synthetic_{cls}", pixels, tuple(objects))


def transition_mosaic(
    G: Generator, classifier: TileClassifier, pool: ItemPool, a: str, b: str, seeds: Sequence[int], steps: int
) -> Mosaic:
    """Rows: seeds; columns: blend steps from ``a`` (t = 0) to ``b`` (t = 1)."""
    from histobridge.synthetic.blending import class_blend

    tiles, meta = [], []
    for seed in seeds:
        blend = class_blend(G, int(seed), a, b, steps, classifier=classifier)
        for k, t in enumerate(blend.ts):
            tiles.append(blend.raw[k])
            preds = blend.predictions[k] if blend.predictions is not None else np.zeros(0)
            meta.append((int(seed), float(t), preds))
    pixels, corners = layout(tiles, steps)
    objects = []
    for (seed, t, preds), (x, y) in zip(meta, corners, strict=True):
        end = t in (0.0, 1.0)
        cls = a if t == 0.0 else b if t == 1.0 else None
        kind = "class-swapped pair" if end else "blend"
        values = {"seed": float(seed), "t": t, "synthetic": 1.0, "swapped": 1.0 if end else 0.0}
        values.update({f"P({c})": float(p) for c, p in zip(pool.classifier_classes, preds, strict=False)})
        objects.append(
            _outline(x, y, pool.tile_px, cls, f"seed {seed}, t={t:.2f} ({a} -> {b}), {kind}", values)
        )
    return Mosaic(f"transitions_{a}_to_{b}", pixels, tuple(objects))


def write_pyramid_tiff(path: Path, rgb: np.ndarray, mpp: float, tile: int = 256) -> Path:
    """Tiled TIFF with 2x reduced levels down to one tile (``histobridge.testing``'s writer), atomically."""
    from histobridge._atomic import atomic_path
    from histobridge.testing import build_pyramid, write_pyramid

    levels = 1 + max(0, math.ceil(math.log2(max(rgb.shape[:2]) / tile)))
    with atomic_path(path) as tmp:
        write_pyramid(tmp, build_pyramid(rgb, levels), mpp=mpp, tile=tile)
    return path


def write_slide_project(
    out_dir: str | Path,
    pool: ItemPool,
    G: Generator,
    classifier: TileClassifier,
    transition_seeds: Mapping[tuple[str, str], Sequence[int]],
    *,
    steps: int = 9,
    class_colors: dict[str, tuple[int, int, int]] | None = None,
) -> Path:
    """Write the mosaics into ``out_dir/images`` and the project around them; returns the .qpproj."""
    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    mpp = pool.tile_um / pool.tile_px
    mosaics = [class_mosaic(pool, c) for c in pool.classes]
    for (a, b), seeds in transition_seeds.items():
        if seeds:
            mosaics.append(transition_mosaic(G, classifier, pool, a, b, seeds, steps))
    new_images = []
    for m in mosaics:
        path = write_pyramid_tiff(images_dir / f"{m.name}.tif", m.pixels, mpp)
        new_images.append(
            NewImage(
                path,
                path.name,
                m.objects,
                description=f"histobridge synthetic mosaic, {mpp:.4g} um/px",
                metadata={"histobridge.teach": m.name},
            )
        )
    colors = class_colors or {}
    qpproj = create_project(out, new_images, [PathClass(c, colors.get(c)) for c in pool.classes])
    for entry_id, m in enumerate(mosaics, start=1):  # QuPath shows them on opening, no import step
        write_tiles_qpdata(out, entry_id, [_tile(o, colors) for o in m.objects], prefix=OBJECT_NAME)
    return qpproj


def _tile(o: Annotation, colors: Mapping[str, tuple[int, int, int]]) -> dict[str, object]:
    """One outline as a QuPath tile (all named ``OBJECT_NAME``; what it is lives in its class and
    measurements, so *Show measurement maps* colours a mosaic by seed, t or prediction)."""
    x0, y0, x1, y1 = o.geometry.bounds
    color = colors.get(o.path_class) if o.path_class else None
    return tile_feature(x0, y0, x1 - x0, y1 - y0, o.path_class, color, dict(o.measurements), name=OBJECT_NAME)
