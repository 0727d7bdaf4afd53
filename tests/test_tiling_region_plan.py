"""The one region planner (``tiling.regions.plan_regions``): the tiler and the heatmap plan alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from histobridge.errors import InputError
from histobridge.heatmap.pipeline import HeatmapOptions, heatmap_regions
from histobridge.qupath.annotations import Annotation, AnnotationSet
from histobridge.qupath.project import Project
from histobridge.tiling import TileSpec, tile_project
from histobridge.tiling.options import TilingOptions
from histobridge.tiling.regions import (
    NO_TISSUE_INSIDE,
    RegionOptions,
    collect_regions,
    is_special_class,
    plan_regions,
)
from histobridge.tiling.store import open_store

SIZE = 1024.0
LEFT_HALF = box(0, 0, SIZE / 2, SIZE)  # the tissue of every planned image below


class Tissue:
    """A tissue outline that counts how often the planner asked for it."""

    def __init__(self, outline: object = LEFT_HALF) -> None:
        self.outline, self.calls = outline, 0

    def __call__(self) -> object:
        self.calls += 1
        return self.outline


def _set(*annotations: Annotation, notes: tuple[str, ...] = ()) -> AnnotationSet:
    return AnnotationSet(tuple(annotations), "test", notes)


TILER = RegionOptions()
HEATMAP = RegionOptions(tissue=True, fallback="tissue")


def test_tissue_is_computed_once_and_only_when_needed() -> None:
    found = _set(Annotation(box(0, 0, 300, 300), "Tumor"), Annotation(box(600, 0, 900, 300), "Stroma"))
    unused = Tissue()
    plan = plan_regions(found, TILER, unused)
    assert unused.calls == 0 and [r.path_class for r in plan.regions] == ["Tumor", "Stroma"]
    once = Tissue()
    plan = plan_regions(found, HEATMAP, once)
    assert once.calls == 1 and [r.path_class for r in plan.regions] == ["Tumor"]  # Stroma lies on glass
    assert plan.regions[0].geometry.area == pytest.approx(300 * 300)


def test_region_alone_tiler_tiles_the_region_and_heatmap_the_tissue_in_it() -> None:
    found = _set(Annotation(box(256, 0, 768, SIZE), "Region*"))
    tiler = plan_regions(found, TILER, Tissue())
    (region,) = tiler.regions
    assert (region.path_class, region.region_id, region.geometry.area) == (None, "region", 512 * SIZE)
    assert "no labelled annotation: the Region* area is tiled unlabelled" in tiler.notes
    heatmap = plan_regions(found, HEATMAP, Tissue())
    (tissue,) = heatmap.regions
    assert (tissue.region_id, tissue.geometry.area) == ("tissue", 256 * SIZE)  # tissue ∩ Region*
    assert "no annotations; tiling the detected tissue instead" in heatmap.notes
    # with the tissue restriction, the tiler's Region* area is the same area as the heatmap's
    both = plan_regions(found, RegionOptions(tissue=True), Tissue())
    assert both.regions[0].geometry.symmetric_difference(tissue.geometry).area == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("found", "options", "reason"),
    [
        (_set(Annotation(box(0, 0, SIZE, SIZE), "Ignore*")), RegionOptions(whole_tissue=True),
         "no tissue detected inside the work area (Region* limits it, Ignore* is cut out)"),
        (_set(), RegionOptions(whole_tissue=True), "no tissue detected"),
        (_set(Annotation(box(0, 0, 99, 99), "Tumor"), Annotation(box(0, 0, 200, 200), "Ignore*")), TILER,
         "the annotations have no area inside the work area (Region* limits it, Ignore* is cut out)"),
        (_set(Annotation(box(700, 0, 800, 99), "Tumor")), RegionOptions(tissue=True), NO_TISSUE_INSIDE),
        (_set(Annotation(box(0, 0, 99, 99), "Stroma")), RegionOptions(classes=("Tumor",)),
         "no annotation of class Tumor on this image"),
        (_set(), TILER, "no annotations (whole-tissue mode tiles the tissue instead)"),
        (_set(notes=("2 × closed LineString outline ignored",)), HEATMAP,
         "no usable annotation: 2 × closed LineString outline ignored"),
        (_set(Annotation(box(0, 0, 99, 99), "Region*"), Annotation(box(0, 0, 99, 99), "Ignore*")), TILER,
         "Ignore* covers all of the Region* area"),
        (_set(Annotation(box(600, 0, 700, 99), "Region*")), RegionOptions(tissue=True),
         "no tissue inside the Region* area"),
    ],
)  # fmt: skip
def test_an_empty_plan_says_why(found: AnnotationSet, options: RegionOptions, reason: str) -> None:
    glass = not found.annotations and options.whole_tissue  # a slide of glass alone
    plan = plan_regions(found, options, Tissue(box(0, 0, 0, 0) if glass else LEFT_HALF))
    assert plan.regions == () and plan.reason == reason and plan.explained()[-1] == reason


def test_notes_say_what_the_special_classes_did() -> None:
    found = _set(Annotation(box(0, 0, SIZE, SIZE), "Tumor"), Annotation(box(0, 0, 100, 100), "Ignore*"),
                 Annotation(box(0, 0, 500, 500), "Region*"), notes=("read from a test",))  # fmt: skip
    plan = plan_regions(found, TILER, Tissue())
    assert plan.read_notes == ("read from a test",)
    assert plan.notes == ("Ignore* area of 10000 px² cut out of the regions",
                          "work limited to the Region* area (250000 px²)")  # fmt: skip
    assert plan.reason is None and plan.regions[0].geometry.area == pytest.approx(500 * 500 - 100 * 100)
    assert plan.explained() == ["read from a test", *plan.notes]  # what collect_regions hands back
    # the heatmap reports what the special classes did too; the reader's notes it reports only when
    # they explain why nothing is classified
    notes = heatmap_regions(found, (np.zeros((8, 8, 3), np.uint8), 128.0), HeatmapOptions(tissue=False))[1]
    assert notes == list(plan.notes)


def test_options_are_checked() -> None:
    assert RegionOptions(classes=()).classes is None
    with pytest.raises(InputError, match="fallback must be one of region, tissue"):
        RegionOptions(fallback="everything")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sample_project(cmu_slide: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from histobridge.qupath.sample import init_sample_project

    return init_sample_project(tmp_path_factory.mktemp("regions") / "skin", "skin", offline=True).parent


@pytest.mark.parametrize(
    "special",
    [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["as-shipped", "with-ignore-and-region"],
)
def test_tiler_and_heatmap_plan_identical_regions_on_the_sample(
    sample_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, special: bool
) -> None:
    """Real annotations over CMU-1-Small-Region: the store's regions are the heatmap's, option by option."""
    project = Project.open(sample_project)
    entry = project.images[0]
    found = project.annotations(entry)
    if special:  # a fold to leave out across the central epidermis, work limited to the upper part
        extra = (
            Annotation(box(800, 800, 1400, 1400), "Ignore*: fold"),
            Annotation(box(0, 0, 2220, 2000), "Region*"),
        )
        found = dataclasses.replace(found, annotations=found.annotations + extra)
        monkeypatch.setattr(project, "annotations", lambda *_a, **_k: found)
    shipped = [n for n in project.class_names() if not is_special_class(n)]
    choices: list[dict[str, object]] = [  # tissue named each time: the two defaults differ
        {"tissue": False},
        {"tissue": True},
        {"classes": ("Epidermis",), "tissue": False},
        {"classes": ("Dermis", "Epidermis"), "tissue": True},
        {"whole_tissue": True, "tissue": False},
    ]
    for i, choice in enumerate(choices):
        store = tmp_path / f"{i}.zarr"
        report = tile_project(project, store, TileSpec(32, 64), TilingOptions(**choice))  # type: ignore[arg-type]
        assert report.ok, report.images
        (group,) = open_store(store).groups()
        with entry.open_slide() as slide:
            options = HeatmapOptions(write_back="none", **choice)  # type: ignore[arg-type]
            heat, notes = heatmap_regions(project.annotations(entry), slide.thumbnail(1024), options)
            collected, names = collect_regions(project, entry, slide, **choice)  # type: ignore[arg-type]
        assert group.attrs["regions"] == [r.record() for r in heat], choice
        assert len(collected) == len(heat) > 0 and group.classes == names
        for mine, theirs in zip(collected, heat, strict=True):
            assert mine.geometry.symmetric_difference(theirs.geometry).area == pytest.approx(0.0, abs=1e-6)
        asked = choice.get("classes")
        expected = [] if choice.get("whole_tissue") else list(asked) if asked else shipped  # type: ignore[call-overload]
        assert group.classes == expected
        assert any("Ignore*" in n for n in notes) is special and not any(
            is_special_class(r.path_class) for r in heat
        )


def test_planned_positions_bound_the_grid_before_allocation() -> None:
    """The one count behind the tiler's --max-tiles and the server's tile limit."""
    from histobridge.tiling.grid import grid_for_geometry
    from histobridge.tiling.regions import Region, planned_positions

    inside = Region(box(100, 100, 612, 612), "Tumor", "a", None)
    beyond = Region(box(900, 900, 5000, 5000), "Tumor", "b", None)  # mostly outside the 1024-px image
    empty = Region(box(0, 0, 0, 0), None, "c", None)
    count = planned_positions([inside, beyond, empty], 128.0, 64.0, (1024, 1024))
    clip = (0.0, 0.0, 1024.0, 1024.0)
    tiles = sum(len(grid_for_geometry(r.geometry, 128.0, 64.0, 0.5, clip)) for r in (inside, beyond))
    assert 0 < tiles <= count < planned_positions([inside, beyond], 128.0, 64.0, (8192, 8192))
    assert planned_positions([empty], 128.0, 64.0, (1024, 1024)) == 0
