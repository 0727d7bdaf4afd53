"""Opening QuPath projects: relocation, missing images, server builders, calibration, sources."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from _qupath_helpers import (
    BIOFORMATS,
    OPENSLIDE,
    calibration,
    entry,
    feature,
    square,
    uri_builder,
    write_project,
    write_tiff,
)

from histobridge.errors import (
    AnnotationError,
    CalibrationError,
    ProjectError,
    QPDataError,
    SlideNotFoundError,
)
from histobridge.qupath import layout
from histobridge.qupath.geojson import write_features
from histobridge.qupath.project import ImageEntry, Project
from histobridge.qupath.servers import path_to_uri

# --------------------------------------------------------------------------------- real project


def test_real_foci_project(shared_dir: Path) -> None:
    proj = Project.open(shared_dir / "fixtures" / "qupath" / "foci-0.4")
    assert proj.version == "0.4.0" and len(proj.images) == 44
    assert not any(e.found for e in proj.images)
    assert all("not found" in (e.problem or "") for e in proj.images)
    assert "Training" in proj.class_names() and len(proj.classes) == 10
    e = proj.image(242)
    assert e.provider == BIOFORMATS and e.args == ("--series", "0")
    assert e.mpp_override is None  # calibration stored in "px": uncalibrated, ignored
    with pytest.raises(SlideNotFoundError, match="242"):
        e.open_slide()


def test_real_qpdata_annotations_match_qupath_summary(shared_dir: Path) -> None:
    folder = shared_dir / "fixtures" / "qupath" / "foci-0.4"
    proj = Project.open(folder)
    found = proj.annotations(242)
    summary = json.loads((folder / "data" / "242" / "summary.json").read_text())["hierarchy"]
    expected = summary["annotationClassificationCounts"]
    assert found.source == "qpdata" and found.notes == ()  # same count as QuPath's summary
    assert found.by_class() == {"Training": expected["Training"], None: expected["Unclassified"]}
    none = proj.annotations(243)  # no data folder, no export
    assert none.source == "none" and len(none) == 0 and "export_annotations.groovy" in none.notes[0]


# ---------------------------------------------------------------------------------- relocation


def test_moved_project_is_relocated_relative_to_its_old_place(tmp_path: Path) -> None:
    old = tmp_path / "old" / "study"
    slide = write_tiff(old / "slides" / "case 1.tif", mpp=0.5)
    write_project(old / "qp", [entry(1, uri_builder(path_to_uri(slide)))])
    shutil.move(str(tmp_path / "old"), str(tmp_path / "new"))
    proj = Project.open(tmp_path / "new" / "study" / "qp")
    (e,) = proj.images
    assert e.found and e.problem is None
    assert e.path == tmp_path / "new" / "study" / "slides" / "case 1.tif"
    assert e.relocated_from == str(slide)
    with e.open_slide() as s:
        assert s.dimensions == (96, 64) and s.mpp == pytest.approx(0.5)


def test_python_style_uri_and_windows_project_are_relocated(tmp_path: Path) -> None:
    # Saved on Windows as C:\Users\ana\work\proj, slides in C:\Users\ana\work\img; copied here.
    write_tiff(tmp_path / "work" / "img" / "a.tif")
    images = [entry(1, uri_builder("file:/C:/Users/ana/work/img/a.tif")),
              entry(2, uri_builder((tmp_path / "work" / "img" / "a.tif").as_uri()))]
    write_project(tmp_path / "work" / "proj", images, uri="file:/C:/Users/ana/work/proj/project.qpproj")
    proj = Project.open(tmp_path / "work" / "proj" / "project.qpproj")
    assert [e.found for e in proj.images] == [True, True]
    assert proj.images[0].path == tmp_path / "work" / "img" / "a.tif"
    assert proj.images[1].relocated_from is None  # file:/// form, found where it says


def test_image_found_by_name_near_the_project(tmp_path: Path) -> None:
    write_tiff(tmp_path / "proj" / "images" / "b.tif")
    write_project(tmp_path / "proj", [entry(3, uri_builder("file:/somewhere/else/b.tif"))],
                  uri="file:/unrelated/place/project.qpproj")
    (e,) = Project.open(tmp_path / "proj").images
    assert e.found and e.path == tmp_path / "proj" / "images" / "b.tif"
    (e2,) = Project.open(tmp_path / "proj", search=False).images
    assert not e2.found


def test_missing_images_are_reported_not_fatal(tmp_path: Path) -> None:
    good = write_tiff(tmp_path / "ok.tif")
    images = [entry(1, uri_builder(path_to_uri(good))),
              entry(2, uri_builder("file:/gone/missing.svs")),
              entry(3, uri_builder("https://example.org/remote.svs"))]
    proj = Project.open(write_project(tmp_path / "p", images))
    ok, missing, remote = proj.images
    assert ok.found and not missing.found and not remote.found
    assert "/gone/missing.svs" in (missing.problem or "")
    assert "not a local file" in (remote.problem or "")


def test_builder_without_builder_type(tmp_path: Path) -> None:
    """QuPath 0.2/0.3 and ``server.json`` before 0.5 omit ``builderType`` for plain readers."""
    slide = write_tiff(tmp_path / "old.tif", mpp=0.5)
    builder = uri_builder(path_to_uri(slide))
    del builder["builderType"]
    e = _open_one(tmp_path, builder)
    assert e.found and e.problem is None and e.builder_chain == ("uri",)


def test_project_metadata_and_tags(tmp_path: Path) -> None:
    e = entry(7, uri_builder("file:/x.tif"), name="slide 7", description="d",
              tags=["train", "batch2"], metadata={"stain": "HE", "n": 3})
    (img,) = Project.open(write_project(tmp_path, [e])).images
    assert (img.entry_id, img.name, img.description) == (7, "slide 7", "d")
    assert img.tags == ("train", "batch2") and dict(img.metadata) == {"stain": "HE", "n": "3"}


def test_bad_project_files_raise_named_errors(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not a QuPath project"):
        Project.open(tmp_path)
    (tmp_path / "project.qpproj").write_text("{oops")
    with pytest.raises(ProjectError, match=r"project\.qpproj"):
        Project.open(tmp_path)
    write_project(tmp_path, [{"serverBuilder": uri_builder("file:/x"), "imageName": "x"}])
    with pytest.raises(ProjectError, match="entryID"):
        Project.open(tmp_path)
    (tmp_path / "project.qpproj").unlink()
    write_project(tmp_path / "two", [])
    (tmp_path / "two" / "project.qpproj").rename(tmp_path / "two" / "a.qpproj")
    shutil.copy(tmp_path / "two" / "a.qpproj", tmp_path / "two" / "b.qpproj")
    with pytest.raises(ProjectError, match="several project files"):
        Project.open(tmp_path / "two")
    assert Project.open(tmp_path / "two" / "b.qpproj").images == []


# ------------------------------------------------------------------------------ server builders


def _open_one(tmp_path: Path, builder: dict[str, Any]) -> ImageEntry:
    return Project.open(write_project(tmp_path / "p", [entry(1, builder)])).images[0]


def test_pyramidize_and_cropped_builders_are_resolved(tmp_path: Path) -> None:
    slide = write_tiff(tmp_path / "s.tif", size=(96, 64), mpp=0.5)
    inner = uri_builder(path_to_uri(slide))
    e = _open_one(tmp_path, {"builderType": "pyramidize", "builder": inner, "metadata": calibration(0.25)})
    assert e.found and e.problem is None and e.builder_chain == ("pyramidize", "uri")
    assert e.mpp_override == pytest.approx(0.25)
    crop = {"builderType": "cropped", "builder": inner,
            "region": {"x": 10, "y": 5, "width": 40, "height": 30, "z": 0, "t": 0}}
    e = _open_one(tmp_path / "c", crop)
    assert e.crop_region == (10.0, 5.0, 40.0, 30.0)
    with e.open_slide() as s:
        assert s.dimensions == (40, 30) and s.offset == (10.0, 5.0)
        px = s.read_region(0, 0, 40, 30)
    assert px.shape == (30, 40, 3)
    # the written image is purple left of x=48 and above y=32: in crop space x=38, y=27
    assert tuple(px[26, 37]) == (150, 60, 170) and tuple(px[28, 39]) == (220, 220, 220)


@pytest.mark.parametrize(
    ("builder_type", "extra", "words"),
    [
        ("rotated", {"rotation": "ROTATE_90"}, "rotated"),
        ("affine", {"transform": {}}, "affine"),
        ("swapRedBlue", {}, "RGB"),
        ("color", {"transforms": []}, "colour"),
        ("somethingNew", {}, "unknown server type"),
    ],
)
def test_unsupported_wrappers_are_rejected(tmp_path: Path, builder_type: str, extra: dict[str, Any],
                                           words: str) -> None:
    slide = write_tiff(tmp_path / "s.tif")
    wrapper = {"builderType": builder_type, "builder": uri_builder(path_to_uri(slide)), **extra}
    e = _open_one(tmp_path, wrapper)
    assert e.found and e.path == slide  # the file is still located for reporting
    assert words in (e.problem or "")
    with pytest.raises(ProjectError, match="skipped"):
        e.open_slide()


def test_multi_file_builders_and_series_are_rejected(tmp_path: Path) -> None:
    a, b = write_tiff(tmp_path / "a.tif"), write_tiff(tmp_path / "b.tif")
    channels = {"builderType": "channels", "builder": uri_builder(path_to_uri(a)),
                "channels": [uri_builder(path_to_uri(a)), uri_builder(path_to_uri(b))]}
    assert "concatenated channels" in (_open_one(tmp_path / "1", channels).problem or "")
    sparse = {"builderType": "sparse", "path": "x", "regions": [
        {"region": {"x": 0, "y": 0, "width": 9, "height": 9},
         "resolutions": [{"builder": uri_builder(path_to_uri(a)), "downsample": 1.0}]}]}
    assert "sparse" in (_open_one(tmp_path / "2", sparse).problem or "")
    series = uri_builder(path_to_uri(a), args=["--series", "2"])
    assert "series 2" in (_open_one(tmp_path / "3", series).problem or "")


def test_openslide_bounds_offset_is_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MRXS-like slide: QuPath coordinates start at (bounds-x, bounds-y) (formats doc §10)."""
    import histobridge.slides as slides

    calls: list[dict[str, Any]] = []

    class FakeSlide:
        def __init__(self, **kw: Any) -> None:
            calls.append(kw)
            self.dimensions = kw.get("size") or (10000, 8000)
            self.reader_bounds = (1200, 700, 6000, 5000)
            self.mpp_or_none, self.mpp_problem = 0.25, None

        def close(self) -> None:
            pass

    monkeypatch.setattr(slides, "open_slide", lambda path, **kw: FakeSlide(**kw))
    fake = write_tiff(tmp_path / "fake.mrxs")
    cropped = _open_one(tmp_path / "a", uri_builder(path_to_uri(fake), OPENSLIDE))
    assert cropped.crop_to_bounds
    cropped.open_slide()
    assert calls[-1]["offset"] == (1200.0, 700.0) and calls[-1]["size"] == (6000, 5000)
    no_crop = _open_one(tmp_path / "b", uri_builder(path_to_uri(fake), OPENSLIDE, args=["--no-crop"]))
    assert not no_crop.crop_to_bounds
    bio = _open_one(tmp_path / "c", uri_builder(path_to_uri(fake), BIOFORMATS))
    assert not bio.crop_to_bounds
    n = len(calls)
    no_crop.open_slide()
    assert len(calls) == n + 1 and "offset" not in calls[-1]  # opened once, no offset


def test_bounds_equal_in_one_dimension_do_not_crop() -> None:
    class S:
        dimensions = (10000, 8000)
        reader_bounds = (0, 700, 10000, 5000)  # full width: QuPath does not crop

    e = ImageEntry(1, "x", "file:/x", Path("/x"), True, crop_to_bounds=True)
    assert e.qupath_frame(S()) == ((0.0, 0.0), None)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- calibration


def test_pixel_size_override_order(tmp_path: Path) -> None:
    slide = write_tiff(tmp_path / "cal.tif", mpp=0.5)
    bare = write_tiff(tmp_path / "bare.tif")
    images = [entry(1, uri_builder(path_to_uri(slide), metadata=calibration(0.252))),
              entry(2, uri_builder(path_to_uri(bare))),
              entry(3, uri_builder(path_to_uri(bare), metadata=calibration(1.0, "px"))),
              entry(4, uri_builder(path_to_uri(bare), metadata=calibration(0.0005, "mm")))]
    proj = Project.open(write_project(tmp_path / "p", images))
    project_cal, bare_e, px, mm = proj.images
    with project_cal.open_slide() as s:
        assert s.mpp == pytest.approx(0.252)  # the project's calibration beats the file's 0.5
    assert project_cal.mpp_source() == "project"
    with project_cal.open_slide(mpp=0.3) as s:
        assert s.mpp == pytest.approx(0.3)  # an explicit value beats both
    assert project_cal.mpp_source(0.3) == "argument"
    with pytest.raises(CalibrationError, match="--mpp"):
        bare_e.open_slide()
    assert px.mpp_override is None
    with pytest.raises(CalibrationError, match="--mpp"):
        px.open_slide()
    assert mm.mpp_override == pytest.approx(0.5)
    with bare_e.open_slide(require_mpp=False) as s:
        assert s.mpp_or_none is None and s.dimensions == (96, 64)


# ---------------------------------------------------------------------------- annotation sources


def _project_with_image(tmp_path: Path) -> Project:
    slide = write_tiff(tmp_path / "s.tif", mpp=0.5)
    return Project.open(write_project(tmp_path / "p", [entry(5, uri_builder(path_to_uri(slide)))]))


def test_geojson_sidecar_source(tmp_path: Path) -> None:
    proj = _project_with_image(tmp_path)
    e = proj.images[0]
    empty = proj.annotations(e)
    assert empty.source == "none" and len(empty) == 0 and "5.geojson" in empty.notes[0]
    with pytest.raises(AnnotationError, match=r"5\.geojson"):
        proj.annotations(e, source="geojson")
    target = proj.folder / "histobridge" / "annotations" / "5.geojson.gz"
    cls = {"name": "A", "color": [1, 2, 3]}
    feats = [feature(square(0, 0, 10), objectType="annotation", classification=cls),
             feature(square(20, 0, 10), objectType="detection"),
             feature([3, 3], geom_type="Point", objectType="annotation")]
    write_features(target, feats)
    found = proj.annotations(e)
    assert found.source == "geojson" and found.path == target
    assert found.by_class() == {"A": 1}  # annotations only by default
    assert any("Point" in n for n in found.notes)
    assert len(proj.annotations(e, object_types=None)) == 2
    with pytest.raises(ProjectError, match="source"):
        proj.annotations(e, source="bogus")


def test_qpdata_preferred_then_fallback_to_geojson(tmp_path: Path, shared_dir: Path) -> None:
    src = shared_dir / "fixtures" / "qupath" / "foci-0.4"
    dst = tmp_path / "foci"
    shutil.copytree(src, dst)
    sidecar = dst / "histobridge" / "annotations" / "242.geojson"
    write_features(sidecar, [feature(square(0, 0, 5), objectType="annotation")])
    summary_path = dst / "data" / "242" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["hierarchy"]["objectTypeCounts"]["Annotations"] += 2
    summary_path.write_text(json.dumps(summary))
    proj = Project.open(dst)
    from_qpdata = proj.annotations(242)
    assert from_qpdata.source == "qpdata" and "QuPath counted 1065" in from_qpdata.notes[0]
    assert proj.annotations(242, source="geojson").source == "geojson"
    (dst / "data" / "242" / "data.qpdata").write_bytes(b"\xac\xed\x00\x05garbage")
    fallback = proj.annotations(242)
    assert fallback.source == "geojson" and len(fallback) == 1
    assert any("data.qpdata" in n for n in fallback.notes)


def test_paquo_source_without_qupath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAQUO_QUPATH_DIR", str(tmp_path / "no-qupath-here"))  # whatever is installed
    proj = _project_with_image(tmp_path)
    with pytest.raises(ProjectError, match="cannot read annotations through paquo"):
        proj.annotations(proj.images[0], source="paquo")


@pytest.mark.qupath
def test_paquo_reads_the_same_annotations_as_geojson(
    tmp_path: Path, cmu_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample's annotations in a project QuPath made (around a plain TIFF of the sample slide):
    QuPath through paquo and histobridge's GeoJSON reader agree. Every version: test_qupath_tier_paquo."""
    from _paquo_project import copy_project, paquo_made_project, sample_file
    from _qupath_tier import installed

    found = installed()
    if not found:
        pytest.skip("no QuPath found (/opt/mini-qupath-<version> or PAQUO_QUPATH_DIR)")
    version, install = found[0]
    monkeypatch.setenv("PAQUO_QUPATH_DIR", str(install))  # for this test's paquo children only
    made = paquo_made_project(version, install, cmu_slide, tmp_path / "made")
    folder = copy_project(made, tmp_path / "skin")
    sample = sample_file("histobridge/annotations/1.geojson")
    layout.annotation_path(folder, 1).parent.mkdir(parents=True)
    shutil.copyfile(sample, layout.annotation_path(folder, 1))
    proj = Project.open(folder)
    e = proj.images[0]
    via = proj.annotations(e, source="paquo")
    assert via.source == "paquo" and len(via) > 10
    assert via.by_class() == proj.annotations(e, source="geojson").by_class()


def test_cli_info_on_the_real_project(shared_dir: Path) -> None:
    from typer.testing import CliRunner

    from histobridge.cli import app

    folder = shared_dir / "fixtures" / "qupath" / "foci-0.4"
    result = CliRunner().invoke(app, ["project", "info", str(folder)], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert "44 image(s)" in result.output and "qpdata (1063)" in result.output
    assert "Training: 16, unclassified: 1047" in result.output
    assert "image file not found" in result.output
    missing = CliRunner().invoke(app, ["project", "info", str(shared_dir / "nowhere")])
    assert missing.exit_code != 0


# ------------------------------------------------------------- same-named images, duplicate ids


def test_same_named_file_of_another_size_is_a_different_image(tmp_path: Path) -> None:
    # QuPath stored a 96 x 64 image; near the moved project sits a same-named 50 x 40 file.
    write_tiff(tmp_path / "proj" / "images" / "case.tif", size=(50, 40))
    builder = uri_builder("file:/old/place/case.tif", metadata={"width": 96, "height": 64})
    write_project(tmp_path / "proj", [entry(1, builder)], uri="file:/unrelated/project.qpproj")
    (e,) = Project.open(tmp_path / "proj").images
    assert not e.found and e.path is None
    assert "different image" in (e.problem or "") and "50×40" in (e.problem or "")
    assert "96×64" in (e.problem or "")
    with pytest.raises(SlideNotFoundError, match="different image"):
        e.open_slide()
    # A second candidate of the stored size is taken instead.
    right = write_tiff(tmp_path / "proj" / "more" / "case.tif", size=(96, 64))
    (e,) = Project.open(tmp_path / "proj").images
    assert e.found and e.path == right and e.problem is None


def test_stored_size_falls_back_to_summary_json(tmp_path: Path) -> None:
    write_tiff(tmp_path / "proj" / "case.tif", size=(50, 40))
    write_project(tmp_path / "proj", [entry(4, uri_builder("file:/old/case.tif"))],
                  uri="file:/unrelated/project.qpproj")
    data = tmp_path / "proj" / "data" / "4"
    data.mkdir(parents=True)
    (data / "summary.json").write_text(json.dumps(
        {"server": {"width": 2000, "height": 1500}, "hierarchy": {"objectTypeCounts": {"Root objects": 1}}}))
    (e,) = Project.open(tmp_path / "proj").images
    assert not e.found and "different image" in (e.problem or "")


def test_duplicate_entry_ids_are_refused(tmp_path: Path) -> None:
    images = [entry(1, uri_builder("file:/a.tif")), entry(2, uri_builder("file:/b.tif")),
              entry(1, uri_builder("file:/c.tif")), entry(7, uri_builder("file:/d.tif")),
              entry(7, uri_builder("file:/e.tif"))]
    with pytest.raises(ProjectError, match=r"project\.qpproj: duplicate entryID\(s\) 1, 7"):
        Project.open(write_project(tmp_path / "p", images))


def test_select_images_by_id_or_name(tmp_path: Path) -> None:
    images = [entry(3, uri_builder("file:/a.tif"), name="a.tif"),
              entry(10, uri_builder("file:/b.tif"), name="b.tif"),
              entry(11, uri_builder("file:/b2.tif"), name="b.tif"),
              entry(12, uri_builder("file:/c.tif"), name="3")]
    proj = Project.open(write_project(tmp_path / "p", images), search=False)
    ids = lambda es: [e.entry_id for e in es]  # noqa: E731
    assert ids(proj.select_images(None)) == ids(proj.select_images([])) == [3, 10, 11, 12]
    assert ids(proj.select_images([12, "a.tif"])) == [3, 12]  # project order, no duplicates
    assert ids(proj.select_images(["b.tif", 10])) == [10, 11]  # a name selects every entry with it
    assert ids(proj.select_images(["3"])) == [3]  # an id wins over an image named "3"
    with pytest.raises(ProjectError, match=r"no image with id or name 99, 'x\.tif'; available: 3 'a\.tif'"):
        proj.select_images([99, "x.tif", 3])


# ------------------------------------------------------- what QuPath stored, unreadable exports


def _summary(annotations: int, cells: int) -> dict[str, Any]:
    """A ``summary.json`` in QuPath 0.4's layout (as in the foci fixture)."""
    return {"timestamp": 1670846735943, "imageType": "BRIGHTFIELD_H_E",
            "server": {"width": 96, "height": 64, "sizeC": 3, "sizeZ": 1, "sizeT": 1},
            "hierarchy": {"nObjects": 1 + annotations + cells,
                          "objectTypeCounts": {"Root objects": 1, "Annotations": annotations, "Cells": cells},
                          "annotationClassificationCounts": {"Tumor": annotations},
                          "detectionClassificationCounts": {"Unclassified": cells}}}


def test_summary_counts_and_missing_data_file(tmp_path: Path) -> None:
    proj = _project_with_image(tmp_path)
    e = proj.images[0]
    assert proj.stored_summary(e) is None and proj.annotations(e).problem is None
    data = proj.folder / "data" / "5"
    data.mkdir(parents=True)
    (data / "summary.json").write_text(json.dumps(_summary(8, 13370)))
    stored = proj.stored_summary(5)
    assert stored is not None and dict(stored.counts) == {"annotation": 8, "cell": 13370}
    assert stored.annotation_classes == {"Tumor": 8} and (stored.width, stored.height) == (96, 64)
    assert stored.describe() == "8 annotations, 13370 cells" and stored.n_objects == 13378
    found = proj.annotations(e)
    assert found.source == "none" and len(found) == 0
    assert found.stored_counts == {"annotation": 8, "cell": 13370}
    assert found.problem is not None and "data file missing" in found.problem
    assert "data.qpdata" in found.problem and "8 annotations, 13370 cells" in found.problem
    # An export read instead keeps the counts and says the data file is missing in a note.
    export = layout.annotation_path(proj.folder, 5)
    write_features(export, [feature(square(0, 0, 5), objectType="annotation")])
    found = proj.annotations(e)
    assert found.source == "geojson" and found.problem is None and found.stored_counts is not None
    assert any("data file missing" in n for n in found.notes)


def test_real_summary_without_its_data_file(tmp_path: Path, shared_dir: Path) -> None:
    dst = tmp_path / "foci"
    shutil.copytree(shared_dir / "fixtures" / "qupath" / "foci-0.4", dst)
    (dst / "data" / "242" / "data.qpdata").unlink()
    proj = Project.open(dst)
    found = proj.annotations(242)
    assert found.source == "none" and found.stored_counts == {"annotation": 1063}
    assert found.problem is not None and "1063 annotations" in found.problem
    assert proj.annotations(243).problem is None  # no data folder at all: nothing was stored


@pytest.mark.parametrize("content", [b"", b'{"type": "FeatureCollection", "features": [{"ty'])
def test_unreadable_export_is_an_error_not_no_annotations(tmp_path: Path, content: bytes) -> None:
    proj = _project_with_image(tmp_path)
    path = layout.annotation_path(proj.folder, 5)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(AnnotationError, match=r"annotations/5\.geojson"):
        proj.annotations(proj.images[0])


def test_unreadable_qpdata_without_export_is_an_error(tmp_path: Path) -> None:
    proj = _project_with_image(tmp_path)
    qpdata = layout.qpdata_path(proj.folder, 5)
    qpdata.parent.mkdir(parents=True)
    qpdata.write_bytes(b"\xac\xed\x00\x05garbage")
    with pytest.raises(QPDataError, match=r"data\.qpdata"):
        proj.annotations(proj.images[0])


def test_closed_outlines_through_the_project(tmp_path: Path) -> None:
    proj = _project_with_image(tmp_path)
    outline = feature(square(0, 0, 10)[0], geom_type="LineString", objectType="annotation")
    write_features(layout.annotation_path(proj.folder, 5), [outline])
    found = proj.annotations(5)
    assert len(found) == 0 and any("1 × closed LineString outline" in n for n in found.notes)
    assert [a.geometry.area for a in proj.annotations(5, closed_lines_as_areas=True)] == [100.0]


def test_non_finite_qpdata_object_is_left_out_with_a_note(tmp_path: Path) -> None:
    import _qpdata_writer as W

    proj = _project_with_image(tmp_path)
    bad = W.PO("annotation", roi=W.roi("polygon", x=[0, math.inf, 10], y=[0, 0, 10]), name="bad")
    good = W.PO("annotation", roi=W.roi("rectangle", x=0, y=0, x2=10, y2=10), name="good")
    qpdata = layout.qpdata_path(proj.folder, 5)
    qpdata.parent.mkdir(parents=True)
    qpdata.write_bytes(W.qpdata_bytes(W.PO("root", children=[bad, good]), "0.5.2"))
    found = proj.annotations(5)
    assert [a.name for a in found] == ["good"]
    assert any("non-finite" in n and "'bad'" in n for n in found.notes)


def test_non_finite_rectangle_in_qpdata_is_one_object_not_the_file(tmp_path: Path) -> None:
    import _qpdata_writer as W

    from histobridge.qupath.qpdata import read_qpdata

    bad = W.PO("annotation", roi=W.roi("rectangle", x=0, y=math.nan, x2=10, y2=10), name="bad")
    good = W.PO("annotation", roi=W.roi("rectangle", x=0, y=0, x2=10, y2=10), name="good")
    path = tmp_path / "data.qpdata"
    path.write_bytes(W.qpdata_bytes(W.PO("root", children=[bad, good]), "0.5.2"))
    data = read_qpdata(path)  # no GEOS error for the whole file
    by_name = {o.name: o for o in data.objects if o.name}
    assert by_name["bad"].geometry.is_empty and by_name["good"].geometry.area == 100.0
    assert any("non-finite" in n for n in data.notes)


def test_tiling_reports_an_unreadable_export_as_a_failure_naming_it(tmp_path: Path) -> None:
    from histobridge.tiling import TileSpec, TilingOptions
    from histobridge.tiling.tiler import tile_project

    proj = _project_with_image(tmp_path)
    export = layout.annotation_path(proj.folder, 5)
    export.parent.mkdir(parents=True)
    export.write_text('{"type": "FeatureCollection", "features": [')  # cut short by a full disk
    report = tile_project(proj, tmp_path / "tiles.zarr", TileSpec(16, 8.0), TilingOptions(workers=1))
    (image,) = report.images
    assert image.status == "failed" and "5.geojson" in (image.reason or "")
    assert "no annotations" not in (image.reason or "")
