"""What each job does, by calling the library: classify a region, matched synthetic tiles for a
region, class blend, layer blend and seed search. Results are JSON-ready dicts; pictures travel as
PNG bytes under ``"images"`` and are served by name from the finished job.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from histobridge.errors import AnnotationError
from histobridge.server.jobs import JobContext
from histobridge.server.problems import RoiError, TooLargeError
from histobridge.server.resources import Resources

STRIDE_DIVS = (1, 2, 4)


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def parse_roi(roi: Any) -> list[Any]:
    """QuPath GeoJSON (a Feature, FeatureCollection, geometry or list) → annotations with an area.

    Anything unreadable, or without one area-bearing object, is a :class:`RoiError` (422).
    """
    from histobridge.qupath.geojson import read_features

    if not isinstance(roi, (dict, list)):  # a string would be read as a file name: never from a request
        raise RoiError(
            f"roi: expected QuPath GeoJSON (a Feature, FeatureCollection or list), got {type(roi).__name__}"
        )
    if isinstance(roi, dict) and roi.get("type") in ("Polygon", "MultiPolygon"):
        roi = {"type": "Feature", "geometry": roi, "properties": {"objectType": "annotation"}}
    try:
        found = read_features(roi)
    except AnnotationError as err:
        raise RoiError(f"roi: {err}") from err
    except (TypeError, ValueError, AttributeError) as err:
        raise RoiError(f"roi: not QuPath GeoJSON: {err}") from err
    objs = [a for a in found.annotations if not a.geometry.is_empty and a.geometry.area > 0]
    if not objs:
        why = "; ".join(found.notes) if found.notes else "no Polygon or MultiPolygon with an area"
        raise RoiError(f"roi: no annotation with an area ({why})")
    return [_as_annotation(a) for a in objs]


def _as_annotation(obj: Any) -> Any:
    """A tile/detection sent as ROI still marks an area to work on."""
    import dataclasses

    from histobridge.tiling.regions import TILED_TYPES

    if obj.object_type in TILED_TYPES:
        return obj
    return dataclasses.replace(obj, object_type="annotation")


@dataclass(frozen=True, kw_only=True)
class RegionRequest:
    """An image of a served project (``project`` + ``image``), or a ``slide`` file under a served
    folder, and the region of interest as QuPath GeoJSON. The request classes are also the HTTP
    bodies: FastAPI validates them and the descriptions go into the OpenAPI schema."""

    project: Annotated[str | None, Field(description="served project key (see /api/projects)")] = None
    image: Annotated[str | None, Field(description="image entry id or name")] = None
    slide: Annotated[str | None, Field(description="or: a slide path under a served folder")] = None
    roi: Annotated[Any, Field(description="QuPath GeoJSON: Feature, FeatureCollection or list; holes kept")]


def _annotation_set(res: Resources, req: RegionRequest) -> Any:
    """The ROI's annotations plus the image's own ``Ignore*``/``Region*`` objects (they shape every
    region in the batch path too)."""
    from histobridge.qupath.annotations import AnnotationSet
    from histobridge.tiling.regions import is_special_class

    proj, entry, _ = res.target(req.project, req.image, req.slide)
    annotations = parse_roi(req.roi)
    if all(is_special_class(a.path_class) for a in annotations):
        raise RoiError("roi: only Ignore*/Region* objects; send the annotations to work on")
    context = []
    if proj is not None:
        context = [a for a in proj.annotations(entry).annotations if is_special_class(a.path_class)]
    return AnnotationSet(tuple(annotations) + tuple(context), source="request")


def _check_size(res: Resources, regions: Sequence[Any], slide: Any, tile_l0: float, stride_l0: float) -> None:
    """Refuse before any grid is allocated when the ROI asks for more tiles than the server allows."""
    from histobridge.tiling.regions import planned_positions

    planned = planned_positions(regions, tile_l0, stride_l0, slide.dimensions)
    if planned > res.settings.max_tiles:
        raise TooLargeError(
            f"roi: up to {planned:,} tiles of {tile_l0:.1f} px (stride {stride_l0:.1f} px), "
            f"over the server's limit of {res.settings.max_tiles:,}; send a smaller region"
        )


def _plan(res: Resources, req: RegionRequest, key: str, entry: Any, options: Any) -> list[Any]:
    """Regions exactly as :func:`histobridge.heatmap.pipeline.heatmap_regions` makes them for the batch."""
    from histobridge.heatmap.pipeline import heatmap_regions

    aset = _annotation_set(res, req)
    # the tissue outline comes from the same thumbnail size the batch reads (and is kept warm)
    thumb = res.thumbnail(key, entry, options.thumbnail_px)
    regions, notes = heatmap_regions(
        aset, thumb, options, tissue=lambda: res.tissue(key, entry, options.thumbnail_px)
    )
    if not regions:
        raise RoiError("roi: nothing to tile: " + ("; ".join(notes) or "no area left"))
    return list(regions)


# ------------------------------------------------------------------------------------------ classify


@dataclass(frozen=True, kw_only=True)
class ClassifyRequest(RegionRequest):
    model: Annotated[str, Field(description="classifier id (see /api/models)")]
    stride_div: Annotated[int, Field(description="tile overlap: stride = tile / N (1, 2 or 4)")] = 1
    tissue: Annotated[
        bool, Field(description="classify only the tissue inside the ROI, as the batch heatmap does")
    ] = True
    write_back: Annotated[
        bool, Field(description="also merge the tiles into the project's predictions file")
    ] = False


def classify(res: Resources, req: ClassifyRequest, ctx: JobContext) -> dict[str, Any]:
    """QuPath tile features for the ROI, exactly as the batch heatmap writes them for that area."""
    from histobridge.heatmap.outputs import class_colours, tile_texts
    from histobridge.heatmap.pipeline import HeatmapOptions, predict_with_options, tile_geometry

    if req.stride_div not in STRIDE_DIVS:
        raise _bad(f"stride_div must be one of {STRIDE_DIVS}, got {req.stride_div}")
    options = HeatmapOptions(
        stride_div=req.stride_div,
        tissue=req.tissue,
        write_back="none",
        workers=res.settings.inference_workers,
    )
    proj, entry, key = res.target(req.project, req.image, req.slide)
    clf = res.classifier(req.model)
    with res.slide(key, entry) as slide:
        tile_l0, stride_l0 = tile_geometry(clf, slide.mpp, req.stride_div)
        _check_size(res, parse_roi(req.roi), slide, tile_l0, stride_l0)
        regions = _plan(res, req, key, entry, options)
        ctx.check()
        pred = predict_with_options(slide, regions, clf, options, progress=ctx.event, item=entry.name)
    colours = class_colours(pred.class_names, proj.classes if proj is not None else ())
    features = tile_texts(pred, clf.name, colours).features()  # serialised from the arrays, parsed once
    written = None
    if req.write_back:
        if proj is None:
            raise _bad("write_back needs a project image, not a bare slide path")
        if features:  # a region that yielded no tile never replaces earlier results
            written = str(write_back(res, proj, key, entry, clf.name, features, regions))
    return {
        "type": "FeatureCollection",
        "features": features,
        "histobridge": {
            "model": clf.name,
            "classes": list(pred.class_names),
            "tiles": len(pred),
            "tile_l0": pred.tile_l0,
            "stride_l0": pred.stride_l0,
            "mpp": pred.mpp,
            "seconds": round(pred.seconds, 3),
            "written": written,
        },
    }


def _bad(message: str) -> Exception:
    from histobridge.errors import InputError

    return InputError(message)


def write_back(
    res: Resources,
    proj: Any,
    key: str,
    entry: Any,
    prefix: str,
    features: list[dict[str, Any]],
    regions: Sequence[Any],
) -> Any:
    """Merge the tiles into the project's predictions file (the one the batch path writes): this
    model's earlier tiles at the returned grid positions or centred inside the ROI are replaced,
    everything else is kept. Atomic, and one writer per image at a time."""
    import shapely

    from histobridge.qupath import geojson, layout
    from histobridge.qupath.geojson_read import load_document

    target = layout.predictions_path(proj.folder, entry.entry_id)
    area = shapely.unary_union([r.geometry for r in regions])
    shapely.prepare(area)
    returned = {_position(f) for f in features}
    with res.image_lock(key, entry.entry_id):
        kept: list[dict[str, Any]] = []
        if target.is_file():
            doc = load_document(target)
            old = doc.get("features", []) if isinstance(doc, dict) else doc
            for f in old:
                if not isinstance(f, dict):
                    continue
                ours = (f.get("properties") or {}).get("name") == prefix
                if ours and (_position(f) in returned or _centre_inside(f, area)):
                    continue
                kept.append(f)
        geojson.write_features(target, [*kept, *features])
    return target


def _position(feature: dict[str, Any]) -> tuple[int, int] | None:
    """A tile's grid position (its top-left corner to 1/100 px), to find the tile it replaces."""
    try:
        ring = feature["geometry"]["coordinates"][0]
        return round(min(p[0] for p in ring) * 100), round(min(p[1] for p in ring) * 100)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _centre_inside(feature: dict[str, Any], area: Any) -> bool:
    import shapely.geometry

    try:
        geom = shapely.geometry.shape(feature["geometry"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    c = geom.centroid
    return bool(area.contains(c))


# ------------------------------------------------------------------------------------------ synthetic


@dataclass(frozen=True, kw_only=True)
class SynthRequest(RegionRequest):
    generator: str
    classifier: str | None = None
    n: int = 8
    seed: int = 0
    class_map: dict[str, str] | None = None


def synthesise(res: Resources, req: SynthRequest, ctx: JobContext) -> dict[str, Any]:
    """For each ROI region: its real tiles at the generator's field, matched synthetic tiles of its
    class and their class-swapped twins (same seeds), with the classifier's predictions."""
    from histobridge.heatmap.pipeline import HeatmapOptions, region_tiles
    from histobridge.synthetic.fov import gan_tile_um
    from histobridge.synthetic.matched import region_twins, resolve_class_map

    if not 1 <= req.n <= res.settings.max_synthetic:
        raise _bad(f"n must be 1..{res.settings.max_synthetic}, got {req.n}")
    _, entry, key = res.target(req.project, req.image, req.slide)
    G = res.generator(req.generator)
    clf = res.classifier(req.classifier) if req.classifier else None
    gan_um = gan_tile_um(G)
    px = int(G.img_resolution)
    images: dict[str, bytes] = {}
    out_regions = []
    with res.slide(key, entry) as slide:
        tile_l0 = gan_um / slide.mpp
        _check_size(res, parse_roi(req.roi), slide, tile_l0, tile_l0)
        regions = _plan(res, req, key, entry, HeatmapOptions())
        mapping = resolve_class_map(G, [r.path_class for r in regions if r.path_class], req.class_map)
        seed = int(req.seed)
        total = len(regions) * req.n
        for i, region in enumerate(regions):
            ctx.progress(i * req.n, total, f"region {i + 1} of {len(regions)}")
            gen_class = mapping.get(region.path_class) if region.path_class else None
            coords, _ = region_tiles([region], tile_l0, tile_l0, slide, 0.5)
            real = [slide.read_scaled(*map(float, c), px) for c in coords[: req.n]]
            entry_out: dict[str, Any] = {
                "region": region.region_id,
                "name": region.name,
                "class": region.path_class,
                "real": [],
                "tiles": [],
            }
            for j, tile in enumerate(real):
                key = f"r{i}_real_{j}.png"
                images[key] = png(tile)
                entry_out["real"].append(
                    {
                        "image": key,
                        "x": float(coords[j, 0]),
                        "y": float(coords[j, 1]),
                        "w": float(coords[j, 2]),
                        "h": float(coords[j, 3]),
                    }
                )
            if gen_class is None:
                entry_out["problem"] = f"class {region.path_class!r} has no generator class"
                out_regions.append(entry_out)
                continue
            seeds = list(range(seed, seed + req.n))
            seed += req.n
            twins = region_twins(G, seeds, gen_class, classifier=clf, gan_um=gan_um)
            names = G.meta.class_names if getattr(G, "meta", None) else ()
            for j, s in enumerate(twins.seeds):
                a, b = f"r{i}_syn_{s}.png", f"r{i}_swap_{s}.png"
                images[a], images[b] = png(twins.tiles[j]), png(twins.swapped[j])
                rec: dict[str, Any] = {
                    "seed": s,
                    "class": _name(names, twins.gen_class),
                    "swap_class": _name(names, twins.swap_class),
                    "image": a,
                    "swapped": b,
                }
                if twins.predictions is not None and twins.swap_predictions is not None and clf is not None:
                    rec["prediction"] = _probs(clf.class_names, twins.predictions[j])
                    rec["swap_prediction"] = _probs(clf.class_names, twins.swap_predictions[j])
                entry_out["tiles"].append(rec)
            out_regions.append(entry_out)
        ctx.progress(total, total)
    return {
        "generator": req.generator,
        "classifier": req.classifier,
        "gan_um": gan_um,
        "tile_px": px,
        "regions": out_regions,
        "images": images,
    }


def _name(names: Sequence[str], index: int) -> str:
    return str(names[index]) if 0 <= index < len(names) else str(index)


def _probs(names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {str(n): _finite(v) for n, v in zip(names, values, strict=False)}


def _finite(v: Any) -> float:
    f = float(v)
    return f if math.isfinite(f) else 0.0


# ------------------------------------------------------------------------------------------ generator


@dataclass(frozen=True)
class BlendRequest:
    generator: str
    seed: int = 0
    class_from: str = "0"
    class_to: str = "1"
    steps: int = 9
    classifier: str | None = None


def class_blend(res: Resources, req: BlendRequest, ctx: JobContext) -> dict[str, Any]:
    from histobridge.synthetic import blending

    if not 2 <= req.steps <= 33:
        raise _bad(f"steps must be 2..33, got {req.steps}")
    G = res.generator(req.generator)
    clf = res.classifier(req.classifier) if req.classifier else None
    blend = blending.class_blend(
        G, req.seed, _cls(req.class_from), _cls(req.class_to), req.steps, classifier=clf
    )
    images = {f"blend_{i}.png": png(img) for i, img in enumerate(blend.raw)}
    steps = []
    for i, t in enumerate(blend.ts):
        rec: dict[str, Any] = {"step": i, "t": float(t), "image": f"blend_{i}.png"}
        if blend.predictions is not None:
            rec["prediction"] = _probs(blend.classifier_classes, blend.predictions[i])
        steps.append(rec)
    return {
        "seed": blend.seed,
        "class_from": blend.class_from,
        "class_to": blend.class_to,
        "steps": steps,
        "images": images,
    }


@dataclass(frozen=True)
class LayerBlendRequest:
    generator: str
    seeds: tuple[int, ...] = (0,)
    class_a: str = "0"
    class_b: str = "1"
    splits: tuple[int, ...] | None = None


def layer_blend(res: Resources, req: LayerBlendRequest, ctx: JobContext) -> dict[str, Any]:
    from histobridge.synthetic import blending

    if not 1 <= len(req.seeds) <= 16:
        raise _bad(f"layer blend takes 1..16 seeds, got {len(req.seeds)}")
    G = res.generator(req.generator)
    grid = blending.layer_blend(G, list(req.seeds), _cls(req.class_a), _cls(req.class_b), splits=req.splits)
    images: dict[str, bytes] = {}
    cells = []
    for r, row in enumerate(grid.cells):
        for c, img in enumerate(row):
            key = f"layer_{r}_{c}.png"
            images[key] = png(img.image)
            cells.append({"row": r, "col": c, "split": grid.splits[r], "image": key, **img.record()})
    return {"splits": list(grid.splits), "num_ws": grid.num_ws, "cells": cells, "images": images}


@dataclass(frozen=True)
class SeedSearchRequest:
    generator: str
    classifier: str
    seed_start: int = 0
    count: int = 32
    class_start: str = "0"
    class_end: str = "1"
    thumbnails: int = 8


def seed_search(res: Resources, req: SeedSearchRequest, ctx: JobContext) -> dict[str, Any]:
    from histobridge.synthetic import seeds as seedmod
    from histobridge.synthetic.conditioning import resolve_class
    from histobridge.synthetic.matched import region_twins

    if not 1 <= req.count <= res.settings.max_seeds:
        raise _bad(f"count must be 1..{res.settings.max_seeds}, got {req.count}")
    G = res.generator(req.generator)
    clf = res.classifier(req.classifier)
    seeds = list(range(req.seed_start, req.seed_start + req.count))
    chunk = 16
    rows: list[Any] = []
    for i in range(0, len(seeds), chunk):
        ctx.progress(i, len(seeds))
        part = seedmod.seed_search(G, clf, seeds[i : i + chunk], _cls(req.class_start), _cls(req.class_end))
        rows += part.rows
    ctx.progress(len(seeds), len(seeds))
    order = {"strong": 0, "weak": 1, "none": 2}
    ranked = sorted(rows, key=lambda r: (order.get(r.concordance, 3), -(r.pred_end - r.pred_start)))
    top = ranked[: max(0, min(req.thumbnails, 32))]
    images: dict[str, bytes] = {}
    if top:
        a, b = resolve_class(G, _cls(req.class_start)), resolve_class(G, _cls(req.class_end))
        twins = region_twins(G, [r.seed for r in top], a, b)
        for j, r in enumerate(top):
            images[f"seed_{r.seed}_start.png"] = png(twins.tiles[j])
            images[f"seed_{r.seed}_end.png"] = png(twins.swapped[j])
    thumbs = {r.seed for r in top}
    table = [
        {
            "seed": r.seed,
            "class_start": r.class_start,
            "class_end": r.class_end,
            "pred_start": _finite(r.pred_start),
            "pred_end": _finite(r.pred_end),
            "concordance": r.concordance,
            "delta": _finite(r.pred_end - r.pred_start),
            "images": [f"seed_{r.seed}_start.png", f"seed_{r.seed}_end.png"] if r.seed in thumbs else [],
        }
        for r in ranked
    ]
    return {"rows": table, "images": images}


def _cls(value: str | int) -> str | int:
    """Class names stay names; digit strings are indices (as the CLI reads them)."""
    text = str(value)
    return int(text) if text.isdigit() else text


__all__ = [
    "BlendRequest",
    "ClassifyRequest",
    "LayerBlendRequest",
    "SeedSearchRequest",
    "SynthRequest",
    "class_blend",
    "classify",
    "layer_blend",
    "parse_roi",
    "seed_search",
    "synthesise",
]
