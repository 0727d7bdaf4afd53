"""Classifier heatmaps over QuPath images, written back as QuPath tile objects with measurements.

For each image, tiles are laid on the annotations (or the whole tissue) at the model's own tile size
in µm, converted to level-0 pixels as floats (never truncated, so grids do not drift, unlike an
integer tile size: Slideflow #440). Tiles share one grid anchored at the image origin, which makes
the heatmap array exact: cell (row, col) is the stride × stride square centred in its tile.

Per image this writes, atomically: QuPath GeoJSON tiles (project layout path and a copy in the output
folder), an NPZ heatmap per class with its level-0 origin and step, PNG overlays and a CSV table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histobridge.errors import (
    AnnotationError,
    CalibrationError,
    HistobridgeError,
    InputError,
    ModelError,
    ProjectError,
    SlideError,
)
from histobridge.heatmap.outputs import (
    HeatmapGrid,
    class_colours,
    heatmap_grid,
    measurement_names,
    safe_name,
    tile_features,
    write_csv,
    write_image_outputs,
    write_npz,
)
from histobridge.tiling.regions import Region

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier

log = logging.getLogger(__name__)

WRITE_BACK = ("geojson", "paquo", "qpdata", "none")
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ImagePrediction:
    """Per-tile results of one image: coordinates (N, 4) x, y, w, h in level-0 px and probabilities (N, C)."""

    coords: np.ndarray
    region: np.ndarray
    regions: tuple[Region, ...]
    probs: np.ndarray
    std: np.ndarray | None
    class_names: tuple[str, ...]
    tile_l0: float
    stride_l0: float
    mpp: float
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def top(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self) else np.zeros(0, np.int64)


@dataclass(frozen=True)
class ImageHeatmapResult:
    """What was done for one image entry."""

    entry_id: str
    name: str
    tiles: int
    files: tuple[Path, ...]
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def tiles_per_s(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class HeatmapReport:
    """The result of :func:`run_heatmap`: one record per image and where everything went."""

    model: str
    out_dir: Path
    images: tuple[ImageHeatmapResult, ...]
    skipped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tiles(self) -> int:
        return sum(r.tiles for r in self.images)


# ------------------------------------------------------------------------------------------- tiling


def tile_geometry(classifier: TileClassifier, mpp: float, stride_div: int) -> tuple[float, float]:
    """(tile, stride) in level-0 pixels, as floats: the model's µm extent over the slide's µm/px."""
    if not isinstance(stride_div, int) or stride_div < 1:
        raise InputError(f"stride_div must be a positive integer (1, 2, 4 …), got {stride_div!r}")
    tile_l0 = classifier.config.tile_um / mpp
    return tile_l0, tile_l0 / stride_div


def region_tiles(
    regions: Sequence[Region], tile_l0: float, stride_l0: float, slide: Any, min_coverage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Tiles of every region on the shared origin-anchored grid, in reading order, and their region index.

    Where annotations overlap, a grid position is predicted once and kept with the first region that
    holds it (QuPath would otherwise get stacked duplicate tiles). Ordered by
    :func:`histobridge.tiling.tiler.spatial_order` so each batch decodes one small block.
    """
    from histobridge.tiling.regions import grid_regions
    from histobridge.tiling.tiler import spatial_order

    coords, _, owner = grid_regions(regions, [], tile_l0, stride_l0, min_coverage, slide)
    if len(coords):
        cells = np.rint(coords[:, :2] / stride_l0).astype(np.int64)
        _, first = np.unique(cells, axis=0, return_index=True)
        keep = np.sort(first)
        coords, owner = coords[keep], owner[keep]
    order = spatial_order(coords, owner, stride_l0)
    return coords[order], owner[order]


def predict_regions(
    slide: Any, regions: Sequence[Region], classifier: TileClassifier, *, stride_div: int = 1,
    batch_size: int = 64, workers: int = 2, uncertainty: int = 0, min_coverage: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> ImagePrediction:
    """Tile ``regions`` at the model's size and µm/px and run the model (reads overlap inference).

    ``progress(done, total)`` is called after each batch.
    """
    from histobridge.heatmap.inference import infer_tiles

    t0 = time.perf_counter()
    mpp = slide.mpp
    tile_l0, stride_l0 = tile_geometry(classifier, mpp, stride_div)
    coords, owner = region_tiles(regions, tile_l0, stride_l0, slide, min_coverage)
    done = [0]

    def step(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], len(coords))

    res = infer_tiles(slide, coords, classifier, batch_size=batch_size, workers=workers,
                      uncertainty=uncertainty, progress=step)
    return ImagePrediction(
        coords=coords, region=owner, regions=tuple(regions), probs=res.probs, std=res.std,
        class_names=classifier.class_names, tile_l0=tile_l0, stride_l0=stride_l0, mpp=mpp,
        seconds=time.perf_counter() - t0,
    )


def check_write_back(mode: str) -> str:
    if mode not in WRITE_BACK:
        raise InputError(f"write_back must be one of {', '.join(WRITE_BACK)}, got {mode!r}")
    return mode


def check_classifier(classifier: Any, device: str | None) -> TileClassifier:
    from histobridge.models.classifier import TileClassifier, load_classifier

    if isinstance(classifier, TileClassifier):
        return classifier
    if isinstance(classifier, (str, Path)):
        return load_classifier(classifier, device=device)
    raise ModelError(f"expected a TileClassifier or a model path, got {type(classifier).__name__}")


# ------------------------------------------------------------------------------------------ project


def select_entries(project: Any, images: Sequence[str | int] | None) -> list[Any]:
    """Entries named by id or image name (all when None); unknown names are an error, not a silent skip."""
    entries = list(project.images)
    if not images:
        return entries
    wanted = [str(v) for v in images]
    by_key: dict[str, Any] = {}
    for e in entries:
        by_key.setdefault(str(e.entry_id), e)
        by_key.setdefault(e.name, e)
    missing = [w for w in wanted if w not in by_key]
    if missing:
        raise InputError(f"{project.path}: no image entry with id or name {', '.join(map(repr, missing))}")
    out: list[Any] = []
    for w in wanted:
        if by_key[w] not in out:
            out.append(by_key[w])
    return out


def entry_regions(
    project: Any, entry: Any, slide: Any, *, classes: Sequence[str] | None, whole_tissue: bool
) -> tuple[list[Region], list[str]]:
    """Annotations to tile (filtered by class), or the tissue when asked or when there are none."""
    from histobridge.tiling.regions import collect_regions

    notes: list[str] = []
    regions, _ = collect_regions(project, entry, slide, classes=classes, whole_tissue=whole_tissue)
    if not regions and not whole_tissue:
        if classes:
            notes.append(f"no annotation of class {', '.join(classes)}; nothing to tile")
            return [], notes
        notes.append("no annotations; tiling the detected tissue instead")
        regions, _ = collect_regions(project, entry, slide, whole_tissue=True)
    if not regions:
        notes.append("no tissue detected")
    return regions, notes


def heatmap_entry(
    project: Any, entry: Any, classifier: TileClassifier, out_dir: Path, *, options: Mapping[str, Any],
) -> ImageHeatmapResult:
    """Predict one image entry and write its outputs (project layout path, copy in ``out_dir``)."""
    from histobridge.qupath import geojson, layout

    t0 = time.perf_counter()
    eid, name = str(entry.entry_id), entry.name
    with entry.open_slide(mpp=options["mpp"]) as slide:
        regions, notes = entry_regions(project, entry, slide, classes=options["classes"],
                                       whole_tissue=options["whole_tissue"])
        report = options["progress"]
        step = (lambda done, total: report(name, done, total)) if callable(report) else None
        # The overlay thumbnail is read alongside inference (the slide reader is thread-safe).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="histobridge-thumb") as pool:
            thumb_job = pool.submit(slide.thumbnail, options["thumbnail_px"]) if regions else None
            pred = predict_regions(
                slide, regions, classifier, stride_div=options["stride_div"],
                batch_size=options["batch_size"], workers=options["workers"],
                uncertainty=options["uncertainty"], min_coverage=options["min_coverage"], progress=step,
            )
            thumb = thumb_job.result() if thumb_job is not None and len(pred) else None
    prefix = options["prefix"]
    colours = class_colours(pred.class_names, getattr(project, "classes", ()))
    features = tile_features(pred, prefix, colours)
    folder = out_dir / f"{safe_name(eid)}_{safe_name(name)}"
    files = write_image_outputs(pred, folder, prefix=prefix, colours=colours, thumbnail=thumb,
                                gzip=options["gzip"], features=features)
    mode = options["write_back"]
    if mode in ("geojson", "paquo"):
        target = layout.predictions_path(project.folder, entry.entry_id)
        geojson.write_features(target, features)
        files.append(target)
    if mode == "qpdata":
        from histobridge.qupath.qpdata.writer import write_tiles_qpdata

        write_tiles_qpdata(project.folder, entry.entry_id, features, prefix=prefix)
    if mode == "paquo":
        from histobridge.qupath.paquo.write import write_tiles_paquo

        write_tiles_paquo(project.path, entry.entry_id, files[0], prefix=prefix)
    seconds = time.perf_counter() - t0
    log.info("%s: %d tiles in %.1fs (%.1f tiles/s)", name, len(pred), seconds, len(pred) / max(seconds, 1e-9))
    return ImageHeatmapResult(eid, name, len(pred), tuple(files), seconds, tuple(notes))


def run_heatmap(
    project: Any, classifier: Any, out_dir: str | Path, *, images: Sequence[str | int] | None = None,
    classes: Sequence[str] | None = None, whole_tissue: bool = False, stride_div: int = 1,
    batch_size: int = 64, uncertainty: int = 0, write_back: str = "geojson", workers: int = 2,
    progress: bool | ProgressFn = True, mpp: float | None = None, device: str | None = None,
    prefix: str | None = None, gzip: bool = True, min_coverage: float = 0.5, thumbnail_px: int = 1024,
) -> HeatmapReport:
    """Run a tile classifier over a QuPath project's images; one result set per image entry.

    ``project`` is a :class:`~histobridge.qupath.project.Project` or its path; ``classifier`` a
    :class:`~histobridge.models.classifier.TileClassifier` or a model path. ``progress`` may be a
    callback ``(image name, tiles done, tiles total)``; ``True`` logs per image.
    """
    from histobridge.qupath.project import Project

    check_write_back(write_back)
    if isinstance(stride_div, bool) or not isinstance(stride_div, int) or stride_div < 1:
        raise InputError(f"stride_div must be a positive integer (1, 2, 4 …), got {stride_div!r}")
    if uncertainty < 0 or batch_size < 1 or workers < 1:
        raise InputError(f"uncertainty ≥ 0, batch_size ≥ 1 and workers ≥ 1 are required "
                         f"(got {uncertainty}, {batch_size}, {workers})")
    if write_back == "paquo":
        from histobridge.qupath.paquo.write import paquo_ready

        ok, why = paquo_ready()
        if not ok:
            raise ProjectError(f"--write-back paquo needs QuPath through paquo: {why}; use "
                               "--write-back geojson and qupath_scripts/import_results.groovy instead")
    proj = project if hasattr(project, "images") else Project.open(project)
    clf = check_classifier(classifier, device)
    out = Path(out_dir)
    options = {
        "classes": list(classes) if classes else None, "whole_tissue": whole_tissue, "stride_div": stride_div,
        "batch_size": batch_size, "uncertainty": uncertainty, "write_back": write_back, "workers": workers,
        "progress": progress, "mpp": mpp, "prefix": prefix or clf.name, "gzip": gzip,
        "min_coverage": min_coverage, "thumbnail_px": thumbnail_px,
    }
    results, skipped = [], []
    first_error: HistobridgeError | None = None
    for entry in select_entries(proj, images):
        if not entry.found:
            skipped.append(f"{entry.name}: {entry.problem or 'image file not found'}")
            log.warning("skipping %s", skipped[-1])
            continue
        try:
            results.append(heatmap_entry(proj, entry, clf, out, options=options))
        except (SlideError, CalibrationError, AnnotationError) as err:  # one bad image must not stop a batch
            first_error = first_error or err
            skipped.append(f"{entry.name}: {err}")
            log.error("skipping %s", skipped[-1])
    if first_error is not None and not results:
        raise first_error
    return HeatmapReport(model=options["prefix"], out_dir=out, images=tuple(results), skipped=tuple(skipped))


__all__ = [
    "HeatmapGrid",
    "HeatmapReport",
    "ImageHeatmapResult",
    "ImagePrediction",
    "Region",
    "class_colours",
    "heatmap_grid",
    "measurement_names",
    "predict_regions",
    "region_tiles",
    "run_heatmap",
    "tile_features",
    "tile_geometry",
    "write_csv",
    "write_image_outputs",
    "write_npz",
]
