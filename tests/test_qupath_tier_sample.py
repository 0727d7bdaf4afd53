"""QuPath-checked tier: the skin sample's annotations as QuPath data, for QuPath 0.5.1 and 0.6.0.

QuPath reads the shipped ``data/1/data.qpdata``, and the one ``sample init`` places in a project
(directly and through ``ProjectIO``), with the annotations histobridge reads; after a heatmap
written back into it QuPath finds every tile measured and nested under the annotations, which are
unchanged; and a file QuPath itself saves from it reads in histobridge exactly as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _qupath_tier import VERSIONS, QuPathRun, run_each_version
from shapely import wkt as shapely_wkt

from histobridge.qupath import layout
from histobridge.qupath.annotations import PathObject
from histobridge.qupath.qpdata import read_qpdata

pytestmark = pytest.mark.qupath
REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "sample_projects" / "skin" / "data" / "1" / "data.qpdata"
CLASSIFIER = REPO / "sample_projects" / "skin" / "models" / "classifier"
JOBS = ("shipped", "placed", "project", "heatmap", "resave", "resaved", "variety")
VARIETY = [  # (WKT, class, own colour, name, locked, measurements)
    ("POLYGON ((0 0, 400 0, 400 400, 0 400, 0 0), (100 100, 300 100, 300 300, 100 300, 100 100))",
     "Tumor", None, "ring", False, {}),
    ("MULTIPOLYGON (((500 0, 700 0, 700 200, 500 200, 500 0)), "
     "((500 300, 900 300, 900 700, 500 700, 500 300), "
     "(600.25 400.5, 800 400, 800 600, 600 600, 600.25 400.5)))",
     "Tumor: Positive", (0, 255, 0), "two parts", True, {"Area µm^2": 1234.5, "score": -0.125}),
    ("POLYGON ((1000 1000, 1100 1000, 1100 1050, 1000 1050, 1000 1000))", None, None, None, False, {}),
]  # fmt: skip


def _holes(geometry: Any) -> int:
    return sum(len(p.interiors) for p in getattr(geometry, "geoms", [geometry]))


def _variety(path: Path) -> Path:
    """Annotations with holes, several parts, own colours, a derived class, measurements, a lock."""
    from histobridge.qupath.qpdata.header import read_server_json
    from histobridge.qupath.qpdata.writer import new_qpdata_bytes

    objs = [
        PathObject(
            shapely_wkt.loads(w),
            c,
            color=col,
            name=n,
            locked=lk,
            measurements=m,
            class_color=(200, 0, 0) if c else None,
        )
        for w, c, col, n, lk, m in VARIETY
    ]
    server = json.dumps(read_server_json(SHIPPED.read_bytes()))
    path.write_bytes(new_qpdata_bytes(server, annotations=objs))
    return path


def _inputs(tmp: Path, slide: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import tifffile

    from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap
    from histobridge.models.classifier import load_classifier
    from histobridge.qupath.project import Project
    from histobridge.qupath.sample import init_sample_project

    placed = init_sample_project(tmp / "placed", offline=True)
    heat = init_sample_project(tmp / "heatmap", offline=True)
    project = Project.open(heat)
    report = run_heatmap(
        project,
        load_classifier(CLASSIFIER, device="cpu"),
        tmp / "heatmap-out",
        HeatmapOptions(write_back="qpdata"),
    )
    assert report.ok and report.results[0].tiles > 50
    heat_data = layout.qpdata_path(heat.parent, 1)
    image = tmp / "plain.tif"  # an image QuPath's core opens, of the slide's size, to save the data on
    tifffile.imwrite(image, np.zeros((2967, 2220, 3), np.uint8), photometric="rgb")
    resaved = tmp / "resaved.qpdata"
    jobs = [
        {"op": "read_qpdata", "path": str(SHIPPED), "wkt": True},
        {"op": "read_qpdata", "path": str(layout.qpdata_path(placed.parent, 1)), "wkt": True},
        {"op": "load_project", "path": str(placed), "wkt": True},
        {"op": "read_qpdata", "path": str(heat_data), "reresolve": True},
        {"op": "resave_qpdata", "path": str(heat_data), "image": str(image), "out": str(resaved)},
        {"op": "read_qpdata", "path": str(resaved)},
        {"op": "read_qpdata", "path": str(_variety(tmp / "variety.qpdata")), "wkt": True},
    ]
    return jobs, {"placed": layout.qpdata_path(placed.parent, 1), "heat": heat_data, "resaved": resaved,
                  "tiles": report.results[0].tiles}  # fmt: skip


@pytest.fixture(scope="module", params=VERSIONS)
def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path
) -> dict:
    inputs: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    def prepare(v: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        if not inputs:  # one set of files for every version: QuPath reads them (and saves a copy)
            inputs.append(_inputs(tmp_path_factory.mktemp("tier-sample"), cmu_slide))
        jobs, extra = inputs[0]
        out = Path(str(extra["resaved"]).replace(".qpdata", f"-{v}.qpdata"))
        jobs = [{**j, "out": str(out)} if j["op"] == "resave_qpdata" else j for j in jobs]
        jobs = [{**j, "path": str(out)} if j.get("path") == str(extra["resaved"]) else j for j in jobs]
        return jobs, {**extra, "resaved": out}

    run, extra = run_each_version("sample", request.param, prepare, timeout=300)
    assert run.version == request.param
    return {"run": run, **extra}


def _value(session: dict, job: str) -> Any:
    run: QuPathRun = session["run"]
    return run.value(JOBS.index(job))


def _annotations(path: Path) -> list[PathObject]:
    return [o for o in read_qpdata(path).objects if o.object_type == "annotation"]


def _check_annotations(quPath_objects: list[dict[str, Any]], ours: list[PathObject]) -> None:
    theirs = {o["id"]: o for o in quPath_objects if o["type"] == "PathAnnotationObject"}
    assert len(theirs) == len(ours) == 15
    for a in ours:
        q = theirs[str(a.object_id)]
        assert (q["class"], q["name"], q["roi"]) == (a.path_class, a.name, "Geometry")
        assert q["area"] == pytest.approx(a.geometry.area, rel=1e-6)
        assert q["roi_area"] == pytest.approx(a.geometry.area, rel=1e-6)
        assert _holes(shapely_wkt.loads(q["wkt"])) == _holes(a.geometry)
        assert q["plane"] == [-1, 0, 0] and q["locked"] is False
    assert sum(_holes(a.geometry) for a in ours) == 3


def test_quPath_reads_the_shipped_sample_data(session: dict) -> None:
    data = _value(session, "shipped")
    assert data["image_type"] == "UNSET"
    _check_annotations(data["objects"], _annotations(SHIPPED))
    root = next(o for o in data["objects"] if o["type"] == "PathRootObject")
    assert root["n_children"] == 15  # the annotations sit under the root


def test_quPath_reads_a_materialised_sample_project(session: dict) -> None:
    ours = _annotations(session["placed"])
    _check_annotations(_value(session, "placed")["objects"], ours)
    (image,) = _value(session, "project")["images"]
    assert image["has_data"] and image["name"] == "CMU-1-Small-Region.svs"
    _check_annotations(image["objects"], ours)


def test_quPath_reads_heatmap_tiles_nested_under_unchanged_annotations(session: dict) -> None:
    data = _value(session, "heatmap")
    objects = {o["id"]: o for o in data["objects"]}
    shipped = {
        o["id"]: o for o in _value(session, "shipped")["objects"] if o["type"] == "PathAnnotationObject"
    }
    for oid, before in shipped.items():  # every annotation as QuPath saw it before the heatmap
        after = objects[oid]
        assert {k: v for k, v in after.items() if k not in ("n_children", "wkt")} == {
            k: v for k, v in before.items() if k not in ("n_children", "wkt")
        }
    ours = {str(o.object_id): o for o in read_qpdata(session["heat"]).objects}
    tiles = [o for o in data["objects"] if o["type"] == "PathTileObject"]
    assert len(tiles) == session["tiles"] == sum(o.object_type == "tile" for o in ours.values())
    by_index = {o.index: o for o in ours.values()}
    nested = sum(objects[t["parent"]]["type"] == "PathAnnotationObject" for t in tiles)
    assert nested >= 0.9 * len(tiles)  # tiles whose centre lies outside every annotation stay at the root
    for t in tiles:
        mine = ours[t["id"]]
        assert t["class"] == mine.path_class and t["name"] == mine.name
        assert t["measurements"] == {k: float(np.float32(v)) for k, v in mine.measurements.items()}
        assert len(t["measurements"]) >= 2 and all("probability" in k for k in t["measurements"])
        assert t["parent"] == str(by_index[mine.parent_index].object_id)  # where histobridge put it
        assert data["reresolved"][t["id"]] == t["parent"]  # where QuPath itself would put it


def test_a_file_quPath_saved_reads_identically(session: dict) -> None:
    assert _value(session, "resave") == len(read_qpdata(session["heat"]).objects) - 1  # root not counted
    before, after = read_qpdata(session["heat"]), read_qpdata(session["resaved"])
    assert after.notes == () and after.counts() == before.counts()

    def key(data: Any) -> dict[str, tuple[Any, ...]]:
        ids = {o.index: o.object_id for o in data.objects}
        return {
            str(o.object_id): (
                o.object_type,
                o.path_class,
                o.class_color,
                o.name,
                o.color,
                o.locked,
                dict(o.measurements),
                ids.get(o.parent_index),
                o.plane,
            )
            for o in data.objects
            if o.object_type != "root"
        }

    assert key(after) == key(before)
    # QuPath 0.6 keeps geometry coordinates as float32 (its default JTS factory packs floats), so a
    # vertex such as 798.84 comes back as 798.8400268…; QuPath 0.5 keeps doubles
    tol = 0.0 if session["run"].version.startswith("0.5") else 5e-4
    geometries = {str(o.object_id): o.geometry for o in before.objects if o.object_type != "root"}
    for o in after.objects:
        if o.object_type != "root":
            assert o.geometry.equals_exact(geometries[str(o.object_id)], tol)
    assert {str(o.object_id): _holes(o.geometry) for o in after.objects if o.object_type == "annotation"} == {
        str(o.object_id): _holes(o.geometry) for o in before.objects if o.object_type == "annotation"
    }
    # and histobridge finds the same annotations in QuPath's file as in its own
    got = _value(session, "resaved")
    assert sum(o["type"] == "PathAnnotationObject" for o in got["objects"]) == 15


def test_quPath_reads_holes_parts_colours_and_measurements(session: dict) -> None:
    objects = [o for o in _value(session, "variety")["objects"] if o["type"] == "PathAnnotationObject"]
    assert len(objects) == len(VARIETY)
    for q, (w, cls, color, name, locked, measurements) in zip(objects, VARIETY, strict=True):
        geometry = shapely_wkt.loads(w)
        assert (q["class"], q["name"], q["locked"], q["measurements"]) == (cls, name, locked, measurements)
        assert q["color"] == (
            None if color is None else (0xFF << 24 | color[0] << 16 | color[1] << 8 | color[2]) - (1 << 32)
        )
        assert q["area"] == pytest.approx(geometry.area, rel=1e-9)
        back = shapely_wkt.loads(q["wkt"])
        assert back.geom_type == geometry.geom_type and _holes(back) == _holes(geometry)
        assert back.equals_exact(geometry, 1e-9)
    assert objects[0]["class_color"] == (0xFF << 24 | 200 << 16) - (1 << 32)
