"""``histobridge tile``: the bundled skin sample project, and small generated projects for the exit policy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _qupath_helpers import calibration, entry, feature, square, uri_builder, write_project
from _tiling_helpers import pattern_image, write_pyramid
from typer.testing import CliRunner

from histobridge.cli import app, main
from histobridge.qupath import layout
from histobridge.qupath.servers import path_to_uri
from histobridge.tiling import open_store

SMALL = ["--tile-px", "64", "--tile-um", "64", "--no-progress"]


def test_tile_command_writes_a_store_and_reruns_skip(cmu_slide: Path, tmp_path: Path) -> None:
    from histobridge.qupath.sample import init_sample_project

    qpproj = init_sample_project(tmp_path / "skin", offline=True)
    store = tmp_path / "tiles.zarr"
    runner = CliRunner()
    args = ["tile", str(qpproj), "--out", str(store), *SMALL]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "done" in result.output and "tiles written" in result.output
    groups = open_store(store).groups()
    assert len(groups) == 1 and len(groups[0]) > 0
    g = groups[0]
    assert g.attrs["tile_px"] == 64 and g.attrs["mpp"] == 0.499 and g.tiles.shape[1:] == (64, 64, 3)
    assert g.attrs["mpp_source"] == "slide"
    labels = np.asarray(g.labels[:])
    assert (labels >= -1).all() and labels.max() < len(g.classes) and (labels >= 0).sum() > 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "up to date" in again.output


def test_tile_command_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["tile", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--tile-px", "--tile-um", "--stride-px", "--min-coverage", "--whole-tissue", "--mpp",
                   "--mpp-override", "--mpp-range", "--max-tiles", "--compression", "--resample",
                   "--json"):  # fmt: skip
        assert option in result.output


# -- a generated project: 1024 x 768 pattern slides at 0.5 µm/px, GeoJSON annotations ------------


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli-slides")
    return {
        "cal": write_pyramid(folder / "cal.tif", pattern_image(1024, 768), levels=2, mpp=0.5),
        "bare": write_pyramid(folder / "bare.tif", pattern_image(1024, 768), levels=2, mpp=None),
    }


def make_project(folder: Path, images: list[dict[str, Any]]) -> Path:
    """``images``: dicts with id, name, slide (a path, or None for a moved file), boxes, mpp (project)."""
    entries = []
    for im in images:
        slide = im["slide"] if im["slide"] is not None else folder / "gone" / f"{im['name']}.tif"
        meta = calibration(im["mpp"]) if im.get("mpp") else None
        entries.append(entry(im["id"], uri_builder(path_to_uri(slide), metadata=meta), name=im["name"]))
        red = [255, 0, 0]
        feats = [feature(square(x, y, s), objectType="annotation", classification={"name": c, "color": red})
                 for x, y, s, c in im.get("boxes", [])]  # fmt: skip
        path = layout.annotation_path(folder, im["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    classes = [{"name": n, "color": -65536} for n in ("Tumor", "Stroma")]
    return write_project(folder, entries, classes=classes)


def run(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """Run the console entry point (errors become one ``error:`` line there) and capture its output."""
    monkeypatch.setattr(sys, "argv", ["histobridge", *args])
    code = 0
    try:
        main()
    except SystemExit as done:
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


GOOD = {"id": 1, "name": "good", "boxes": [(0, 0, 512, "Tumor")]}


def test_missing_only_image_is_a_failure_with_its_reason(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    # Before: exit 0 with "0 tiles written".
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": None}])
    code, out, err = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), *SMALL], capsys, monkeypatch)
    assert code == 1 and "skipped" in out and "good.tif" in out
    assert "error: 1 of 1 requested image(s) not tiled" in err


def test_every_image_missing_fails(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    qp = make_project(
        tmp_path / "p", [{**GOOD, "slide": None}, {**GOOD, "id": 2, "name": "two", "slide": None}]
    )
    code, out, err = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), *SMALL], capsys, monkeypatch)
    assert code == 1 and out.count("skipped") == 2 and "2 of 2" in err


def test_one_missing_among_good_ones_still_fails_and_says_which(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    images = [{**GOOD, "slide": slides["cal"]}, {**GOOD, "id": 2, "name": "moved", "slide": None}]
    code, out, err = run(["tile", str(make_project(tmp_path / "p", images)), "-o", str(tmp_path / "s.zarr"),
                          *SMALL], capsys, monkeypatch)  # fmt: skip
    assert code == 1 and "1 of 2" in err
    lines = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert "done" in lines["good"] and "skipped" in lines["moved"] and "moved.tif" in lines["moved"]
    assert open_store(tmp_path / "s.zarr").names() == ["1"]


def test_annotations_outside_the_slide_fail(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    qp = make_project(
        tmp_path / "p", [{**GOOD, "slide": slides["cal"], "boxes": [(5000, 5000, 500, "Tumor")]}]
    )
    code, out, _ = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), *SMALL], capsys, monkeypatch)
    assert code == 1 and "outside the image (1024 x 768 px)" in out


def test_annotations_too_small_for_a_tile_fail_with_sizes(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    """Chosen policy: an image that yields no tile was requested work that did not happen."""
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["cal"], "boxes": [(10, 10, 30, "Tumor")]}])
    code, out, _ = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), *SMALL], capsys, monkeypatch)
    assert code == 1 and "no 128-px tile" in out and "spans 30 x 30 px" in out
    assert not (tmp_path / "s.zarr").exists()  # nothing made, nothing written


def test_class_typo_is_an_error_listing_the_classes(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    # Before: exit 0, "0 tiles written".
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["cal"]}])
    code, _, err = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), "--classes", "Tumour", *SMALL],
                         capsys, monkeypatch)  # fmt: skip
    assert (
        code == 1
        and err.strip().startswith("error: ")
        and err.strip().endswith("no class 'Tumour' in the project; classes that exist: Tumor, Stroma")
    )


def test_unknown_image_is_an_error_listing_the_images(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["cal"]}])
    code, _, err = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), "--images", "goood", *SMALL],
                       capsys, monkeypatch)  # fmt: skip
    assert code == 1 and err.startswith("error: ") and "no image with id or name 'goood'" in err
    assert "available: 1 'good'" in err


def test_missing_pixel_size_says_so_once(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["bare"]}])
    code, out, err = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), *SMALL], capsys, monkeypatch)
    both = out + err
    assert code == 1 and both.count("records no pixel size") == 1 and both.count("--mpp") == 1


def test_mpp_fills_in_only_and_override_is_explicit_and_shown(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    images = [{**GOOD, "slide": slides["cal"]}, {**GOOD, "id": 2, "name": "bare", "slide": slides["bare"]},
              {**GOOD, "id": 3, "name": "qupath-set", "slide": slides["bare"], "mpp": 0.4}]  # fmt: skip
    qp = make_project(tmp_path / "p", images)
    store = tmp_path / "s.zarr"
    code, out, _ = run(["tile", str(qp), "-o", str(store), "--mpp", "0.25", "--json", "--no-progress",
                        "--tile-px", "64", "--tile-um", "32"], capsys, monkeypatch)  # fmt: skip
    doc = json.loads(out)
    assert code == 0 and doc["ok"]
    used = {i["name"]: (i["mpp"], i["mpp_source"]) for i in doc["images"]}
    # Before: --mpp replaced the slide's own 0.5 as well.
    assert used == {"good": (0.5, "slide"), "bare": (0.25, "fill-in"), "qupath-set": (0.4, "project")}
    attrs = {g.entry_id: g.attrs for g in open_store(store).groups()}
    assert (attrs["1"]["mpp"], attrs["1"]["mpp_source"]) == (0.5, "slide")
    assert (attrs["2"]["mpp"], attrs["2"]["mpp_source"]) == (0.25, "fill-in")
    args = [
        "--mpp-override",
        "0.25",
        "--images",
        "good",
        "--tile-px",
        "64",
        "--tile-um",
        "32",
        "--no-progress",
    ]
    code, out, _ = run(["tile", str(qp), "-o", str(tmp_path / "o.zarr"), *args], capsys, monkeypatch)
    assert code == 0 and "0.25 (argument)" in out
    assert "pixel size 0.5 µm/px (slide) overridden with 0.25" in out


@pytest.mark.parametrize("flag", ["--mpp", "--mpp-override"])
def test_implausible_mpp_is_an_error_unless_the_range_is_widened(
    flag: str, slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["bare"]}])
    args = [
        "tile",
        str(qp),
        "-o",
        str(tmp_path / "s.zarr"),
        flag,
        "50",
        "--tile-px",
        "64",
        "--tile-um",
        "3200",
    ]
    code, _, err = run([*args, "--no-progress"], capsys, monkeypatch)
    assert code == 1 and f"error: {flag} 50 µm/px lies outside the plausible range 0.05-20" in err
    code, _, err = run([*args, "--mpp-range", "0.05", "100", "--no-progress"], capsys, monkeypatch)
    assert code == 0, err


def test_heavy_upsampling_is_warned(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["cal"]}])
    args = ["--tile-px", "256", "--tile-um", "16", "--no-progress"]
    code, out, _ = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), *args], capsys, monkeypatch)
    assert code == 0 and "warning: image 1 ('good'): tiles are upsampled 8x" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--tile-um", "inf"], "tile size in µm must be a positive finite number, got inf"),
     (["--tile-um", "nan"], "tile size in µm must be a positive finite number, got nan"),
     (["--tile-um", "-3"], "tile size in µm must be a positive finite number, got -3"),
     (["--tile-px", "100000"], "tile size must be 1..8192 px, got 100000")],
)  # fmt: skip
def test_impossible_tile_sizes_are_one_error_line(
    args: list[str], message: str, slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["cal"]}])
    code, _, err = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), *args], capsys, monkeypatch)
    assert code == 1 and err.strip() == f"error: {message}"


def test_tiny_tiles_are_refused_before_planning(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    """Before: --tile-um 0.001 asked for 1.15 TiB while planning; now the count is estimated first."""
    import tracemalloc

    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["cal"]}])
    tracemalloc.start()
    args = ["--tile-px", "16", "--tile-um", "0.001", "--no-progress", "--json"]
    code, out, _ = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), *args], capsys, monkeypatch)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    (image,) = json.loads(out)["images"]
    assert (
        code == 1
        and image["status"] == "failed"
        and "over the limit of 2,000,000 per image" in image["reason"]
    )
    assert peak < 200e6
    code, out, _ = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), "--tile-px", "16", "--tile-um", "4",
                        "--max-tiles", "1000", "--no-progress"], capsys, monkeypatch)  # fmt: skip
    assert code == 1 and "up to 4,356 tile positions" in out  # at most 66 x 66 over the 512-px box
    code, _, _ = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), "--tile-px", "16", "--tile-um", "4",
                      "--max-tiles", "5000", "--no-progress"], capsys, monkeypatch)  # fmt: skip
    assert code == 0


def test_read_only_store_is_one_error_line(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    import errno

    from histobridge.tiling import store as store_mod

    def full(self: Any, start: int, tiles: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "s.zarr" / "1.partial"))

    monkeypatch.setattr(store_mod.GroupWriter, "write_tiles", full)
    images = [{**GOOD, "slide": slides["cal"]}, {**GOOD, "id": 2, "name": "two", "slide": slides["cal"]}]
    qp = make_project(tmp_path / "p", images)
    code, out, err = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), *SMALL, "--workers", "1"],
                         capsys, monkeypatch)  # fmt: skip
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "cannot write the tile store: No space left on device" in err
    assert not (tmp_path / "s.zarr" / "1.partial").exists()


def test_redirected_table_is_not_cut_at_80_columns(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["cal"], "boxes": [(10, 10, 30, "Tumor")]}])
    code, out, _ = run(["tile", str(qp), "-o", str(tmp_path / "s.zarr"), *SMALL], capsys, monkeypatch)
    row = next(line for line in out.splitlines() if "skipped" in line)
    assert code == 1 and "use smaller tiles or a lower minimum coverage" in row and len(row) > 120


def test_compression_option_writes_uncompressed_tiles_or_is_one_error_line(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["cal"]}])
    store = tmp_path / "n.zarr"
    base = ["tile", str(qp), "-o", str(store), *SMALL, "--compression"]
    code, _, err = run([*base, "none"], capsys, monkeypatch)
    assert code == 0, err
    group = open_store(store).groups()[0]
    inner = group.tiles.metadata.to_dict()["codecs"][0]["configuration"]["codecs"]
    assert group.attrs["compression"] == "none" and [c["name"] for c in inner] == ["bytes"]
    code, _, err = run([*base, "gzip"], capsys, monkeypatch)
    assert code == 1 and err.strip() == "error: --compression must be one of lz4, none, got 'gzip'"


def test_resample_option_reaches_the_store_or_is_one_error_line(
    slides: dict[str, Path], tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    qp = make_project(tmp_path / "p", [{**GOOD, "slide": slides["cal"]}])
    store = tmp_path / "r.zarr"
    base = ["tile", str(qp), "-o", str(store), *SMALL, "--resample"]
    code, _, err = run([*base, "fast"], capsys, monkeypatch)
    assert code == 0, err
    group = open_store(store).groups()[0]
    assert group.attrs["resample"] == "fast" and group.attrs["jpeg_scale"] == 1  # a zlib slide: read exactly
    code, _, err = run([*base, "quick"], capsys, monkeypatch)
    assert code == 1 and err.strip() == "error: --resample must be one of exact, fast, got 'quick'"


def test_unreadable_annotations_fail_the_image_naming_the_file(cmu_slide: Path, tmp_path: Path) -> None:
    """As in the heatmap: a corrupt export fails that image (exit 1), never reads as "no annotations"."""
    from histobridge.qupath import layout
    from histobridge.qupath.sample import init_sample_project

    qpproj = init_sample_project(tmp_path / "skin", offline=True)
    layout.qpdata_path(qpproj.parent, 1).unlink()
    export = next(p for p in layout.annotation_candidates(qpproj.parent, 1) if p.is_file())
    export.write_text('{"type": "FeatureCollection", "features": [ {"type": "Feat')
    store = tmp_path / "tiles.zarr"
    result = CliRunner().invoke(app, ["tile", str(qpproj), "--out", str(store), *SMALL])
    assert result.exit_code == 1
    assert "failed" in result.output and "not readable as GeoJSON" in result.output
    assert not store.exists() or not open_store(store).groups()
