"""`sample init` places the sample's QuPath data file, pointed at the slide, and never replaces the user's."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from histobridge.qupath import layout
from histobridge.qupath.geojson import read_features
from histobridge.qupath.project import Project
from histobridge.qupath.qpdata import read_qpdata, read_qpdata_annotations
from histobridge.qupath.qpdata.writer import write_objects_qpdata
from histobridge.qupath.sample import init_sample_project
from histobridge.qupath.servers import path_to_uri

SHIPPED = Path(__file__).resolve().parents[1] / "sample_projects" / "skin" / "data" / "1" / "data.qpdata"


def test_materialised_project_carries_the_data_file_pointed_at_the_slide(
    tmp_path: Path, cmu_slide: Path
) -> None:
    qpproj = init_sample_project(tmp_path / "my skin", offline=True)
    folder = qpproj.parent
    slide_uri = path_to_uri((folder / "images" / "CMU-1-Small-Region.svs").resolve())
    data = read_qpdata(layout.qpdata_path(folder, 1))
    assert data.notes == () and data.counts() == {"root": 1, "annotation": 15}
    assert data.server == json.loads(qpproj.read_text())["images"][0]["serverBuilder"]
    assert data.server is not None and data.server["uri"] == slide_uri and data.server_id == slide_uri
    shipped, placed = SHIPPED.read_bytes(), layout.qpdata_path(folder, 1).read_bytes()
    tail = shipped.index(b"\x7e\x72")  # everything after the server string is the shipped file's
    assert placed[placed.index(b"\x7e\x72") :] == shipped[tail:]
    assert json.loads(layout.summary_path(folder, 1).read_text())["hierarchy"]["nObjects"] == 16
    # histobridge reads the data file (auto) and finds exactly the annotations of the GeoJSON export
    project = Project.open(qpproj)
    auto = project.annotations(project.images[0])
    assert auto.source == "qpdata" and auto.notes == ()
    export = project.annotations(project.images[0], source="geojson")
    assert [(a.object_id, a.path_class, a.name) for a in auto] == [
        (a.object_id, a.path_class, a.name) for a in export
    ]
    assert all(a.geometry.equals_exact(b.geometry, 1e-9) for a, b in zip(auto, export, strict=True))


def test_force_keeps_the_users_data_file(tmp_path: Path, cmu_slide: Path, caplog) -> None:
    init_sample_project(tmp_path, offline=True)
    data = layout.qpdata_path(tmp_path, 1)
    ours = data.read_bytes()
    init_sample_project(tmp_path, force=True, offline=True)  # unchanged: not rewritten, no backup
    assert data.read_bytes() == ours and not list(tmp_path.rglob("*.bkp"))
    # the user worked in QuPath: one annotation left, another drawn (a data file of their own)
    mine = read_qpdata_annotations(data).annotations[:1]
    write_objects_qpdata(tmp_path, 1, annotations=mine, replace=True)
    data.with_name("data.qpdata.bkp").unlink()
    theirs, their_summary = data.read_bytes(), layout.summary_path(tmp_path, 1).read_text()
    with caplog.at_level(logging.WARNING, logger="histobridge.qupath.sample"):
        init_sample_project(tmp_path, force=True, offline=True)
    assert data.read_bytes() == theirs and layout.summary_path(tmp_path, 1).read_text() == their_summary
    assert "project's own QuPath data" in caplog.text
    assert not data.with_name("data.qpdata.bkp").exists()


def test_an_export_with_the_users_annotations_stays_the_source(tmp_path: Path, cmu_slide: Path) -> None:
    """A project from before the sample shipped QuPath data: no data file, an export the user extended."""
    init_sample_project(tmp_path, offline=True)
    layout.qpdata_path(tmp_path, 1).unlink()
    export = layout.annotation_path(tmp_path, 1)
    fc = json.loads(export.read_text())
    drawn = {"type": "Feature", "id": "6f1c1f5e-0d6c-4c43-9a57-5f3e0c1d2b11",
             "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [60, 10], [60, 60], [10, 10]]]},
             "properties": {"objectType": "annotation", "classification": {"name": "Dermis"}}}  # fmt: skip
    fc["features"].append(drawn)
    export.write_text(json.dumps(fc))
    init_sample_project(tmp_path, force=True, offline=True)
    assert not layout.qpdata_path(tmp_path, 1).exists()
    project = Project.open(tmp_path / layout.PROJECT_FILE)
    found = project.annotations(project.images[0])
    assert found.source == "geojson" and len(found.annotations) == 16
    assert len(read_features(export).annotations) == 16


def test_a_project_without_data_or_export_gets_the_data_file(tmp_path: Path, cmu_slide: Path) -> None:
    init_sample_project(tmp_path, offline=True)
    layout.qpdata_path(tmp_path, 1).unlink()
    layout.annotation_path(tmp_path, 1).unlink()
    init_sample_project(tmp_path, force=True, offline=True)
    assert read_qpdata(layout.qpdata_path(tmp_path, 1)).counts()["annotation"] == 15
    assert len(read_features(layout.annotation_path(tmp_path, 1)).annotations) == 15


def test_tiling_the_sample_is_the_same_from_the_data_file_and_from_the_export(
    tmp_path: Path, cmu_slide: Path
) -> None:
    from histobridge.tiling import TileSpec, open_store, tile_project

    results = []
    for source in ("qpdata", "geojson"):
        folder = tmp_path / source
        init_sample_project(folder, offline=True)
        if source == "geojson":
            layout.qpdata_path(folder, 1).unlink()  # as the sample was before it shipped QuPath data
        project = Project.open(folder / layout.PROJECT_FILE)
        assert project.annotations(project.images[0]).source == source
        report = tile_project(project, tmp_path / f"{source}.zarr", TileSpec(64, 64))
        (group,) = open_store(tmp_path / f"{source}.zarr").groups()
        results.append((report.tiles, group.coords[:], group.labels[:], group.attrs["regions"]))
    (n, coords, labels, regions), (n2, coords2, labels2, regions2) = results
    assert n == n2 > 100
    assert (coords == coords2).all() and (labels == labels2).all() and regions == regions2
