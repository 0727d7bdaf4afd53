"""Matched synthetic tiles: for every annotated region of a tile store, GAN tiles of the same class
(one per real tile, or ``n``) and their class-swapped twins (same seed, other class).

They are stored next to the real tiles, in the image group's ``synthetic`` sub-group, at the store's
tile geometry, so real and synthetic tiles can be shown and classified side by side. The sub-group is
written as ``synthetic.partial`` (progress in ``attrs["filled"]``, so an interrupted run resumes where
it stopped) and renamed to ``synthetic`` once ``complete`` is set.

Arrays of the sub-group (one row per synthetic tile): ``tiles`` and ``swapped`` uint8 (N, px, px, 3);
``seeds`` int64; ``classes`` / ``swap_classes`` int16 (generator class indices); ``regions`` int32
(index into the image group's ``regions``); ``labels`` int16 (the region class in the group's
``classes``, -1 if absent); with a classifier, ``predictions`` / ``swap_predictions`` float32 (N, C).
Attributes: ``params`` (generator record, class map, classifier, per-region plan), ``class_map``,
``generator``, ``filled``, ``n_tiles``, ``tile_px``, ``complete``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histobridge.errors import InputError, StoreError
from histobridge.synthetic import conditioning as cond
from histobridge.synthetic.fov import classify_tiles, crop_box, crop_then_resize, gan_tile_um

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator
    from histobridge.tiling.store import TileGroup
    from histobridge.tiling.synthetic_store import SyntheticWriter

log = logging.getLogger(__name__)

SUBGROUP = "synthetic"  # the sub-group itself is written by histobridge.tiling.synthetic_store
MONTAGE_COLS = 8


@dataclass(frozen=True)
class RegionPlan:
    """Synthetic tiles planned for one region of one image group."""

    region: int
    region_class: str
    gen_class: int
    swap_class: int
    seeds: tuple[int, ...]
    n_real: int
    label: int = -1  # the region class's index in the image group's ``classes`` (-1: not listed)


@dataclass(frozen=True)
class GroupResult:
    """What happened to one image group."""

    entry_id: str
    n_synthetic: int
    per_region: dict[int, int]
    skipped_regions: dict[int, str]
    status: str  # "written", "resumed", "up-to-date" or "no-regions"
    montages: tuple[Path, ...] = ()


@dataclass(frozen=True)
class _Run:
    """What every group of one run shares."""

    G: Any
    gan_um: float
    classifier: Any
    batch_size: int

    @property
    def n_out(self) -> int | None:
        return None if self.classifier is None else len(self.classifier.config.class_names)


@dataclass(frozen=True)
class MatchedReport:
    store_path: Path
    groups: tuple[GroupResult, ...]
    class_map: dict[str, str] = field(default_factory=dict)

    @property
    def n_synthetic(self) -> int:
        return sum(g.n_synthetic for g in self.groups)


def resolve_class_map(
    G: Generator, region_classes: Sequence[str], class_map: Mapping[str, str | int] | None
) -> dict[str, int]:
    """Region class name → generator class index: the explicit mapping first (its keys must be region
    classes, its values any class the generator's lookup accepts), then equal names
    (case-insensitive). Unmapped classes are simply absent from the result."""
    explicit = {str(k).casefold(): v for k, v in (class_map or {}).items()}
    known = {rc.casefold() for rc in region_classes}
    unknown = sorted(str(k) for k in (class_map or {}) if str(k).casefold() not in known)
    if unknown:
        raise InputError(
            f"class map names {unknown}, which no region has; region classes: {sorted(region_classes)}"
        )
    names = [n.casefold() for n in cond.class_names(G)]
    out: dict[str, int] = {}
    for rc in region_classes:
        key = rc.casefold()
        if key in explicit:
            out[rc] = cond.resolve_class(G, explicit[key])
        elif key in names:
            out[rc] = names.index(key)
    return out


def _region_class(
    region: Mapping[str, Any], idx: int, labels: np.ndarray, regions: np.ndarray, classes: Sequence[str]
) -> str | None:
    name = region.get("class")
    if name:
        return str(name)
    mine = labels[regions == idx]
    mine = mine[mine >= 0]
    return str(classes[int(mine[0])]) if mine.size and int(mine[0]) < len(classes) else None


def plan_group(
    group: TileGroup, G: Generator, mapping: Mapping[str, int], n: int | None, seed: int
) -> tuple[list[RegionPlan], dict[int, str], int]:
    """Regions to fill and the seeds they get (consecutive from ``seed``); returns the next seed."""
    attrs = group.attrs
    regions_meta = list(attrs.get("regions") or [])
    regions = np.asarray(group.regions[:], dtype=np.int64)
    labels = np.asarray(group.labels[:], dtype=np.int64)
    counts = (
        np.bincount(regions[regions >= 0], minlength=len(regions_meta))
        if regions.size
        else np.zeros(len(regions_meta), dtype=np.int64)
    )
    n_cls = cond.num_classes(G)
    classes = [str(c) for c in attrs.get("classes") or []]
    plans, skipped = [], {}
    for idx, meta in enumerate(regions_meta):
        rc = _region_class(meta, idx, labels, regions, classes)
        if rc is None or rc not in mapping:
            skipped[idx] = f"class {rc!r} has no generator class"
            continue
        k = int(n if n is not None else counts[idx])
        if k <= 0:
            skipped[idx] = "no real tiles"
            continue
        gen = mapping[rc]
        label = classes.index(rc) if rc in classes else -1
        seeds = tuple(range(seed, seed + k))
        plans.append(RegionPlan(idx, rc, gen, (gen + 1) % n_cls, seeds, int(counts[idx]), label))
        seed += k
    return plans, skipped, seed


def _geometry(group: TileGroup, store_path: Path, G: Generator, gan_um: float) -> tuple[int, float, bool]:
    """The store's tile px/µm and whether GAN tiles need crop-then-resize to match them."""
    attrs = group.attrs
    try:
        px, um = int(attrs["tile_px"]), float(attrs["tile_um"])
    except (KeyError, TypeError, ValueError) as err:
        raise StoreError(f"{store_path}/{group.name}: tile_px/tile_um attributes missing or invalid") from err
    if um > gan_um * (1 + 1e-6):
        raise StoreError(
            f"{store_path}/{group.name}: store tiles cover {um:g} µm but the generator's tiles only "
            f"{gan_um:g} µm; synthetic tiles can be cropped to a smaller field, never extended. "
            "Tile the project with the generator's tile size."
        )
    same = px == int(G.img_resolution) and abs(um - gan_um) <= 1e-6 * gan_um
    return px, um, not same


def _params(
    plans: list[RegionPlan],
    G: Generator,
    gan_um: float,
    classifier: TileClassifier | None,
    mapping: Mapping[str, int],
) -> dict[str, Any]:
    clf = None
    if classifier is not None:
        cfg = classifier.config
        clf = {
            "class_names": list(cfg.class_names),
            "tile_px": int(cfg.patch_size_pixels),
            "tile_um": float(cfg.tile_um),
        }
    return {
        "generator": cond.generator_record(G, gan_um),
        "class_map": dict(mapping),
        "classifier": clf,
        "plan": [[p.region, p.gen_class, p.swap_class, p.seeds[0], len(p.seeds)] for p in plans],
    }


def _flatten(plans: list[RegionPlan]) -> dict[str, np.ndarray]:
    """Per-tile records: seed, generator class, swap class, region index, store label."""
    per_tile = [(s, p.gen_class, p.swap_class, p.region, p.label) for p in plans for s in p.seeds]
    cols = list(zip(*per_tile, strict=True)) if per_tile else [(), (), (), (), ()]
    dtypes = (np.int64, np.int16, np.int16, np.int32, np.int16)
    names = ("seeds", "classes", "swap_classes", "regions", "labels")
    return {n: np.asarray(c, dtype=d) for n, c, d in zip(names, cols, dtypes, strict=True)}


def _fill(run: _Run, writer: SyntheticWriter, geometry: tuple[int, float, bool]) -> None:
    """Generate from ``writer.filled`` to the end; the writer records progress after every batch."""
    G, gan_um, batch_size = run.G, run.gan_um, run.batch_size
    px, um, transform = geometry
    seeds = writer.read("seeds")
    n, n_cls = len(seeds), cond.num_classes(G)
    for i in range(writer.filled, n, max(1, batch_size)):
        j = min(n, i + batch_size)
        batch: dict[str, np.ndarray] = {}
        for cls_name, tile_name, pred_name in (
            ("classes", "tiles", "predictions"),
            ("swap_classes", "swapped", "swap_predictions"),
        ):
            cls = writer.read(cls_name)[i:j].astype(np.int64)
            weights = np.zeros((j - i, n_cls))
            weights[np.arange(j - i), cls] = 1.0
            raw = cond.render_uint8(G, seeds[i:j], weights, batch_size=batch_size)
            batch[tile_name] = crop_then_resize(raw, gan_um, um, px) if transform else raw
            if run.classifier is not None:
                _, predictions = classify_tiles(raw, gan_um, run.classifier, batch_size)
                batch[pred_name] = predictions.astype(np.float32)
        writer.write_batch(i, batch)


@dataclass(frozen=True)
class Twins:
    """Synthetic tiles of one class and their class-swapped twins (same seeds), at the GAN's own size.

    ``predictions`` / ``swap_predictions`` (N, C) only with a classifier (its view: crop to its µm).
    """

    seeds: tuple[int, ...]
    gen_class: int
    swap_class: int
    tiles: np.ndarray
    swapped: np.ndarray
    predictions: np.ndarray | None = None
    swap_predictions: np.ndarray | None = None


def region_twins(
    G: Generator,
    seeds: Sequence[int],
    gen_class: int,
    swap_class: int | None = None,
    classifier: TileClassifier | None = None,
    *,
    gan_um: float | None = None,
    batch_size: int = 16,
) -> Twins:
    """Matched tiles for one region without a store: ``seeds`` under ``gen_class`` and under
    ``swap_class`` (default: the next class, as :func:`plan_group` pairs them), classified."""
    n_cls = cond.num_classes(G)
    swap = (gen_class + 1) % n_cls if swap_class is None else int(swap_class)
    checked = cond.check_seeds(seeds)

    def render(cls: int) -> tuple[np.ndarray, np.ndarray | None]:
        weights = cond.class_weights(n_cls, cls, len(checked))
        raw = cond.render_uint8(G, checked, weights, batch_size=batch_size)
        if classifier is None:
            return raw, None
        return raw, classify_tiles(raw, gan_tile_um(G, gan_um), classifier, batch_size)[1]

    tiles, preds = render(int(gen_class))
    swapped, swap_preds = render(swap)
    return Twins(tuple(checked), int(gen_class), swap, tiles, swapped, preds, swap_preds)


def matched_synthetic(
    store_path: str | os.PathLike[str],
    G: Generator,
    classifier: TileClassifier | None = None,
    n: int | None = None,
    class_map: Mapping[str, str | int] | None = None,
    seed0: int = 0,
    *,
    gan_um: float | None = None,
    montage_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
) -> MatchedReport:
    """Fill every complete image group's ``synthetic`` sub-group and write one montage per region.

    Seeds run consecutively from ``seed0`` over groups (store order) and regions, so every region
    gets its own seeds and a rerun with the same arguments reproduces (or resumes) the same tiles.
    """
    from histobridge.tiling.store import open_store

    store_path = Path(store_path)
    if n is not None and n <= 0:
        raise InputError(f"n must be positive, got {n}")
    um = gan_tile_um(G, gan_um)
    store = open_store(store_path)
    groups = store.groups()
    if not groups:
        raise StoreError(f"{store_path}: no complete image groups to match")
    region_classes = sorted(
        {str(r.get("class")) for g in groups for r in g.attrs.get("regions") or [] if r.get("class")}
    )
    mapping = resolve_class_map(G, region_classes, class_map)
    if not mapping:
        raise InputError(
            f"{store_path}: no region class {region_classes} matches a generator class "
            f"{list(cond.class_names(G))}; pass a class map (e.g. tumor=class1)"
        )
    if classifier is not None:  # fail before writing anything when the classifier sees more than the GAN
        crop_box(int(G.img_resolution), um, float(classifier.config.tile_um))
    default_dir = store_path.with_name(store_path.name + ".montages")
    out_dir = Path(montage_dir) if montage_dir is not None else default_dir
    run = _Run(G, um, classifier, batch_size)
    results, seed = [], int(seed0)
    for group in groups:
        plans, skipped, seed = plan_group(group, G, mapping, n, seed)
        if not plans:
            results.append(GroupResult(group.entry_id, 0, {}, skipped, "no-regions"))
            continue
        geometry = _geometry(group, store_path, G, um)
        params = _params(plans, G, um, classifier, mapping)
        status = _write_group(run, store_path, group.name, params, plans, geometry)
        montages = write_region_montages(
            open_store(store_path).group(group.name), plans, out_dir, group.entry_id
        )
        per_region = {p.region: len(p.seeds) for p in plans}
        n_tiles = sum(per_region.values())
        results.append(GroupResult(group.entry_id, n_tiles, per_region, skipped, status, montages))
    return MatchedReport(store_path, tuple(results), {k: cond.class_names(G)[v] for k, v in mapping.items()})


def _write_group(
    run: _Run,
    store_path: Path,
    group_name: str,
    params: dict[str, Any],
    plans: list[RegionPlan],
    geometry: tuple[int, float, bool],
) -> str:
    """Write (or resume, or keep) one image group's sub-group; returns what happened."""
    from histobridge.tiling.synthetic_store import SyntheticWriter

    records = _flatten(plans)
    with SyntheticWriter(
        store_path, group_name, params=params, tile_px=geometry[0], records=records, n_out=run.n_out
    ) as writer:
        if writer.status != "up-to-date":
            _fill(run, writer, geometry)
            writer.finish({"class_map": params["class_map"], "generator": params["generator"]})
        return writer.status


def write_region_montages(
    img_group: TileGroup, plans: list[RegionPlan], out_dir: Path, entry_id: str
) -> tuple[Path, ...]:
    """One PNG per region: real tiles | synthetic | class-swapped (at most ``MONTAGE_COLS`` each)."""
    from histobridge.viz.pictures import montage, save_png

    sub = img_group.synthetic()
    if sub is None:
        raise StoreError(f"group {img_group.name!r} has no complete synthetic sub-group")
    real_regions = np.asarray(img_group.regions[:])
    syn_regions = np.asarray(sub["regions"][:])
    seeds = np.asarray(sub["seeds"][:])
    paths = []
    for p in plans:
        real_idx = np.flatnonzero(real_regions == p.region)[:MONTAGE_COLS]
        syn_idx = np.flatnonzero(syn_regions == p.region)[:MONTAGE_COLS]
        real: list[np.ndarray | None] = [np.asarray(img_group.tiles[int(i)]) for i in real_idx]
        synth: list[np.ndarray | None] = [np.asarray(sub["tiles"][int(i)]) for i in syn_idx]
        swapped: list[np.ndarray | None] = [np.asarray(sub["swapped"][int(i)]) for i in syn_idx]
        names = dict(enumerate(sub.attrs["params"]["generator"]["class_names"]))
        labels = [
            f"real\n{p.region_class}",
            f"synthetic\n{names[p.gen_class]}",
            f"swapped\n{names[p.swap_class]}",
        ]
        captions = [[""] * len(real), [f"seed {int(seeds[i])}" for i in syn_idx], [""] * len(swapped)]
        img = montage([real or [None], synth, swapped], row_labels=labels, captions=captions)
        path = out_dir / f"{entry_id}_region{p.region}.png"
        save_png(img, path)
        paths.append(path)
    return tuple(paths)


__all__ = [
    "GroupResult",
    "MatchedReport",
    "RegionPlan",
    "Twins",
    "matched_synthetic",
    "plan_group",
    "region_twins",
    "resolve_class_map",
]
