"""`tile` reruns into one store through the store's checks: broken groups rewritten, tile size kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _tiling_helpers import FakeEntry, FakeProject, pattern_image, write_pyramid
from shapely.geometry import box

from histobridge.qupath.annotations import Annotation
from histobridge.tiling import TileSpec, TilingOptions, open_store, tile_project


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pyramid(
        tmp_path_factory.mktemp("rerun") / "p.tif", pattern_image(512, 512), levels=1, mpp=0.5
    )


def _project(slide: Path) -> FakeProject:
    return FakeProject([FakeEntry(2, "p", slide)], {2: [Annotation(box(0, 0, 400, 400), "Tumor")]})


def test_group_marked_complete_without_tiles_is_rewritten(slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    first = tile_project(_project(slide), out, TileSpec(64, 32))
    shutil.rmtree(out / "2" / "tiles")  # complete flag set, array gone (two writers, old versions)
    again = tile_project(_project(slide), out, TileSpec(64, 32))
    assert again.images[0].status == "done" and not again.details[0].up_to_date  # the arrays were checked
    group = open_store(out).group(2)
    assert group.problem() is None and len(group) == first.images[0].count


def test_other_tile_size_into_the_same_store_is_refused(slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    tile_project(_project(slide), out, TileSpec(64, 32))
    other = tile_project(_project(slide), out, TileSpec(64, 16))
    assert other.images[0].status == "failed"
    assert "tile_um 32 -> 16" in (other.images[0].reason or "") and "replace=True" in (
        other.images[0].reason or ""
    )
    assert open_store(out).group(2).attrs["tile_um"] == 32  # the earlier tiles are untouched
    replaced = tile_project(_project(slide), out, TileSpec(64, 16), TilingOptions(replace=True))
    assert replaced.ok and open_store(out).group(2).attrs["tile_um"] == 16
