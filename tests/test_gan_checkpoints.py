"""Checkpoint loading: snapshot layouts, refusals, pickle safety, metadata, safetensors round trip."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from histobridge.errors import CheckpointError, UnsafePickleError
from histobridge.models.checkpoints import load_generator, require_tile_um, save_generator
from histobridge.models.stylegan2 import Generator, GeneratorConfig, onehot

sys.path.insert(0, os.path.dirname(__file__))
from _gan_pickles import (
    write_malicious,
    write_snapshot,
    write_stylegan3_tr,
    write_tf_era,
)

BASE = {
    "z_dim": 16, "c_dim": 3, "w_dim": 16, "img_resolution": 16, "mapping_layers": 2,
    "channel_base": 128, "channel_max": 16, "conv_clamp": 256,
}


def _random_generator(seed: int = 0, **overrides) -> Generator:
    """Random weights where every tensor matters (noise strengths, biases and w_avg non-zero)."""
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig(**{**BASE, **overrides}))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("noise_strength", "bias")):
                p.add_(torch.randn_like(p) * 0.3)
        G.mapping.w_avg.normal_()
    return G.eval()


def _assert_same_images(G_ref: Generator, G: Generator, psi: float = 0.7) -> None:
    torch.manual_seed(11)
    z = torch.randn(2, G_ref.z_dim)
    c = torch.rand(2, 1) if G_ref.config.interp_embed else onehot(1, G_ref.c_dim, 2)
    with torch.no_grad():
        expected = G_ref(z, c, truncation_psi=psi)
        got = G(z, c, truncation_psi=psi)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-6
    assert G.state_dict().keys() == G_ref.state_dict().keys()


@pytest.mark.parametrize(
    ("layout", "protocol", "variant"),
    [("sg2ada", 4, "sg2ada"), ("sg3", 4, "sg3-stylegan2"), ("sgsf", 4, "sgsf"),
     ("sg2ada", 2, "sg2ada"), ("sg2ada", 3, "sg2ada")],
)
def test_snapshot_layouts_and_protocols(tmp_path, layout, protocol, variant):
    G_ref = _random_generator()
    path = write_snapshot(G_ref, tmp_path / "network-snapshot-000100.pkl", layout=layout, protocol=protocol,
                          training_set_kwargs={"labels": {"s1": np.int64(1)}, "resolution": 16})
    G = load_generator(path)
    assert G.meta.variant == variant and G.meta.source == str(path)
    assert G.config.channel_base == 128 and G.config.conv_clamp == 256
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    _assert_same_images(G_ref, G)
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


@pytest.mark.parametrize("arch", ["resnet", "orig"])
def test_other_architectures_load(tmp_path, arch):
    G_ref = _random_generator(1, architecture=arch)
    G = load_generator(write_snapshot(G_ref, tmp_path / "g.pkl", layout="sg3"))
    assert G.config.architecture == arch
    _assert_same_images(G_ref, G)


def test_slideflow_interpolated_embedding(tmp_path):
    G_ref = _random_generator(2, c_dim=1, interp_embed=True)
    G = load_generator(write_snapshot(G_ref, tmp_path / "g.pkl", layout="sgsf", protocol=2))
    assert G.config.interp_embed and G.c_dim == 1 and G.mapping.embed.weight.shape == (16, 2)
    assert G.meta.variant == "sgsf"
    _assert_same_images(G_ref, G)


def test_unconditional_generator(tmp_path):
    G_ref = _random_generator(3, c_dim=0)
    G = load_generator(write_snapshot(G_ref, tmp_path / "g.pkl"))
    assert G.c_dim == 0 and G.meta.class_names == ()
    with torch.no_grad():
        z = torch.randn(1, 16)
        assert torch.equal(G(z, None), G_ref(z, None))


def test_uses_g_ema_not_g(tmp_path):
    G_ref = _random_generator(4)
    G = load_generator(write_snapshot(G_ref, tmp_path / "g.pkl"))
    assert torch.equal(G.mapping.fc0.weight, G_ref.mapping.fc0.weight)


def test_stylegan3_tr_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"StyleGAN3 \(config T or R\)"):
        load_generator(write_stylegan3_tr(tmp_path / "sg3t.pkl"))


def test_tensorflow_era_refused(tmp_path):
    path = write_tf_era(tmp_path / "karras2019.pkl")
    with pytest.raises(CheckpointError, match="TensorFlow-era") as err:
        load_generator(path)
    assert str(path) in str(err.value)


def test_not_a_pickle(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match=r"bad\.pkl"):
        load_generator(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "missing.pkl")
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(CheckpointError, match="no G_ema"):
        load_generator(other)


@pytest.mark.parametrize(
    ("fn", "name"),
    [
        (os.system, "system"),
        (builtins.eval, "builtins.eval"),
        (subprocess.check_call, "subprocess.check_call"),
    ],
)
@pytest.mark.parametrize("inside", [True, False])
def test_malicious_pickle_runs_nothing(tmp_path, fn, name, inside):
    marker = tmp_path / "pwned"
    if fn is builtins.eval:
        args: tuple = (f"open({str(marker)!r}, 'w').close()",)
    elif fn is os.system:
        args = (f"touch {marker}",)
    else:
        args = (["touch", str(marker)],)
    path = write_malicious(tmp_path / "evil.pkl", fn, *args, inside_snapshot=inside)
    with pytest.raises(UnsafePickleError, match=name) as err:
        load_generator(path)
    assert str(path) in str(err.value) and "nothing from the file was executed" in str(err.value)
    assert not marker.exists()


def test_embedded_source_is_never_executed(tmp_path):
    from _gan_pickles import StandIns

    marker = tmp_path / "executed"
    si = StandIns()
    src = f"open({str(marker)!r}, 'w').close()\nraise SystemExit\n"
    with si.registered():
        data = {"G_ema": si.persisted("Generator", {}, src=src)}
        (tmp_path / "src.pkl").write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(CheckpointError):
        load_generator(tmp_path / "src.pkl")
    assert not marker.exists()


def test_training_options_metadata(tmp_path):
    G_ref = _random_generator(5, c_dim=2)
    path = write_snapshot(G_ref, tmp_path / "network-snapshot-000200.pkl", layout="sgsf")
    opts = {"slideflow_kwargs": {"tile_px": 16, "tile_um": 400,
                                 "outcome_labels": {"0": "adenocarcinoma", "1": "squamous"}}}
    (tmp_path / "training_options.json").write_text(json.dumps(opts))
    G = load_generator(path)
    assert G.meta.tile_um == 400.0 and G.meta.tile_px == 16
    assert G.meta.class_names == ("adenocarcinoma", "squamous")
    assert require_tile_um(G) == 400.0 and require_tile_um(G, 302.0) == 302.0
    assert load_generator(path, gan_um=350).meta.tile_um == 350.0


def test_training_options_resize_and_missing_um(tmp_path):
    G_ref = _random_generator(6, c_dim=2)
    path = write_snapshot(G_ref, tmp_path / "g.pkl")
    opts = {"slideflow_kwargs": {"tile_px": 32, "resize": 16}}
    (tmp_path / "training_options.json").write_text(json.dumps(opts))
    G = load_generator(path)
    assert G.meta.tile_px == 16 and G.meta.tile_um is None
    assert G.meta.class_names == ("class0", "class1")
    with pytest.raises(CheckpointError, match="--gan-um"):
        require_tile_um(G)
    with pytest.raises(CheckpointError, match="positive"):
        require_tile_um(G, -1.0)


def test_no_training_options(tmp_path):
    G = load_generator(write_snapshot(_random_generator(7), tmp_path / "g.pkl"))
    assert G.meta.tile_um is None and G.meta.class_names == ("class0", "class1", "class2")
    named = load_generator(tmp_path / "g.pkl", class_names=("a", "b", "c"))
    assert named.meta.class_names == ("a", "b", "c")
    with pytest.raises(CheckpointError, match="3 classes"):
        load_generator(tmp_path / "g.pkl", class_names=("a", "b"))


def test_safetensors_round_trip(tmp_path):
    G_ref = _random_generator(8, architecture="resnet")
    G = load_generator(write_snapshot(G_ref, tmp_path / "g.pkl"), gan_um=250.0)
    out = save_generator(G, tmp_path / "out" / "tiny.safetensors")
    assert out.name == "tiny.safetensors" and (tmp_path / "out" / "tiny.json").is_file()
    doc = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert doc["config"]["architecture"] == "resnet" and doc["meta"]["tile_um"] == 250.0
    for p in (out, tmp_path / "out" / "tiny.json"):
        G2 = load_generator(p)
        assert G2.config == G.config and G2.meta == G.meta
        for k, v in G.state_dict().items():
            assert torch.equal(v, G2.state_dict()[k]), k
    (tmp_path / "out" / "tiny.json").unlink()  # the header copy is enough
    assert load_generator(out).meta == G.meta
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_safetensors_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "none.safetensors")
    G = _random_generator(9)
    out = save_generator(G, tmp_path / "g")
    (tmp_path / "g.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a histobridge generator"):
        load_generator(out)


@pytest.mark.parametrize("opcode", ["global", "inst"])
def test_handwritten_protocol0_payloads_refused(tmp_path, opcode):
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}".encode()
    if opcode == "global":
        data = b"cos\nsystem\n(S'" + cmd + b"'\ntR."
    else:
        data = b"(S'" + cmd + b"'\nios\nsystem\n."
    path = tmp_path / "evil0.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        load_generator(path)
    assert not marker.exists()


def test_codecs_encode_only_for_latin1_bytes(tmp_path):
    path = tmp_path / "codec.pkl"
    path.write_bytes(b"c_codecs\nencode\n(S'abc'\nS'rot13'\ntR.")
    with pytest.raises(UnsafePickleError, match="rot13") as err:
        load_generator(path)
    assert str(path) in str(err.value)
