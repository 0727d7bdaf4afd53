"""The pure-Python .qpdata writer: byte-identical re-emission, tiles added and replaced, refusals.

QuPath itself reading what this writes is checked in test_qupath_tier_write.py.
"""

from __future__ import annotations

import json
import mmap
import shutil
from collections import Counter
from pathlib import Path

import _qpdata_writer as W
import numpy as np
import pytest
import shapely

from histobridge.errors import QPDataError
from histobridge.qupath import layout
from histobridge.qupath.qpdata import read_qpdata
from histobridge.qupath.qpdata.copier import StreamCopier
from histobridge.qupath.qpdata.jwriter import JavaWriter
from histobridge.qupath.qpdata.records import QPObject
from histobridge.qupath.qpdata.tiles import TileBatch, tiles_from_features
from histobridge.qupath.qpdata.writer import rewrite_qpdata, summary, write_tiles_qpdata

NAMES = ("model: Tumor probability", "model: Stroma probability")


def batch(
    n: int, *, name: str | None = "model", seed: int = 0, extent: float = 1900.0, size: float = 64.0
) -> TileBatch:
    rng = np.random.default_rng(seed)
    return TileBatch(
        boxes=np.c_[rng.uniform(0, extent, (n, 2)), np.full((n, 2), size)],
        class_index=rng.integers(-1, 3, n),
        classes=("Tumor", "Stroma", "Tumor: Positive"),
        colors=((200, 0, 0), (0, 200, 0), None),
        names=NAMES,
        values=rng.random((n, 2)).astype(np.float32),
        name=name,
    )


def _copy_unchanged(path: Path) -> bytes:
    buf = path.read_bytes()
    out = JavaWriter()
    StreamCopier(buf, str(path), out, lambda i: False, lambda i: 0, lambda i: None).top_level()
    return bytes(out.out)


def _key(o: QPObject, ids: dict[int, str | None]) -> tuple:
    return (
        o.object_type,
        o.path_class,
        o.class_color,
        o.name,
        o.color,
        o.locked,
        dict(o.measurements).__repr__(),
        None if o.geometry is None else o.geometry.wkb,
        o.plane,
        o.roi_type,
        ids.get(o.parent_index),
        None if o.nucleus is None else o.nucleus.wkb,
        repr(o.metadata),
    )


def _by_id(objects: list[QPObject]) -> dict[str | None, tuple]:
    ids = {o.index: o.object_id for o in objects}
    return {o.object_id: _key(o, ids) for o in objects}


@pytest.fixture
def foci(shared_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "foci"
    shutil.copytree(shared_dir / "fixtures" / "qupath" / "foci-0.4", dst)
    return dst


def test_every_real_file_is_re_emitted_byte_for_byte(shared_dir: Path) -> None:
    files = sorted((shared_dir / "fixtures" / "qupath").rglob("*.qpdata"))
    assert len(files) == 16
    for f in files:
        assert _copy_unchanged(f) == f.read_bytes(), f


def test_tiles_added_keep_every_object_and_nest_under_annotations(foci: Path) -> None:
    path = layout.qpdata_path(foci, 242)
    original = path.read_bytes()
    before = read_qpdata(path)
    b = batch(300)
    report = write_tiles_qpdata(foci, 242, b)
    assert report.added == 300 and report.removed == 0 and not report.created
    assert report.backup is not None and report.backup.read_bytes() == original
    after = read_qpdata(path)
    assert (
        after.notes == () and after.image_type == before.image_type and after.properties == before.properties
    )
    old, new = _by_id(before.objects), _by_id(after.objects)
    assert all(new[k] == v for k, v in old.items())  # every original object, field for field
    tiles = [o for o in after.objects if o.object_type == "tile"]
    assert len(tiles) == 300 and len({t.object_id for t in tiles}) == 300
    by_box = {tuple(np.round(t.geometry.bounds, 6)): t for t in tiles}
    anns = [o for o in after.objects if o.object_type == "annotation"]
    tree = shapely.STRtree([a.geometry for a in anns])
    for i, (x, y, w, h) in enumerate(b.boxes):
        t = by_box[tuple(np.round((x, y, x + w, y + h), 6))]
        k = int(b.class_index[i])
        assert t.path_class == (b.classes[k] if k >= 0 else None) and t.name == "model" and t.locked
        assert t.measurements == {n: float(v) for n, v in zip(NAMES, b.values[i], strict=True)}
        centre = shapely.Point(x + w / 2, y + h / 2)
        hits = [anns[j] for j in tree.query(centre, predicate="intersects")]
        parent = after.objects[t.parent_index]
        if hits:
            assert parent.object_id == min(hits, key=lambda a: (a.geometry.area, -a.depth)).object_id
        else:
            assert parent.object_type == "root"
    assert (
        sum(after.objects[t.parent_index].object_type == "annotation" for t in tiles)
        == report.in_annotations
        > 0
    )
    s = json.loads(layout.summary_path(foci, 242).read_text())
    assert s["hierarchy"]["nObjects"] == len(after.objects)
    assert s["hierarchy"]["objectTypeCounts"] == {"Root objects": 1, "Annotations": 1063, "Tiles": 300}
    det = Counter(t.path_class or "Unclassified" for t in tiles)
    assert s["hierarchy"]["detectionClassificationCounts"] == dict(det)
    assert s["server"] == {"width": 2048, "height": 2048, "sizeC": 1, "sizeZ": 1, "sizeT": 1}


def test_rerun_replaces_only_this_models_tiles(foci: Path) -> None:
    write_tiles_qpdata(foci, 10, batch(40, name="model"))
    write_tiles_qpdata(foci, 10, batch(7, name="other", seed=5))
    again = write_tiles_qpdata(foci, 10, batch(25, name="model", seed=9))
    assert again.removed == 40 and again.added == 25
    data = read_qpdata(layout.qpdata_path(foci, 10))
    assert Counter(o.name for o in data.objects if o.object_type == "tile") == {"model": 25, "other": 7}
    s = json.loads(layout.summary_path(foci, 10).read_text())
    assert s["hierarchy"]["objectTypeCounts"] == {"Root objects": 1, "Tiles": 32}


def test_removed_tile_that_first_wrote_shared_things(tmp_path: Path) -> None:
    """The dropped tile defines the class and the name list that a kept detection refers back to."""
    old, kept = W.tile_then_detection_sharing_refs()
    src = tmp_path / "d.qpdata"
    src.write_bytes(W.qpdata_bytes(W.PO("root", children=[old, kept]), "0.6.0"))
    data, _before, removed, _ = rewrite_qpdata(src, batch(3, name="model"))
    assert len(removed) == 1
    out = tmp_path / "out.qpdata"
    out.write_bytes(data)
    after = read_qpdata(out)
    det = next(o for o in after.objects if o.object_type == "detection")
    assert det.path_class == "Tumor" and det.class_color == (255, 0, 0)
    assert det.measurements == pytest.approx({"m1": 0.3, "m2": 0.4})
    assert Counter(o.object_type for o in after.objects) == {"root": 1, "detection": 1, "tile": 3}
    assert after.notes == ()


@pytest.mark.parametrize(
    ("version", "layout_name", "match"),
    [
        ("0.3.2", None, "only files of QuPath 0.4"),
        ("0.2.3", None, "data file version 2"),
        ("0.5.1", "v4", "v4"),
    ],
)
def test_refuses_layouts_it_cannot_reproduce(
    tmp_path: Path, version: str, layout_name: str | None, match: str
) -> None:
    root = W.PO("root", children=[W.PO("annotation", roi=W.roi("rectangle", x=0, y=0, x2=5, y2=5))])
    src = tmp_path / "old.qpdata"
    src.write_bytes(W.qpdata_bytes(root, version, layout=layout_name))
    with pytest.raises(QPDataError, match=match) as err:
        rewrite_qpdata(src, batch(2))
    assert str(src) in str(err.value)


def test_new_file_for_an_image_without_data(tmp_path: Path) -> None:
    proj = tmp_path / "skin"
    shutil.copytree(Path(__file__).parents[1] / "sample_projects" / "skin", proj)
    shutil.rmtree(proj / "data")  # the sample ships QuPath data: take it away
    assert not layout.qpdata_path(proj, 1).exists()
    assert write_tiles_qpdata(proj, 1, batch(0)).added == 0  # nothing to write: nothing written
    assert not layout.qpdata_path(proj, 1).exists()
    report = write_tiles_qpdata(proj, 1, batch(12))
    assert report.created and report.backup is None
    data = read_qpdata(report.path)
    assert data.notes == () and data.qupath_version == "0.5.1" and data.image_type == "UNSET"
    assert data.counts() == {"root": 1, "tile": 12}
    assert data.server is not None and data.server["uri"].endswith("CMU-1-Small-Region.svs")
    assert data.properties["PROJECT_ENTRY_ID"].endswith("project.qpproj::1")
    s = json.loads(layout.summary_path(proj, 1).read_text())
    assert s["hierarchy"]["nObjects"] == 13 and s["imageType"] == "UNSET"
    again = write_tiles_qpdata(proj, 1, batch(5, seed=3))  # now a rewrite of our own file
    assert again.removed == 12 and read_qpdata(report.path).counts() == {"root": 1, "tile": 5}


def test_summary_matches_quPaths_own(shared_dir: Path) -> None:
    for version in ("0.5.1", "0.6.0"):
        folder = shared_dir / "fixtures" / "qupath" / f"written-{version}"
        expected = json.loads((folder / "qupath-summary.json").read_text())
        for name, hier in expected.items():
            data = read_qpdata(folder / name)
            got = summary([(o.object_type, o.path_class) for o in data.objects], data.image_type, None, 0)
            assert got["hierarchy"] == hier, name


def test_tiles_from_features_round_trip(tmp_path: Path) -> None:
    from histobridge.qupath import geojson

    feats = [
        geojson.tile_feature(10.5, 20, 64, 64, "Tumor: Positive", (1, 2, 3), {"a": 0.5, "b": 1.0}, name="m"),
        geojson.tile_feature(80, 20, 64, 64, None, None, {"b": 2.0}, name="m"),
    ]
    b = tiles_from_features(feats)
    assert b.name == "m" and b.classes == ("Tumor: Positive",) and b.colors == ((1, 2, 3),)
    assert b.boxes.tolist() == [[10.5, 20, 64, 64], [80, 20, 64, 64]]
    assert b.names == ("a", "b") and np.isnan(b.values[1, 0]) and b.values[1, 1] == 2.0
    with pytest.raises(QPDataError, match="not after the model prefix"):
        write_tiles_qpdata(tmp_path, 1, feats, prefix="other")


def test_corrupt_source_is_reported_with_file_and_offset(foci: Path) -> None:
    path = layout.qpdata_path(foci, 242)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(QPDataError, match=r"data\.qpdata.*byte offset"):
        write_tiles_qpdata(foci, 242, batch(3))
    assert path.read_bytes() == data[: len(data) // 2]  # left as it was


def test_mmap_free_reader_agrees(foci: Path) -> None:
    """The copier walks an mmap or bytes alike (the writer uses an mmap)."""
    path = layout.qpdata_path(foci, 216)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        out = JavaWriter()
        StreamCopier(mm, str(path), out, lambda i: False, lambda i: 0, lambda i: None).top_level()
    assert bytes(out.out) == path.read_bytes()


def test_heatmap_write_back_qpdata(tmp_path: Path) -> None:
    """``--write-back qpdata``: the heatmap's tiles land in data.qpdata; a rerun replaces them."""
    from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap
    from tests._heatmap_helpers import tumour_project

    project, model = tumour_project(tmp_path)
    for _ in range(2):
        report = run_heatmap(
            project, model, tmp_path / "out", HeatmapOptions(write_back="qpdata", tissue=False)
        )
    n = report.outcomes[0].count
    data = read_qpdata(layout.qpdata_path(project, 1))
    tiles = [o for o in data.objects if o.object_type == "tile"]
    # The exported annotation came along into the new file, and the tiles sit under it.
    assert n > 0 and len(tiles) == n and data.counts() == {"root": 1, "annotation": 1, "tile": n}
    assert all(t.parent_index == 1 for t in tiles)
    prefix = tiles[0].name
    assert prefix and all(t.name == prefix and t.locked for t in tiles)
    assert all(k.startswith(prefix + ": ") for t in tiles for k in t.measurements)
    assert json.loads(layout.summary_path(project, 1).read_text())["hierarchy"]["nObjects"] == n + 2


def test_heatmap_default_write_back_uses_the_data_file_when_there_is_one(tmp_path: Path) -> None:
    """``auto``: the GeoJSON route for an image without data.qpdata, straight into it once it exists."""
    from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap
    from tests._heatmap_helpers import tumour_project

    project, model = tumour_project(tmp_path)
    first = run_heatmap(project, model, tmp_path / "o1", HeatmapOptions(tissue=False))
    geo = layout.predictions_path(project, 1)
    assert first.ok and geo.is_file() and not layout.qpdata_path(project, 1).exists()
    before = geo.read_bytes()
    run_heatmap(
        project, model, tmp_path / "o2", HeatmapOptions(tissue=False, write_back="qpdata", prefix="other")
    )
    second = run_heatmap(project, model, tmp_path / "o3", HeatmapOptions(tissue=False))  # auto again
    n = second.outcomes[0].count
    tiles = [o for o in read_qpdata(layout.qpdata_path(project, 1)).objects if o.object_type == "tile"]
    assert {t.name for t in tiles} == {"other", model.name} and sum(t.name == model.name for t in tiles) == n
    assert geo.read_bytes() == before  # the GeoJSON route was not taken this time
