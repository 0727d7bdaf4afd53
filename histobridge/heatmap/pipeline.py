"""Classifier heatmaps over QuPath images, written back as QuPath tile objects with measurements.

For each image, tiles are laid on the annotations (or the whole tissue) at the model's own tile size
in µm, converted to level-0 pixels as floats (never truncated, so grids do not drift, unlike an
integer tile size: Slideflow #440). Tiles share one grid anchored at the image origin, which makes
the heatmap array exact: cell (row, col) is the stride × stride square centred in its tile. By
default only the tissue part of each annotation is tiled, so glass inside an annotation gets no
(meaningless, often confident) prediction.

Per image this writes, atomically: QuPath GeoJSON tiles (project layout path and a copy in the output
folder), an NPZ heatmap per class with its level-0 origin and step, PNG overlays and a CSV table.
Every requested image ends as one :class:`~histobridge.runs.ImageOutcome`; an image that yields no
tile is ``skipped`` and its earlier results are left as they were.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from histobridge._memory import release_freed_memory
from histobridge._names import safe_name
from histobridge.errors import AnnotationError, HistobridgeError, InputError, ModelError, ProjectError
from histobridge.heatmap.outputs import (
    class_colours,
    heatmap_grid,
    measurement_names,
    tile_features,
    tile_table,
    tile_texts,
    write_image_outputs,
    write_npz,
)
from histobridge.runs import ImageOutcome, ProgressCallback, ProgressEvent, all_done
from histobridge.tiling.regions import Region, RegionOptions
from histobridge.viz.overlay import HeatGrid

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.qupath.annotations import AnnotationSet
    from histobridge.qupath.project import ImageEntry, Project
    from histobridge.slides import Slide

log = logging.getLogger(__name__)

WriteBack = Literal["auto", "geojson", "paquo", "qpdata", "none"]
WRITE_BACK: tuple[str, ...] = get_args(WriteBack)
TASK = "heatmap"
BaseGeometry = Any  # a shapely geometry (shapely ships no type information)


@dataclass(frozen=True)
class HeatmapOptions:
    """How :func:`run_heatmap` tiles and classifies; checked once, before any image is opened.

    ``write_back="auto"`` writes into an image's ``data.qpdata`` when it has one (QuPath then shows the
    tiles without a script), else the predictions GeoJSON for ``import_results.groovy``.
    ``tissue`` keeps only the tissue part of each annotation (glass inside an annotation is not
    classified); ``mpp`` is the pixel size for images that record none, ``mpp_override`` replaces
    every image's own; ``closed_lines_as_areas`` reads closed outlines (polylines) as areas.
    """

    classes: tuple[str, ...] | None = None
    whole_tissue: bool = False
    tissue: bool = True
    stride_div: int = 1
    batch_size: int = 64
    uncertainty: int = 0
    write_back: WriteBack = "auto"
    workers: int = 2
    mpp: float | None = None
    mpp_override: float | None = None
    prefix: str | None = None
    gzip: bool = True
    min_coverage: float = 0.5
    thumbnail_px: int = 1024
    closed_lines_as_areas: bool = False

    def __post_init__(self) -> None:
        if self.classes is not None:
            names = tuple(str(c) for c in self.classes)
            object.__setattr__(self, "classes", names or None)
        if self.write_back not in WRITE_BACK:
            raise InputError(f"write_back must be one of {', '.join(WRITE_BACK)}, got {self.write_back!r}")
        if isinstance(self.stride_div, bool) or not isinstance(self.stride_div, int) or self.stride_div < 1:
            raise InputError(f"stride_div must be a positive integer (1, 2, 4 …), got {self.stride_div!r}")
        if self.uncertainty < 0 or self.batch_size < 1 or self.workers < 1:
            raise InputError(
                f"uncertainty ≥ 0, batch_size ≥ 1 and workers ≥ 1 are required "
                f"(got {self.uncertainty}, {self.batch_size}, {self.workers})"
            )
        for name, value in (("mpp", self.mpp), ("mpp_override", self.mpp_override)):
            if value is not None and not (np.isfinite(value) and value > 0):
                raise InputError(f"{name} must be a positive number of µm per pixel, got {value!r}")
        if not 0.0 < self.min_coverage <= 1.0:
            raise InputError(f"min_coverage must be in (0, 1], got {self.min_coverage!r}")
        if self.thumbnail_px < 16:
            raise InputError(f"thumbnail_px must be at least 16, got {self.thumbnail_px!r}")

    def region_options(self) -> RegionOptions:
        """What the one region planner is asked: an image without annotations gets its tissue."""
        return RegionOptions(classes=self.classes, tissue=self.tissue, whole_tissue=self.whole_tissue,
                             closed_lines_as_areas=self.closed_lines_as_areas, fallback="tissue")  # fmt: skip


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
    """The files and timing of one image that was processed."""

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
    """The result of :func:`run_heatmap`: one outcome per requested image, details of the done ones."""

    model: str
    out_dir: Path
    outcomes: tuple[ImageOutcome, ...]
    results: tuple[ImageHeatmapResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """Every requested image was processed."""
        return all_done(self.outcomes)

    @property
    def tiles(self) -> int:
        return sum(r.tiles for r in self.results)

    @property
    def not_done(self) -> tuple[ImageOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``histobridge heatmap --json`` prints)."""
        details = {r.entry_id: r for r in self.results}
        images = []
        for o in self.outcomes:
            r = details.get(str(o.entry_id)) if o.ok else None
            images.append(
                {
                    "entry_id": o.entry_id,
                    "name": o.name,
                    "status": o.status,
                    "tiles": o.count,
                    "reason": o.reason,
                    "seconds": round(r.seconds, 3) if r else None,
                    "files": [str(p) for p in r.files] if r else [],
                    "notes": list(r.notes) if r else [],
                }
            )
        return {
            "model": self.model,
            "out_dir": str(self.out_dir),
            "ok": self.ok,
            "tiles": self.tiles,
            "images": images,
        }


# ------------------------------------------------------------------------------------------- tiling


def tile_geometry(classifier: TileClassifier, mpp: float, stride_div: int) -> tuple[float, float]:
    """(tile, stride) in level-0 pixels, as floats: the model's µm extent over the slide's µm/px."""
    if not isinstance(stride_div, int) or stride_div < 1:
        raise InputError(f"stride_div must be a positive integer (1, 2, 4 …), got {stride_div!r}")
    tile_l0 = classifier.config.tile_um / mpp
    return tile_l0, tile_l0 / stride_div


def region_tiles(
    regions: Sequence[Region], tile_l0: float, stride_l0: float, slide: Slide, min_coverage: float
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
    slide: Slide,
    regions: Sequence[Region],
    classifier: TileClassifier,
    *,
    stride_div: int = 1,
    batch_size: int = 64,
    workers: int = 2,
    uncertainty: int = 0,
    min_coverage: float = 0.5,
    progress: ProgressCallback | None = None,
    item: str | None = None,
) -> ImagePrediction:
    """Tile ``regions`` at the model's size and µm/px and run the model (reads overlap inference).

    ``progress`` gets a ``heatmap`` :class:`~histobridge.runs.ProgressEvent` for ``item`` after each batch.
    """
    from histobridge.heatmap.inference import infer_tiles

    t0 = time.perf_counter()
    mpp = slide.mpp
    tile_l0, stride_l0 = tile_geometry(classifier, mpp, stride_div)
    coords, owner = region_tiles(regions, tile_l0, stride_l0, slide, min_coverage)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(ProgressEvent(TASK, done, len(coords), item))

    if progress is not None:
        progress(ProgressEvent(TASK, 0, len(coords), item))
    res = infer_tiles(
        slide,
        coords,
        classifier,
        batch_size=batch_size,
        workers=workers,
        uncertainty=uncertainty,
        progress=step,
    )
    return ImagePrediction(
        coords=coords,
        region=owner,
        regions=tuple(regions),
        probs=res.probs,
        std=res.std,
        class_names=classifier.class_names,
        tile_l0=tile_l0,
        stride_l0=stride_l0,
        mpp=mpp,
        seconds=time.perf_counter() - t0,
    )


def check_classifier(
    classifier: TileClassifier | str | os.PathLike[str], device: str | None
) -> TileClassifier:
    from histobridge.models.classifier import TileClassifier, load_classifier

    if isinstance(classifier, TileClassifier):
        return classifier
    if isinstance(classifier, (str, os.PathLike)):
        return load_classifier(Path(classifier), device=device)
    raise ModelError(f"expected a TileClassifier or a model path, got {type(classifier).__name__}")


# ------------------------------------------------------------------------------------------ project


def heatmap_regions(
    annotations: AnnotationSet,
    thumbnail: tuple[np.ndarray, float],
    options: HeatmapOptions,
    *,
    tissue: Callable[[], BaseGeometry] | None = None,
) -> tuple[list[Region], list[str]]:
    """The regions to classify and notes on what was chosen (empty when there is nothing, with why).

    :func:`histobridge.tiling.regions.plan_regions` with the heatmap's rules: an image without
    annotations gets its tissue, outlined on ``thumbnail`` (the one the overlays use, so the slide's
    overview is read once) with the mask of ``histobridge tile --tissue``. ``tissue`` returns that
    outline when the caller keeps it (the server does, per image, so a live request does not redo
    the mask).
    """
    from histobridge.slides.tissue import thumbnail_tissue
    from histobridge.tiling.regions import NO_TISSUE_INSIDE, plan_regions

    outline = tissue or (lambda: thumbnail_tissue(thumbnail))
    plan = plan_regions(annotations, options.region_options(), outline)
    notes = plan.explained(read_notes=False)  # the reader's notes show in the reason when they explain it
    if plan.reason == NO_TISSUE_INSIDE:
        notes[-1] += " (--no-tissue classifies them anyway)"
    return list(plan.regions), notes


def predict_with_options(
    slide: Slide, regions: Sequence[Region], classifier: TileClassifier, options: HeatmapOptions,
    *, progress: ProgressCallback | None = None, item: str | None = None,
) -> ImagePrediction:
    """:func:`predict_regions` with the grid and batching settings of ``options`` (batch, server)."""
    return predict_regions(
        slide, regions, classifier, stride_div=options.stride_div, batch_size=options.batch_size,
        workers=options.workers, uncertainty=options.uncertainty, min_coverage=options.min_coverage,
        progress=progress, item=item,
    )  # fmt: skip


def heatmap_entry(
    project: Project,
    entry: ImageEntry,
    classifier: TileClassifier,
    out_dir: Path,
    options: HeatmapOptions,
    *,
    progress: ProgressCallback | None = None,
) -> tuple[ImageOutcome, ImageHeatmapResult | None]:
    """Predict one image entry and write its outputs (project layout path, copy in ``out_dir``).

    Nothing is written when the image yields no tile: earlier results stay as they were.
    """
    from histobridge.qupath import geojson, layout

    t0 = time.perf_counter()
    eid, name = str(entry.entry_id), entry.name
    annotations = project.annotations(entry, closed_lines_as_areas=options.closed_lines_as_areas)
    with entry.open_slide(mpp=options.mpp_override, fill_mpp=options.mpp) as slide:
        thumb = slide.thumbnail(options.thumbnail_px)
        regions, notes = heatmap_regions(annotations, thumb, options)
        if not regions:
            return ImageOutcome(entry.entry_id, name, "skipped", reason="; ".join(notes)), None
        release_freed_memory()  # the thumbnail's pieces: the readers' own arenas would not reuse them
        pred = predict_with_options(slide, regions, classifier, options, progress=progress, item=name)
    release_freed_memory()  # decoded blocks and model activations, before the outputs are built
    if not len(pred):
        why = f"no tile position has {options.min_coverage:.0%} of its area inside the regions"
        return ImageOutcome(entry.entry_id, name, "skipped", reason="; ".join([*notes, why])), None
    prefix = options.prefix or classifier.name
    colours = class_colours(pred.class_names, project.classes)
    folder = out_dir / f"{safe_name(eid)}_{safe_name(name)}"
    texts = tile_texts(pred, prefix, colours)  # serialised once: both GeoJSON copies share the ids
    files = write_image_outputs(
        pred, folder, prefix=prefix, colours=colours, thumbnail=thumb, gzip=options.gzip, texts=texts
    )
    mode = options.write_back
    if mode == "auto":  # straight into QuPath's data file when the image has one, else the GeoJSON route
        mode = "qpdata" if layout.qpdata_path(project.folder, entry.entry_id).is_file() else "geojson"
    if mode in ("geojson", "paquo"):
        target = layout.predictions_path(project.folder, entry.entry_id)
        geojson.write_feature_texts(target, texts, collection={"histobridge": {"model": prefix}})
        files.append(target)
    if mode in ("qpdata", "paquo"):
        notes = [*notes, *_carry_exported_annotations(project, entry.entry_id)]
    if mode == "qpdata":
        from histobridge.qupath.qpdata.writer import write_tiles_qpdata

        features = texts.features()  # the same tiles and ids as the GeoJSON copies
        write_tiles_qpdata(project.folder, entry.entry_id, features, prefix=prefix)
        files.append(layout.qpdata_path(project.folder, entry.entry_id))
    if mode == "paquo":
        from histobridge.qupath.paquo.write import write_tiles_paquo

        write_tiles_paquo(project.path, entry.entry_id, files[0], prefix=prefix)
    seconds = time.perf_counter() - t0
    log.info("%s: %d tiles in %.1fs (%.1f tiles/s)", name, len(pred), seconds, len(pred) / max(seconds, 1e-9))
    outcome = ImageOutcome(entry.entry_id, name, "done", count=len(pred))
    return outcome, ImageHeatmapResult(eid, name, len(pred), tuple(files), seconds, tuple(notes))


def _carry_exported_annotations(project: Project, entry_id: int) -> list[str]:
    """Before tiles go into an image's first data file, put its exported annotations there too.

    Otherwise QuPath would show tiles without the regions they came from, and the next run, which
    prefers the data file, would find no annotations. Images that already have a data file, or no
    export with areas, are left as they are. Returns notes on what the export held that QuPath data
    cannot (they stay in the export).
    """
    from histobridge.qupath import layout
    from histobridge.qupath.qpdata.from_geojson import qpdata_from_geojson

    if layout.qpdata_path(project.folder, entry_id).is_file():
        return []
    if not any(p.is_file() for p in layout.annotation_candidates(project.folder, entry_id)):
        return []
    try:
        done = qpdata_from_geojson(project.folder, entry_id)
    except AnnotationError:  # the export holds no areas: the tiles make the first data file
        return []
    log.info("image %s: %d exported annotations written into its new QuPath data file",
             entry_id, done.report.annotations)  # fmt: skip
    return [f"left in the export only: {n}" for n in done.notes]


def _guarded_entry(
    project: Project,
    entry: ImageEntry,
    classifier: TileClassifier,
    out_dir: Path,
    options: HeatmapOptions,
    progress: ProgressCallback | None,
) -> tuple[ImageOutcome, ImageHeatmapResult | None]:
    """:func:`heatmap_entry`, with any error turned into a ``failed`` outcome for this image alone."""
    if not entry.found:
        why = entry.problem or "image file not found"
        return ImageOutcome(entry.entry_id, entry.name, "failed", reason=why), None
    try:
        return heatmap_entry(project, entry, classifier, out_dir, options, progress=progress)
    except HistobridgeError as err:
        return ImageOutcome(entry.entry_id, entry.name, "failed", reason=str(err)), None
    except Exception as err:  # one bad image (a broken shape, a decoder error) must not stop a batch
        log.debug("image %s failed", entry.name, exc_info=True)
        return ImageOutcome(entry.entry_id, entry.name, "failed", reason=f"{type(err).__name__}: {err}"), None


def predictions_lock(folder: Path, entry_id: int | str) -> Path:
    """The lock file held while one image's predictions are written."""
    from histobridge.qupath import layout

    return layout.histobridge_dir(folder) / f".predictions-{safe_name(str(entry_id))}.lock"


def run_heatmap(
    project: Project | str | os.PathLike[str],
    classifier: TileClassifier | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: HeatmapOptions | None = None,
    *,
    images: Sequence[str | int] | None = None,
    progress: ProgressCallback | None = None,
    device: str | None = None,
) -> HeatmapReport:
    """Run a tile classifier over a QuPath project's images; one outcome per requested image.

    ``project`` is a :class:`~histobridge.qupath.project.Project` or its path; ``classifier`` a
    :class:`~histobridge.models.classifier.TileClassifier` or a model path (loaded on ``device``).
    One image's failure (missing slide, unknown pixel size, unreadable annotations, any error while
    reading it) is recorded in its outcome and never stops the others; check :attr:`HeatmapReport.ok`.
    """
    from histobridge._locks import hold
    from histobridge.qupath.project import Project

    opts = options or HeatmapOptions()
    if opts.write_back == "paquo":
        from histobridge.qupath.paquo.write import paquo_ready

        ok, why = paquo_ready()
        if not ok:
            raise ProjectError(
                f"--write-back paquo needs QuPath through paquo: {why}; use "
                "--write-back geojson and qupath_scripts/import_results.groovy instead"
            )
    proj = project if isinstance(project, Project) else Project.open(project)
    from histobridge.tiling.regions import check_classes

    entries = proj.select_images(images)
    check_classes(proj, entries, opts.classes)
    clf = check_classifier(classifier, device)
    out = Path(out_dir)
    outcomes: list[ImageOutcome] = []
    results: list[ImageHeatmapResult] = []
    for i, entry in enumerate(entries):
        if progress is not None:
            progress(ProgressEvent("images", i, len(entries)))
        # one lock per image: a second run on the same image refuses, naming this one; runs on other
        # images of the project (a batch's parallel tasks) go ahead
        lock = predictions_lock(proj.folder, entry.entry_id)
        what = f"heatmap predictions of image {entry.entry_id} of project {proj.folder}"
        with hold(lock, what, error=ProjectError):
            outcome, result = _guarded_entry(proj, entry, clf, out, opts, progress)
        if not outcome.ok:
            log.info("image %s %s: %s", entry.name, outcome.status, outcome.reason)
        outcomes.append(outcome)
        if result is not None:
            results.append(result)
    if progress is not None:
        progress(ProgressEvent("images", len(entries), len(entries)))
    return HeatmapReport(
        model=opts.prefix or clf.name, out_dir=out, outcomes=tuple(outcomes), results=tuple(results)
    )


__all__ = [
    "HeatGrid",
    "HeatmapOptions",
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
    "tile_table",
    "write_image_outputs",
    "write_npz",
]
