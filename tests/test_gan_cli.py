"""``histobridge gan`` info / convert / generate on tiny random generators, and what every ``gan``
command shares: generator folders, ``--device``, number options and write errors."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from histobridge.cli.gan import app, generator_path, montage
from histobridge.errors import CheckpointError, HistobridgeError, InputError, ModelError
from histobridge.models.checkpoints import load_generator
from histobridge.models.stylegan2 import Generator, GeneratorConfig, onehot, to_uint8, z_from_seeds
from histobridge.synthetic import conditioning as cond

sys.path.insert(0, os.path.dirname(__file__))
from _gan_pickles import write_snapshot

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


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
    res = runner.invoke(app, ["generate", str(snapshot), "--out", str(tmp_path / "x"), "--device", "cpu"])
    assert isinstance(res.exception, InputError) and "choose a class" in str(res.exception)
    assert "0=class0, 1=class1" in str(res.exception)
    res = runner.invoke(app, ["generate", str(snapshot), "--class", "7", "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, InputError) and "out of range" in str(res.exception)
    assert not (tmp_path / "x").exists()


@pytest.fixture()
def converted(snapshot, tmp_path):
    out = tmp_path / "model" / "generator.safetensors"
    res = runner.invoke(app, ["convert", str(snapshot), str(out), "--gan-um", "400", "--class-names",
                              "Epidermis,Dermis"])  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def test_generate_class_lookup_is_case_insensitive_with_unique_prefixes(converted, tmp_path):
    """``gan generate --class epidermis`` once failed while ``gan blend --from epidermis`` worked."""
    G = load_generator(converted)
    for spelling in ("epidermis", "EPIDERMIS", "epi", "0"):
        out = tmp_path / spelling
        res = runner.invoke(app, ["generate", str(converted), "--class", spelling, "--seeds", "2", "--out",
                                  str(out)])  # fmt: skip
        assert res.exit_code == 0, res.output + repr(res.exception)
        with torch.no_grad():
            expected = to_uint8(G(z_from_seeds([2], 16), onehot(0, 2)))[0]
        assert np.array_equal(np.asarray(Image.open(out / "seed0002.png")), expected)
    res = runner.invoke(app, ["generate", str(converted), "--class", "derm", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0 and json.loads((tmp_path / "d" / "generate.json").read_text())[
        "class_weights"] == [0.0, 1.0]  # fmt: skip


def test_class_lookup_rule() -> None:
    names = ("Adeno", "adipose", "Squamous", "squamous cell")
    assert cond.lookup_class(names, "ADENO") == 0
    assert cond.lookup_class(names, "adi") == 1
    assert cond.lookup_class(names, "squamous") == 2  # an exact name beats being a prefix of another
    assert cond.lookup_class(names, " 3 ") == 3
    with pytest.raises(InputError, match=r"ambiguous.*Adeno, adipose.*0=Adeno, 1=adipose"):
        cond.lookup_class(names, "ad")
    with pytest.raises(InputError, match=r"unknown class 'stroma'; classes: 0=Adeno"):
        cond.lookup_class(names, "stroma")
    with pytest.raises(InputError, match="out of range"):
        cond.lookup_class(names, -1)
    assert cond.lookup_class(("tumor", "Tumor"), "Tumor") == 1  # case decides only between such twins
    with pytest.raises(InputError, match="ambiguous"):
        cond.lookup_class(("tumor", "Tumor"), "TUMOR")
    with pytest.raises(ModelError, match="unconditional"):
        cond.lookup_class((), "x")


def test_generator_folder_is_accepted(converted, snapshot, tmp_path):
    folder = converted.parent
    assert generator_path(folder) == converted
    res = runner.invoke(app, ["info", str(folder)])
    assert res.exit_code == 0 and "Epidermis" in res.output
    res = runner.invoke(app, ["generate", str(folder), "--class", "dermis", "--seeds", "0-1", "--out",
                              str(tmp_path / "png")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert generator_path(snapshot.parent) == snapshot  # a training folder with one snapshot
    two = tmp_path / "two"
    two.mkdir()
    for name in ("network-snapshot-000100.pkl", "network-snapshot-000200.pkl"):
        (two / name).write_bytes(snapshot.read_bytes())
    with pytest.raises(ModelError, match=r"2 \.pkl files.*pass one"):
        generator_path(two)
    with pytest.raises(ModelError, match="no generator here"):
        generator_path(tmp_path / "png")


def test_device_is_validated(converted, tmp_path):
    res = runner.invoke(app, ["generate", str(converted), "--class", "0", "--seeds", "0", "--device", "auto",
                              "--out", str(tmp_path / "a")])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["generate", str(converted), "--class", "0", "--device", "warp-drive",
                              "--out", str(tmp_path / "b")])  # fmt: skip
    assert isinstance(res.exception, ModelError) and "unknown device" in str(res.exception)
    if not torch.cuda.is_available():
        for command in (["generate", "--class", "0"], ["blend", "--seed", "1", "--from", "0", "--to", "1"]):
            args = [command[0], str(converted), *command[1:], "--device", "cuda"]
            res = runner.invoke(app, [*args, "--out", str(tmp_path / "c")])
            assert isinstance(res.exception, ModelError) and "CUDA is not available" in str(res.exception)


def test_number_options_name_themselves(converted, tmp_path):
    cases = {
        ("generate", "--seeds", "3-1"): "--seeds '3-1': range '3-1' runs backwards",
        ("generate", "--seeds", "0-10000000"): "at most 100,000",
        ("generate", "--seeds", "-1"): "--seeds '-1': -1 is outside",
        ("blend", "--steps", "1"): "--steps '1'",
        ("layer-blend", "--layers", "3-1"): "--layers '3-1': range '3-1' runs backwards",
        ("layer-blend", "--splits", "0,x"): "--splits '0,x': 'x' is not a whole number",
        ("layer-blend", "--alpha", "0.5,2"): "--alpha '0.5,2': 2 is outside",
    }
    for (command, option, value), message in cases.items():
        args = [command, str(converted), option, value, "--out", str(tmp_path / "o")]
        if command != "generate":
            args += ["--seed", "1", "--from", "0", "--to", "1"]
        res = runner.invoke(app, args)
        assert isinstance(res.exception, InputError), (command, option, res.output)
        assert message in str(res.exception), (message, str(res.exception))
    assert not (tmp_path / "o").exists()


def test_convert_write_failure_is_one_error_line(snapshot, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = "from histobridge.cli import main; main()"
    out = subprocess.run(
        [sys.executable, "-c", code, "gan", "convert", str(snapshot), str(blocker / "g.safetensors")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write ") and "a-file" in lines[0]

    import safetensors.torch

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    target = tmp_path / "ok" / "g.safetensors"
    res = runner.invoke(app, ["convert", str(snapshot), str(target)])
    assert isinstance(res.exception, HistobridgeError)
    assert "No space left on device" in str(res.exception) and str(target) in str(res.exception)
    assert not target.exists()


def test_missing_file_is_a_checkpoint_error(tmp_path):
    res = runner.invoke(app, ["info", str(tmp_path / "nope.pkl")])
    assert isinstance(res.exception, CheckpointError)


def test_scalar_label_values_and_names():
    G = Generator(GeneratorConfig(z_dim=8, c_dim=1, w_dim=8, img_resolution=4, mapping_layers=1,
                                  interp_embed=True, channel_base=32, channel_max=8))
    assert cond.labels_for(G, cond.class_rows(G, "0.25", 1)).tolist() == [[0.25]]
    assert cond.labels_for(G, cond.class_rows(G, "class1", 1)).tolist() == [[1.0]]
    assert cond.labels_for(G, cond.class_rows(G, "CLASS0", 2)).tolist() == [[0.0], [0.0]]
    with pytest.raises(InputError, match="outside"):
        cond.class_rows(G, "1.5", 1)


def test_montage_layout():
    imgs = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    grid = montage(imgs)
    assert grid.shape == (4 * 2 + 2, 4 * 3 + 4, 3)
    assert grid[4, 0, 0] == 255 and grid[0, 0, 0] == 0
