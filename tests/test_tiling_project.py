"""tile_project on small stand-in projects: pixels, labels, resumability, failures, parallelism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _tiling_helpers import FakeClass, FakeEntry, FakeProject, pattern_image, write_pyramid
from shapely.geometry import box

from histobridge.errors import CalibrationError, InputError, StoreError
from histobridge.qupath.annotations import Annotation
from histobridge.runs import ProgressEvent
from histobridge.slides import open_slide
from histobridge.tiling import TileSpec, TilingOptions, open_store, tile_project
from histobridge.tiling import store as store_mod

W, H = 2048, 1536


@pytest.fixture(scope="module")
def pattern_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiler")
    return write_pyramid(folder / "pattern.tif", pattern_image(W, H), levels=3, mpp=0.5)


@pytest.fixture(scope="module")
def no_mpp_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiler-nompp")
    return write_pyramid(folder / "nompp.tif", pattern_image(512, 512), levels=1, mpp=None)


def two_class_project(slide: Path) -> FakeProject:
    tumour = Annotation(box(100, 100, 900, 700).difference(box(400, 300, 600, 500)), "Tumor", object_id="t1")
    stroma = Annotation(box(1200, 800, 2300, 1300), "Stroma", name="edge")  # runs off the right edge
    return FakeProject(
        [FakeEntry(7, "pattern", slide)],
        {7: [tumour, stroma]},
        [FakeClass("Stroma"), FakeClass("Tumor")],
    )


def test_tiles_labels_regions_and_attrs(pattern_slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles.zarr"
    report = tile_project(two_class_project(pattern_slide), out, TileSpec(128, 64))
    (img,) = report.images
    assert img.status == "done" and img.count > 0 and report.tiles == img.count
    (group,) = open_store(out).groups()
    assert group.entry_id == "7" and group.classes == ["Stroma", "Tumor"]
    attrs = group.attrs
    assert (
        attrs["complete"] is True
        and attrs["mpp"] == 0.5
        and attrs["tile_px"] == 128
        and attrs["tile_um"] == 64
    )
    assert attrs["slide_path"] == str(pattern_slide) and attrs["entry_name"] == "pattern"
    assert attrs["backend"] in ("tiffslide", "openslide") and attrs["params"]["min_coverage"] == 0.5
    assert [r["class"] for r in attrs["regions"]] == ["Tumor", "Stroma"]
    assert attrs["regions"][0]["id"] == "t1" and attrs["regions"][1]["name"] == "edge"
    coords, labels, regions = group.coords[:], group.labels[:], group.regions[:]
    tiles = group.tiles[:]
    assert tiles.shape == (img.count, 128, 128, 3) and tiles.dtype == np.uint8
    assert (
        group.coords.dtype == np.float64
        and group.labels.dtype == np.int16
        and group.regions.dtype == np.int32
    )
    # labels index attrs["classes"]; regions index attrs["regions"]
    assert set(labels[regions == 0]) == {1} and set(labels[regions == 1]) == {0}
    # every tumour tile is at least half inside the annotation with its hole; none beyond the slide
    geom = box(100, 100, 900, 700).difference(box(400, 300, 600, 500))
    for x, y, w, h in coords[regions == 0]:
        assert geom.intersection(box(x, y, x + w, y + h)).area / (w * h) >= 0.5
    assert len(coords[regions == 0]) == 6 * 4 - 3  # 6 x 4 grid cells inside the box, 3 mostly hole
    assert (coords[:, 0] + coords[:, 2] <= W).all() and (coords[:, 1] + coords[:, 3] <= H).all()
    # each tile is exactly the pattern at its coordinates (64 µm at 0.5 µm/px = 128 level-0 px)
    full = pattern_image(W, H)
    for i in range(0, len(tiles), 5):
        x, y = int(coords[i, 0]), int(coords[i, 1])
        np.testing.assert_array_equal(tiles[i], full[y : y + 128, x : x + 128])


def test_resampled_tiles_match_the_reader(pattern_slide: Path, tmp_path: Path) -> None:
    """At 1.37 µm/px the tiles come from level 1, resampled once, as read_scaled says."""
    spec = TileSpec(100, 137.0, stride_px=70, min_coverage=0.9)
    report = tile_project(two_class_project(pattern_slide), tmp_path / "s.zarr", spec)
    group = open_store(tmp_path / "s.zarr").group(7)
    assert group.attrs["level"] == 1 and len(group) == report.images[0].count
    coords, tiles = group.coords[:], group.tiles[:]
    np.testing.assert_allclose(coords[:, 2], 137.0 / 0.5)
    with open_slide(pattern_slide) as s:
        for i in range(0, len(coords), 3):
            ref = s.read_scaled(*coords[i], 100)
            assert np.abs(tiles[i].astype(int) - ref).max() <= 1


def test_rerun_skips_complete_groups_and_redoes_changed_ones(pattern_slide: Path, tmp_path: Path) -> None:
    project = two_class_project(pattern_slide)
    out = tmp_path / "r.zarr"
    first = tile_project(project, out, TileSpec(128, 64))
    again = tile_project(project, out, TileSpec(128, 64))
    assert again.details[0].up_to_date and again.images[0].count == first.images[0].count
    changed = tile_project(project, out, TileSpec(128, 64, min_coverage=1.0))
    assert changed.images[0].status == "done" and changed.images[0].count < first.images[0].count
    project.by_entry[7] = project.by_entry[7][:1]  # an annotation was deleted in QuPath
    fewer = tile_project(project, out, TileSpec(128, 64, min_coverage=1.0))
    assert fewer.images[0].status == "done"
    assert len(open_store(out).group(7).attrs["regions"]) == 1


def test_interrupted_image_is_not_complete_and_a_rerun_finishes_it(
    pattern_slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = two_class_project(pattern_slide)
    out = tmp_path / "k.zarr"
    expected = tile_project(project, tmp_path / "ref.zarr", TileSpec(64, 32)).images[0].count
    assert expected > store_mod.SHARD_TILES  # several batches, so the failure is mid-image
    original = store_mod.GroupWriter.write_tiles
    calls = {"n": 0}

    def dying(self: store_mod.GroupWriter, start: int, tiles: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        original(self, start, tiles)

    monkeypatch.setattr(store_mod.GroupWriter, "write_tiles", dying)
    with pytest.raises(RuntimeError, match="killed"):
        tile_project(project, out, TileSpec(64, 32), TilingOptions(workers=1))
    store = open_store(out)
    assert "7" not in store and store.names(include_incomplete=True) == []
    assert (out / "7.partial").is_dir()  # the half-written group exists only under its temporary name
    monkeypatch.setattr(store_mod.GroupWriter, "write_tiles", original)
    report = tile_project(project, out, TileSpec(64, 32), TilingOptions(workers=2))
    assert report.images[0].status == "done" and report.images[0].count == expected
    group = open_store(out).group(7)
    assert group.complete and len(group) == expected and not (out / "7.partial").exists()
    np.testing.assert_array_equal(group.tiles[:], open_store(tmp_path / "ref.zarr").group(7).tiles[:])


def test_one_and_two_workers_write_the_same_store(pattern_slide: Path, tmp_path: Path) -> None:
    spec = TileSpec(96, 60, stride_px=64)
    project = two_class_project(pattern_slide)
    events: list[ProgressEvent] = []
    tile_project(project, tmp_path / "w1.zarr", spec, TilingOptions(workers=1))
    report = tile_project(
        project, tmp_path / "w2.zarr", spec, TilingOptions(workers=2), progress=events.append
    )
    tiles = [e for e in events if e.task == "tiles"]
    assert tiles[0].done == 0 and tiles[-1].done == tiles[-1].total == report.tiles
    assert [e.done for e in tiles] == sorted(e.done for e in tiles) and {e.item for e in tiles} == {"pattern"}
    images = [(e.done, e.total, e.message) for e in events if e.task == "images"]
    assert images == [(0, 1, None), (1, 1, "done")]
    a, b = open_store(tmp_path / "w1.zarr").group(7), open_store(tmp_path / "w2.zarr").group(7)
    np.testing.assert_array_equal(a.coords[:], b.coords[:])
    np.testing.assert_array_equal(a.tiles[:], b.tiles[:])


def test_skips_and_failures_are_reported_per_image(
    pattern_slide: Path, no_mpp_slide: Path, tmp_path: Path
) -> None:
    entries = [
        FakeEntry(1, "gone", None, found=False, problem="image file not found: /old/place/a.svs"),
        FakeEntry(2, "empty", pattern_slide),
        FakeEntry(3, "uncalibrated", no_mpp_slide),
        FakeEntry(4, "good", pattern_slide),
    ]
    ann = [Annotation(box(0, 0, 400, 400), "Tumor")]
    project = FakeProject(entries, {2: [], 3: ann, 4: ann})
    report = tile_project(project, tmp_path / "f.zarr", TileSpec(128, 64))
    status = {i.name: (i.status, i.reason) for i in report.images}
    assert status["gone"] == ("skipped", "image file not found: /old/place/a.svs")
    assert status["empty"][0] == "skipped" and "no annotations" in status["empty"][1]
    assert status["uncalibrated"][0] == "failed" and "--mpp" in status["uncalibrated"][1]
    assert status["good"][0] == "done" and report.images[3].count == 9
    assert [i.name for i in report.failed] == ["uncalibrated"]
    assert open_store(tmp_path / "f.zarr").names() == ["4"]
    # an explicit pixel size rescues the uncalibrated image
    fixed = tile_project(project, tmp_path / "f.zarr", TileSpec(128, 64), TilingOptions(mpp=0.5),
                         images=["uncalibrated"])  # fmt: skip
    assert fixed.images[0].status == "done" and open_store(tmp_path / "f.zarr").group(3).attrs["mpp"] == 0.5


def test_image_and_class_selection(pattern_slide: Path, tmp_path: Path) -> None:
    project = two_class_project(pattern_slide)
    only_stroma = TilingOptions(classes=("Stroma",))
    report = tile_project(project, tmp_path / "c.zarr", TileSpec(128, 64), only_stroma, images=[7])
    group = open_store(tmp_path / "c.zarr").group(7)
    assert (
        group.classes == ["Stroma"] and set(group.labels[:]) == {0} and report.images[0].count == len(group)
    )
    with pytest.raises(InputError, match="nonexistent"):
        tile_project(project, tmp_path / "c.zarr", TileSpec(128, 64), images=["nonexistent"])


def test_whole_tissue_mode_on_the_real_slide(cmu_slide: Path, tmp_path: Path) -> None:
    project = FakeProject([FakeEntry(1, "cmu", cmu_slide)], {})
    no_ann = tile_project(project, tmp_path / "t.zarr", TileSpec(128, 128))
    assert no_ann.images[0].status == "skipped"
    report = tile_project(project, tmp_path / "t.zarr", TileSpec(128, 128), TilingOptions(whole_tissue=True))
    group = open_store(tmp_path / "t.zarr").group(1)
    n = report.images[0].count
    # 256.5-px tiles over ~30 % of a 2220 x 2967 slide: about 30 tiles of ~100
    assert 15 <= n <= 60 and len(group) == n
    assert set(group.labels[:]) == {-1} and group.attrs["regions"][0]["id"] == "tissue"
    tiles = group.tiles[:]
    assert (tiles.reshape(n, -1, 3).std(axis=1).mean(axis=1) > 5).mean() > 0.9  # tissue, not glass


def test_tissue_filter_drops_glass_inside_annotations(cmu_slide: Path, tmp_path: Path) -> None:
    whole = Annotation(box(0, 0, 2220, 2967), "Skin")
    project = FakeProject([FakeEntry(1, "cmu", cmu_slide)], {1: [whole]})
    plain = tile_project(project, tmp_path / "p.zarr", TileSpec(128, 128)).images[0].count
    kept = (
        tile_project(project, tmp_path / "q.zarr", TileSpec(128, 128), TilingOptions(tissue=True))
        .images[0]
        .count
    )
    assert plain == 8 * 11 and 15 <= kept < plain


def test_unreadable_tiles_fail_the_image_cleanly(pattern_slide: Path, tmp_path: Path) -> None:
    """Damaged tile data: that image is reported failed (file and region named), nothing half-written."""
    import tifffile

    data = bytearray(pattern_slide.read_bytes())
    with tifffile.TiffFile(pattern_slide) as tf:
        page = tf.pages[0]
        off, count = page.dataoffsets[5], page.databytecounts[5]  # level-0 tile at x=1280, y=0
    data[off : off + count] = b"\xff" * count
    bad = tmp_path / "damaged.tif"
    bad.write_bytes(bytes(data))
    ann = [Annotation(box(0, 0, 2048, 1536), "Tumor")]
    project = FakeProject(
        [FakeEntry(1, "damaged", bad), FakeEntry(2, "fine", pattern_slide)], {1: ann, 2: ann}
    )
    report = tile_project(project, tmp_path / "d.zarr", TileSpec(128, 64))
    damaged, fine = report.images
    assert damaged.status == "failed" and "damaged.tif" in damaged.reason and "level 0" in damaged.reason
    assert fine.status == "done" and fine.count == 16 * 12
    assert open_store(tmp_path / "d.zarr").names() == ["2"]
    assert not (tmp_path / "d.zarr" / "1.partial").exists()


def test_bounds_offset_keeps_tiles_in_qupath_space(pattern_slide: Path, tmp_path: Path) -> None:
    """A cropped image (OpenSlide bounds, as for MRXS): coords are QuPath px, pixels come from x+dx, y+dy."""
    dx, dy = 192, 64
    entry = FakeEntry(1, "cropped", pattern_slide, crop_region=(dx, dy, 1600, 1200))
    project = FakeProject([entry], {1: [Annotation(box(0, 0, 5000, 5000), "Tumor")]})
    report = tile_project(project, tmp_path / "o.zarr", TileSpec(128, 64))
    group = open_store(tmp_path / "o.zarr").group(1)
    assert report.images[0].count == (1600 // 128) * (1200 // 128) == len(group)
    assert group.attrs["params"]["offset"] == [dx, dy] and group.attrs["params"]["dimensions"] == [1600, 1200]
    full = pattern_image(W, H)
    coords, tiles = group.coords[:], group.tiles[:]
    assert coords[:, 0].max() + 128 <= 1600 and coords[:, 1].max() + 128 <= 1200
    for i in range(0, len(tiles), 7):
        x, y = int(coords[i, 0]) + dx, int(coords[i, 1]) + dy
        np.testing.assert_array_equal(tiles[i], full[y : y + 128, x : x + 128])


def test_annotation_smaller_than_a_tile_is_skipped_and_keeps_earlier_results(
    pattern_slide: Path, tmp_path: Path
) -> None:
    """Policy: an image that yields no tile is ``skipped`` (with the sizes), and its earlier group stays."""
    project = FakeProject([FakeEntry(1, "tiny", pattern_slide)], {1: [Annotation(box(10, 10, 90, 90), "T")]})
    earlier = tile_project(project, tmp_path / "e.zarr", TileSpec(16, 4))  # 8-px tiles fit
    assert earlier.ok and earlier.images[0].count == 100
    report = tile_project(project, tmp_path / "e.zarr", TileSpec(128, 64))
    (outcome,) = report.images
    assert outcome.status == "skipped" and not report.ok
    assert "no 128-px tile" in (outcome.reason or "") and "spans 80 x 80 px" in (outcome.reason or "")
    group = open_store(tmp_path / "e.zarr").group(1)
    assert group.complete and len(group) == 100 and group.attrs["tile_px"] == 16


def test_class_typo_lists_the_classes_that_exist(pattern_slide: Path, tmp_path: Path) -> None:
    project = two_class_project(pattern_slide)
    project.by_entry[7].append(Annotation(box(0, 0, 300, 300), "Necrosis"))  # used, not in classes.json
    with pytest.raises(
        InputError, match=r"no class 'Tumour' in the project; classes that exist: Stroma, Tumor, Necrosis"
    ):
        tile_project(
            project, tmp_path / "c.zarr", TileSpec(128, 64), TilingOptions(classes=("Tumour", "Stroma"))
        )
    assert not (tmp_path / "c.zarr").exists()
    ok = tile_project(project, tmp_path / "c.zarr", TileSpec(128, 64), TilingOptions(classes=("Necrosis",)))
    assert ok.ok and open_store(tmp_path / "c.zarr").group(7).classes == ["Necrosis"]


def test_multichannel_16bit_image_fails_instead_of_being_squashed(
    pattern_slide: Path, tmp_path: Path
) -> None:
    """Before: a 5-channel uint16 OME-TIFF was tiled as 'written' (values clipped, channels dropped)."""
    import tifffile

    mif = tmp_path / "mif.ome.tif"
    data = np.random.default_rng(0).integers(0, 4000, (5, 512, 512), dtype=np.uint16)
    tifffile.imwrite(mif, data, ome=True, tile=(256, 256), metadata={"axes": "CYX", "PhysicalSizeX": 0.5})
    ann = [Annotation(box(0, 0, 512, 512), "Tumor")]
    project = FakeProject([FakeEntry(1, "mif", mif), FakeEntry(2, "he", pattern_slide)], {1: ann, 2: ann})
    report = tile_project(project, tmp_path / "m.zarr", TileSpec(64, 32))
    mif_out, he_out = report.images
    assert mif_out.status == "failed" and "5 channels of 16-bit (uint16)" in (mif_out.reason or "")
    assert he_out.status == "done" and open_store(tmp_path / "m.zarr").names() == ["2"]


def test_pixel_size_rules(pattern_slide: Path, no_mpp_slide: Path, tmp_path: Path) -> None:
    ann = [Annotation(box(0, 0, 512, 512), "Tumor")]
    entries = [FakeEntry(1, "file", pattern_slide), FakeEntry(2, "project", pattern_slide, mpp_override=0.25),
               FakeEntry(3, "none", no_mpp_slide)]  # fmt: skip
    project = FakeProject(entries, {1: ann, 2: ann, 3: ann})
    fill = tile_project(project, tmp_path / "a.zarr", TileSpec(64, 32), TilingOptions(mpp=0.4))
    assert [(d.mpp, d.mpp_source) for d in fill.details] == [
        (0.5, "slide"),
        (0.25, "project"),
        (0.4, "fill-in"),
    ]
    assert fill.warnings == ()
    forced = tile_project(project, tmp_path / "b.zarr", TileSpec(64, 32), TilingOptions(mpp_override=0.4))
    assert [(d.mpp, d.mpp_source) for d in forced.details] == [(0.4, "argument")] * 3
    assert forced.warnings == (
        "image 1 ('file'): pixel size 0.5 µm/px (slide) overridden with 0.4",
        "image 2 ('project'): pixel size 0.25 µm/px (project) overridden with 0.4",
    )
    assert open_store(tmp_path / "b.zarr").group(2).attrs["mpp_source"] == "argument"
    with pytest.raises(CalibrationError, match=r"--mpp 50 µm/px lies outside"):
        TilingOptions(mpp=50)
    assert TilingOptions(mpp=50, mpp_range=(0.05, 100)).mpp == 50


def test_tile_limit_is_per_image_and_checked_before_planning(pattern_slide: Path, tmp_path: Path) -> None:
    project = two_class_project(pattern_slide)
    spec = TileSpec(16, 0.1)  # 0.2 level-0 px per tile: ~20 million positions
    report = tile_project(project, tmp_path / "l.zarr", spec)
    assert report.images[0].status == "failed" and "over the limit of 2,000,000" in (
        report.images[0].reason or ""
    )
    small = tile_project(project, tmp_path / "l.zarr", TileSpec(64, 32), TilingOptions(max_tiles=10))
    assert small.images[0].status == "failed" and "--max-tiles" in (small.images[0].reason or "")


def test_store_write_errors_stop_the_run_as_one_store_error(
    pattern_slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def read_only(self: store_mod.GroupWriter, start: int, tiles: np.ndarray) -> None:
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(store_mod.GroupWriter, "write_tiles", read_only)
    with pytest.raises(StoreError, match=r"cannot write the tile store: Read-only file system"):
        tile_project(two_class_project(pattern_slide), tmp_path / "r.zarr", TileSpec(64, 32))


def test_each_reason_for_nothing_to_tile_is_named(pattern_slide: Path, tmp_path: Path) -> None:
    glass = write_pyramid(tmp_path / "glass.tif", np.full((512, 512, 3), 244, np.uint8), levels=1, mpp=0.5)
    ann = [Annotation(box(0, 0, 400, 400), "Tumor")]
    project = FakeProject([FakeEntry(1, "glass", glass), FakeEntry(2, "he", pattern_slide)], {1: ann, 2: ann},
                          [FakeClass("Tumor"), FakeClass("Stroma")])  # fmt: skip
    spec = TileSpec(64, 32)
    reasons = {
        "tissue": tile_project(project, tmp_path / "a.zarr", spec, TilingOptions(tissue=True), images=[1]),
        "whole": tile_project(
            project, tmp_path / "b.zarr", spec, TilingOptions(whole_tissue=True), images=[1]
        ),
        "class": tile_project(
            project, tmp_path / "c.zarr", spec, TilingOptions(classes=("Stroma",)), images=[2]
        ),
    }
    assert {k: (r.images[0].status, r.images[0].reason) for k, r in reasons.items()} == {
        "tissue": ("skipped", "no tissue inside the annotations"),
        "whole": ("skipped", "no tissue detected"),
        "class": ("skipped", "no annotation of class Stroma on this image"),  # the heatmap words it alike
    }
    assert not any(r.ok for r in reasons.values())


def test_work_units_split_small_images_and_keep_shards_whole() -> None:
    from histobridge.tiling.tiler import work_units

    small = work_units(88, 64, 2)  # the sample slide: 88 tiles used to be 2 units of 64 + 24
    assert len(small) >= 4 and small[0][0] == 0 and small[-1][1] == 88
    assert all(b > a for a, b in small) and all(a // 64 == (b - 1) // 64 for a, b in small)
    assert all(small[i][1] == small[i + 1][0] for i in range(len(small) - 1))  # contiguous, no gaps
    big = work_units(10_000, 64, 2)  # large images keep one unit per shard
    assert len(big) == -(-10_000 // 64) and all(b - a == 64 for a, b in big[:-1])
    assert work_units(0, 64, 2) == [] and work_units(3, 64, 2) == [(0, 3)]


def test_small_image_is_read_in_parallel_units(
    pattern_slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~50 tiles with 2 workers go out as several units (not one shard), pixels unchanged."""
    from histobridge.tiling import tiler

    project = FakeProject([FakeEntry(1, "p", pattern_slide)], {1: [Annotation(box(0, 0, 1400, 1000), "T")]})
    spec = TileSpec(128, 96)  # 192 level-0 px: 7 x 5 tiles
    tile_project(project, tmp_path / "w1.zarr", spec, TilingOptions(workers=1))
    sizes: list[int] = []
    real = tiler.read_batch

    def counting(slide, coords, tile_px, stride, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(coords))
        return real(slide, coords, tile_px, stride, **kwargs)

    monkeypatch.setattr(tiler, "read_batch", counting)
    monkeypatch.setenv("HISTOBRIDGE_THREADS", "2")
    report = tile_project(project, tmp_path / "w2.zarr", spec, TilingOptions(workers=2))
    assert report.tiles == 35 and sum(sizes) == 35 and len(sizes) >= 3  # was one unit of 35
    a, b = open_store(tmp_path / "w1.zarr").group(1), open_store(tmp_path / "w2.zarr").group(1)
    np.testing.assert_array_equal(a.tiles[:], b.tiles[:])
    with open_slide(pattern_slide) as s:
        for i in (0, 17, 34):
            np.testing.assert_array_equal(b.tiles[i], s.read_scaled(*b.coords[i], 128))


def test_workers_are_capped_by_the_core_budget(
    pattern_slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--workers 8 on a 1-core budget starts one reader thread, and the store is the same."""
    import threading

    from histobridge.tiling import tiler

    names: set[str] = set()
    real = tiler.read_batch

    def recording(slide, coords, tile_px, stride, **kwargs):  # type: ignore[no-untyped-def]
        names.add(threading.current_thread().name)
        return real(slide, coords, tile_px, stride, **kwargs)

    monkeypatch.setattr(tiler, "read_batch", recording)
    monkeypatch.setenv("HISTOBRIDGE_THREADS", "1")
    project = FakeProject([FakeEntry(1, "p", pattern_slide)], {1: [Annotation(box(0, 0, 1400, 1000), "T")]})
    report = tile_project(project, tmp_path / "w.zarr", TileSpec(128, 96), TilingOptions(workers=8))
    assert report.ok and report.tiles == 35 and len(names) == 1


def test_uncompressed_tiles_hold_the_same_pixels_and_count_as_up_to_date(
    pattern_slide: Path, tmp_path: Path
) -> None:
    """``compression="none"`` skips Blosc: other bytes on disk, the same pixels; a rerun is up to date."""
    spec, project = TileSpec(128, 64), two_class_project(pattern_slide)
    tile_project(project, tmp_path / "z.zarr", spec)
    raw = tile_project(project, tmp_path / "n.zarr", spec, TilingOptions(compression="none"))
    a, b = open_store(tmp_path / "z.zarr").group(7), open_store(tmp_path / "n.zarr").group(7)
    np.testing.assert_array_equal(a.tiles[:], b.tiles[:])
    assert b.attrs["compression"] == "none" and a.attrs["compression"] == "lz4"
    inner = b.tiles.metadata.to_dict()["codecs"][0]["configuration"]["codecs"]
    assert [c["name"] for c in inner] == ["bytes"]
    shard = tmp_path / "n.zarr" / "7" / "tiles" / "c" / "0" / "0" / "0" / "0"
    per_shard = min(64, raw.tiles)
    assert shard.stat().st_size == per_shard * (128 * 128 * 3 + 16) + 4  # tiles, index, crc
    again = tile_project(project, tmp_path / "n.zarr", spec)
    assert again.details[0].up_to_date
    with pytest.raises(InputError, match="--compression must be one of lz4, none, got 'zip'"):
        TilingOptions(compression="zip")
