"""GeoJSON in bulk: the array writer's bytes and the bulk reader's records equal the per-feature ones."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import box

from histobridge.errors import AnnotationError
from histobridge.qupath import geojson_read, geojson_tiles
from histobridge.qupath.annotations import PathObject
from histobridge.qupath.geojson import read_features, tile_feature_texts, write_feature_texts, write_features
from histobridge.qupath.geojson_bulk import _rectangles, bulk_record, simple_polygons
from histobridge.qupath.geojson_load import load_document

UUID = "0b7f3c52-9a1e-4e0c-8d64-2f5e1c7a9b30"
UUID_RE = re.compile(r'"id":"[0-9a-f-]{36}"')


# --- writing -------------------------------------------------------------------------------------


def test_round_half_even_3_is_pythons_round() -> None:
    """Near-halves (where v * 1000 rounds across .5), huge values, signs and zeros all as round(v, 3)."""
    rng = np.random.default_rng(11)
    k = rng.integers(-10**9, 10**9, 20000)
    halves = (k + 0.5) / 1000  # the nearest doubles lie just above or below the tie
    nudged = np.concatenate([np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf), halves])
    values = np.concatenate([
        nudged, rng.uniform(-1e6, 1e6, 20000), [0.0, -0.0, 1e-9, -1e-9, 2.0005, 2.675, 0.0005, 1.0005,
                                                 123456789.0004999, 2.0**52 / 1000, 1e17, -1e300, 5e-324],
    ])
    got = geojson_tiles.round_half_even_3(values)
    want = [round(v, 3) for v in values.tolist()]
    assert got.tolist() == want
    assert [math_sign(v) for v in got.tolist()] == [math_sign(v) for v in want]  # -0.0 stays -0.0


def math_sign(v: float) -> float:
    return float(np.copysign(1.0, v))


def test_number_texts_spell_numbers_as_repr() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([
        10 ** rng.uniform(-320, 308, 20000) * rng.choice([-1, 1], 20000), rng.uniform(0, 1, 20000),
        [0.0, -0.0, 1e-4, 9.999999999999999e-05, 1e-5, 1e16, 9999999999999998.0, 1e22, 5e-324,
         1.7976931348623157e308, 0.1 + 0.2, 448.5, 123456789.0005],
    ])
    assert geojson_tiles.number_texts(values) == [repr(v) for v in values.tolist()]
    assert geojson_tiles.number_texts(np.array([1.0, np.nan, np.inf])) == ["1.0", "null", "null"]
    assert geojson_tiles.number_texts(np.zeros(0)) == []


def test_uuid4_texts_are_random_version_4_uuids() -> None:
    ids = geojson_tiles.uuid4_texts(5000)
    assert len(set(ids)) == 5000
    for text in ids[:500]:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122
    assert geojson_tiles.uuid4_texts(0) == []


def _tiles(n: int, rng: np.random.Generator) -> tuple[Any, ...]:
    coords = np.column_stack([rng.uniform(-5, 1e5, n), rng.uniform(0, 1e5, n), rng.uniform(0.001, 900, n),
                              rng.uniform(0.001, 900, n)])
    coords[:4, :2] = [[0.0005, 1.0005], [2.675, -0.0004], [1e-9, -1e-9], [0.0, -0.0]]
    values = rng.uniform(0, 1, (n, 3))
    values[1] = [1e-5, 3.2e-300, 7e-7]  # repr spells these with an exponent, orjson would not
    values[2] = [1e16, 2.5e20, 5e-324]
    values[3, 1] = np.nan
    values[4] = np.inf
    return coords, rng.integers(0, 3, n), values


def _per_feature(coords: np.ndarray, index: np.ndarray, values: np.ndarray, classes: tuple[str, ...],
                 colours: dict[str, tuple[int, int, int]], names: list[str], path: Path) -> None:
    from histobridge.qupath.geojson import tile_feature

    write_features(path, (
        tile_feature(*map(float, coords[i]), classes[index[i]] or None, colours.get(classes[index[i]]),
                     dict(zip(names, values[i].tolist(), strict=True)), name="m \u00fc")
        for i in range(len(coords))
    ))


@pytest.mark.parametrize("chunk", [7, geojson_tiles.CHUNK_ROWS])
def test_block_is_the_per_feature_text_in_every_chunking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          chunk: int) -> None:
    """Byte for byte (ids aside): exponents, non-ASCII names, non-finite values, chunk seams."""
    monkeypatch.setattr(geojson_tiles, "CHUNK_ROWS", chunk)
    coords, index, values = _tiles(40, np.random.default_rng(2))
    classes, colours = ("Tumor", "Stroma: Ünïcode", ""), {"Tumor": (200, 0, 0)}
    names = ["m: Tumor probability", "m: \u00dc \"q\" probability", "m: tiny"]
    block = tile_feature_texts(coords, index, classes, colours, names, values, name="m \u00fc")
    assert len(block) == 40 and len(block.chunks) == -(-40 // chunk)
    new, old = tmp_path / "new.geojson", tmp_path / "old.geojson"
    assert write_feature_texts(new, block) == 40
    _per_feature(coords, index, values, classes, colours, names, old)
    assert UUID_RE.sub('"id":""', new.read_text()) == UUID_RE.sub('"id":""', old.read_text())
    assert block.texts() == list(block) == [json.dumps(f, separators=(",", ":")) for f in block.features()]
    doc = json.loads(new.read_text())
    assert doc["features"] == block.features()
    assert doc["features"][1]["properties"]["measurements"]["m: tiny"] == 7e-7
    assert "m: \u00dc \"q\" probability" not in doc["features"][3]["properties"]["measurements"]
    assert "measurements" not in doc["features"][4]["properties"]


def test_one_block_written_twice_shares_ids_and_gzip_holds_the_same_bytes(tmp_path: Path) -> None:
    coords, index, values = _tiles(300, np.random.default_rng(4))
    block = tile_feature_texts(coords, index, ("A", "B", "C"), {}, ["a", "b", "c"], values)
    plain, gz = tmp_path / "t.geojson", tmp_path / "t.geojson.gz"
    write_feature_texts(plain, block)
    write_feature_texts(gz, block)
    assert gzip.decompress(gz.read_bytes()) == plain.read_bytes()
    ids = [f["id"] for f in json.loads(plain.read_bytes())["features"]]
    assert len(set(ids)) == 300


def test_bad_rectangles_are_named() -> None:
    def block(coords: list[list[float]]) -> object:
        return tile_feature_texts(np.array(coords), np.zeros(len(coords), int), ("A",), {}, ["p"],
                                  np.zeros((len(coords), 1)))

    with pytest.raises(AnnotationError, match=r"tile \(3.0, 4.0, -1.0, 5.0\) needs finite"):
        block([[0, 0, 5, 5], [3, 4, -1, 5]])
    with pytest.raises(AnnotationError, match=r"tile \(inf, 0.0, 5.0, 5.0\)"):
        block([[np.inf, 0, 5, 5]])


# --- reading -------------------------------------------------------------------------------------


def _ring(x: float, y: float, w: float, h: float, *, turn: bool = False) -> list[list[float]]:
    if turn:  # the same rectangle, traced the other way
        return [[x, y], [x, y + h], [x + w, y + h], [x + w, y], [x, y]]
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]


def _variety() -> list[dict[str, Any]]:
    """Plain features of every allowed form, and near-plain ones the per-feature path must read."""
    plain_props: list[dict[str, Any]] = [
        {"objectType": "tile", "name": "m", "classification": {"name": "A", "color": [1, 2, 300]},
         "isLocked": True, "measurements": {"p": 0.25, "q": 1e-7}},
        {"objectType": "annotation"},
        {"objectType": "PathDetectionObject", "name": None, "classification": None, "measurements": None},
        {"objectType": "cell", "classification": {"names": ["A", "B"], "color": [0, 0, 0]}, "isLocked": 0,
         "measurements": {}},
        {"objectType": "tma_core", "name": "", "isLocked": False},
    ]
    odd_props: list[dict[str, Any]] = [
        {"objectType": "tile", "measurements": {"p": 1}},  # an integer value
        {"objectType": "tile", "measurements": {"p": "NaN"}},
        {"objectType": "tile", "measurements": [{"name": "p", "value": 0.5}]},
        {"objectType": "tile", "classification": {"name": "A", "color": None}},
        {"objectType": "tile", "classification": {"name": "A"}},
        {"objectType": "tile", "classification": {"name": "", "color": [1, 2, 3]}},
        {"objectType": "tile", "classification": {"names": [], "color": [1, 2, 3]}},
        {"objectType": "tile", "classification": {"name": "A", "color": -16776961}},
        {"objectType": "tile", "classification": "A"},
        {"objectType": "strange"},
        {"objectType": "root"},
        {},
        {"objectType": 5},
        {"objectType": "tile", "name": 7},
        {"objectType": "tile", "color": [1, 2, 3]},
        {"objectType": "tile", "metadata": {"k": "v"}},
        {"objectType": "tile", "label": "dsa"},
        {"objectType": "annotation", "childObjects": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring(0, 0, 2, 2)]},
             "properties": {"objectType": "detection"}}]},
    ]
    feats: list[dict[str, Any]] = []
    for i, props in enumerate(itertools.islice(itertools.cycle(plain_props), 80)):
        ring = _ring(i * 10.0, 0.5, 10, 7.25, turn=i % 3 == 0)
        feats.append({"type": "Feature", "id": UUID if i % 2 else f"x{i}",
                      "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": dict(props)})
    odd_geometry: list[dict[str, Any]] = [
        {"type": "Polygon", "coordinates": [_ring(0, 0, 5, 5)], "plane": {"c": -1, "z": 1, "t": 0}},
        {"type": "Polygon", "coordinates": [_ring(0, 0, 5, 5)], "isEllipse": True},
        {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [5, 5], [0, 4], [0, 0]]]},  # valid, not a box
        {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]},  # bow tie
        {"type": "Polygon", "coordinates": [_ring(0, 0, 0, 5)]},  # no width
        {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5], [0, 5], [0, 1]]]},  # not closed
        {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5], [5, 0], [0, 0]]]},  # box-like, no area
        {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5], [0, 5], [0, 0], [0, 0]]]},  # end twice
    ]
    for j, props in enumerate(odd_props):
        feats.insert(3 * j + 1, {"type": "Feature", "id": UUID, "properties": dict(props),
                                 "geometry": {"type": "Polygon", "coordinates": [_ring(j, 1.5, 3, 4)]}})
    for j, geometry in enumerate(odd_geometry):
        feats.insert(5 * j + 2, {"type": "Feature", "geometry": geometry,
                                 "properties": {"objectType": "tile", "name": f"g{j}"}})
    feats.insert(4, {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring(0, 0, 1, 1)]},
                     "properties": {"objectType": "tile"}, "nucleusGeometry": {
                         "type": "Polygon", "coordinates": [_ring(0, 0, 0.5, 0.5)]}})
    feats.insert(6, "not an object")
    return feats


def _read_both(doc: Any, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> tuple[Any, Any, int]:
    plain = 0
    real = geojson_read.plain_object

    def counting(feature: Any, polygons: Any) -> PathObject | None:
        nonlocal plain
        obj = real(feature, polygons)
        plain += obj is not None
        return obj

    with monkeypatch.context() as m:
        m.setattr(geojson_read, "plain_object", counting)
        fast = read_features(doc, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(geojson_read, "BULK_MIN", 10**9)
        slow = read_features(doc, **kwargs)
    return fast, slow, plain


@pytest.mark.parametrize("object_types", [None, ("tile", "cell")])
def test_plain_features_read_in_bulk_as_one_by_one(monkeypatch: pytest.MonkeyPatch,
                                                  object_types: tuple[str, ...] | None) -> None:
    for form in ("collection", "list"):
        feats = _variety()
        doc: Any = {"type": "FeatureCollection", "features": feats} if form == "collection" else feats
        fast, slow, plain = _read_both(doc, monkeypatch, object_types=object_types)
        assert plain == 80 + 2  # every plain feature (and the valid quadrilateral and repeated-end ring)
        assert fast.notes == slow.notes and len(fast.notes) > 5
        assert len(fast.annotations) == len(slow.annotations) > 0
        for a, b in zip(fast.annotations, slow.annotations, strict=True):
            assert type(a.measurements) is type(b.measurements)
            assert repr(dict(a.measurements)) == repr(dict(b.measurements))  # NaN ≠ NaN
            a, b = dataclasses.replace(a, measurements={}), dataclasses.replace(b, measurements={})
            assert a == b and a.geometry.wkb == b.geometry.wkb and type(a.geometry) is type(b.geometry)
            assert type(a.metadata) is type(b.metadata)
        if object_types:  # a plain annotation left out is named as the per-feature path names it
            label = "(feature 3, " if form == "collection" else "([3], "
            left_out = [n for n in fast.notes if n.startswith("20 × annotation object(s) not requested")]
            assert len(left_out) == 1 and label in left_out[0]


def test_bulk_record_is_the_constructors_record() -> None:
    fields = {"geometry": box(0, 0, 1, 1), "path_class": "A", "class_color": (1, 2, 3), "name": "n",
              "object_id": UUID, "object_type": "tile", "measurements": {"p": 0.5}, "locked": True}
    made, set_ = PathObject(**fields), bulk_record(**fields)
    assert made == set_ and vars(made).keys() == vars(set_).keys()
    assert all(getattr(made, f.name) == getattr(set_, f.name) for f in dataclasses.fields(PathObject))
    with pytest.raises(dataclasses.FrozenInstanceError):
        set_.name = "other"  # type: ignore[misc]


def test_rectangles_skip_only_rings_geos_finds_valid() -> None:
    """Rings of five points from a small grid: every one called a rectangle is valid with an area."""
    grid = list(itertools.product([0.0, 1.0, 2.5], repeat=2))
    rings = [[list(q) for q in (*p, p[0])] for p in itertools.product(grid, repeat=4)]
    points = np.array([pt for ring in rings for pt in ring], dtype=np.float64)
    lengths = np.full(len(rings), 5)
    starts = np.arange(len(rings)) * 5
    rect = _rectangles(points, starts, lengths)
    polys = shapely.polygons(points.reshape(-1, 5, 2))
    geos = shapely.is_valid(polys) & (shapely.area(polys) > 0)
    assert not (rect & ~geos).any()
    assert rect.sum() == 9 * 8  # 3 × 3 rectangles on the grid, each from any corner, either way round
    feats = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [r]}} for r in rings]
    built = simple_polygons(feats)
    assert len(built) == int(geos.sum())


# --- parsing -------------------------------------------------------------------------------------


def test_documents_orjson_refuses_are_parsed_as_before(tmp_path: Path) -> None:
    """NaN literals (Python's json writes them), a BOM, integers beyond 64 bits, gzip."""
    feat = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring(0, 0, 2, 2)]},
            "properties": {"objectType": "tile", "measurements": {"nan": float("nan"), "big": 2**70}}}
    text = json.dumps({"type": "FeatureCollection", "features": [feat] * 100})
    assert "NaN" in text
    for name, data in (("nan.geojson", text.encode()), ("bom.geojson", b"\xef\xbb\xbf" + text.encode()),
                       ("nan.geojson.gz", gzip.compress(text.encode()))):
        path = tmp_path / name
        path.write_bytes(data)
        got = read_features(path).annotations
        assert len(got) == 100 and np.isnan(got[0].measurements["nan"])
        assert got[0].measurements["big"] == 2.0**70
    (tmp_path / "broken.geojson").write_bytes(text.encode()[:-5])
    with pytest.raises(AnnotationError, match=r"broken\.geojson: not readable as GeoJSON"):
        load_document(tmp_path / "broken.geojson")
    (tmp_path / "spaces.geojson").write_bytes(b" \n\t ")
    with pytest.raises(AnnotationError, match="empty file"):
        load_document(tmp_path / "spaces.geojson")


def test_parsed_numbers_are_the_standard_librarys(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    values = (10 ** rng.uniform(-30, 30, 5000)).tolist()
    text = json.dumps(values)
    path = tmp_path / "n.json"
    path.write_text(text)
    assert load_document(path) == json.loads(text)


def test_compact_json_is_the_standard_librarys_text() -> None:
    """orjson's text is used only where it is json.dumps's, byte for byte; NaN stays an error."""
    from histobridge.qupath.geojson import compact_json

    rng = np.random.default_rng(8)
    texts = ["".join(map(chr, rng.integers(0, 128, 40))) for _ in range(200)] + ["Ünïcode", "e-mail", "\x7f"]
    numbers = (10 ** rng.uniform(-320, 308, 2000) * rng.choice([-1, 1], 2000)).tolist()
    values: list[Any] = [
        {"type": "Feature", "properties": {"name": t, "measurements": {t: v}}}
        for t, v in zip(texts, itertools.cycle(numbers), strict=False)
    ]
    values += [numbers, {1: "int key"}, {"big": 2**70}, [None, True, False, -0.0, 0.0001, 1e16], (1, 2),
               {"np": np.float64(0.5)}, {"nested": [[[1.5, 2.25]]]}]
    for value in values:
        assert compact_json(value) == json.dumps(value, allow_nan=False, separators=(",", ":"))
    for bad in (float("nan"), {"m": float("inf")}):
        with pytest.raises(ValueError, match="not JSON compliant"):
            compact_json(bad)
