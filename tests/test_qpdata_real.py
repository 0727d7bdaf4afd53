"""The .qpdata reader against files written by QuPath itself (../shared fixtures)."""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from pathlib import Path

import pytest
from shapely.geometry import shape

from histobridge.qupath.qpdata import (
    iter_objects,
    qpdata_annotations,
    read_qpdata,
    to_geojson_features,
)

SUMMARY_TYPES = {
    "Root objects": "root",
    "Annotations": "annotation",
    "Detections": "detection",
    "Cells": "cell",
    "Tiles": "tile",
    "TMA cores": "tmaCore",
}


@pytest.fixture(scope="module")
def foci(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "qupath" / "foci-0.4"


@pytest.fixture(scope="module")
def cells_file(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "qupath" / "cells-0.4" / "header.qpdata"


@pytest.fixture(scope="module")
def cells(cells_file: Path):
    return read_qpdata(cells_file)


@pytest.mark.parametrize("entry", ["10", "216", "242"])
def test_counts_equal_quPath_summary(foci: Path, entry: str) -> None:
    folder = foci / "data" / entry
    summary = json.loads((folder / "summary.json").read_text())
    data = read_qpdata(folder / "data.qpdata")
    hier = summary["hierarchy"]
    assert len(data.objects) == hier["nObjects"]
    expected_types = {SUMMARY_TYPES[k]: v for k, v in hier["objectTypeCounts"].items()}
    assert data.counts() == expected_types
    ann = Counter(o.path_class or "Unclassified" for o in data.objects if o.object_type == "annotation")
    assert dict(ann) == hier["annotationClassificationCounts"]
    det = Counter(
        o.path_class or "Unclassified" for o in data.objects if o.object_type in ("detection", "cell", "tile")
    )
    assert dict(det) == hier["detectionClassificationCounts"]
    assert data.image_type == summary["imageType"]
    assert data.qupath_version == "0.4.0" and data.data_version == 3
    assert data.server is not None and data.server["metadata"]["width"] == summary["server"]["width"]
    assert data.properties["PROJECT_ENTRY_ID"].endswith(f"::{entry}")
    assert data.notes == ()


def test_training_class_colour_matches_classes_json(foci: Path) -> None:
    classes = json.loads((foci / "classifiers" / "classes.json").read_text())["pathClasses"]
    argb = next(c["color"] for c in classes if c["name"] == "Training")
    rgb = ((argb >> 16) & 255, (argb >> 8) & 255, argb & 255)
    data = read_qpdata(foci / "data" / "242" / "data.qpdata")
    colours = {o.class_color for o in data.objects if o.path_class == "Training"}
    assert colours == {rgb}


def _check_stats(obj) -> int:
    """Compare the decoded geometry with the statistics QuPath cached in the ROI; count checks."""
    st = obj.roi_stats
    if st is None:
        return 0
    g = obj.geometry
    if "area" in st:  # GeometryROI$GeometryStats
        area, bounds = st["area"], (st["boundsMinX"], st["boundsMinY"], st["boundsMaxX"], st["boundsMaxY"])
    else:  # ClosedShapeStatistics
        area, bounds = st["areaCached"], (st["minX"], st["minY"], st["maxX"], st["maxY"])
    assert g.area == pytest.approx(area, rel=1e-12)
    assert g.bounds == pytest.approx(bounds, rel=1e-12, abs=1e-9)
    return 1


def test_wkb_areas_and_bounds_match_cached_stats(foci: Path) -> None:
    data = read_qpdata(foci / "data" / "242" / "data.qpdata")
    kinds = Counter(o.roi_type for o in data.objects)
    assert kinds["geometry"] > 1000 and kinds["rectangle"] == 16
    checked = sum(_check_stats(o) for o in data.objects)
    assert checked == kinds["geometry"]
    for o in data.objects:
        if o.roi_type == "rectangle":
            x0, y0, x1, y1 = o.geometry.bounds
            assert o.geometry.area == pytest.approx((x1 - x0) * (y1 - y0))


def test_cells_file(cells) -> None:
    assert cells.qupath_version == "0.4.4" and cells.image_type == "BRIGHTFIELD_H_E"
    assert cells.counts() == {"root": 1, "annotation": 1, "cell": 979}
    ann = next(o for o in cells.objects if o.object_type == "annotation")
    assert ann.locked and ann.roi_type == "rectangle" and ann.geometry.bounds == (0, 0, 1900, 399)
    cell_objs = [o for o in cells.objects if o.object_type == "cell"]
    assert all(o.parent_index == ann.index and o.depth == 2 for o in cell_objs)
    assert all(len(o.measurements) == 41 for o in cell_objs)
    assert len({tuple(o.measurements) for o in cell_objs}) == 1  # one shared names list
    assert all(o.nucleus is not None and o.nucleus.geom_type == "Polygon" for o in cell_objs)
    assert sum(_check_stats(o) for o in cell_objs) == 979
    assert len({o.object_id for o in cell_objs}) == 979
    assert all(str(uuid.UUID(o.object_id)) == o.object_id for o in cell_objs)
    # each nucleus lies (at least 95% of it) inside its own cell, and is smaller
    assert all(o.nucleus.intersection(o.geometry).area >= 0.95 * o.nucleus.area for o in cell_objs)
    assert all(o.nucleus.area <= o.geometry.area for o in cell_objs)
    assert "Stain 1" in (cells.stains or "")


def test_type_filter_streams_only_wanted(cells_file: Path, cells) -> None:
    only = list(iter_objects(cells_file, types=["annotation"]))
    full = next(o for o in cells.objects if o.object_type == "annotation")
    assert only == [full]
    streamed = list(iter_objects(cells_file))
    assert sorted(streamed, key=lambda o: o.index) == cells.objects
    assert streamed[-1].object_type == "root"  # a parent comes after its children


def test_geojson_from_real_cells(cells) -> None:
    feats = to_geojson_features(cells.objects)
    assert len(feats) == 980
    json.dumps(feats, allow_nan=False)
    for f in feats:
        assert f["type"] == "Feature" and uuid.UUID(f["id"])
        assert shape(f["geometry"]).is_valid or f["properties"]["objectType"] == "cell"
        props = f["properties"]
        assert props["objectType"] in ("cell", "annotation")
        if props["objectType"] == "cell":
            assert "nucleusGeometry" in f and "nucleusGeometry" not in props
            assert all(math.isfinite(v) for v in props["measurements"].values())
            assert "isLocked" not in props
        else:
            assert props["isLocked"] is True


def test_qpdata_annotations_real(foci: Path) -> None:
    anns = qpdata_annotations(foci / "data" / "242" / "data.qpdata")
    assert len(anns) == 1063
    assert Counter(a.path_class for a in anns) == {None: 1047, "Training": 16}
    assert all(a.geometry.geom_type in ("Polygon", "MultiPolygon") and a.geometry.is_valid for a in anns)
    assert all(a.object_type == "annotation" and a.object_id for a in anns)


WRITTEN = ("0.5.1", "0.6.0")


def _written(shared_dir: Path, version: str) -> Path:
    return shared_dir / "fixtures" / "qupath" / f"written-{version}"


@pytest.mark.parametrize("version", WRITTEN)
def test_files_written_by_quPath_match_its_summary(shared_dir: Path, version: str) -> None:
    """Every file QuPath itself wrote reads with QuPath's own counts (0.6 closes lists via CollSer)."""
    folder = _written(shared_dir, version)
    summaries = json.loads((folder / "qupath-summary.json").read_text())
    assert len(summaries) == 6
    for name, summary in summaries.items():
        data = read_qpdata(folder / name)
        assert data.qupath_version == version and data.notes == ()
        assert len(data.objects) == summary["nObjects"]
        assert data.counts() == {SUMMARY_TYPES[k]: v for k, v in summary["objectTypeCounts"].items()}
        ann = Counter(o.path_class or "Unclassified" for o in data.objects if o.object_type == "annotation")
        assert dict(ann) == summary["annotationClassificationCounts"]
        det = Counter(
            o.path_class or "Unclassified"
            for o in data.objects
            if o.object_type in ("detection", "cell", "tile")
        )
        assert dict(det) == summary["detectionClassificationCounts"]


@pytest.mark.parametrize("version", WRITTEN)
def test_closed_measurement_lists_written_by_quPath(shared_dir: Path, version: str) -> None:
    folder = _written(shared_dir, version)
    det = read_qpdata(folder / "detection-1-measurement-closed.qpdata").objects[1]
    assert det.object_type == "detection" and det.measurements == {"Nucleus: Area": 1.0}
    variety = read_qpdata(folder / "variety.qpdata").objects
    tiles = [o for o in variety if o.object_type == "tile"]
    assert [t.measurements["model: Tumor probability"] for t in tiles] == pytest.approx(
        [0.751, 0.501, 0.251, 0.001], rel=1e-6
    )
    cells = [o for o in variety if o.object_type == "cell"]
    assert [c.measurements["Nucleus: Area"] for c in cells] == pytest.approx([100.17, 99.17, 98.17], rel=1e-6)
    assert {c.path_class for c in cells} == {None, "Tumor: Negative", "Tumor: Positive"}


def test_test_writer_writes_collser_as_quPath_does(shared_dir: Path) -> None:
    """The generated-file tests are only worth something if the writer's descriptor is QuPath's."""
    import _qpdata_writer as W

    w = W.StreamWriter()
    w.write(W.coll_ser_list(["Nucleus: Area"]))
    desc = bytes(w.out[4 : w.out.index(b"tagxp") + 5])
    real = (_written(shared_dir, "0.6.0") / "detection-1-measurement-closed.qpdata").read_bytes()
    assert desc in real


def test_test_writer_descriptors_match_quPaths(shared_dir: Path) -> None:
    """Every class the test writer shares with QuPath's own file has QuPath's exact descriptor."""
    import _qpdata_writer as W

    from histobridge.qupath.qpdata.reader import _open_buffer, _Parse
    from histobridge.qupath.qpdata.stream import ClassDesc

    def descriptors(path: Path) -> dict[str, tuple]:
        with _open_buffer(path) as buf:
            parse = _Parse(path, buf, None)
            for _ in parse.run():
                pass
            return {
                v.name: (v.suid, v.flags, tuple(v.fields), v.superclass.name if v.superclass else None)
                for v in parse.s.values
                if isinstance(v, ClassDesc)
            }

    real = descriptors(_written(shared_dir, "0.6.0") / "variety.qpdata")
    real.update(descriptors(_written(shared_dir, "0.5.1") / "variety.qpdata"))
    ours = [v for v in vars(W).values() if isinstance(v, W.Desc)] + list(W.ROI_DESCS.values())
    ours += list(W.KIND_DESCS.values())
    compared = 0
    for d in ours:
        if d.name in real:
            sup = d.superclass.name if d.superclass else None
            assert (d.suid, d.flags, tuple(d.fields), sup) == real[d.name], d.name
            compared += 1
    assert compared >= 25
