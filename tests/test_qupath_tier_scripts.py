"""QuPath-checked tier: histobridge's Groovy scripts run on QuPath's real classes (0.5.1 and 0.6.0),
the few QP calls they use served by tests/groovy/qp_standin.groovy, in a small project whose image
data QuPath itself wrote (written-<version>/variety.qpdata: every object type, 13 annotations)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from _qupath_tier import GROOVY, VERSIONS, QuPathRun, imagej_project, run_each_version

from histobridge.qupath import geojson, layout
from histobridge.qupath.qpdata import read_qpdata

pytestmark = pytest.mark.qupath
REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "qupath_scripts"
N_TILES = 48


def _tiles(prefix: str) -> list[dict[str, Any]]:
    return [
        geojson.tile_feature(
            250.0 * (i % 8),
            250.0 * (i // 8),
            250.0,
            250.0,
            "Tumor",
            (200, 0, 0),
            {f"{prefix}: Tumor probability": i / N_TILES},
            name=prefix,
        )
        for i in range(N_TILES)
    ]


@pytest.fixture(scope="module", params=VERSIONS)
def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, shared_dir: Path
) -> dict:
    version = request.param
    if not GROOVY.is_file():
        pytest.skip(f"no Groovy jar ({GROOVY}; Debian package 'groovy')")
    run, extra = run_each_version("scripts", version, lambda v: _inputs(v, tmp_path_factory, shared_dir))
    assert run.version == version
    saved = read_qpdata(extra["data"])  # what QuPath saved (the last job does not save)
    return {"run": run, "project": extra["project"], "saved": saved}


def _inputs(
    version: str, tmp_path_factory: pytest.TempPathFactory, shared_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A project whose image 1 holds what QuPath ``version`` wrote, and the jobs that run the scripts."""
    tmp = tmp_path_factory.mktemp(f"tier-scripts-{version}")
    image = tmp / "plain.tif"  # QuPath's ImageJ server opens it, so entries load and save
    tifffile.imwrite(image, np.zeros((1500, 2000, 3), np.uint8), photometric="rgb")  # H&E needs RGB
    proj = tmp / "proj"
    qpproj = imagej_project(proj, [("image 1", image), ("image 2", image)])
    data = layout.qpdata_path(proj, 1)
    data.parent.mkdir(parents=True)
    shutil.copy(shared_dir / "fixtures" / "qupath" / f"written-{version}" / "variety.qpdata", data)
    geojson.write_features(layout.predictions_path(proj, 1), _tiles("histo"))
    old_export = layout.annotation_path(proj, 2)
    old_export.parent.mkdir(parents=True, exist_ok=True)
    old_export.write_text(json.dumps({"type": "FeatureCollection", "features": [_tiles("x")[0]]}))
    imp, exp = str(SCRIPTS / "import_results.groovy"), str(SCRIPTS / "export_annotations.groovy")
    empty = {"type": "FeatureCollection", "histobridge": {"model": "histo"}, "features": []}
    plain = layout.predictions_path(proj, 1).with_suffix("")  # <id>.geojson, read when no .gz
    gz = layout.predictions_path(proj, 1)
    jobs = [
        {"op": "groovy", "project": str(qpproj), "entry": 1, "scripts": [imp, imp, exp], "save": True},
        {"op": "groovy", "project": str(qpproj), "entry": 2, "scripts": [exp]},
        {"op": "read_qpdata", "path": str(data)},
        {
            "op": "groovy",
            "project": str(qpproj),
            "entry": 1,
            "scripts": [imp],
            "delete_first": [str(gz)],
            "write_first": {str(plain): json.dumps(empty)},
        },
    ]
    return jobs, {"project": proj, "data": data}


def test_import_twice_replaces_and_nests(session: dict) -> None:
    run: QuPathRun = session["run"]
    value = run.value(0)
    printed = value["printed"]
    assert f"removed 0 earlier tile(s), added {N_TILES}" in printed
    assert f"removed {N_TILES} earlier tile(s), added {N_TILES}" in printed
    objs = value["objects"]
    ours = [o for o in objs if o["type"] == "PathTileObject" and o["name"] == "histo"]
    assert len(ours) == N_TILES
    assert len([o for o in objs if o["type"] == "PathTileObject"]) == N_TILES + 4  # QuPath's own 4 stay
    by_id = {o["id"]: o for o in objs}
    assert any(by_id[t["parent"]]["type"] == "PathAnnotationObject" for t in ours)
    # QuPath saved the image through its project: histobridge reads what it wrote
    saved = session["saved"]
    assert saved.counts()["tile"] == N_TILES + 4 and saved.counts()["annotation"] == 13
    assert {o.object_id for o in saved.objects} == {o["id"] for o in run.value(2)["objects"]}
    summary = json.loads(layout.summary_path(session["project"], 1).read_text())
    assert summary["hierarchy"]["nObjects"] == len(saved.objects)


def test_export_writes_every_annotation(session: dict) -> None:
    res = geojson.read_features(layout.annotation_path(session["project"], 1))
    names = {a.name for a in res.annotations}
    assert {"big rectangle", "polygon derived", "geometry with hole", "ellipse"} <= names
    assert any(a.path_class == "Tumor: Positive: 2+" for a in res.annotations)


def test_empty_export_keeps_the_previous_one(session: dict) -> None:
    session["run"].value(1)
    path = layout.annotation_path(session["project"], 2)
    assert json.loads(path.read_text())["features"] == []
    backup = path.with_name(path.name + ".backup")
    assert len(json.loads(backup.read_text())["features"]) == 1


def test_empty_predictions_that_name_the_model_clear_its_tiles(session: dict) -> None:
    value = session["run"].value(3)
    assert f"removed {N_TILES} earlier tile(s), added 0" in value["printed"]
    assert len([o for o in value["objects"] if o["type"] == "PathTileObject"]) == 4  # QuPath's own
