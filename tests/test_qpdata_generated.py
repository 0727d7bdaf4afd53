"""The .qpdata reader on files built by the test-only stream writer (no ../shared needed)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import _qpdata_writer as W
import pytest
import shapely
from shapely.geometry import Polygon, box

from histobridge.errors import InputError
from histobridge.qupath.qpdata import iter_objects, qpdata_annotations, read_qpdata, to_geojson_features
from histobridge.qupath.qpdata.reader import QPDataStream
from histobridge.qupath.qpdata.rois import ellipse_polygon

TUMOR_ARGB = -65536  # 0xFFFF0000
POS_ARGB = -16776961  # 0xFF0000FF


def _scene(names_list, layout_ids: bool = True):
    """A root with an annotation (two cells, a detection) and a tile: every field set somewhere."""
    tumor = W.path_class("Tumor", TUMOR_ARGB)
    positive = W.path_class("Positive", POS_ARGB, tumor)
    cells = [
        W.PO(
            "cell",
            roi=W.roi("polygon", x=[10, 20, 20, 10], y=[10, 10, 20, 20]),
            nucleus=W.roi("ellipse", x=12, y=12, x2=18, y2=16),
            path_class=positive,
            measurements=W.float_list(names_list, [1.5, float(i)], capacity=4),
            probability=0.75,
        )
        for i in range(2)
    ]
    det = W.PO(
        "detection",
        roi=W.roi("points", x=[1, 2, 3], y=[4, 5, 6]),
        path_class=tumor,
        measurements=W.default_measurement_list({"d1": 0.5, "bad": float("nan")}),
    )
    ann = W.PO(
        "annotation",
        roi=W.roi("rectangle", x=0, y=0, x2=100, y2=50, plane=(0, 2, 1)),
        name="Region \u00e9\U0001f600",
        color=-16711936,
        locked=True,
        children=[*cells, det],
        metadata={"note": "hello"},
    )
    tile = W.PO(
        "tile",
        roi=W.roi("rectangle", x=200, y=0, x2=264, y2=64),
        measurements=W.float_list(names_list, [0.25, 0.5], double=True),
    )
    return W.PO("root", children=[ann, tile]), ann, cells, det, tile


def _write(tmp_path: Path, data: bytes, name: str = "data.qpdata") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


LAYOUTS = [  # (QuPath version, PathObject layout, names list factory)
    ("0.2.3", None, W.unmodifiable_list),
    ("0.3.2", None, W.unmodifiable_list),
    ("0.4.3", None, W.unmodifiable_list),
    ("0.5.1", "v4", W.unmodifiable_list),
    ("0.6.0", None, W.coll_ser_list),
    ("0.7.0", "v4", W.coll_ser_list),
]


@pytest.mark.parametrize(("version", "layout", "names"), LAYOUTS)
def test_layouts_read_the_same(tmp_path: Path, version: str, layout: str | None, names) -> None:
    root, ann, cells, _det, tile = _scene(names(["m1", "m2"]))
    path = _write(tmp_path, W.qpdata_bytes(root, version, layout=layout))
    data = read_qpdata(path)
    old = version[:3] in ("0.2", "0.3")
    assert data.data_version == (2 if version.startswith("0.2") else 3)
    assert data.qupath_version == (None if version.startswith("0.2") else version)
    assert (data.image_path == "/data/slide.svs") == version.startswith("0.2")
    assert data.image_type == "BRIGHTFIELD_H_E" and data.stains and "H&E" in data.stains
    assert data.properties == {"PROJECT_ENTRY_ID": "/p/project.qpproj::1"}
    assert [o.object_type for o in data.objects] == [
        "root",
        "annotation",
        "cell",
        "cell",
        "detection",
        "tile",
    ]
    _root, a, c1, c2, d, t = data.objects
    assert [o.parent_index for o in data.objects] == [None, 0, 1, 1, 1, 0]
    assert [o.depth for o in data.objects] == [0, 1, 2, 2, 2, 1]
    if old:
        assert all(o.object_id is None for o in data.objects)
    else:
        assert (
            a.object_id == str(ann.uid) and c1.object_id == str(cells[0].uid) and t.object_id == str(tile.uid)
        )
    assert a.name == "Region \u00e9\U0001f600" and a.color == (0, 255, 0) and a.locked
    assert a.metadata == {"note": "hello"} and a.plane == (0, 2, 1) and a.roi_type == "rectangle"
    assert a.geometry.equals(box(0, 0, 100, 50))
    assert c1.path_class == "Tumor: Positive" and c1.class_color == (0, 0, 255)
    assert c1.class_probability == pytest.approx(0.75) and a.class_probability is None
    assert c1.measurements == {"m1": 1.5, "m2": 0.0} and c2.measurements == {"m1": 1.5, "m2": 1.0}
    assert c1.geometry.area == pytest.approx(100) and c1.nucleus.geom_type == "Polygon"
    assert d.path_class == "Tumor" and d.class_color == (255, 0, 0) and d.roi_type == "points"
    assert d.measurements["d1"] == 0.5 and math.isnan(d.measurements["bad"])
    assert t.measurements == {"m1": 0.25, "m2": 0.5}
    assert data.notes == ()


def test_every_roi_type(tmp_path: Path) -> None:
    square = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)])
    wkb = shapely.to_wkb(square.union(box(20, 0, 30, 10)), byte_order=0)  # big-endian, like JTS
    rois = {
        "rectangle": W.roi("rectangle", x=1, y=2, x2=11, y2=7),
        "ellipse": W.roi("ellipse", x=0, y=0, x2=40, y2=20),
        "line": W.roi("line", x=0, y=0, x2=3, y2=4),
        "polygon": W.roi("polygon", x=[0, 10, 10, 0], y=[0, 0, 10, 10]),
        "polyline": W.roi("polyline", x=[0, 1, 2], y=[0, 1, 0]),
        "points": W.roi("points", x=[5, 6], y=[7, 8], plane=(1, 0, 0)),
        "geometry": W.roi("geometry", wkb=wkb),
        "area": W.roi("area", x=[[0, 10, 10, 0], [2, 4, 4, 2]], y=[[0, 0, 10, 10], [2, 2, 4, 4]]),
    }
    root = W.PO("root", children=[W.PO("annotation", roi=r, name=k) for k, r in rois.items()])
    got = {o.name: o for o in read_qpdata(_write(tmp_path, W.qpdata_bytes(root))).objects if o.name}
    assert {k: o.roi_type for k, o in got.items()} == {k: k for k in rois}
    assert got["rectangle"].geometry.equals(box(1, 2, 11, 7))
    ell = got["ellipse"].geometry
    assert len(ell.exterior.coords) == 101 and ell.exterior.coords[0] == (40, 10)
    assert ell.area == pytest.approx(math.pi * 20 * 10, rel=2e-3) and ell.bounds == pytest.approx(
        (0, 0, 40, 20)
    )
    assert got["line"].geometry.length == pytest.approx(5)
    assert got["polygon"].geometry.area == 100
    assert got["polyline"].geometry.geom_type == "LineString"
    assert len(got["points"].geometry.geoms) == 2 and got["points"].plane == (1, 0, 0)
    assert got["geometry"].geometry.geom_type == "MultiPolygon" and got["geometry"].geometry.area == 200
    assert got["area"].geometry.area == pytest.approx(96)  # the inner ring is a hole


def test_ellipse_matches_jts_construction() -> None:
    poly = ellipse_polygon(10, 20, 30, 60)
    coords = list(poly.exterior.coords)
    assert len(coords) == 101 and coords[0] == coords[-1]
    cx, cy, rx, ry = 20, 40, 10, 20
    for i, (x, y) in enumerate(coords[:-1]):
        ang = i * 2 * math.pi / 100
        # on QuPath's 0.01 px grid (its geometry precision model)
        assert (x, y) == (round(rx * math.cos(ang) + cx, 2), round(ry * math.sin(ang) + cy, 2))


def test_tma_cores_and_grid(tmp_path: Path) -> None:
    cores = [
        W.PO(
            "tmaCore",
            roi=W.roi("ellipse", x=i * 100, y=0, x2=i * 100 + 80, y2=80),
            missing=i == 1,
            metadata={"Unique ID": f"core-{i}"},
            name=f"A-{i + 1}",
        )
        for i in range(3)
    ]
    root = W.PO("root", children=cores)
    data = read_qpdata(_write(tmp_path, W.qpdata_bytes(root, tma_cores=cores, tma_size=(3, 1))))
    got = [o for o in data.objects if o.object_type == "tmaCore"]
    assert [o.is_missing for o in got] == [False, True, False]
    assert [o.metadata["Unique ID"] for o in got] == ["core-0", "core-1", "core-2"]
    assert data.tma_grid == (3, 1)
    feats = to_geojson_features(got)
    assert [f["properties"]["isMissing"] for f in feats] == [False, True, False]
    assert all(f["geometry"]["isEllipse"] for f in feats)


def test_type_filter_skips_but_keeps_shared_values(tmp_path: Path) -> None:
    """A ROI and a class first met inside a skipped detection, then back-referenced by an annotation."""
    shared_roi = W.roi("polygon", x=[0, 10, 10], y=[0, 0, 10])
    cls = W.path_class("Stroma", -256)
    det = W.PO("detection", roi=shared_roi, path_class=cls)
    ann = W.PO("annotation", roi=shared_roi, path_class=cls)
    path = _write(tmp_path, W.qpdata_bytes(W.PO("root", children=[det, ann])))
    only = list(iter_objects(path, types=["annotation"]))
    assert len(only) == 1 and only[0].path_class == "Stroma" and only[0].class_color == (255, 255, 0)
    assert only[0].geometry.area == pytest.approx(50)
    full = read_qpdata(path).objects
    assert full[2] == only[0]
    assert full[1].geometry.equals(full[2].geometry)


def test_skipped_objects_leave_no_values_behind(tmp_path: Path) -> None:
    """Per-object records of unwanted types are kept as offsets, not values (bounded memory)."""
    names = W.unmodifiable_list(["a", "b"])
    cells = [
        W.PO(
            "cell",
            roi=W.roi("polygon", x=[0, 5, 5], y=[0, 0, 5]),
            nucleus=W.roi("ellipse", x=0, y=0, x2=2, y2=2),
            measurements=W.float_list(names, [1, 2]),
        )
        for _ in range(50)
    ]
    path = _write(
        tmp_path,
        W.qpdata_bytes(
            W.PO(
                "root",
                children=[W.PO("annotation", children=cells, roi=W.roi("rectangle", x=0, y=0, x2=9, y2=9))],
            )
        ),
    )
    from histobridge.qupath.qpdata import reader, stream

    with reader._open_buffer(path) as buf:
        parse = reader._Parse(path, buf, frozenset({"annotation"}))
        objs = list(parse.run())
        kept = [v for v in parse.s.values if isinstance(v, stream.JavaObject | list | str)]
    assert len(objs) == 1
    assert len(parse.s.values) > 50 * 8  # every cell assigned many handles…
    assert len(kept) < 40  # …but only shared things (names, field type strings) stay as values


def test_unknown_class_walked_with_note(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ext_desc = W.Desc("com.example.Plugin$State", W.SC_SER | W.SC_WRITE, [("I", "level", None)])
    unknown = W.Obj(ext_desc, {"level": 7}, {ext_desc.name: [W.P("d", 1.5), "payload"]})
    root = W.PO("root", children=[W.PO("annotation", roi=W.roi("rectangle", x=0, y=0, x2=1, y2=1))])
    path = _write(tmp_path, W.qpdata_bytes(root, properties={"ext": unknown, "k": "v"}))
    data = read_qpdata(path)
    assert data.counts() == {"root": 1, "annotation": 1}
    assert data.properties["k"] == "v" and data.properties["ext"].fields == {"level": 7}
    assert any("com.example.Plugin$State" in n for n in data.notes)
    assert "com.example.Plugin$State" in caplog.text


def test_long_string_header(tmp_path: Path) -> None:
    server = {"builderType": "uri", "uri": "file:/x.svs", "pad": "x" * 70000}
    js = {"dataVersion": 3, "qupathVersion": "0.5.0", "server": server, "id": "x"}
    data = read_qpdata(_write(tmp_path, W.qpdata_bytes(W.PO("root"), "0.5.0", server_json=js)))
    assert data.server == server and data.qupath_version == "0.5.0"


def test_geojson_shape(tmp_path: Path) -> None:
    root, *_ = _scene(W.unmodifiable_list(["m1", "m2"]))
    data = read_qpdata(_write(tmp_path, W.qpdata_bytes(root)))
    feats = {
        f["properties"]["objectType"] + str(i): f for i, f in enumerate(to_geojson_features(data.objects))
    }
    ann, cell, det, tile = feats["annotation0"], feats["cell1"], feats["detection3"], feats["tile4"]
    assert len(feats) == 5  # the root has no geometry
    assert ann["properties"]["isLocked"] is True and "isLocked" not in tile["properties"]
    assert ann["geometry"]["plane"] == {"c": 0, "z": 2, "t": 1} and "plane" not in tile["geometry"]
    assert ann["properties"]["color"] == [0, 255, 0] and ann["properties"]["metadata"] == {"note": "hello"}
    assert cell["properties"]["classification"] == {"names": ["Tumor", "Positive"], "color": [0, 0, 255]}
    assert det["properties"]["classification"] == {"name": "Tumor", "color": [255, 0, 0]}
    assert det["properties"]["measurements"] == {"d1": 0.5}  # NaN left out
    assert cell["nucleusGeometry"]["type"] == "Polygon" and "nucleusGeometry" not in cell["properties"]
    assert uuid.UUID(cell["id"]) and "classification" not in tile["properties"]


def test_qpdata_annotations_records(tmp_path: Path) -> None:
    root, ann, *_ = _scene(W.unmodifiable_list(["m1", "m2"]))
    path = _write(tmp_path, W.qpdata_bytes(root))
    anns = qpdata_annotations(path)
    assert len(anns) == 1 and anns[0].object_id == str(ann.uid) and anns[0].locked
    assert anns[0].geometry.equals(box(0, 0, 100, 50)) and anns[0].color == (0, 255, 0)
    dets = qpdata_annotations(path, types=["detection", "cell"])
    assert [a.object_type for a in dets] == ["cell", "cell"]  # the points detection has no area


def test_stream_header_and_order(tmp_path: Path) -> None:
    root, *_ = _scene(W.unmodifiable_list(["m1", "m2"]))
    stream = QPDataStream(_write(tmp_path, W.qpdata_bytes(root)), types=["cell", "root"])
    kinds = [o.object_type for o in stream]
    assert kinds == ["cell", "cell", "root"]
    assert stream.header.complete and stream.header.image_type == "BRIGHTFIELD_H_E"


def test_unknown_type_name_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown object type"):
        read_qpdata(tmp_path / "x.qpdata", types=["cells"])
