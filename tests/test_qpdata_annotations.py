"""Annotations written as QuPath objects (.qpdata): round trips, nesting of tiles, the shipped sample data."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from shapely import wkt
from shapely.geometry import MultiPolygon, box
from typer.testing import CliRunner

from histobridge.errors import AnnotationError, QPDataError
from histobridge.qupath import layout
from histobridge.qupath.annotations import PathObject
from histobridge.qupath.geojson import read_features
from histobridge.qupath.qpdata import read_qpdata, read_qpdata_annotations
from histobridge.qupath.qpdata.from_geojson import qpdata_from_geojson
from histobridge.qupath.qpdata.header import read_server_json, with_server_json
from histobridge.qupath.qpdata.tiles import TileBatch
from histobridge.qupath.qpdata.writer import new_qpdata_bytes, write_objects_qpdata, write_tiles_qpdata
from histobridge.qupath.sample import build_sample_data

REPO = Path(__file__).resolve().parents[1]
SKIN = REPO / "sample_projects" / "skin"
HOLE = wkt.loads("POLYGON ((0 0, 400 0, 400 400, 0 400, 0 0), (100 100, 300 100, 300 300, 100 300, 100 100))")
MULTI = wkt.loads(
    "MULTIPOLYGON (((500 0, 700 0, 700 200, 500 200, 500 0)), "
    "((500 300, 900 300, 900 700, 500 700, 500 300), "
    "(600.25 400.5, 800 400, 800 600, 600 600, 600.25 400.5)))"
)


def _objects() -> list[PathObject]:
    return [
        PathObject(HOLE, "Tumor", name="ring", object_id=str(uuid.uuid4()), class_color=(200, 0, 0)),
        PathObject(
            MULTI,
            "Tumor: Positive",
            color=(0, 255, 0),
            name="two parts",
            locked=True,
            measurements={"Area µm^2": 1234.5, "score": -0.125},
            metadata={"ANNOTATION_DESCRIPTION": "drawn by hand"},
            plane=(-1, 0, 0),
        ),
        PathObject(box(1000, 1000, 1100, 1050), None, name=None, object_id="not-a-uuid"),
    ]


@pytest.fixture
def skin_copy(tmp_path: Path) -> Path:
    proj = tmp_path / "skin"
    shutil.copytree(SKIN, proj)
    shutil.rmtree(proj / "data")
    return proj


def test_annotations_round_trip_with_holes_parts_and_fields(skin_copy: Path) -> None:
    objs = _objects()
    report = write_objects_qpdata(skin_copy, 1, annotations=objs)
    assert report.created and report.annotations == 3 and report.backup is None
    data = read_qpdata(report.path)
    assert data.notes == () and data.counts() == {"root": 1, "annotation": 3}
    back = [o for o in data.objects if o.object_type == "annotation"]
    assert [o.parent_index for o in back] == [0, 0, 0]  # under the root, in the given order
    for mine, read in zip(objs, back, strict=True):
        assert read.geometry.equals_exact(mine.geometry, 0)  # double precision WKB: exact
        assert read.roi_type == "geometry" and read.plane == (-1, 0, 0)
        assert (read.path_class, read.name, read.color, read.locked) == (
            mine.path_class,
            mine.name,
            mine.color,
            mine.locked,
        )
        assert dict(read.measurements) == dict(mine.measurements)
        assert read.class_probability is None or math.isnan(read.class_probability)
    assert back[0].object_id == objs[0].object_id and back[0].class_color == (200, 0, 0)
    assert back[1].class_color is None  # none given: QuPath picks one for "Tumor: Positive"
    assert back[1].metadata.get("ANNOTATION_DESCRIPTION") == "drawn by hand"
    assert len(back[0].geometry.interiors) == 1 and isinstance(back[1].geometry, MultiPolygon)
    assert uuid.UUID(str(back[2].object_id))  # a new ID where the given one is no UUID
    summary = json.loads(layout.summary_path(skin_copy, 1).read_text())
    assert summary["hierarchy"]["annotationClassificationCounts"] == {
        "Tumor": 1,
        "Tumor: Positive": 1,
        "Unclassified": 1,
    }


def test_new_file_nests_tiles_under_the_smallest_annotation(skin_copy: Path) -> None:
    n = 6
    boxes = np.array([[0, 0, 50, 50], [150, 150, 50, 50], [520, 20, 20, 20],
                      [650, 450, 20, 20], [2000, 2000, 10, 10], [1040, 1010, 10, 10]], float)  # fmt: skip
    tiles = TileBatch(
        boxes=boxes, class_index=np.zeros(n, np.int64), classes=("Tumor",), colors=((1, 2, 3),),
        names=("m: p",), values=np.arange(n, dtype=np.float32).reshape(n, 1), name="m",
    )  # fmt: skip
    objs = [*_objects(), PathObject(box(1020, 1000, 1060, 1040), "Stroma", name="inner")]
    report = write_objects_qpdata(skin_copy, 1, annotations=objs, tiles=tiles)
    assert report.added == n and report.in_annotations == 3
    data = read_qpdata(report.path)
    by_index = {o.index: o for o in data.objects}
    parent_names = {}
    for t in (o for o in data.objects if o.object_type == "tile"):
        x0, y0 = t.geometry.bounds[:2]
        parent_names[(x0, y0)] = by_index[t.parent_index].name
    assert parent_names == {
        (0, 0): "ring", (150, 150): None,  # the hole is not inside: the root
        (520, 20): "two parts", (650, 450): None, (2000, 2000): None, (1040, 1010): "inner",
    }  # fmt: skip
    # a later run of the model (tiles added to the existing file) nests the same way and keeps the annotations
    again = write_tiles_qpdata(skin_copy, 1, tiles)
    assert again.removed == n and again.in_annotations == 3
    redo = read_qpdata(report.path)
    assert [o.object_id for o in redo.objects if o.object_type == "annotation"] == [
        o.object_id for o in data.objects if o.object_type == "annotation"
    ]


def test_bad_annotations_and_existing_files_are_refused(skin_copy: Path) -> None:
    for geom, match in (
        (wkt.loads("LINESTRING (0 0, 10 10)"), "only areas"),
        (wkt.loads("POLYGON ((0 0, 1 0, 1 nan, 0 0))"), "NaN or infinite"),
        (PathObject().geometry, "no ROI"),
    ):
        with pytest.raises(QPDataError, match=match):
            write_objects_qpdata(skin_copy, 1, annotations=[PathObject(geom, "Tumor")])
    with pytest.raises(QPDataError, match="only annotations"):
        write_objects_qpdata(skin_copy, 1, annotations=[PathObject(HOLE, object_type="detection")])
    assert not layout.qpdata_path(skin_copy, 1).exists()  # nothing half-written
    write_objects_qpdata(skin_copy, 1, annotations=_objects()[:1])
    first = layout.qpdata_path(skin_copy, 1).read_bytes()
    with pytest.raises(QPDataError, match="already has QuPath data"):
        write_objects_qpdata(skin_copy, 1, annotations=_objects())
    assert layout.qpdata_path(skin_copy, 1).read_bytes() == first
    report = write_objects_qpdata(skin_copy, 1, annotations=_objects(), replace=True)
    assert report.backup is not None and report.backup.read_bytes() == first
    assert read_qpdata(report.path).counts()["annotation"] == 3


def test_server_string_swap_keeps_every_other_byte(skin_copy: Path) -> None:
    data = (SKIN / "data" / "1" / "data.qpdata").read_bytes()
    header = read_server_json(data)
    assert header["server"]["uri"] == "file:/histobridge-sample/CMU-1-Small-Region.svs"
    long_uri = "file:/" + "x/" * 40_000 + "slide.svs"  # past 64 KiB: a long string record
    for uri in ("file:/elsewhere/CMU-1-Small-Region.svs", long_uri):
        new = with_server_json(data, {**header, "server": {**header["server"], "uri": uri}, "id": uri})
        assert read_server_json(new)["server"]["uri"] == uri
        old_end, new_end = data.index(b"\x7e\x72"), new.index(b"\x7e\x72")  # the ImageType enum after it
        assert new[new_end:] == data[old_end:]
        path = skin_copy / f"swapped{len(uri)}.qpdata"
        path.write_bytes(new)
        read = read_qpdata(path)
        assert read.server is not None and read.server["uri"] == uri and read.counts()["annotation"] == 15
    with pytest.raises(QPDataError, match="not a Java serialization stream"):
        read_server_json(b"nope")


def _same_annotations(a: list[PathObject], b: list[PathObject]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.path_class, x.name, x.object_id, x.class_color) == (
            y.path_class,
            y.name,
            y.object_id,
            y.class_color,
        )
        assert x.geometry.equals_exact(y.geometry, 1e-9)
        assert [len(p.interiors) for p in getattr(x.geometry, "geoms", [x.geometry])] == [
            len(p.interiors) for p in getattr(y.geometry, "geoms", [y.geometry])
        ]


def test_shipped_sample_data_holds_the_sidecar_annotations() -> None:
    sidecar = read_features(SKIN / "histobridge" / "annotations" / "1.geojson").annotations
    shipped = read_qpdata_annotations(SKIN / "data" / "1" / "data.qpdata")
    assert shipped.notes == [] and len(shipped.annotations) == 15
    _same_annotations(list(sidecar), list(shipped.annotations))
    assert sum(len(a.geometry.interiors) for a in shipped.annotations) == 3  # holes included
    summary = json.loads((SKIN / "data" / "1" / "summary.json").read_text())
    assert summary["hierarchy"]["objectTypeCounts"] == {"Root objects": 1, "Annotations": 15}
    assert summary["hierarchy"]["annotationClassificationCounts"] == {
        "Epidermis": 6,
        "Dermis": 6,
        "Background": 2,
        "Unclassified": 1,
    }
    assert summary["server"] == {"width": 2220, "height": 2967, "sizeC": 3, "sizeZ": 1, "sizeT": 1}
    assert not (
        SKIN / "data" / "1" / "server.json"
    ).exists()  # QuPath writes one only once it changed a server


def test_shipped_sample_data_is_rebuilt_byte_for_byte(tmp_path: Path) -> None:
    proj = tmp_path / "skin"
    shutil.copytree(SKIN, proj)
    summary = json.loads((SKIN / "data" / "1" / "summary.json").read_text())
    size = (summary["server"]["width"], summary["server"]["height"])
    (written,) = build_sample_data(proj, {1: size})
    assert written.read_bytes() == (SKIN / "data" / "1" / "data.qpdata").read_bytes()
    assert json.loads(layout.summary_path(proj, 1).read_text()) == summary
    assert not list(proj.rglob("*.bkp"))


def test_sample_size_is_the_slides(cmu_slide: Path) -> None:
    from histobridge.slides import open_slide

    summary = json.loads((SKIN / "data" / "1" / "summary.json").read_text())
    with open_slide(cmu_slide) as slide:
        assert slide.dimensions == (summary["server"]["width"], summary["server"]["height"])


def test_cli_from_geojson(skin_copy: Path) -> None:
    from histobridge.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["qpdata", "from-geojson", str(skin_copy), "--image", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 15 annotations" in result.output
    _same_annotations(
        list(read_features(layout.annotation_path(skin_copy, 1)).annotations),
        list(read_qpdata_annotations(layout.qpdata_path(skin_copy, 1)).annotations),
    )
    again = runner.invoke(app, ["qpdata", "from-geojson", str(skin_copy), "--image", "1"])
    assert again.exit_code == 1 and isinstance(again.exception, QPDataError)  # main() prints "error: …"
    assert "already has QuPath data" in str(again.exception)
    again = runner.invoke(app, ["qpdata", "from-geojson", str(skin_copy), "--image", "1", "--replace"])
    assert again.exit_code == 0 and "data.qpdata.bkp" in again.output
    with pytest.raises(AnnotationError, match="no GeoJSON annotations for image 2"):
        qpdata_from_geojson(skin_copy, 2)


def test_new_file_bytes_are_reproducible() -> None:
    objs = [dataclasses.replace(o, object_id=str(uuid.uuid4())) for o in _objects()]
    a = new_qpdata_bytes("{}", annotations=objs, root_id="00000000-0000-4000-8000-000000000000")
    b = new_qpdata_bytes("{}", annotations=objs, root_id="00000000-0000-4000-8000-000000000000")
    assert a == b
