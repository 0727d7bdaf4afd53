"""QuPath-checked tier: the paquo backend against QuPath 0.5.1 and 0.6.0 (paquo 0.9 drives both).

The project is made by QuPath itself (through paquo) around a plain TIFF of CMU-1-Small-Region, an
image every QuPath build opens (ImageJ server) and histobridge opens with tiffslide, holding the
sample's annotations. paquo is pointed at each QuPath through ``PAQUO_QUPATH_DIR`` for this test only.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _paquo_project import (
    SAMPLE_MPP,
    copy_project,
    paquo_made_project,
    sample_file,
    snapshot,
    write_plain_tiff,
)
from _qupath_tier import VERSIONS, require_install, run_quPath
from shapely.geometry import Point

from histobridge.errors import ProjectError
from histobridge.qupath import layout
from histobridge.qupath.geojson import read_features
from histobridge.qupath.project import Project

pytestmark = pytest.mark.qupath
DRIVER = Path(__file__).with_name("_qupath_paquo_driver.py")
ANNOTATIONS = "histobridge/annotations/1.geojson"


def _install(version: str) -> Path:
    found = require_install(version)
    if importlib.util.find_spec("paquo") is None:
        pytest.skip("paquo is not installed (pip install 'histobridge[qupath]')")
    return found


@pytest.fixture(scope="session")
def paquo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("paquo-made")


@pytest.fixture(params=VERSIONS)
def qupath(request: pytest.FixtureRequest, cmu_slide: Path, paquo_workdir: Path,
           monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(QuPath install, the project it made); paquo children of this test use that QuPath."""
    install = _install(request.param)
    template = paquo_made_project(request.param, install, cmu_slide, paquo_workdir)
    monkeypatch.setenv("PAQUO_QUPATH_DIR", str(install))
    return install, template


def _holes(geom: Any) -> int:
    parts = getattr(geom, "geoms", [geom])
    return sum(len(p.interiors) for p in parts if p.geom_type == "Polygon")


def test_paquo_reads_what_histobridge_reads(qupath: tuple[Path, Path], tmp_path: Path) -> None:
    _, template = qupath
    proj = Project.open(copy_project(template, tmp_path / "skin"))
    (entry,) = proj.images
    slide = entry.open_slide()
    assert slide.backend == "tiffslide" and slide.dimensions == (2220, 2967)
    assert slide.mpp == pytest.approx(SAMPLE_MPP)
    own = proj.annotations(entry)
    via = proj.annotations(entry, source="paquo")
    assert own.source == "qpdata" and via.source == "paquo"
    sample = read_features(sample_file(ANNOTATIONS)).annotations
    assert len(own) == len(via) == len(sample) > 10
    by_id = {a.object_id: a for a in via.annotations}
    assert set(by_id) == {a.object_id for a in own.annotations}
    for a in own.annotations:
        b = by_id[a.object_id]
        same = ("path_class", "name", "object_type", "locked", "color")
        assert [getattr(a, k) for k in same] == [getattr(b, k) for k in same]
        assert _holes(a.geometry) == _holes(b.geometry)
        # QuPath keeps polygon vertices as float32; its GeoJSON export prints them shorter.
        assert a.geometry.area == pytest.approx(b.geometry.area, rel=1e-6)
        assert a.geometry.symmetric_difference(b.geometry).area < 1e-6 * a.geometry.area + 0.05
    order = sorted(own.annotations, key=lambda a: a.geometry.area)
    for a, s in zip(order, sorted(sample, key=lambda a: a.geometry.area), strict=True):
        assert (a.path_class, a.name, _holes(a.geometry)) == (s.path_class, s.name, _holes(s.geometry))
        assert a.geometry.area == pytest.approx(s.geometry.area, rel=1e-6)
    assert sum(_holes(a.geometry) for a in own.annotations) > 0  # the sample has holes: both routes keep them


def _heatmap(folder: Path, out: Path) -> Any:
    from typer.testing import CliRunner

    from histobridge.cli import app

    args = ["heatmap", str(folder), "--model", str(sample_file("models/classifier")),
            "--write-back", "paquo", "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


def _expected_parent(tile: dict[str, Any], annotations: dict[str, Any]) -> str | None:
    """QuPath's rule: the smallest annotation whose area holds the tile's centre, else the root."""
    x0, y0, x1, y1 = tile["bounds"]
    centre = Point((x0 + x1) / 2, (y0 + y1) / 2)
    holders = [(a.geometry.area, oid) for oid, a in annotations.items() if a.geometry.contains(centre)]
    return min(holders)[1] if holders else None


def _check_tiles(seen: dict[str, Any], features: list[dict[str, Any]], annotations: dict[str, Any],
                 root: str) -> None:
    tiles = [o for o in seen["objects"] if o["type"] == "PathTileObject"]
    assert len(tiles) == len(features)
    centres = np.array([[(t["bounds"][0] + t["bounds"][2]) / 2, (t["bounds"][1] + t["bounds"][3]) / 2]
                        for t in tiles])
    for f in features:
        xs, ys = zip(*f["geometry"]["coordinates"][0], strict=True)
        d = np.hypot(centres[:, 0] - (min(xs) + max(xs)) / 2, centres[:, 1] - (min(ys) + max(ys)) / 2)
        t = tiles[int(d.argmin())]
        assert d.min() < 1e-3 and t["id"] == f["id"]  # the id the GeoJSON copies carry
        props = f["properties"]
        assert t["class"] == props["classification"]["name"] and t["name"] == "classifier" and t["locked"]
        assert t["measurement_names"] == list(props["measurements"])
        for k, v in props["measurements"].items():  # QuPath keeps tile measurements as float32
            assert t["measurements"][k] == pytest.approx(float(np.float32(v)), abs=1e-7)
        assert t["parent"] == (_expected_parent(t, annotations) or root)
    assert sum(t["parent"] != root for t in tiles) > len(tiles) // 2  # most tiles sit in annotations


@pytest.mark.slow  # two heatmap runs and three JVM children per version
def test_heatmap_write_back_paquo(qupath: tuple[Path, Path], tmp_path: Path) -> None:
    install, template = qupath
    folder = copy_project(template, tmp_path / "skin")
    before = snapshot(folder)
    first = _heatmap(folder, tmp_path / "out")
    after_first = snapshot(folder)
    first_copy = copy_project(folder, tmp_path / "after-first")
    _heatmap(folder, tmp_path / "out")  # a rerun replaces the model's tiles
    after = snapshot(folder)

    features_first, features = (
        json.loads(gzip.decompress(snap["histobridge/predictions/1.geojson.gz"]))["features"]
        for snap in (after_first, after)
    )
    n = len(features)
    n_annotations = len(read_features(sample_file(ANNOTATIONS)).annotations)
    assert n > 20 and f"{n} tiles" in first.output
    # Only the image's data file and QuPath's summary of it changed; the project file is untouched.
    assert {k for k in before if after.get(k) != before[k]} == {"data/1/data.qpdata", "data/1/summary.json"}
    new = set(after) - set(before)
    backups = {k for k in new if k.startswith("histobridge/backups/project.qpproj.")}
    assert new - backups == {"data/1/data.qpdata.bkp", "histobridge/predictions/1.geojson.gz",
                             "histobridge/.predictions-1.lock"}
    assert backups and all(after[k] == before["project.qpproj"] for k in backups)
    assert after_first["data/1/data.qpdata.bkp"] == before["data/1/data.qpdata"]
    assert after["data/1/data.qpdata.bkp"] == after_first["data/1/data.qpdata"]
    for snap in (after_first, after):
        counts = json.loads(snap["data/1/summary.json"])["hierarchy"]["objectTypeCounts"]
        assert counts["Tiles"] == n and counts["Annotations"] == n_annotations

    proj = Project.open(template)
    annotations = {a.object_id: a for a in proj.annotations(proj.images[0]).annotations}
    assert len(annotations) == n_annotations
    jobs = [{"op": "open_image", "path": str(p / "project.qpproj"), "entry": 1}
            for p in (template, first_copy, folder)]
    run = run_quPath(install, jobs, driver=DRIVER)
    pristine, once, twice = (run.value(i) for i in range(3))
    for seen in (pristine, once, twice):
        assert seen["server"] == [2220, 2967] and seen["server_class"] == "ImageJServer"
        assert seen["pixel_um"] == pytest.approx([SAMPLE_MPP, SAMPLE_MPP])
        assert seen["image_type"] == "BRIGHTFIELD_H_E"
        assert {"Epidermis", "Dermis", "Background"} <= set(seen["classes"])

    def annotations_of(seen: dict[str, Any]) -> list[dict[str, Any]]:
        return sorted(({k: v for k, v in o.items() if k != "n_children"} for o in seen["objects"]
                       if o["type"] == "PathAnnotationObject"), key=lambda o: o["id"])

    assert len(annotations_of(pristine)) == n_annotations
    assert not [o for o in pristine["objects"] if o["type"] == "PathTileObject"]
    root = next(o["id"] for o in pristine["objects"] if o["type"] == "PathRootObject")
    for seen, written in ((once, features_first), (twice, features)):
        assert annotations_of(seen) == annotations_of(pristine)
        assert len(seen["objects"]) == len(pristine["objects"]) + n
        _check_tiles(seen, written, annotations, root)


def _one_tile(path: Path) -> Path:
    square = [[[0, 0], [128, 0], [128, 128], [0, 128], [0, 0]]]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square},
         "properties": {"objectType": "tile", "measurements": {"m: A probability": 0.25}}}]}))
    return path


def test_paquo_write_refuses_an_image_qupath_cannot_open(
    qupath: tuple[Path, Path], cmu_slide: Path, tmp_path: Path
) -> None:
    """QuPath's ImageJ server reads no tiled TIFF (tiffslide does): nothing is written, and the error
    says so (paquo alone skips saving such an image and still reports its tiles as added)."""
    from histobridge.qupath.paquo.write import write_tiles_paquo

    install, template = qupath
    folder = copy_project(template, tmp_path / "skin")
    tiled = write_plain_tiff(cmu_slide, tmp_path / "image" / "tiled.tif", tiled=True)
    qpproj = folder / "project.qpproj"
    doc = json.loads(qpproj.read_text(encoding="utf-8"))
    doc["images"][0]["serverBuilder"]["uri"] = tiled.as_uri()
    qpproj.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    assert Project.open(folder).images[0].open_slide().dimensions == (2220, 2967)
    tiles = _one_tile(tmp_path / "tiles.geojson")
    before = snapshot(folder)
    with pytest.raises(ProjectError, match=r"QuPath cannot open image 1 .*nothing was written"):
        write_tiles_paquo(qpproj, 1, tiles, prefix="m", qupath_dir=install)
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert after["data/1/data.qpdata.bkp"] == before["data/1/data.qpdata"]
    assert layout.qpdata_path(folder, 1).read_bytes() == before["data/1/data.qpdata"]


def test_paquo_write_refuses_a_data_file_qupath_cannot_read(
    qupath: tuple[Path, Path], tmp_path: Path
) -> None:
    """QuPath opens an unreadable data file as an empty image (it only logs); saving tiles then would
    replace every annotation. Nothing is written and the error names the file."""
    from histobridge.qupath.paquo.write import write_tiles_paquo

    install, template = qupath
    folder = copy_project(template, tmp_path / "skin")
    data = layout.qpdata_path(folder, 1)
    data.write_bytes(data.read_bytes()[: len(data.read_bytes()) // 2])  # cut short
    before = snapshot(folder)
    with pytest.raises(ProjectError, match=r"data\.qpdata: QuPath could not read this data file"):
        write_tiles_paquo(folder / "project.qpproj", 1, _one_tile(tmp_path / "t.geojson"), prefix="m",
                          qupath_dir=install)
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"data/1/data.qpdata.bkp"} | {
        k for k in after if k.startswith("histobridge/backups/")}
