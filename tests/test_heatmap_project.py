"""run_heatmap over QuPath projects: outputs, QuPath-readable GeoJSON, reruns, the CLI, a real slide."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest

from histobridge.errors import InputError, ProjectError
from histobridge.heatmap.pipeline import HeatmapOptions, measurement_names, run_heatmap
from histobridge.models.classifier import load_classifier
from histobridge.qupath import geojson, layout
from histobridge.runs import ProgressEvent
from tests._heatmap_helpers import (
    CLASSES,
    RED_POLY,
    SLIDE_H,
    SLIDE_W,
    ColourNet,
    DropoutNet,
    annotation,
    box_mean,
    config_dict,
    expected_probs,
    make_project,
    save_model,
    slide_pixels,
    write_slide,
)


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    return write_slide(tmp_path_factory.mktemp("slide") / "colours.tif")


@pytest.fixture
def project(tmp_path, slide_path):
    anns = [
        annotation([(0, 0), (SLIDE_W / 2, 0), (SLIDE_W / 2, SLIDE_H), (0, SLIDE_H)], "Tumor", "left half"),
        annotation([(640, 360), (960, 360), (960, 700), (640, 700)], "Stroma", "blue box"),
    ]
    return make_project(tmp_path / "proj", slide_path, anns, {"Red": -3670016, "Tumor": -65536})


# The generated slide's grey-green ramp is not all "tissue"; exact tile counts need the whole annotations.
ALL = HeatmapOptions(tissue=False)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cfg = config_dict(histobridge={"name": "colours"})
    return load_classifier(save_model(tmp_path_factory.mktemp("m"), ColourNet((4.0, 0.0, 4.0)), cfg))


def _no_nan(text: str) -> dict:
    def refuse(token: str) -> float:
        raise AssertionError(f"non-finite number {token} in GeoJSON")

    return json.loads(text, parse_constant=refuse)


def test_outputs_and_qupath_geojson(project, model, tmp_path):
    out = tmp_path / "out"
    report = run_heatmap(project, model, out, ALL)
    assert report.model == "colours" and report.ok and len(report.results) == 1
    res = report.results[0]
    # Left half: 8 × 12 tiles of 64 px; box x 640–960, y 360–700: 5 × 5 tiles with ≥ 50 % inside.
    assert res.tiles == 8 * 12 + 5 * 5 and res.tiles_per_s > 0
    target = layout.predictions_path(project, 1)
    assert target in res.files and target.exists()
    names = {p.name for p in res.files}
    assert {"tiles.geojson.gz", "heatmap.npz", "tiles.csv", "overlay_Red.png", "overlay_Blue.png"} <= names

    doc = _no_nan(gzip.decompress(target.read_bytes()).decode())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == res.tiles
    for f in doc["features"]:
        props = f["properties"]
        assert props["objectType"] == "tile" and props["name"] == "colours"
        cls = props["classification"]
        assert set(cls) == {"name", "color"} and len(cls["color"]) == 3
        assert set(props["measurements"]) == set(measurement_names("colours", CLASSES))
        assert sum(props["measurements"].values()) == pytest.approx(1.0, abs=1e-5)
    # Project colour for "Red" (-3670016 = rgb(200, 0, 0)); palette colour for the others.
    colours = {f["properties"]["classification"]["name"]: f["properties"]["classification"]["color"]
               for f in doc["features"]}
    assert colours["Red"] == [200, 0, 0] and colours["Blue"] != [200, 0, 0]

    # The QuPath layer reads it back as tiles with the same measurements.
    back = geojson.read_features(target)
    assert len(back.annotations) == res.tiles
    assert all(a.object_type == "tile" and a.path_class in CLASSES for a in back.annotations)
    # Each tile's measurements are the model's known function of the slide pixels under its polygon.
    pixels = slide_pixels()
    names = measurement_names("colours", CLASSES)
    for a in back.annotations:
        mean = box_mean(pixels, *a.geometry.bounds)
        want = expected_probs(mean[None, None, None, :], (4.0, 0.0, 4.0))[0]
        got = [a.measurements[n] for n in names]
        assert np.abs(np.array(got) - want).max() < 5e-3, (a.geometry.bounds, got, want)

    # CSV agrees with the GeoJSON, tile by tile.
    with open(next(p for p in res.files if p.name == "tiles.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:7] == ["minx", "miny", "width", "height", "prob_Red", "prob_Green", "prob_Blue"]
    by_xy = {(round(float(r["minx"])), round(float(r["miny"]))): r for r in rows}
    for a in back.annotations:
        x0, y0 = a.geometry.bounds[:2]
        row = by_xy[(round(x0), round(y0))]
        assert a.measurements["colours: Red probability"] == pytest.approx(float(row["prob_Red"]), abs=1e-5)
        assert row["region_class"] in ("Tumor", "Stroma")

    # The heatmap: origin/step in level-0 px, red hot where the red polygon is, NaN where no tile.
    npz = np.load(next(p for p in res.files if p.name == "heatmap.npz"))
    pred, origin, step = npz["predictions"], npz["origin"], float(npz["step"])
    assert list(npz["class_names"]) == list(CLASSES) and step == pytest.approx(64.0)
    r, c = int((200 - origin[1]) // step), int((200 - origin[0]) // step)
    assert pred[r, c, 0] > 0.9  # (200, 200) lies inside the red polygon
    assert np.isnan(pred[0, -1]).all()  # top right: outside both annotations
    assert RED_POLY[0] == (96.0, 80.0)


def test_rerun_replaces_and_filters(project, model, tmp_path):
    out = tmp_path / "out"
    opts = HeatmapOptions(classes=("Stroma",), tissue=False)
    first = run_heatmap(project, model, out, opts)
    assert first.results[0].tiles == 25
    again = run_heatmap(project, model, out, opts)
    target = layout.predictions_path(project, 1)
    assert len(geojson.read_features(target).annotations) == again.results[0].tiles == 25
    # Nothing left over from earlier runs in the output folder either.
    folder = next(p.parent for p in again.results[0].files if p.name == "tiles.csv")
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_first_data_file_carries_the_exported_annotations(project, model, tmp_path):
    """An image whose annotations live only in the export gets them in its new data file with the
    tiles nested under them, so QuPath shows both and a rerun (which prefers the data file) still
    finds its classes instead of failing."""
    from histobridge.qupath.project import Project
    from histobridge.qupath.qpdata.reader import read_qpdata

    assert not layout.qpdata_path(project, 1).exists()
    opts = HeatmapOptions(classes=("Stroma",), tissue=False, write_back="qpdata")
    for _ in range(2):
        report = run_heatmap(project, model, tmp_path / "out", opts)
        assert report.ok, report.outcomes
    data = read_qpdata(layout.qpdata_path(project, 1))
    anns = [o for o in data.objects if o.object_type == "annotation"]
    tiles = [o for o in data.objects if o.object_type == "tile"]
    assert sorted((a.name, a.path_class) for a in anns) == [("blue box", "Stroma"), ("left half", "Tumor")]
    assert len(tiles) == report.results[0].tiles == 25  # replaced on the rerun, not added
    box = next(i for i, o in enumerate(data.objects) if o.name == "blue box")
    assert all(t.parent_index == box for t in tiles)
    again = Project.open(project).annotations(1)
    assert sorted(a.path_class for a in again) == ["Stroma", "Tumor"]


def test_uncertainty_measurements(project, tmp_path):
    clf = load_classifier(save_model(tmp_path, DropoutNet(3), config_dict(histobridge={"name": "mc"})))
    opts = HeatmapOptions(uncertainty=4, write_back="none", classes=("Stroma",), tissue=False)
    res = run_heatmap(project, clf, tmp_path / "o", opts).results[0]
    assert not layout.predictions_path(project, 1).exists()
    feats = geojson.read_features(next(p for p in res.files if p.name == "tiles.geojson.gz")).annotations
    unc = measurement_names("mc", CLASSES, "uncertainty")
    assert all(set(unc) <= set(f.measurements) for f in feats)
    assert max(max(f.measurements[n] for n in unc) for f in feats) > 0
    assert "uncertainty" in np.load(next(p for p in res.files if p.name == "heatmap.npz")).files


def test_whole_tissue_and_bad_arguments(project, model, tmp_path):
    with pytest.raises(ProjectError, match=r"no image with id or name 'nope'; available: 1 'colours\.tif'"):
        run_heatmap(project, model, tmp_path, images=["nope"])
    with pytest.raises(InputError, match="write_back must be one of"):
        HeatmapOptions(write_back="zip")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="stride_div"):
        HeatmapOptions(stride_div=0)
    with pytest.raises(InputError, match="mpp"):
        HeatmapOptions(mpp=-1.0)
    events: list[ProgressEvent] = []
    report = run_heatmap(project, model, tmp_path / "w", HeatmapOptions(whole_tissue=True), images=["1"],
                         progress=events.append)
    n = report.results[0].tiles
    tiles = [e for e in events if e.task == "heatmap"]
    assert n > 0 and tiles[0].done == 0 and tiles[-1].done == tiles[-1].total == n
    assert {e.item for e in tiles} == {"colours.tif"}
    assert [(e.done, e.total) for e in events if e.task == "images"] == [(0, 1), (1, 1)]


def test_cli_heatmap(project, tmp_path):
    from typer.testing import CliRunner

    from histobridge.cli import app

    model_dir = save_model(tmp_path, ColourNet(), config_dict())
    result = CliRunner().invoke(app, ["heatmap", str(project), "--model", str(model_dir), "--out",
                                      str(tmp_path / "cli"), "--stride-div", "2", "--classes", "Stroma"])
    assert result.exit_code == 0, result.output
    assert "tiles over 1 of 1 image(s)" in result.output
    assert layout.predictions_path(project, 1).exists()
    bad = CliRunner().invoke(app, ["heatmap", str(project), "--model", str(model_dir), "--stride-div", "3"])
    assert bad.exit_code != 0


def test_real_slide_sample_project(cmu_slide, tmp_path):
    """The skin sample project over CMU-1-Small-Region, end to end with a small model."""
    from histobridge.qupath.sample import init_sample_project

    proj = init_sample_project(tmp_path / "skin", "skin", offline=True).parent  # cmu_slide filled the cache
    cfg = config_dict(classes=("Epidermis", "Dermis", "Background"), patch=32, spacing=4.0)
    clf = load_classifier(save_model(tmp_path, ColourNet((2.0, -2.0, 1.0)), cfg))
    on_tissue = run_heatmap(proj, clf, tmp_path / "t", HeatmapOptions(classes=("Epidermis", "Dermis")))
    report = run_heatmap(proj, clf, tmp_path / "out", HeatmapOptions(classes=("Epidermis", "Dermis"),
                                                                      tissue=False, write_back="geojson"))
    res = report.results[0]
    assert res.tiles > 10 and 0 < on_tissue.tiles < res.tiles  # loose dermis has glass between fibres
    # "auto" wrote into the sample's QuPath data: its annotations kept, every tile under one of them
    from histobridge.qupath.qpdata import read_qpdata

    data = read_qpdata(layout.qpdata_path(proj, 1))
    kinds = {o.index: o.object_type for o in data.objects}
    tiles = [o for o in data.objects if o.object_type == "tile"]
    assert data.counts()["annotation"] == 15 and len(tiles) == on_tissue.tiles
    assert all(kinds[t.parent_index] == "annotation" for t in tiles)
    feats = geojson.read_features(layout.predictions_path(proj, 1)).annotations
    assert len(feats) == res.tiles
    tile_l0 = 32 * 4.0 / 0.499
    for f in feats:
        x0, y0, x1, y1 = f.geometry.bounds
        assert x1 - x0 == pytest.approx(tile_l0, abs=2e-3) and y1 - y0 == pytest.approx(tile_l0, abs=2e-3)
        # On the origin-anchored grid (float, not truncated).
        assert x0 / tile_l0 == pytest.approx(round(x0 / tile_l0), abs=1e-4)
        assert y0 / tile_l0 == pytest.approx(round(y0 / tile_l0), abs=1e-4)
    # Epidermis colour comes from the project's classes.json.
    classes = {c["name"]: c["color"] for c in json.loads((proj / "classifiers" / "classes.json").read_text())
               ["pathClasses"]}
    raw = json.loads(gzip.decompress(layout.predictions_path(proj, 1).read_bytes()))
    from histobridge.qupath.classes import argb_to_rgb

    for f in raw["features"]:
        cls = f["properties"]["classification"]
        if cls["name"] in classes:
            assert tuple(cls["color"]) == argb_to_rgb(classes[cls["name"]])


def test_paquo_write_back_refused_without_qupath(project, model, tmp_path, monkeypatch):
    """--write-back paquo with no QuPath that paquo can start: a clear error before any work."""
    from histobridge.errors import ProjectError

    monkeypatch.setenv("PAQUO_QUPATH_DIR", str(tmp_path / "no-qupath-here"))
    with pytest.raises(ProjectError, match="--write-back paquo needs QuPath through paquo"):
        run_heatmap(project, model, tmp_path / "p", HeatmapOptions(write_back="paquo"))
    assert not (tmp_path / "p").exists()


@pytest.mark.qupath
@pytest.mark.slow  # a JVM per paquo child; the tier covers both versions
def test_paquo_write_back(model, tmp_path, monkeypatch):
    """With QuPath found, tiles land in the project's data file through QuPath's own save; a rerun
    replaces them. QuPath made the project (through paquo) around a strip TIFF, which every QuPath
    opens (its ImageJ server)."""
    import subprocess
    import sys

    import tifffile
    from _paquo_project import make_project as paquo_made
    from _qupath_tier import installed

    found = installed()
    if not found:
        pytest.skip("no QuPath found (/opt/mini-qupath-<version> or PAQUO_QUPATH_DIR)")
    install = found[0][1]
    monkeypatch.setenv("PAQUO_QUPATH_DIR", str(install))  # for this test's paquo children only
    plain = tmp_path / "colours-strips.tif"
    per_cm = 1e4 / 0.5
    tifffile.imwrite(plain, slide_pixels(), photometric="rgb", resolution=(per_cm, per_cm),
                     resolutionunit="CENTIMETER", rowsperstrip=64)
    anns = tmp_path / "anns.geojson"
    anns.write_text(json.dumps({"type": "FeatureCollection", "features": [
        annotation([(640, 360), (960, 360), (960, 700), (640, 700)], "Stroma", "blue box")]}))
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"pathClasses": [{"name": "Stroma", "color": -16776961}]}))
    project = paquo_made(install, tmp_path / "proj", plain, anns, classes).parent  # QuPath's own project
    qpproj = (project / "project.qpproj").read_bytes()
    for _ in range(2):  # the second run replaces the first
        report = run_heatmap(project, model, tmp_path / "p",
                             HeatmapOptions(write_back="paquo", classes=("Stroma",), tissue=False))
        assert report.ok, report.outcomes
    assert report.results[0].tiles == 25
    assert (project / "project.qpproj").read_bytes() == qpproj  # QuPath saved the image, not the project
    backups = list(layout.backups_dir(project).glob("project.qpproj.*"))
    assert backups and all(b.read_bytes() == qpproj for b in backups)
    assert layout.qpdata_path(project, 1).with_name("data.qpdata.bkp").is_file()
    summary = json.loads(layout.summary_path(project, 1).read_text())
    assert summary["hierarchy"]["objectTypeCounts"]["Tiles"] == 25
    count = (  # paquo starts a JVM, so count the tiles QuPath sees in a child process
        "import sys; from paquo.projects import QuPathProject\n"
        "with QuPathProject(sys.argv[1], mode='r') as qp:\n"
        "    h = qp.images[0].hierarchy\n"
        "    print(sum(1 for t in h.tiles if t.name == 'colours' and t.locked))\n"
    )
    out = subprocess.run([sys.executable, "-c", count, str(project / "project.qpproj")],
                         capture_output=True, text=True, check=True).stdout
    assert int(out.split()[-1]) == 25
