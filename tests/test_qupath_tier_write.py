"""QuPath-checked tier: QuPath 0.5.1 and 0.6.0 (PathIO.readImageData) read every .qpdata histobridge
wrote: real 0.4 project files and QuPath-written files with tiles added, and new files for the
sample project. Originals must be unchanged, the new tiles present with their measurements, and
placed where QuPath itself would place them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _qupath_tier import VERSIONS, QuPathRun, run_each_version

from histobridge.qupath import geojson
from histobridge.qupath.qpdata.tiles import TileBatch
from histobridge.qupath.qpdata.writer import rewrite_qpdata, write_tiles_qpdata

pytestmark = pytest.mark.qupath
NAMES = ("model: Tumor probability", "model: Stroma probability")
REPO = Path(__file__).resolve().parents[1]


def _grid(extent: tuple[float, float], step: float, seed: int) -> TileBatch:
    xs, ys = np.meshgrid(np.arange(0, extent[0] - step + 1, step), np.arange(0, extent[1] - step + 1, step))
    n = xs.size
    rng = np.random.default_rng(seed)
    return TileBatch(
        boxes=np.c_[xs.ravel(), ys.ravel(), np.full((n, 2), step)],
        class_index=rng.integers(-1, 3, n),
        classes=("Tumor", "Stroma", "Tumor: Positive"),
        colors=((200, 0, 0), (0, 200, 0), None),
        names=NAMES,
        values=rng.random((n, 2)).astype(np.float32),
        name="model",
    )


def _shares_with_removed_tile(path: Path, shared_dir: Path) -> Path:
    import _qpdata_writer as W

    from histobridge.qupath.qpdata import read_qpdata

    server = read_qpdata(
        shared_dir / "fixtures" / "qupath" / "written-0.6.0" / "annotation-plain.qpdata"
    ).server
    old, kept = W.tile_then_detection_sharing_refs()
    wrapper = {"dataVersion": 3, "qupathVersion": "0.6.0", "server": server, "id": "generated"}
    path.write_bytes(W.qpdata_bytes(W.PO("root", children=[old, kept]), "0.6.0", server_json=wrapper))
    return path


@pytest.fixture(scope="module", params=VERSIONS)
def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, shared_dir: Path
) -> dict:
    version = request.param
    inputs: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    def prepare(v: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        if not inputs:  # the same files serve every version: QuPath only reads them
            inputs.append(_inputs(tmp_path_factory.mktemp("tier-write"), shared_dir))
        return inputs[0]

    run, extra = run_each_version("write", version, prepare)
    assert run.version == version
    return {"run": run, **extra}


def _inputs(tmp: Path, shared_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Files histobridge wrote (and their originals), and the QuPath jobs that read them."""
    foci = tmp / "foci"
    shutil.copytree(shared_dir / "fixtures" / "qupath" / "foci-0.4", foci)
    files: dict[str, tuple[Path, Path, TileBatch]] = {}  # label -> (new file, original, tiles)
    for eid in (10, 216, 242):
        write_tiles_qpdata(foci, eid, _grid((2048, 2048), 512, eid))  # a first run, then a rerun
        b = _grid((2048, 2048), 256, eid + 1)
        report = write_tiles_qpdata(foci, eid, b)
        assert report.removed == 16
        original = tmp / f"foci-{eid}.qpdata"
        shutil.copy(
            shared_dir / "fixtures" / "qupath" / "foci-0.4" / "data" / str(eid) / "data.qpdata", original
        )
        files[f"foci-{eid}"] = (report.path, original, b)
    for other in VERSIONS:  # files QuPath itself wrote (all object types), tiles added
        src = shared_dir / "fixtures" / "qupath" / f"written-{other}" / "variety.qpdata"
        b = _grid((2000, 1500), 250, 7)
        data, *_ = rewrite_qpdata(src, b)
        out = tmp / f"variety-{other}.qpdata"
        out.write_bytes(data)
        files[f"variety-{other}"] = (out, src, b)
    # a removed tile that was the first to write the class and the name list a kept detection uses
    src = _shares_with_removed_tile(tmp / "shared-first.qpdata", shared_dir)
    b = _grid((2000, 1500), 500, 3)
    data, *_ = rewrite_qpdata(src, b)
    out = tmp / "shared-first-new.qpdata"
    out.write_bytes(data)
    files["shared-first"] = (out, src, b)
    skin = tmp / "skin"
    shutil.copytree(REPO / "sample_projects" / "skin", skin)
    shutil.rmtree(skin / "data")  # an image without QuPath data (the sample ships some)
    feats = [
        geojson.tile_feature(
            100.0 * i,
            50.0,
            100.0,
            100.0,
            "Dermis",
            (10, 20, 30),
            {"skin: Dermis probability": i / 10},
            name="skin",
        )
        for i in range(10)
    ]
    report = write_tiles_qpdata(skin, 1, feats, prefix="skin")
    assert report.created
    jobs: list[dict[str, Any]] = []
    for new, old, _ in files.values():
        jobs += [
            {"op": "read_qpdata", "path": str(new), "reresolve": True},
            {"op": "read_qpdata", "path": str(old)},
        ]
    jobs.append({"op": "read_qpdata", "path": str(report.path)})
    return jobs, {"files": files, "skin_tiles": feats}


def test_quPath_reads_rewritten_files_with_originals_unchanged(session: dict) -> None:
    run: QuPathRun = session["run"]
    checked = 0
    for j, (label, (_, _, b)) in enumerate(session["files"].items()):
        new, old = run.value(2 * j), run.value(2 * j + 1)
        placed = new["reresolved"]
        new_objs = {o["id"]: o for o in new["objects"]}
        old_objs = {o["id"]: o for o in old["objects"]}
        dropped = {k for k, o in old_objs.items() if o["type"] == "PathTileObject" and o["name"] == "model"}
        assert new["image_type"] == old["image_type"] and new["tma"] == old["tma"], label
        assert new["properties"] == old["properties"], label
        for k, o in old_objs.items():  # every original object, as QuPath sees it
            if k in dropped:
                assert k not in new_objs
                continue
            n = new_objs[k]
            assert {a: v for a, v in n.items() if a != "n_children"} == {
                a: v for a, v in o.items() if a != "n_children"
            }, (label, o["name"])
            checked += 1
        tiles = [o for k, o in new_objs.items() if k not in old_objs]
        assert len(tiles) == len(b), label
        assert all(t["type"] == "PathTileObject" and t["name"] == "model" and t["locked"] for t in tiles)
        boxes = {tuple(round(v, 6) for v in t["bounds"]): t for t in tiles}
        for i, (x, y, w, h) in enumerate(b.boxes):
            t = boxes[(round(x, 6), round(y, 6), round(x + w, 6), round(y + h, 6))]
            k = int(b.class_index[i])
            assert t["class"] == (b.classes[k] if k >= 0 else None)
            assert t["measurement_names"] == list(NAMES)
            assert [t["measurements"][n] for n in NAMES] == [float(v) for v in b.values[i]]
        # QuPath takes the tiles out and adds them again: each lands where we had put it
        assert {k: placed[k] for k in (t["id"] for t in tiles)} == {t["id"]: t["parent"] for t in tiles}, (
            label
        )
        nested = sum(new_objs[p]["type"] != "PathRootObject" for p in placed.values())
        assert nested > 0 or label in ("foci-10", "foci-216", "shared-first")  # no annotations there
    assert checked > 1100


def test_quPath_reads_a_new_file_for_the_sample_project(session: dict) -> None:
    data = session["run"].value(-1)
    objs = data["objects"]
    assert data["image_type"] == "UNSET"
    assert [o["type"] for o in objs].count("PathRootObject") == 1
    tiles = [o for o in objs if o["type"] == "PathTileObject"]
    assert len(tiles) == 10
    for i, t in enumerate(sorted(tiles, key=lambda t: t["bounds"][0])):
        assert t["class"] == "Dermis" and t["name"] == "skin"
        assert t["measurements"] == {"skin: Dermis probability": float(np.float32(i / 10))}
        assert t["bounds"] == [100.0 * i, 50.0, 100.0 * i + 100.0, 150.0]
