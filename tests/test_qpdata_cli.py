"""``histobridge qpdata`` commands on a generated file."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import _qpdata_writer as W
import pytest
from shapely.geometry import shape
from typer.testing import CliRunner

from histobridge.cli.qpdata import app
from histobridge.errors import QPDataError


@pytest.fixture()
def qpdata_file(tmp_path: Path) -> Path:
    names = W.unmodifiable_list(["Area"])
    cls = W.path_class("Tumor", -65536)
    cells = [
        W.PO(
            "cell",
            roi=W.roi("polygon", x=[0, 4, 4], y=[0, 0, 4]),
            nucleus=W.roi("ellipse", x=0, y=0, x2=1, y2=1),
            measurements=W.float_list(names, [float(i)]),
            path_class=cls,
        )
        for i in range(3)
    ]
    ann = W.PO("annotation", roi=W.roi("rectangle", x=0, y=0, x2=10, y2=10), name="region", children=cells)
    p = tmp_path / "data.qpdata"
    p.write_bytes(W.qpdata_bytes(W.PO("root", children=[ann]), "0.5.2"))
    return p


@pytest.mark.parametrize("suffix", [".geojson", ".geojson.gz"])
def test_to_geojson(qpdata_file: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    res = CliRunner().invoke(app, ["to-geojson", str(qpdata_file), str(out)])
    assert res.exit_code == 0, res.output
    if suffix.endswith(".gz"):
        with gzip.open(out, "rt") as fh:
            text = fh.read()
    else:
        text = out.read_text()
    doc = json.loads(text)
    assert doc["type"] == "FeatureCollection"
    kinds = sorted(f["properties"]["objectType"] for f in doc["features"])
    assert kinds == ["annotation", "cell", "cell", "cell"]
    assert "wrote 4 features" in res.output


def test_to_geojson_types_filter(qpdata_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "ann.geojson"
    res = CliRunner().invoke(app, ["to-geojson", str(qpdata_file), str(out), "--types", "annotation"])
    assert res.exit_code == 0, res.output
    feats = json.loads(out.read_text())["features"]
    assert [f["properties"]["name"] for f in feats] == ["region"]


def test_to_geojson_leaves_no_partial_output(tmp_path: Path, qpdata_file: Path) -> None:
    broken = tmp_path / "broken.qpdata"
    broken.write_bytes(qpdata_file.read_bytes()[:-40])
    out = tmp_path / "x.geojson"
    res = CliRunner().invoke(app, ["to-geojson", str(broken), str(out)])
    assert isinstance(res.exception, QPDataError)
    assert (
        not out.exists() and list(tmp_path.glob("*.tmp")) == [] and list(tmp_path.glob(".x.geojson*")) == []
    )


def test_info(qpdata_file: Path) -> None:
    res = CliRunner().invoke(app, ["info", str(qpdata_file)])
    assert res.exit_code == 0, res.output
    assert "QuPath 0.5.2" in res.output and "BRIGHTFIELD_H_E" in res.output
    assert "Tumor" in res.output and "annotation" in res.output
    row = next(line for line in res.output.splitlines() if "cell" in line and "Tumor" in line)
    assert "3" in row


def _write(tmp_path: Path, children: list[W.PO]) -> Path:
    p = tmp_path / "objects.qpdata"
    p.write_bytes(W.qpdata_bytes(W.PO("root", children=children), "0.5.2"))
    return p


def test_to_geojson_writes_self_intersecting_polygons_valid(tmp_path: Path) -> None:
    # A 100 x 100 bow tie: QuPath measures 5000 px²; the raw ring is invalid with area 0.
    bowtie = W.PO("annotation", roi=W.roi("polygon", x=[0, 100, 100, 0], y=[0, 100, 0, 100]), name="bowtie")
    src = _write(tmp_path, [bowtie])
    out = tmp_path / "out.geojson"
    res = CliRunner().invoke(app, ["to-geojson", str(src), str(out)])
    assert res.exit_code == 0, res.output
    (feat,) = json.loads(out.read_text())["features"]
    geom = shape(feat["geometry"])
    assert geom.is_valid and geom.area == pytest.approx(5000.0)


def test_to_geojson_leaves_out_non_finite_objects_without_traceback(tmp_path: Path) -> None:
    nan = math.nan
    bad = W.PO("annotation", roi=W.roi("polygon", x=[0, nan, 10], y=[0, 0, 10]), name="bad")
    good = W.PO("annotation", roi=W.roi("rectangle", x=0, y=0, x2=10, y2=10), name="good")
    src = _write(tmp_path, [bad, good])
    out = tmp_path / "out.geojson"
    res = CliRunner().invoke(app, ["to-geojson", str(src), str(out)])
    assert res.exit_code == 0 and res.exception is None, res.output
    feats = json.loads(out.read_text())["features"]
    assert [f["properties"]["name"] for f in feats] == ["good"]
    assert "wrote 1 features" in res.output and "non-finite" in res.output and "'bad'" in res.output


def test_to_geojson_closed_polylines_as_areas(tmp_path: Path) -> None:
    # An islet outline drawn as a closed polyline: a LineString unless asked to write it as an area.
    ring = W.roi("polyline", x=[0, 40, 40, 0, 0], y=[0, 0, 40, 40, 0])
    outline = W.PO("annotation", roi=ring, name="islet")
    src = _write(tmp_path, [outline])
    plain, areas = tmp_path / "plain.geojson", tmp_path / "areas.geojson"
    assert CliRunner().invoke(app, ["to-geojson", str(src), str(plain)]).exit_code == 0
    assert json.loads(plain.read_text())["features"][0]["geometry"]["type"] == "LineString"
    res = CliRunner().invoke(app, ["to-geojson", str(src), str(areas), "--closed-lines-as-areas"])
    assert res.exit_code == 0, res.output
    geom = shape(json.loads(areas.read_text())["features"][0]["geometry"])
    assert geom.geom_type == "Polygon" and geom.area == pytest.approx(1600.0)
    assert "closed outline written as a polygon" in res.output
