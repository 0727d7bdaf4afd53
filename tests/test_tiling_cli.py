"""``histobridge tile`` on the bundled skin sample project (annotations on the real CMU slide)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from histobridge.cli import app
from histobridge.tiling import open_store


def test_tile_command_writes_a_store_and_reruns_skip(cmu_slide: Path, tmp_path: Path) -> None:
    from histobridge.qupath.sample import init_sample_project

    qpproj = init_sample_project(tmp_path / "skin", offline=True)
    store = tmp_path / "tiles.zarr"
    runner = CliRunner()
    args = ["tile", str(qpproj), "--out", str(store), "--tile-px", "64", "--tile-um", "64", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "written" in result.output and "tiles written" in result.output
    groups = open_store(store).groups()
    assert len(groups) == 1 and len(groups[0]) > 0
    g = groups[0]
    assert g.attrs["tile_px"] == 64 and g.attrs["mpp"] == 0.499 and g.tiles.shape[1:] == (64, 64, 3)
    labels = np.asarray(g.labels[:])
    assert (labels >= -1).all() and labels.max() < len(g.classes) and (labels >= 0).sum() > 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "up-to-date" in again.output


def test_tile_command_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["tile", "--help"])
    assert result.exit_code == 0
    for option in ("--tile-px", "--tile-um", "--stride-px", "--min-coverage", "--whole-tissue", "--mpp"):
        assert option in result.output
