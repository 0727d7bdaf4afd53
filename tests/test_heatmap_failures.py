"""One failure policy for heatmaps: per-image outcomes, no lost results, clear errors, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from histobridge.cli import app
from histobridge.errors import InputError
from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap
from histobridge.models.classifier import load_classifier
from histobridge.qupath import geojson, layout
from tests._heatmap_helpers import (
    SLIDE_H,
    SLIDE_W,
    ColourNet,
    annotation,
    config_dict,
    make_project,
    save_model,
    write_slide,
)

ALL = HeatmapOptions(tissue=False)
BOX = [(640.0, 360.0), (960.0, 360.0), (960.0, 700.0), (640.0, 700.0)]


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    return write_slide(tmp_path_factory.mktemp("slide") / "colours.tif")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("m"), ColourNet((4.0, 0.0, 4.0)),
                      config_dict(histobridge={"name": "colours"}))


@pytest.fixture(scope="module")
def model(model_dir):
    return load_classifier(model_dir)


@pytest.fixture
def project(tmp_path, slide_path):
    anns = [
        annotation([(0, 0), (SLIDE_W / 2, 0), (SLIDE_W / 2, SLIDE_H), (0, SLIDE_H)], "Stroma", "left half"),
        annotation(BOX, "Stroma", "blue box"),
    ]
    return make_project(tmp_path / "proj", slide_path, anns, {"Red": -3670016, "Tumor": -65536})


def add_image(project: Path, source: Path, entry_id: int, name: str, annotations: list[dict] | None) -> None:
    """Append an image entry (its annotations exported alongside) to a generated project."""
    qp = json.loads((project / "project.qpproj").read_text())
    item = json.loads(json.dumps(qp["images"][0]))
    item["entryID"], item["imageName"] = entry_id, name
    item["serverBuilder"]["uri"] = "file:" + source.resolve().as_posix()
    qp["images"].append(item)
    qp["lastID"] = entry_id
    (project / "project.qpproj").write_text(json.dumps(qp))
    if annotations is not None:
        layout.annotation_path(project, entry_id).write_text(
            json.dumps({"type": "FeatureCollection", "features": annotations}, allow_nan=True))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def test_run_that_finds_nothing_keeps_earlier_results(project, model, tmp_path):
    """--classes of a class this image lacks: skipped with the reason, earlier files untouched, rc 1."""
    out = tmp_path / "out"
    first = run_heatmap(project, model, out, ALL)
    assert first.ok and first.tiles > 100
    target = layout.predictions_path(project, 1)
    before, out_before = target.read_bytes(), snapshot(out)

    report = run_heatmap(project, model, out, HeatmapOptions(classes=("Tumor",), tissue=False))
    assert not report.ok and report.results == ()
    (o,) = report.outcomes
    assert o.status == "skipped" and "no annotation of class Tumor" in (o.reason or "")
    assert target.read_bytes() == before and snapshot(out) == out_before
    assert len(geojson.read_features(target).annotations) == first.tiles

    rc, text = cli("heatmap", str(project), "-m", str(model.source), "-o", str(out), "--classes", "Tumor")
    assert rc == 1 and "skipped" in text and "no annotation of class Tumor" in text
    assert target.read_bytes() == before


def test_class_typo_lists_the_classes_there_are(project, model, tmp_path):
    with pytest.raises(InputError, match=r"no class 'Tumour'.*classes that exist: Red, Tumor, Stroma"):
        run_heatmap(project, model, tmp_path / "o", HeatmapOptions(classes=("Tumour",)))
    assert not (tmp_path / "o").exists() and not layout.predictions_path(project, 1).exists()


def test_unreadable_annotations_fail_that_image_naming_the_file(project, model, tmp_path):
    """A corrupt export is an error for that image, never a reason to classify the whole tissue."""
    ann = layout.annotation_path(project, 1)
    ann.write_text('{"type": "FeatureCollection", "features": [ {"type": "Feat')
    report = run_heatmap(project, model, tmp_path / "o", ALL)
    (o,) = report.outcomes
    assert o.status == "failed" and str(ann) in (o.reason or "")
    assert not layout.predictions_path(project, 1).exists() and report.tiles == 0


def test_one_bad_image_never_stops_the_others(project, model, model_dir, slide_path, tmp_path):
    """NaN coordinates (raising deep in the geometry code) and a missing slide fail alone; rc 1 + table."""
    nan_box = annotation(BOX, "Stroma")
    nan_box["geometry"]["coordinates"][0][1] = [float("nan"), 360.0]
    add_image(project, slide_path, 2, "nan.tif", [nan_box])
    gone = tmp_path / "gone.tif"
    shutil.copy(slide_path, gone)
    add_image(project, gone, 3, "gone.tif", [annotation(BOX, "Stroma")])
    gone.unlink()
    report = run_heatmap(project, model, tmp_path / "o", ALL)
    status = {o.name: o.status for o in report.outcomes}
    # the NaN object is rejected alone (with a note) and the image is skipped saying so
    assert status == {"colours.tif": "done", "nan.tif": "skipped", "gone.tif": "failed"}
    assert "non-finite" in (report.outcomes[1].reason or "")
    assert not report.ok and [r.name for r in report.results] == ["colours.tif"]
    assert layout.predictions_path(project, 1).exists()
    assert not layout.predictions_path(project, 2).exists()

    rc, text = cli("heatmap", str(project), "-m", str(model_dir), "-o", str(tmp_path / "c"), "--no-tissue")
    assert rc == 1 and "images not processed" in text and "gone.tif" in text and "nan.tif" in text
    rc, text = cli("heatmap", str(project), "-m", str(model_dir), "-o", str(tmp_path / "j"), "--json",
                   "--no-tissue", "--images", "1,3")
    summary = json.loads(text[text.index("{"):])
    assert rc == 1 and summary["ok"] is False
    assert [(i["entry_id"], i["status"]) for i in summary["images"]] == [(1, "done"), (3, "failed")]
    assert summary["images"][0]["tiles"] == summary["tiles"] > 0 and summary["images"][0]["files"]
    assert "image file not found" in summary["images"][1]["reason"]


def test_missing_pixel_size_fails_alone_and_is_reported_once(tmp_path, slide_path, model_dir):
    """Single- and multi-image projects follow the same rule: rc 1, the reason printed once."""
    import tifffile

    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, np.zeros((256, 256, 3), np.uint8), photometric="rgb")
    proj = make_project(tmp_path / "p", bare, [annotation([(0, 0), (256, 0), (256, 256), (0, 256)], "T")],
                        name="bare.tif")
    rc, text = cli("heatmap", str(proj), "-m", str(model_dir), "-o", str(tmp_path / "o1"))
    assert rc == 1 and text.count("image 1 ('bare.tif')") == 1, text
    assert str(bare) in text  # the file is named in full, not cut to the terminal's width
    add_image(proj, slide_path, 2, "colours.tif", [annotation([(0, 0), (256, 0), (256, 256), (0, 256)], "T")])
    report = run_heatmap(proj, model_dir, tmp_path / "o2", ALL)
    assert [o.status for o in report.outcomes] == ["failed", "done"] and report.results[0].tiles == 16
    assert "pixel size" in (report.outcomes[0].reason or "")
    rc, _ = cli("heatmap", str(proj), "-m", str(model_dir), "-o", str(tmp_path / "o3"), "--no-tissue")
    assert rc == 1
    rc, _ = cli("heatmap", str(proj), "-m", str(model_dir), "-o", str(tmp_path / "o4"), "--images", "2",
                "--no-tissue", "--device", "auto")
    assert rc == 0
    # A pixel size given on the command line lets the bare image through.
    rc, text = cli("heatmap", str(proj), "-m", str(model_dir), "-o", str(tmp_path / "o5"), "--no-tissue",
                   "--mpp", "0.5")
    assert rc == 0 and "32 tiles over 2 of 2 image(s)" in text
    # --mpp-override replaces a recorded pixel size: twice the µm/px, half the tile in pixels.
    halved = run_heatmap(proj, model_dir, tmp_path / "o6", HeatmapOptions(tissue=False, mpp_override=1.0),
                         images=[2])
    assert halved.tiles == 8 * 8
    # --mpp only fills in: the recorded 0.5 µm/px of this image wins over it.
    filled = run_heatmap(proj, model_dir, tmp_path / "o7", HeatmapOptions(tissue=False, mpp=2.0), images=[2])
    assert filled.tiles == 16


def test_glass_inside_an_annotation_is_not_classified(tmp_path, model):
    """A slide whose annotation covers stained tissue on its left half and bare glass on its right."""
    pixels = np.full((SLIDE_H, SLIDE_W, 3), 242, np.uint8)  # glass
    rng = np.random.default_rng(0)
    tissue = np.stack([rng.integers(170, 230, (SLIDE_H, 384)), rng.integers(60, 120, (SLIDE_H, 384)),
                       rng.integers(150, 210, (SLIDE_H, 384))], -1)  # pink, H&E-like
    pixels[:, 128:512] = tissue.astype(np.uint8)
    slide = write_slide(tmp_path / "glass.tif", pixels)
    proj = make_project(tmp_path / "p", slide, [annotation([(128, 64), (896, 64), (896, 704), (128, 704)],
                                                           "Tumor")])
    with_tissue = run_heatmap(proj, model, tmp_path / "a", HeatmapOptions())
    coords = [a.geometry.bounds for a in geojson.read_features(layout.predictions_path(proj, 1)).annotations]
    x_right = max(b[2] for b in coords)
    assert with_tissue.ok and x_right <= 512 + 64 / 2  # no tile is mostly glass
    everything = run_heatmap(proj, model, tmp_path / "b", ALL)
    assert everything.tiles == 12 * 10 and with_tissue.tiles == 6 * 10


def test_tissue_filter_keeps_an_image_with_no_glass(tmp_path, model):
    """A pale pink field with purple nuclei and no glass at all: the field must not be taken for glass."""
    rng = np.random.default_rng(1)
    field = np.empty((SLIDE_H, SLIDE_W, 3), np.float64)
    field[:] = [232, 175, 205]
    blobs = rng.random((SLIDE_H // 16, SLIDE_W // 16)) > 0.8
    field[np.kron(blobs, np.ones((16, 16), bool))] = [120, 70, 160]
    pixels = np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype(np.uint8)  # stain texture
    slide = write_slide(tmp_path / "field.tif", pixels)
    proj = make_project(tmp_path / "p", slide, [annotation([(0, 0), (512, 0), (512, 512), (0, 512)], "T")])
    kept = run_heatmap(proj, model, tmp_path / "a", HeatmapOptions())
    assert kept.ok and kept.tiles == run_heatmap(proj, model, tmp_path / "b", ALL).tiles == 8 * 8
