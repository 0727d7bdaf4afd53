"""QuPath-checked tier: QuPath's own classes (0.5.1 and 0.6.0, through JPype) confirm what we write
and what we read. One driver process per version runs every QuPath step of this module."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from _qupath_tier import VERSIONS, QuPathRun, run_each_version
from shapely import wkt as shapely_wkt
from shapely.geometry import box

from histobridge.heatmap.outputs import class_colours, measurement_names, tile_features, tile_texts
from histobridge.heatmap.pipeline import ImagePrediction
from histobridge.qupath import geojson
from histobridge.qupath.qpdata import read_qpdata
from histobridge.tiling.regions import Region

pytestmark = pytest.mark.qupath

CLASSES = ("Tumor", "Stroma", "Tumor: Positive")
KIND = {
    "PathAnnotationObject": "annotation",
    "PathDetectionObject": "detection",
    "PathTileObject": "tile",
    "PathCellObject": "cell",
    "TMACoreObject": "tmaCore",
    "PathRootObject": "root",
}


def _prediction(n: int = 7, uncertainty: bool = True) -> ImagePrediction:
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(len(CLASSES)), n).astype(np.float64)
    coords = np.array([[10.5 + 64 * i, 20.25, 64.0, 64.0] for i in range(n)])
    region = Region(box(0, 0, 1000, 200), "Tumor", "r1", "region")
    return ImagePrediction(
        coords=coords,
        region=np.zeros(n, np.int64),
        regions=(region,),
        probs=probs,
        std=probs / 10 if uncertainty else None,
        class_names=CLASSES,
        tile_l0=64.0,
        stride_l0=64.0,
        mpp=0.5,
    )


def _rgb(argb: int | None) -> tuple[int, int, int] | None:
    return None if argb is None else ((argb >> 16) & 255, (argb >> 8) & 255, argb & 255)


def _generated(tmp: Path, shared_dir: Path) -> list[Path]:
    """Files of the test-only writer (the 0.5 and the 0.6 measurement-name layouts) behind a real server."""
    import _qpdata_writer as W
    from test_qpdata_generated import _scene

    fixture = shared_dir / "fixtures" / "qupath" / "written-0.6.0" / "annotation-plain.qpdata"
    server = read_qpdata(fixture).server
    out = []
    for version, names in (("0.5.1", W.unmodifiable_list), ("0.6.0", W.coll_ser_list)):
        root, *_ = _scene(names(["m1", "m2"]))
        wrapper = {"dataVersion": 3, "qupathVersion": version, "server": server, "id": "generated"}
        path = tmp / f"generated-{version}.qpdata"
        path.write_bytes(W.qpdata_bytes(root, version, server_json=wrapper))
        out.append(path)
    return out


@pytest.fixture(scope="module", params=VERSIONS)
def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, shared_dir: Path
) -> dict[str, Any]:
    """Writes our files, runs QuPath once on all of them, returns inputs and QuPath's answers."""
    version = request.param

    def prepare(v: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        tmp = tmp_path_factory.mktemp(f"tier-read-{v}")
        pred = _prediction()
        colours = class_colours(pred.class_names)
        feats = tile_features(pred, "model", colours)
        plain, gz = tmp / "tiles.geojson", tmp / "tiles.geojson.gz"
        geojson.write_features(plain, feats)
        geojson.write_features(gz, feats)
        block = tile_texts(pred, "model", colours)  # the heatmap's path: serialised from the arrays
        bulk, bulk_gz = tmp / "bulk.geojson", tmp / "bulk.geojson.gz"
        geojson.write_feature_texts(bulk, block)
        geojson.write_feature_texts(bulk_gz, block)
        image = tmp / "plain.tif"
        tifffile.imwrite(image, np.zeros((1500, 2400, 3), np.uint8), photometric="rgb")
        qp = tmp / "variety.qpdata"
        generated = _generated(tmp, shared_dir)
        jobs = [
            {"op": "read_geojson", "path": str(plain)},
            {"op": "read_geojson", "path": str(gz)},
            {"op": "write_variety", "path": str(qp), "image": str(image)},
            *({"op": "read_qpdata", "path": str(p)} for p in generated),
            {"op": "read_geojson", "path": str(bulk)},
            {"op": "read_geojson", "path": str(bulk_gz)},
        ]
        return jobs, {"pred": pred, "colours": colours, "qpdata": qp, "generated": generated}

    run, extra = run_each_version("read", version, prepare)
    assert run.version == version
    return {"version": version, "run": run, **extra}


def test_quPath_reads_our_prediction_tiles(session: dict[str, Any]) -> None:
    run: QuPathRun = session["run"]
    pred: ImagePrediction = session["pred"]
    names = measurement_names("model", CLASSES) + measurement_names("model", CLASSES, "uncertainty")
    for job in (0, 1, -2, -1):  # .geojson and .geojson.gz, per feature and from the arrays
        objs = run.value(job)
        assert len(objs) == len(pred)
        for i, o in enumerate(objs):
            top = CLASSES[int(pred.top[i])]
            assert o["type"] == "PathTileObject" and o["name"] == "model" and o["locked"]
            assert o["class"] == top
            # QuPath fixes a class's colour when the class is first created; a derived class seen
            # first ("Tumor: Positive") creates its parent with a generated colour, so only classes
            # that are no other class's parent are certain to keep the colour we wrote.
            if not any(c.startswith(top + ": ") for c in CLASSES):
                assert _rgb(o["class_color"]) == session["colours"][top]
            assert o["measurement_names"] == names
            expected = [*pred.probs[i], *pred.std[i]]  # type: ignore[misc]
            got = [o["measurements"][n] for n in names]
            assert got == [float(np.float32(v)) for v in expected]  # QuPath keeps float32
            x, y, w, h = pred.coords[i]
            assert o["bounds"] == pytest.approx([x, y, x + w, y + h], abs=1e-9)
            assert o["plane"] == [-1, 0, 0]


def test_we_read_every_object_quPath_wrote(session: dict[str, Any]) -> None:
    """QuPath's own .qpdata (every object type and ROI type) read by histobridge, object for object."""
    written = {o["id"]: o for o in session["run"].value(2)}
    data = read_qpdata(session["qpdata"])
    assert data.notes == () and data.qupath_version == session["version"]
    assert data.tma_grid == (2, 2) and data.image_type == "BRIGHTFIELD_H_E"
    assert len(data.objects) == len(written) == 25
    ids = {o.index: o.object_id for o in data.objects}
    roi_names = set()
    for ours in data.objects:
        q = written[ours.object_id]
        assert ours.object_type == KIND[q["type"]]
        assert ours.path_class == (None if q["type"] == "PathRootObject" else q["class"])
        assert ours.name == q["name"]
        assert ours.locked == q["locked"] or q["type"] == "PathRootObject"  # QuPath: the root is locked
        assert (ids[ours.parent_index] if ours.parent_index is not None else None) == q["parent"]
        assert ours.color == _rgb(q["color"])
        if q["class"] and q["type"] != "PathRootObject":
            assert ours.class_color == _rgb(q["class_color"])
        assert list(ours.measurements) == q["measurement_names"]
        for k, v in q["measurements"].items():
            assert (math.isnan(ours.measurements[k]) and v is None) or ours.measurements[k] == v
        if "roi" not in q:
            continue
        roi_names.add(q["roi"])
        c, z, t = q["plane"]
        assert ours.plane == (c, z, t)
        assert ours.geometry.area == pytest.approx(q["area"], rel=1e-6, abs=1e-6)
        assert ours.geometry.bounds == pytest.approx(q["bounds"], rel=1e-6, abs=1e-6)
        assert (
            ours.geometry.normalize().equals_exact(shapely_wkt.loads(q["wkt"]).normalize(), tolerance=0.01)
            or ours.geometry.symmetric_difference(shapely_wkt.loads(q["wkt"])).area < 1e-3
        )
        if q["type"] == "PathCellObject":
            assert ours.nucleus.area == pytest.approx(q["nucleus_area"], rel=1e-6)
        if q["type"] == "TMACoreObject":
            assert ours.is_missing == q["missing"]
    assert roi_names == {"Rectangle", "Ellipse", "Geometry", "Polygon", "Polyline", "Line", "Points"}
    counts = data.counts()
    assert counts == {"root": 1, "annotation": 10, "detection": 3, "tile": 4, "cell": 3, "tmaCore": 4}


def test_quPath_reads_the_test_writers_files(session: dict[str, Any]) -> None:
    """The generated-file tests stand for real files only if QuPath reads them the same way."""
    for j, path in enumerate(session["generated"]):
        theirs = {o["id"]: o for o in session["run"].value(3 + j)["objects"]}
        ours = read_qpdata(path).objects
        assert len(theirs) == len(ours) == 6
        for o in ours:
            q = theirs[o.object_id]
            assert o.object_type == KIND[q["type"]] and list(o.measurements) == q["measurement_names"]
            assert all(
                (v is None and math.isnan(o.measurements[k]))
                or o.measurements[k] == pytest.approx(v, rel=1e-6)
                for k, v in q["measurements"].items()
            )
