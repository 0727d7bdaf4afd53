"""``histobridge gan`` info / convert / generate on tiny random generators."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from histobridge.cli.gan import app, montage
from histobridge.errors import CheckpointError, ModelError
from histobridge.models.checkpoints import load_generator
from histobridge.models.stylegan2 import (
    Generator,
    GeneratorConfig,
    label_for,
    onehot,
    parse_seeds,
    to_uint8,
    z_from_seeds,
)

sys.path.insert(0, os.path.dirname(__file__))
from _gan_pickles import write_snapshot

runner = CliRunner()


@pytest.fixture()
def snapshot(tmp_path):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=16, c_dim=2, w_dim=16, img_resolution=16, mapping_layers=2,
                                  channel_base=128, channel_max=16))
    return write_snapshot(G.eval(), tmp_path / "snap" / "network-snapshot.pkl", layout="sgsf")


def test_info(snapshot):
    res = runner.invoke(app, ["info", str(snapshot)])
    assert res.exit_code == 0, res.output
    assert "sgsf" in res.output and "num_ws: 6" in res.output and "0=class0, 1=class1" in res.output
    assert "unknown (pass --gan-um" in res.output


def test_convert_then_generate(snapshot, tmp_path):
    out = tmp_path / "conv" / "g.safetensors"
    args = ["convert", str(snapshot), str(out), "--gan-um", "400", "--class-names", "luad,lusc"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    G = load_generator(out)
    assert G.meta.class_names == ("luad", "lusc") and G.meta.tile_um == 400.0

    res = runner.invoke(app, ["generate", str(out), "--class", "lusc", "--seeds", "3-5,9", "--out",
                              str(tmp_path / "png"), "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert names == ["montage.png", "seed0003.png", "seed0004.png", "seed0005.png", "seed0009.png"]
    with torch.no_grad():
        expected = to_uint8(G(z_from_seeds([9], 16), onehot(1, 2)))[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "png" / "seed0009.png")), expected)
    assert Image.open(tmp_path / "png" / "montage.png").size == (16 * 2 + 2, 16 * 2 + 2)
    record = json.loads((tmp_path / "png" / "generate.json").read_text())
    assert record["seeds"] == [3, 4, 5, 9] and record["generator"]["classes"] == ["luad", "lusc"]


def test_generate_needs_a_class(snapshot, tmp_path):
    res = runner.invoke(app, ["generate", str(snapshot), "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, ModelError) and "choose a class" in str(res.exception)
    res = runner.invoke(app, ["generate", str(snapshot), "--class", "7", "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, ModelError)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    res = runner.invoke(app, ["info", str(tmp_path / "nope.pkl")])
    assert isinstance(res.exception, CheckpointError)


def test_parse_seeds_and_labels():
    assert parse_seeds("0-3,7, 10-11,2") == [0, 1, 2, 3, 7, 10, 11]
    assert parse_seeds("5") == [5]
    for bad in ("", "a", "5-2", "-3"):
        with pytest.raises(ModelError):
            parse_seeds(bad)
    G = Generator(GeneratorConfig(z_dim=8, c_dim=1, w_dim=8, img_resolution=4, mapping_layers=1,
                                  interp_embed=True, channel_base=32, channel_max=8))
    assert label_for(G, "0.25").tolist() == [[0.25]] and label_for(G, "class1").tolist() == [[1.0]]
    with pytest.raises(ModelError, match="outside"):
        label_for(G, "1.5")


def test_montage_layout():
    imgs = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    grid = montage(imgs)
    assert grid.shape == (4 * 2 + 2, 4 * 3 + 4, 3)
    assert grid[4, 0, 0] == 255 and grid[0, 0, 0] == 0
