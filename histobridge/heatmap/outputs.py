"""Heatmap outputs for one image: the per-class grid (NPZ), QuPath tiles (GeoJSON), CSV, PNG overlays.

Kept apart from the pipeline so the geometry of each output can be tested on hand-made predictions.
All files are written atomically; GeoJSON measurements are finite floats only (QuPath 0.4 fails on
NaN), and every classification carries a colour (QuPath aborts the whole import without one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histobridge._atomic import atomic_path, write_csv
from histobridge._names import safe_name
from histobridge.viz.overlay import HeatGrid

if TYPE_CHECKING:
    from histobridge.heatmap.pipeline import ImagePrediction
    from histobridge.qupath.annotations import PathClass
    from histobridge.qupath.geojson_tiles import FeatureBlock

Colour = tuple[int, int, int]
Feature = dict[str, Any]

# Fallback colours for classes the project does not define (distinct, readable on H&E).
PALETTE: tuple[Colour, ...] = (
    (230, 25, 75), (60, 120, 200), (60, 180, 75), (245, 130, 48), (145, 30, 180),
    (70, 200, 200), (240, 50, 230), (160, 120, 40), (0, 128, 128), (128, 128, 0),
)


# ------------------------------------------------------------------------------------------ heatmap


def heatmap_grid(pred: ImagePrediction) -> HeatGrid:
    """Rasterise tiles on their shared grid: each tile fills the stride-sized cell at its centre."""
    step = pred.stride_l0
    c = len(pred.class_names)
    if not len(pred):
        return HeatGrid(np.full((0, 0, c), np.nan, np.float32), (0.0, 0.0), step)
    cx = pred.coords[:, 0] + (pred.coords[:, 2] - step) / 2.0
    cy = pred.coords[:, 1] + (pred.coords[:, 3] - step) / 2.0
    origin = (float(cx.min()), float(cy.min()))
    col = np.rint((cx - origin[0]) / step).astype(np.int64)
    row = np.rint((cy - origin[1]) / step).astype(np.int64)
    shape = (int(row.max()) + 1, int(col.max()) + 1)

    def rasterise(values: np.ndarray) -> np.ndarray:
        total = np.zeros((*shape, c), np.float64)
        count = np.zeros(shape, np.int64)
        np.add.at(total, (row, col), values)
        np.add.at(count, (row, col), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = total / count[..., None]
        return out.astype(np.float32)  # 0/0 → NaN: no tile there

    std = rasterise(pred.std) if pred.std is not None else None
    return HeatGrid(rasterise(pred.probs), origin, step, std)


def write_npz(path: Path, pred: ImagePrediction, grid: HeatGrid, *, model: str) -> None:
    """``predictions`` (rows, cols, C) like Slideflow's NPZ, plus the geometry needed to place it."""
    arrays: dict[str, Any] = {
        "predictions": grid.values,
        "class_names": np.array(pred.class_names),
        "origin": np.array(grid.origin, np.float64),
        "step": np.float64(grid.step),
        "tile_l0": np.float64(pred.tile_l0),
        "mpp": np.float64(pred.mpp),
        "model": np.array(model),
    }
    if grid.std is not None:
        arrays["uncertainty"] = grid.std
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


# ------------------------------------------------------------------------------------------ outputs


def measurement_names(prefix: str, classes: Sequence[str], kind: str = "probability") -> list[str]:
    """QuPath measurement names, ``"<prefix>: <class> probability"`` (prefix groups them in the GUI)."""
    return [f"{prefix}: {c} {kind}" for c in classes]


def class_colours(classes: Sequence[str], project_classes: Sequence[PathClass] = ()) -> dict[str, Colour]:
    """The project's colour where the class name matches, else a fixed palette (always a colour)."""
    known = {pc.name: pc.color for pc in project_classes if pc.color is not None}
    out: dict[str, Colour] = {}
    for i, name in enumerate(classes):
        col = known.get(name)
        out[name] = (int(col[0]), int(col[1]), int(col[2])) if col is not None else PALETTE[i % len(PALETTE)]
    return out


def tile_features(pred: ImagePrediction, prefix: str, colours: Mapping[str, Colour]) -> list[Feature]:
    """QuPath ``tile`` features: float rectangles, top class with colour, finite measurements.

    Every tile is named ``prefix`` so the import script can find and replace earlier results.
    """
    from histobridge.qupath import geojson

    names = measurement_names(prefix, pred.class_names)
    unames = measurement_names(prefix, pred.class_names, "uncertainty") if pred.std is not None else []
    feats = []
    top = pred.top
    for i, (x, y, w, h) in enumerate(pred.coords):
        meas = dict(zip(names, pred.probs[i].tolist(), strict=True))
        if pred.std is not None:
            meas.update(zip(unames, pred.std[i].tolist(), strict=True))
        cls = pred.class_names[int(top[i])]
        feats.append(geojson.tile_feature(
            float(x), float(y), float(w), float(h), cls, colours[cls], meas, name=prefix,
        ))
    return feats


def tile_texts(pred: ImagePrediction, prefix: str, colours: Mapping[str, Colour]) -> FeatureBlock:
    """The GeoJSON text of each of :func:`tile_features`, serialised straight from the arrays."""
    from histobridge.qupath import geojson

    names = measurement_names(prefix, pred.class_names)
    values = pred.probs
    if pred.std is not None:
        names += measurement_names(prefix, pred.class_names, "uncertainty")
        values = np.concatenate([pred.probs, pred.std], axis=1)
    return geojson.tile_feature_texts(
        pred.coords, pred.top, pred.class_names, colours, names, values, name=prefix
    )


def tile_table(pred: ImagePrediction) -> tuple[list[str], Iterator[list[str]]]:
    """WSInfer's columns (minx, miny, width, height, prob_<class>…) plus top class, SD and region."""
    head = ["minx", "miny", "width", "height", *[f"prob_{c}" for c in pred.class_names]]
    if pred.std is not None:
        head += [f"std_{c}" for c in pred.class_names]
    head += ["top_class", "region", "region_class"]

    def rows() -> Iterator[list[str]]:
        top = pred.top
        for i, (x, y, w, h) in enumerate(pred.coords):
            reg = pred.regions[int(pred.region[i])]
            row = [f"{x:.3f}", f"{y:.3f}", f"{w:.3f}", f"{h:.3f}", *[f"{p:.6f}" for p in pred.probs[i]]]
            if pred.std is not None:
                row += [f"{s:.6f}" for s in pred.std[i]]
            row += [pred.class_names[int(top[i])], reg.name or reg.region_id, reg.path_class or ""]
            yield row

    return head, rows()


def write_image_outputs(
    pred: ImagePrediction, folder: Path, *, prefix: str, colours: Mapping[str, Colour],
    thumbnail: tuple[np.ndarray, float] | None, gzip: bool = True, texts: FeatureBlock | None = None,
) -> list[Path]:
    """GeoJSON, NPZ, CSV and PNG overlays for one image in ``folder``; returns the paths written.

    ``texts`` are the tiles already serialised by :func:`tile_texts` (made here when not given).
    """
    from histobridge.qupath import geojson
    from histobridge.viz.overlay import write_overlays

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    gj = folder / ("tiles.geojson.gz" if gzip else "tiles.geojson")
    geojson.write_feature_texts(gj, texts if texts is not None else tile_texts(pred, prefix, colours))
    files.append(gj)
    grid = heatmap_grid(pred)
    write_npz(folder / "heatmap.npz", pred, grid, model=prefix)
    write_csv(folder / "tiles.csv", *tile_table(pred))
    files += [folder / "heatmap.npz", folder / "tiles.csv"]
    if thumbnail is not None and len(pred):
        pngs = [folder / f"overlay_{safe_name(c, 'class')}.png" for c in pred.class_names]
        write_overlays(thumbnail[0], thumbnail[1], grid, pred.class_names, pngs, title_prefix=f"{prefix}: ")
        files += pngs
    return files


__all__ = [
    "PALETTE",
    "class_colours",
    "heatmap_grid",
    "measurement_names",
    "tile_features",
    "tile_table",
    "tile_texts",
    "write_image_outputs",
    "write_npz",
]
