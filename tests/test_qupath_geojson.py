"""QuPath GeoJSON: every dialect QuPath wrote or accepts, repair of bad geometry, and the writer."""

from __future__ import annotations

import gzip
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _qupath_helpers import feature, square
from shapely.geometry import MultiPolygon, Polygon, box, shape

from histobridge.errors import AnnotationError
from histobridge.qupath.annotations import Annotation
from histobridge.qupath.geojson import (
    annotation_to_feature,
    read_features,
    tile_feature,
    write_features,
)

UUID = "0b7f3c52-9a1e-4e0c-8d64-2f5e1c7a9b30"

# A QuPath 0.5-style export (FEATURE_COLLECTION), written out as QuPath does it.
DOC_05 = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature", "id": UUID,
            "geometry": {"type": "Polygon", "coordinates": square(10, 20, 100)},
            "properties": {
                "objectType": "annotation", "name": "region A", "isLocked": True,
                "classification": {"name": "Tumor", "color": [200, 0, 0]},
                "measurements": {"Area px": 10000, "score": "NaN", "ratio": "Infinity"},
                "metadata": {"k": "v"},
            },
        },
        {
            "type": "Feature", "id": "5c1d2a1e-0000-4000-8000-000000000001",
            "geometry": {"type": "Polygon", "coordinates": square(300, 300, 50)},
            "properties": {"objectType": "detection",
                           "classification": {"names": ["Tumor", "Positive"], "color": [10, 20, 30]}},
        },
    ],
}


def test_feature_collection_04_plus() -> None:
    res = read_features(DOC_05)
    assert res.notes == []
    a, d = res.annotations
    assert a.object_type == "annotation" and d.object_type == "detection"
    assert a.path_class == "Tumor" and a.class_color == (200, 0, 0) and a.color is None
    assert a.name == "region A" and a.locked is True and a.object_id == UUID
    assert a.geometry.equals(box(10, 20, 110, 120))
    assert a.measurements["Area px"] == 10000.0
    assert math.isnan(a.measurements["score"]) and a.measurements["ratio"] == math.inf
    assert d.path_class == "Tumor: Positive" and d.class_color == (10, 20, 30)


def test_object_type_filter() -> None:
    res = read_features(DOC_05, object_types=("annotation",))
    assert [a.object_type for a in res.annotations] == ["annotation"]
    assert any("detection" in n for n in res.notes)


def test_bare_list_single_feature_and_bare_geometry() -> None:
    feats = DOC_05["features"]
    assert len(read_features(list(feats)).annotations) == 2  # export without FEATURE_COLLECTION
    single = read_features(dict(feats[0])).annotations
    assert len(single) == 1 and single[0].path_class == "Tumor"
    bare = read_features({"type": "Polygon", "coordinates": square(0, 0, 5)}).annotations
    assert len(bare) == 1 and bare[0].object_type == "annotation" and bare[0].path_class is None
    assert bare[0].geometry.area == 25


def test_qupath_03_object_type_color_rgb_and_measurement_list() -> None:
    doc = [
        feature(square(0, 0, 10), object_type="annotation", isLocked=False,
                classification={"name": "Stroma", "colorRGB": -6895466},
                measurements=[{"name": "Area", "value": 100.0}, {"name": "Bad", "value": "n/a"}]),
        feature(square(50, 50, 10), object_type="tma_core", name="A-1", isMissing=False),
    ]
    res = read_features(doc)
    a, core = res.annotations
    assert a.object_type == "annotation" and a.path_class == "Stroma"
    assert a.class_color == (150, 200, 150)  # -6895466 = 0xFF96C896
    assert a.measurements == {"Area": 100.0}
    assert core.object_type == "tmaCore" and core.name == "A-1"
    assert any("not a number" in n for n in res.notes)


def test_qupath_02_class_name_ids() -> None:
    doc = [
        {"type": "Feature", "id": "PathAnnotationObject",
         "geometry": {"type": "Polygon", "coordinates": square(0, 0, 8)},
         "properties": {"classification": {"name": "Necrosis", "colorRGB": -13487566},
                        "measurements": [{"name": "m", "value": 2}]}},
        {"type": "Feature", "id": "PathDetectionObject",
         "geometry": {"type": "Polygon", "coordinates": square(20, 0, 8)}, "properties": {}},
    ]
    a, d = read_features(doc).annotations
    assert a.object_type == "annotation" and a.object_id is None  # the class name is no UUID
    assert a.path_class == "Necrosis" and a.class_color == (50, 50, 50) and a.measurements == {"m": 2.0}
    assert d.object_type == "detection"


def test_unknown_object_type_reads_as_annotation_with_note() -> None:
    res = read_features([feature(square(0, 0, 4), objectType="TILE")])  # QuBaLab's upper case
    assert res.annotations[0].object_type == "annotation"
    assert any("'TILE'" in n for n in res.notes)


def test_classification_without_color_is_kept_and_noted() -> None:
    res = read_features([feature(square(0, 0, 4), objectType="annotation", classification={"name": "X"})])
    assert res.annotations[0].path_class == "X" and res.annotations[0].class_color is None
    assert any("without 'color'" in n for n in res.notes)


def test_bare_string_classification() -> None:
    res = read_features([feature(square(0, 0, 4), classification="Tumor")])
    assert res.annotations[0].path_class == "Tumor"


def test_points_lines_and_empty_geometry_are_skipped_with_notes() -> None:
    doc = [
        feature([5, 5], geom_type="Point", objectType="annotation"),
        feature([[0, 0], [9, 9]], geom_type="LineString", objectType="annotation"),
        feature([], objectType="annotation"),
        {"type": "Feature", "geometry": None, "properties": {"objectType": "annotation"}},
        feature(square(0, 0, 3), objectType="annotation"),
    ]
    res = read_features(doc)
    assert len(res.annotations) == 1
    text = " ".join(res.notes)
    assert "Point ignored" in text and "LineString ignored" in text
    assert "empty geometry" in text and "without geometry" in text


def test_self_intersecting_polygon_is_repaired_and_noted() -> None:
    bowtie = [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]
    cls = {"name": "T", "color": [1, 2, 3]}
    res = read_features([feature(bowtie, objectType="annotation", classification=cls)])
    (a,) = res.annotations
    assert a.geometry.is_valid and a.geometry.area == pytest.approx(50.0)
    assert a.path_class == "T"
    assert any("repaired" in n and "Self-intersection" in n for n in res.notes)


def test_holes_and_multipolygons_are_kept() -> None:
    outer = [[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]
    hole = [[40, 40], [60, 40], [60, 60], [40, 60], [40, 40]]
    multi = [square(0, 0, 10), square(20, 0, 10)]
    res = read_features([
        feature([outer, hole], objectType="annotation"),
        feature(multi, geom_type="MultiPolygon", objectType="annotation"),
    ])
    ring, mp = res.annotations
    assert isinstance(ring.geometry, Polygon) and len(ring.geometry.interiors) == 1
    assert ring.geometry.area == pytest.approx(10000 - 400)
    assert isinstance(mp.geometry, MultiPolygon) and len(mp.geometry.geoms) == 2


def test_annotation_partly_outside_the_slide_is_kept_unclipped() -> None:
    # Reading never clips: tiling intersects regions with the slide rectangle (documented there).
    a = read_features([feature(square(2100, -50, 300), objectType="annotation")]).annotations[0]
    assert a.geometry.bounds == (2100.0, -50.0, 2400.0, 250.0)


def test_child_objects_are_flattened() -> None:
    parent = feature(square(0, 0, 100), objectType="annotation",
                     childObjects=[feature(square(10, 10, 5), objectType="detection")])
    types = [a.object_type for a in read_features([parent]).annotations]
    assert types == ["annotation", "detection"]


@pytest.mark.parametrize("name", ["a.geojson", "a.json", "a.geojson.gz", "a.zip"])
def test_file_forms(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    text = json.dumps(DOC_05)
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("objects.geojson", text)
    else:
        path.write_text(text)
    res = read_features(path)
    assert [a.path_class for a in res.annotations] == ["Tumor", "Tumor: Positive"]


def test_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.geojson"
    bad.write_text("{not json")
    with pytest.raises(AnnotationError, match=r"broken\.geojson"):
        read_features(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"type": "Topology"}))
    with pytest.raises(AnnotationError, match="not GeoJSON"):
        read_features(other)
    with pytest.raises(AnnotationError, match="not found"):
        read_features(tmp_path / "missing.geojson")


# ------------------------------------------------------------------------------------------ writer


def test_annotation_round_trip(tmp_path: Path) -> None:
    outer = [(0, 0), (100, 0), (100, 100), (0, 100)]
    ann = Annotation(
        geometry=Polygon(outer, [[(10, 10), (20, 10), (20, 20), (10, 20)]]), path_class="Tumor: Positive",
        color=(200, 0, 0), name="n", measurements={"a": 1, "b": float("nan"), "c": float("inf")}, locked=True,
    )
    feat = annotation_to_feature(ann)
    props = feat["properties"]
    assert props["objectType"] == "annotation" and props["isLocked"] is True
    assert props["classification"] == {"names": ["Tumor", "Positive"], "color": [200, 0, 0]}
    assert props["measurements"] == {"a": 1.0}
    assert all(isinstance(c, float) for ring in feat["geometry"]["coordinates"] for xy in ring for c in xy)
    path = tmp_path / "out.geojson"
    assert write_features(path, [ann, feat]) == 2
    back = read_features(path)
    assert back.notes == []
    assert back.annotations[0].geometry.equals(ann.geometry)
    assert back.annotations[0].path_class == "Tumor: Positive" and back.annotations[0].locked


def test_tile_feature_is_qupath_valid() -> None:
    t = tile_feature(4096, 8192, 512.5, 512.5, "Squamous", None, {"prob_A": 0.2, "prob_B": float("nan")})
    props = t["properties"]
    assert props["objectType"] == "tile" and props["isLocked"] is True
    assert set(props["classification"]) == {"name", "color"} and len(props["classification"]["color"]) == 3
    assert props["measurements"] == {"prob_A": 0.2}
    ring = t["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] == [4096.0, 8192.0] and ring[2] == [4608.5, 8704.5]
    import uuid

    uuid.UUID(t["id"])
    unclassified = tile_feature(0, 0, 1, 1)
    assert "classification" not in unclassified["properties"]
    with pytest.raises(AnnotationError):
        tile_feature(0, 0, 0, 5)


def test_write_features_gzip_and_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "tiles.geojson.gz"
    n = write_features(path, (tile_feature(i * 10, 0, 10, 10, "A", (1, 2, 3)) for i in range(5)))
    assert n == 5
    doc = json.loads(gzip.decompress(path.read_bytes()))
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 5
    nan_point = {"type": "Point", "coordinates": [float("nan"), 0]}
    bad = {"type": "Feature", "geometry": nan_point, "properties": {}}
    with pytest.raises(AnnotationError, match=r"bad\.geojson"):
        write_features(tmp_path / "bad.geojson", [bad])
    assert not (tmp_path / "bad.geojson").exists()  # atomic: nothing half-written


def test_other_plane_is_noted() -> None:
    f = feature(square(0, 0, 4), objectType="annotation")
    f["geometry"]["plane"] = {"c": -1, "z": 3, "t": 0}
    f["geometry"]["isEllipse"] = True
    res = read_features([f])
    assert len(res.annotations) == 1 and any("z/t plane" in n for n in res.notes)
    a = res.annotations[0]
    assert a.plane == (-1, 3, 0) and a.roi_type == "ellipse"
    written = annotation_to_feature(a)["geometry"]
    assert written["plane"] == {"c": -1, "z": 3, "t": 0} and written["isEllipse"] is True


# ------------------------------------------------------------------------ one object model, writer


def test_one_record_one_object_types_one_colour_decoder() -> None:
    from histobridge.qupath import annotations, classes
    from histobridge.qupath.qpdata import records

    assert annotations.Annotation is annotations.PathObject is records.QPObject is records.PathObject
    assert records.OBJECT_TYPES is annotations.OBJECT_TYPES
    assert records.argb_to_rgb is classes.argb_to_rgb_or_none
    assert classes.argb_to_rgb_or_none(None) is None and classes.argb_to_rgb_or_none(-65536) == (255, 0, 0)
    root = annotations.PathObject(geometry=None, object_type="root")  # the .qpdata reader's "no ROI"
    assert not root.has_roi and root.geometry.is_empty


def _null_colours(obj: object) -> list[str]:
    """Paths of every ``color`` key holding null anywhere in a JSON document."""
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "color" and v is None:
                found.append(k)
            found += _null_colours(v)
    elif isinstance(obj, list):
        for v in obj:
            found += _null_colours(v)
    return found


def test_writer_never_writes_a_null_colour(tmp_path: Path) -> None:
    plain_dict = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square(0, 0, 5)},
                  "properties": {"objectType": "annotation", "color": None,
                                 "classification": {"name": "Tumor", "color": None}}}
    no_colours = Annotation(box(0, 0, 10, 10), "Stroma")  # neither own nor class colour known
    derived = Annotation(box(0, 0, 10, 10), "Tumor: Positive", class_color=None)
    path = tmp_path / "out.geojson"
    assert write_features(path, [plain_dict, no_colours, derived,
                                 tile_feature(0, 0, 4, 4, "Tumor", None)]) == 4
    doc = json.loads(path.read_text())
    assert _null_colours(doc) == []
    for f in doc["features"]:
        color = f["properties"]["classification"]["color"]
        assert len(color) == 3 and all(isinstance(c, int) for c in color)
    assert "color" not in doc["features"][0]["properties"]
    assert read_features(path).notes == []  # nothing QuPath 0.4+ would refuse


def test_own_colour_and_class_colour_are_written_apart() -> None:
    a = Annotation(box(0, 0, 10, 10), "Tumor", color=(1, 2, 3), class_color=(200, 0, 0))
    props = annotation_to_feature(a)["properties"]
    assert props["color"] == [1, 2, 3] and props["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    back = read_features([annotation_to_feature(a)]).annotations[0]
    assert back.color == (1, 2, 3) and back.class_color == (200, 0, 0) and back.display_color == (1, 2, 3)


def test_self_intersecting_polygon_is_written_valid_with_qupath_area(tmp_path: Path) -> None:
    # A 100 x 100 bow tie: the raw ring's signed area cancels to 0; QuPath measures both lobes, 5000.
    bowtie = Polygon([(0, 0), (100, 100), (100, 0), (0, 100)])
    assert not bowtie.is_valid and bowtie.area == 0
    feat = annotation_to_feature(Annotation(bowtie, "T", class_color=(1, 2, 3)))
    written = shape(feat["geometry"])
    assert written.is_valid and written.area == pytest.approx(5000.0)
    path = tmp_path / "bowtie.geojson"
    write_features(path, [Annotation(bowtie, "T")])
    back = read_features(path)
    assert back.notes == [] and back.annotations[0].geometry.area == pytest.approx(5000.0)


def test_writer_refuses_non_finite_roi_naming_the_object(tmp_path: Path) -> None:
    with np.errstate(invalid="ignore"):
        bad = Annotation(Polygon([(0, 0), (float("nan"), 0), (5, 5)]), "T", name="broken")
    with pytest.raises(AnnotationError, match=r"'broken'.*non-finite"):
        annotation_to_feature(bad)
    with pytest.raises(AnnotationError, match=r"x\.geojson: feature 1: .*'broken'"):
        write_features(tmp_path / "x.geojson", [Annotation(box(0, 0, 1, 1)), bad])
    assert not (tmp_path / "x.geojson").exists()


# --------------------------------------------------------------------- closed outlines, bad input


def _ring(x: float, y: float, s: float) -> list[list[float]]:
    return square(x, y, s)[0]


def test_closed_linestrings_are_counted_as_outlines_and_readable_as_areas() -> None:
    # Islet outlines as QuPath exports polyline annotations: closed LineStrings (and one multi-part).
    doc = [
        feature(_ring(0, 0, 10), geom_type="LineString", objectType="annotation", classification="Islet"),
        feature(_ring(50, 0, 20), geom_type="LineString", objectType="annotation", classification="Islet"),
        feature([_ring(0, 50, 5), _ring(20, 50, 5)], geom_type="MultiLineString", objectType="annotation"),
        feature([[0, 0], [9, 9]], geom_type="LineString", objectType="annotation"),  # open: a real line
    ]
    default = read_features(doc)
    assert default.annotations == []
    text = " ".join(default.notes)
    assert "2 × closed LineString outline ignored" in text and "closed_lines_as_areas" in text
    assert "1 × closed MultiLineString outline ignored" in text and "1 × LineString ignored (no area)" in text
    areas = read_features(doc, closed_lines_as_areas=True)
    assert [round(a.geometry.area) for a in areas.annotations] == [100, 400, 50]
    assert [a.path_class for a in areas.annotations] == ["Islet", "Islet", None]
    assert any("3 × closed" in n or "read as an area" in n for n in areas.notes)
    assert any("LineString ignored (no area)" in n for n in areas.notes)


TRUNCATED = b'{"type": "FeatureCollection", "features": [{"type": "Fea'


@pytest.mark.parametrize("content", [b"", b"  \n", TRUNCATED])
def test_empty_or_truncated_file_is_an_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "export.geojson"
    path.write_bytes(content)
    with pytest.raises(AnnotationError, match=r"export\.geojson"):
        read_features(path)
    gz = tmp_path / "export.geojson.gz"
    gz.write_bytes(gzip.compress(json.dumps(DOC_05).encode())[:-12])  # cut short
    with pytest.raises(AnnotationError, match=r"export\.geojson\.gz"):
        read_features(gz)


def test_deep_nesting_is_a_clean_error(tmp_path: Path) -> None:
    deep_json = tmp_path / "deep.geojson"
    deep_json.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AnnotationError, match=r"deep\.geojson.*nested too deeply"):
        read_features(deep_json)
    # Parsable JSON whose childObjects nest deeper than the reader can follow.
    depth = 900
    head = '{"type":"Feature","geometry":null,"properties":{"childObjects":['
    deep_children = tmp_path / "children.geojson"
    deep_children.write_text(head * depth + "]}}" * depth)
    with pytest.raises(AnnotationError, match=r"children\.geojson.*nested too deeply"):
        read_features(deep_children)


def test_non_finite_coordinates_reject_only_that_object(tmp_path: Path) -> None:
    path = tmp_path / "nan.geojson"
    path.write_text(
        '{"type":"FeatureCollection","features":['
        '{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[NaN,0],[5,5],[0,0]]]},'
        '"properties":{"objectType":"annotation","name":"nan"}},'
        '{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[Infinity,0],[5,5],[0,0]]]},'
        '"properties":{"objectType":"annotation","name":"inf"}},'
        '{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[4,0],[4,4],[0,4],[0,0]]]},'
        '"properties":{"objectType":"annotation","name":"good"}}]}'
    )
    res = read_features(path)
    assert [a.name for a in res.annotations] == ["good"]
    assert any(n.startswith("2 × object with a non-finite") and "'nan'" in n for n in res.notes)


def test_dsa_label_becomes_the_name_or_is_noted() -> None:
    doc = [
        feature(square(0, 0, 4), objectType="annotation", label={"value": "islet 3"}),
        feature(square(0, 0, 4), objectType="annotation", label="duct"),
        feature(square(0, 0, 4), objectType="annotation", name="mine", label={"value": "theirs"}),
    ]
    res = read_features(doc)
    assert [a.name for a in res.annotations] == ["islet 3", "duct", "mine"]
    assert any("'label'" in n and "'theirs'" in n for n in res.notes)


def _without_ids(text: str) -> tuple[list[dict], list[str]]:
    doc = json.loads(text)
    feats = doc["features"] if isinstance(doc, dict) else doc
    return [{k: v for k, v in f.items() if k != "id"} for f in feats], [f["id"] for f in feats]


def test_tile_texts_are_the_text_of_tile_feature(tmp_path: Path) -> None:
    """The array serialiser writes what tile_feature + write_features write, byte for byte but the ids."""
    import re
    import uuid

    from histobridge.qupath.geojson import tile_feature_texts, write_feature_texts

    rng = np.random.default_rng(3)
    n = 300
    coords = np.column_stack([rng.uniform(-5, 1e5, n), rng.uniform(0, 1e5, n),
                              np.full(n, 448.123456789), rng.uniform(0.001, 900, n)])
    coords[:3, :2] = [[0.0, 0.0], [1e-9, -1e-9], [2.0005, 123456789.0004999]]  # rounding edges
    names = ["m: Tumor probability", "m: Stroma: Positive probability", "m: Ünïcode \"q\" probability"]
    values = rng.uniform(0, 1, (n, 3))
    values[5, 1] = np.nan
    values[6, :] = [np.inf, -np.inf, np.nan]  # no finite measurement: no "measurements" key
    values[7, 0] = -0.0
    classes = ("Tumor", "Stroma: Positive", "")
    colours = {"Tumor": (200, 0, 0), "Stroma: Positive": (0, 128, 255)}
    index = rng.integers(0, 3, n)
    for locked, name in ((True, "model"), (False, None)):
        new, old = tmp_path / "new.geojson", tmp_path / "old.geojson"
        write_feature_texts(new, tile_feature_texts(coords, index, classes, colours, names, values,
                                                    locked=locked, name=name))
        write_features(old, (
            tile_feature(*map(float, coords[i]), classes[index[i]] or None, colours.get(classes[index[i]]),
                         dict(zip(names, values[i].tolist(), strict=True)), locked=locked, name=name)
            for i in range(n)
        ))
        uuid_re = r'"id":"[0-9a-f-]{36}"'
        assert re.sub(uuid_re, '"id":""', new.read_text()) == re.sub(uuid_re, '"id":""', old.read_text())
        feats, ids = _without_ids(new.read_text())
        assert len(set(ids)) == n and all(uuid.UUID(i) for i in ids)
        assert "measurements" not in feats[6]["properties"]
        assert read_features(new).annotations[0].geometry.bounds == (0.0, 0.0, 448.123, coords[0, 3].round(3))


def test_tile_texts_refuse_bad_rectangles_and_shapes() -> None:
    from histobridge.qupath.geojson import tile_feature_texts

    def texts(coords: list[list[float]], values: np.ndarray) -> list[str]:
        return list(tile_feature_texts(np.array(coords), np.zeros(len(coords), int), ("A",), {},
                                       ["p"], values))

    with pytest.raises(AnnotationError, match="positive size"):
        texts([[0, 0, 0, 5]], np.zeros((1, 1)))
    with pytest.raises(AnnotationError, match="finite coordinates"):
        texts([[np.nan, 0, 5, 5]], np.zeros((1, 1)))
    with pytest.raises(AnnotationError, match="measurement values of shape"):
        texts([[0, 0, 5, 5]], np.zeros((1, 2)))
    assert texts([], np.zeros((0, 1))) == []


def test_gzip_writer_round_trips_in_chunks(tmp_path: Path) -> None:
    from histobridge.qupath import geojson

    path = tmp_path / "many.geojson.gz"
    n = geojson.WRITE_CHUNK * 2 + 7  # several full chunks and a partial one
    assert write_features(path, (tile_feature(i, 0, 1, 1, "A") for i in range(n))) == n
    feats = json.loads(gzip.decompress(path.read_bytes()))["features"]
    assert [f["geometry"]["coordinates"][0][0][0] for f in feats] == [float(i) for i in range(n)]
    assert write_features(tmp_path / "none.geojson", []) == 0
    empty = json.loads((tmp_path / "none.geojson").read_text())
    assert empty == {"type": "FeatureCollection", "features": []}


def _mixed_tiles(extra: list[dict]) -> dict:
    feats = []
    for i in range(150):
        x = float(i * 10)
        ring = [[x, 0.0], [x + 10, 0.0], [x + 10, 10.0], [x, 10.0], [x, 0.0]]
        if i % 7 == 0:
            ring = [[int(v) for v in p] for p in ring]  # integers are coordinates too
        props = {"objectType": "tile", "classification": {"name": "A", "color": [1, 2, 300]},
                 "measurements": {"p": i / 150, "q": 1} if i % 5 else {"p": "NaN"}}
        feats.append({"type": "Feature", "id": UUID if i % 3 else f"not-a-uuid-{i}",
                      "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props})
    for j, geometry in enumerate(extra):
        feats.insert(j * 11, {"type": "Feature", "geometry": geometry, "properties": {"name": f"odd {j}"}})
    return {"type": "FeatureCollection", "features": feats}


ODD_GEOMETRIES = [
    {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]},  # bow tie
    {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5], [0, 5]]]},  # not closed
    {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [9, 0], [0, 0]]]},  # no area
    {"type": "Polygon", "coordinates": [[[0, 0], [float("nan"), 0], [5, 5], [0, 0]]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [float("inf"), 0], [5, 5], [0, 0]]]},
    {"type": "Polygon", "coordinates": [square(0, 0, 100)[0], square(10, 10, 5)[0]]},  # a hole
    {"type": "LineString", "coordinates": [[0, 0], [5, 0], [5, 5], [0, 0]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [0, 0]]]},  # too short
    {"type": "MultiPolygon", "coordinates": [square(0, 0, 4)]},
]


@pytest.mark.parametrize("extra", [ODD_GEOMETRIES, [*ODD_GEOMETRIES, {"type": "Polygon", "coordinates": [
    [[0, 0], ["5", 0], [5, 5], [0, 0]]]}], [*ODD_GEOMETRIES, {"type": "Polygon", "coordinates": [
        [[0, 0, 1], [5, 0, 1], [5, 5, 1], [0, 0, 1]]]}]], ids=["numbers", "a-string", "with-z"])
def test_bulk_polygons_read_the_same_as_one_by_one(monkeypatch: pytest.MonkeyPatch, extra: list) -> None:
    from histobridge.qupath import geojson_read

    doc = _mixed_tiles(extra)
    fast = read_features(doc, closed_lines_as_areas=True)
    if extra is ODD_GEOMETRIES:
        assert len(geojson_read.simple_polygons(doc["features"])) == 150  # every tile from the bulk path
    monkeypatch.setattr(geojson_read, "BULK_MIN", 10**9)  # below it, the feature-by-feature path
    slow = read_features(doc, closed_lines_as_areas=True)
    assert fast.notes == slow.notes and len(fast.annotations) == len(slow.annotations) > 150
    for a, b in zip(fast.annotations, slow.annotations, strict=True):
        assert a.geometry.wkb == b.geometry.wkb and type(a.geometry) is type(b.geometry)
        assert (a.path_class, a.class_color, a.object_id, a.name, repr(dict(a.measurements))) == (
            b.path_class, b.class_color, b.object_id, b.name, repr(dict(b.measurements)))  # NaN ≠ NaN
    assert fast.annotations[1].class_color == (1, 2, 255)


def test_uuid_forms() -> None:
    from histobridge.qupath.geojson import uuid_or_none

    assert uuid_or_none(UUID) == UUID and uuid_or_none(UUID.upper()) == UUID.upper()
    braced = "{" + UUID + "}"
    assert uuid_or_none(braced) == braced  # uuid.UUID's other spellings still count
    assert uuid_or_none(UUID + "\n") is None and uuid_or_none("x" * 36) is None and uuid_or_none(5) is None
