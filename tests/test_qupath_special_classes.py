"""QuPath's special classes where annotations become tiling regions: ``Ignore*`` and ``Region*``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _qupath_helpers import entry, feature, square, uri_builder, write_project, write_tiff
from _tiling_helpers import FakeClass, FakeEntry, FakeProject
from shapely.geometry import box

from histobridge.qupath import layout
from histobridge.qupath.annotations import Annotation
from histobridge.qupath.geojson import write_features
from histobridge.qupath.project import Project
from histobridge.qupath.servers import path_to_uri
from histobridge.tiling.regions import (
    collect_regions,
    grid_regions,
    is_ignore_class,
    is_region_class,
    is_special_class,
)

SIZE = 1024
TILE = 128.0


class FakeSlide:
    """A 1024 x 1024 slide whose thumbnail shows tissue in its left half only."""

    dimensions = (SIZE, SIZE)

    def thumbnail(self, max_px: int) -> tuple[np.ndarray, float]:
        img = np.full((256, 256, 3), 240, np.uint8)
        img[:, :128] = (150, 60, 170)
        return img, SIZE / 256


def _project(*annotations: Annotation, classes: tuple[str, ...] = ()) -> tuple[FakeProject, FakeEntry]:
    e = FakeEntry(1, "slide", None)
    return FakeProject([e], {1: list(annotations)}, [FakeClass(c) for c in classes]), e


def _tiles(project: FakeProject, entry: FakeEntry, **kw: object) -> tuple[np.ndarray, np.ndarray, list[str]]:
    regions, names = collect_regions(project, entry, FakeSlide(), **kw)  # type: ignore[arg-type]
    coords, labels, _ = grid_regions(regions, names, TILE, TILE, 0.5, FakeSlide())
    return coords, labels, names


def test_class_names() -> None:
    assert is_ignore_class("Ignore*") and is_ignore_class("Ignore*: bubble") and not is_ignore_class("Ignore")
    assert is_region_class("Region*") and not is_region_class("Tumor")
    assert is_special_class("Region*: core") and not is_special_class(None)


def test_ignore_area_is_cut_out_of_a_tumour_and_never_a_label() -> None:
    tumour = Annotation(box(0, 0, SIZE, SIZE), "Tumor")
    ignore = Annotation(box(0, 0, 512, SIZE), "Ignore*")  # the left half is a fold
    project, entry = _project(tumour, ignore, classes=("Tumor", "Ignore*", "Region*", "Stroma"))
    notes: list[str] = []
    regions, names = collect_regions(project, entry, FakeSlide(), notes=notes)  # type: ignore[arg-type]
    assert names == ["Tumor", "Stroma"]  # QuPath's default special classes are no labels
    assert [r.path_class for r in regions] == ["Tumor"]
    assert regions[0].geometry.area == pytest.approx(512 * SIZE)
    assert any("Ignore*" in n for n in notes)
    coords, labels, _ = _tiles(project, entry)
    assert len(coords) == 4 * 8 and coords[:, 0].min() >= 512  # nothing under the ignored fold
    assert set(labels.tolist()) == {0}


def test_derived_ignore_class_and_several_ignore_areas() -> None:
    tumour = Annotation(box(0, 0, SIZE, SIZE), "Tumor")
    holes = [Annotation(box(0, 0, 256, 256), "Ignore*: bubble"),
             Annotation(box(768, 768, SIZE, SIZE), "Ignore*")]
    project, entry = _project(tumour, *holes)
    coords, _, names = _tiles(project, entry)
    assert names == ["Tumor"] and len(coords) == 64 - 4 - 4


def test_region_limits_the_work_area_and_is_no_label() -> None:
    tumour = Annotation(box(0, 0, SIZE, SIZE), "Tumor")
    region = Annotation(box(0, 0, SIZE, 384), "Region*")
    project, entry = _project(tumour, region)
    coords, labels, names = _tiles(project, entry)
    assert names == ["Tumor"] and set(labels.tolist()) == {0}
    assert len(coords) == 8 * 3 and coords[:, 1].max() + TILE <= 384


def test_region_alone_is_tiled_unlabelled() -> None:
    project, entry = _project(Annotation(box(256, 256, 768, 768), "Region*"))
    notes: list[str] = []
    regions, names = collect_regions(project, entry, FakeSlide(), notes=notes)  # type: ignore[arg-type]
    assert names == [] and [(r.path_class, r.region_id) for r in regions] == [(None, "region")]
    assert regions[0].geometry.area == pytest.approx(512 * 512)
    assert any("tiled unlabelled" in n for n in notes)
    # A class filter that leaves nothing does not fall back to the Region* area.
    other, e2 = _project(Annotation(box(0, 0, 99, 99), "Stroma"),
                         Annotation(box(256, 256, 768, 768), "Region*"))
    regions, _ = collect_regions(other, e2, FakeSlide(), classes=["Tumor"])  # type: ignore[arg-type]
    assert regions == []


def test_whole_tissue_honours_region_and_ignore() -> None:
    project, entry = _project()
    (tissue,) = collect_regions(project, entry, FakeSlide(), whole_tissue=True)[0]  # type: ignore[arg-type]
    assert tissue.geometry.area == pytest.approx(512 * SIZE, rel=0.02)  # the left half
    project, entry = _project(Annotation(box(0, 0, SIZE, 512), "Region*"),
                              Annotation(box(0, 0, 256, 256), "Ignore*"))
    regions, names = collect_regions(project, entry, FakeSlide(), whole_tissue=True)  # type: ignore[arg-type]
    assert names == [] and len(regions) == 1
    assert regions[0].geometry.area == pytest.approx(512 * 512 - 256 * 256, rel=0.02)
    coords, _, _ = _tiles(project, entry, whole_tissue=True)
    inside = (coords[:, 0] + TILE <= 512 + 1) & (coords[:, 1] + TILE <= 512)
    assert inside.all() and not ((coords[:, 0] < 256) & (coords[:, 1] < 256)).any()


def test_reader_notes_reach_the_caller(tmp_path: Path) -> None:
    # Islet outlines exported as closed LineStrings: the caller learns why nothing is tiled.
    slide = write_tiff(tmp_path / "s.tif", size=(SIZE, SIZE), mpp=0.5)
    proj = Project.open(write_project(tmp_path / "p", [entry(1, uri_builder(path_to_uri(slide)))]))
    outline = feature(square(0, 0, 512)[0], geom_type="LineString", objectType="annotation",
                      classification={"name": "Islet", "color": [1, 2, 3]})
    write_features(layout.annotation_path(proj.folder, 1), [outline])
    notes: list[str] = []
    regions, _ = collect_regions(proj, proj.images[0], FakeSlide(), notes=notes)
    assert regions == [] and any("closed LineString outline ignored" in n for n in notes)
    regions, names = collect_regions(proj, proj.images[0], FakeSlide(), closed_lines_as_areas=True)
    assert [r.path_class for r in regions] == ["Islet"] and regions[0].geometry.area == 512 * 512
    assert "Islet" in names
