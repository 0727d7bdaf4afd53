"""GAN training: discriminator, augmentations, a few loop steps, resume, export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from histobridge.errors import CheckpointError
from histobridge.models.augment import ColorJitter, color_jitter, random_dihedral, random_translate
from histobridge.models.checkpoints import load_generator
from histobridge.models.discriminator import Discriminator, DiscriminatorConfig, minibatch_stddev
from histobridge.models.train_gan import CHECKPOINT, GanTrainConfig, _adapt, _build_state, train_gan
from histobridge.models.training_data import load_tiles
from tests._train_helpers import make_store

TINY = dict(resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=64, channel_max=16, batch=4,
            snapshot_kimg=0.008, device="cpu")


def test_discriminator_is_conditional() -> None:
    torch.manual_seed(0)
    D = Discriminator(DiscriminatorConfig(c_dim=2, img_resolution=16, channel_base=64, channel_max=16))
    x = torch.randn(4, 3, 16, 16)
    a = D(x, torch.eye(2)[[0, 0, 0, 0]])
    b = D(x, torch.eye(2)[[1, 1, 1, 1]])
    assert a.shape == (4, 1)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="conditional"):
        D(x)


def test_minibatch_stddev_adds_one_constant_map_per_group() -> None:
    x = torch.randn(8, 6, 4, 4)
    y = minibatch_stddev(x, group=4, channels=1)
    assert y.shape == (8, 7, 4, 4)
    assert torch.equal(y[:, :6], x)
    assert torch.allclose(y[:, 6], y[:, 6, :1, :1].expand(8, 4, 4))
    same = minibatch_stddev(torch.ones(4, 6, 4, 4), group=4, channels=1)
    assert torch.allclose(same[:, 6], torch.full((4, 4, 4), 1e-4), atol=1e-6)


def test_dihedral_keeps_pixels_and_jitter_is_differentiable() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, 8, 8)
    y = random_dihedral(x, gen)
    for i in range(16):
        assert torch.equal(torch.sort(x[i].flatten()).values, torch.sort(y[i].flatten()).values)
    assert not torch.equal(x, y)
    x.requires_grad_(True)
    color_jitter(x, ColorJitter(probability=1.0), gen=gen).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert torch.equal(color_jitter(x, ColorJitter(probability=0.0)), x)


def test_translate_shifts_whole_pixels() -> None:
    x = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8).repeat(6, 1, 1, 1)
    y = random_translate(x, max_frac=0.25, probability=1.0, gen=torch.Generator().manual_seed(2))
    assert y.shape == x.shape
    # Away from the reflected border, a shift keeps horizontal steps of 1 and vertical steps of 8.
    assert torch.all(torch.diff(y[:, 0, 2:6, 2:6], dim=-1) == 1)
    assert torch.all(torch.diff(y[:, 0, 2:6, 2:6], dim=-2) == 8)
    assert torch.equal(random_translate(x, 0.25, probability=0.0), x)


def test_ada_raises_p_when_d_is_sure_of_reals_and_lowers_it_otherwise() -> None:
    cfg = GanTrainConfig(ada_kimg=0.1, **TINY)
    st = _build_state(cfg, 2, torch.device("cpu"))
    for step in range(8):
        st.step = step
        _adapt(st, cfg, torch.ones(4, 1))
    assert st.ada_p == pytest.approx(2 * 16 / 100)
    for step in range(8, 12):
        st.step = step
        _adapt(st, cfg, -torch.ones(4, 1))
    assert st.ada_p == pytest.approx(16 / 100)


def test_few_steps_finite_resume_and_export(tmp_path) -> None:
    store = make_store(tmp_path / "store.zarr")
    data = load_tiles(store)
    out = tmp_path / "gan"
    seen: list[dict[str, float]] = []
    first = train_gan(data, out, GanTrainConfig(kimg=0.012, **TINY), progress=seen.append)
    assert first.steps == 3 and first.finished
    assert all(math.isfinite(v) for s in seen for v in s.values())
    assert any("r1" in s for s in seen)  # the lazy R1 step ran (step 0)
    assert (out / CHECKPOINT).exists() and list((out / "samples").glob("*.png"))
    # Running again with a larger budget continues from the checkpoint instead of starting over.
    seen.clear()
    second = train_gan(data, out, GanTrainConfig(kimg=0.02, **TINY), progress=seen.append)
    assert second.steps == 5 and [s["step"] for s in seen] == [4, 5]
    G = load_generator(second.generator_path.with_suffix(".safetensors"))
    assert G.meta.class_names == ("Purple", "Pink")
    assert G.meta.tile_um == pytest.approx(32.0) and G.img_resolution == 16
    img = G(torch.randn(2, 16), torch.eye(2))
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    stats = json.loads((out / "training.json").read_text())
    assert stats["step"] == 5 and stats["tiles"] == {"Purple": 18, "Pink": 18}


def test_resume_refuses_a_different_architecture(tmp_path) -> None:
    data = load_tiles(make_store(tmp_path / "store.zarr"))
    out = tmp_path / "gan"
    train_gan(data, out, GanTrainConfig(kimg=0.004, **TINY))
    bigger = {**TINY, "channel_max": 32}
    with pytest.raises(CheckpointError, match="channel_max"):
        train_gan(data, out, GanTrainConfig(kimg=0.008, **bigger))


def test_minutes_budget_stops_and_checkpoints(tmp_path) -> None:
    data = load_tiles(make_store(tmp_path / "store.zarr"))
    res = train_gan(data, tmp_path / "gan", GanTrainConfig(kimg=100, minutes=1e-6, **TINY))
    assert not res.finished and res.steps == 1
    ck = torch.load(tmp_path / "gan" / CHECKPOINT, weights_only=True)
    assert ck["step"] == 1 and ck["nimg"] == 4


def test_cli_train_gan(tmp_path) -> None:
    from typer.testing import CliRunner

    from histobridge.cli.train import app

    store = make_store(tmp_path / "store.zarr")
    args = ["gan", str(store), "--out", str(tmp_path / "g"), "--kimg", "0.008", "--resolution", "16",
            "--batch", "4", "--z-dim", "16", "--w-dim", "16", "--channel-base", "64", "--channel-max", "16",
            "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "finished" in res.output
    assert np.asarray(load_generator(tmp_path / "g" / "generator.json").meta.class_names).tolist() == [
        "Purple", "Pink"]


def test_noise_free_generator_option(tmp_path) -> None:
    data = load_tiles(make_store(tmp_path / "store.zarr"))
    res = train_gan(data, tmp_path / "gan", GanTrainConfig(kimg=0.004, noise=False, **TINY))
    G = load_generator(res.generator_path.with_suffix(".json"))
    assert not any("noise" in name for name in G.state_dict())
    z = torch.randn(1, 16)
    c = torch.eye(2)[:1]
    assert torch.equal(G(z, c, noise_mode="const"), G(z, c, noise_mode="random"))


def test_const_noise_batches_run(tmp_path) -> None:
    data = load_tiles(make_store(tmp_path / "store.zarr"))
    seen: list[dict[str, float]] = []
    cfg = GanTrainConfig(kimg=0.008, const_noise=1.0, **TINY)
    train_gan(data, tmp_path / "gan", cfg, progress=seen.append)
    assert len(seen) == 2 and all(math.isfinite(s["loss_g"]) for s in seen)


def test_training_step_runs_under_bf16_autocast() -> None:
    # CUDA's default amp is bf16; the mapping's running mean of w used to mix a bf16 batch with its
    # float32 buffer and stop the first step. The CPU autocast reproduces it.
    import torch.nn.functional as F

    from histobridge.models.train_gan import _train_step

    cfg = GanTrainConfig(**{**TINY, "r1_interval": 1})
    st = _build_state(cfg, 2, torch.device("cpu"))
    before = st.G.mapping.w_avg.clone()
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    labels = F.one_hot(torch.tensor([0, 1, 0, 1]), 2).to(torch.float32)
    stats = _train_step(st, cfg, real, labels, lambda n: labels[:n], torch.bfloat16, None)
    assert all(math.isfinite(v) for v in stats.values()) and "r1" in stats
    assert st.G.mapping.w_avg.dtype == torch.float32 and not torch.equal(st.G.mapping.w_avg, before)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = st.G(torch.randn(2, 16), labels[:2], truncation_psi=0.7)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img.float()).all()


def test_plain_images_join_a_store_as_classes_of_their_own(tmp_path) -> None:
    from PIL import Image

    from histobridge.errors import InputError
    from histobridge.models.training_data import concat_tiles, image_tiles, load_npz, save_npz
    from histobridge.tiling.grid import TileSpec

    # 100×60 px at 0.5 µm/px; 16-px tiles over 16 µm = 32 source px, stride 8 px = 16 source px.
    rgb = np.zeros((60, 100, 3), np.uint8)
    rgb[:, :, 0] = np.arange(100, dtype=np.uint8)[None, :] * 2
    Image.fromarray(rgb).save(tmp_path / "he.png")
    spec = TileSpec(tile_px=16, tile_um=16.0, stride_px=8)
    extra = image_tiles(tmp_path / "he.png", "Extra", 0.5, spec)
    assert extra.tiles.shape == (5 * 2, 16, 16, 3) and extra.class_names == ("Extra",)
    # area averaging of a ramp: output pixel i of the tile at x0 averages source 2i..2i+1 (+x0)
    assert extra.tiles[1, 0, :, 0].tolist() == [2 * (16 + 2 * i) + 1 for i in range(16)]
    store = load_tiles(make_store(tmp_path / "store.zarr", tile_px=16, tile_um=16.0))
    joined = concat_tiles([store, extra])
    assert joined.class_names == ("Purple", "Pink", "Extra")
    assert joined.counts() == {**store.counts(), "Extra": 10}
    assert set(joined.regions[-10:]) == {int(store.regions.max()) + 1}
    save_npz(joined, tmp_path / "set.npz")
    back = load_npz(tmp_path / "set.npz")
    assert back.class_names == joined.class_names and back.tile_um == 16.0
    assert np.array_equal(back.tiles, joined.tiles) and np.array_equal(back.labels, joined.labels)
    with pytest.raises(InputError, match="differ in size"):
        concat_tiles([store, image_tiles(tmp_path / "he.png", "Extra", 0.5, TileSpec(8, 16.0))])
    with pytest.raises(InputError, match=r"160 px at 0\.1 µm/px, larger than the 100×60 image"):
        image_tiles(tmp_path / "he.png", "Extra", 0.1, spec)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"bad\.png: cannot read the image"):
        image_tiles(tmp_path / "bad.png", "Extra", 0.5, spec)


def test_training_can_start_from_an_exported_generator(tmp_path) -> None:
    from histobridge.models.train_gan import init_from_generator

    data = load_tiles(make_store(tmp_path / "store.zarr"))
    exported = train_gan(data, tmp_path / "a", GanTrainConfig(kimg=0.008, **TINY)).generator_path
    exported = exported.with_suffix(".json")
    st = _build_state(GanTrainConfig(**TINY), 2, torch.device("cpu"))
    init_from_generator(st, exported, data)
    z, c = torch.randn(2, 16), torch.eye(2)
    G0 = load_generator(exported)
    assert torch.equal(st.G_ema.eval()(z, c, noise_mode="const"), G0(z, c, noise_mode="const"))
    assert train_gan(data, tmp_path / "b", GanTrainConfig(kimg=0.004, **TINY), init=exported).steps == 1
    wider = GanTrainConfig(kimg=0.004, **{**TINY, "channel_base": 128, "channel_max": 32})
    with pytest.raises(CheckpointError, match="does not match this run's architecture"):
        train_gan(data, tmp_path / "c", wider, init=exported)


def test_kept_snapshots_are_loadable_generators_named_by_images_seen(tmp_path) -> None:
    data = load_tiles(make_store(tmp_path / "store.zarr"))
    res = train_gan(data, tmp_path / "gan", GanTrainConfig(kimg=0.016, keep_snapshots=True, **TINY))
    snaps = sorted((tmp_path / "gan" / "snapshots").glob("generator-*img.json"))
    assert [p.name for p in snaps] == ["generator-00000008img.json", "generator-00000016img.json"]
    last = load_generator(snaps[-1])
    z, c = torch.randn(2, 16), torch.eye(2)
    final = load_generator(res.generator_path.with_suffix(".json"))
    assert torch.equal(last(z, c, noise_mode="const"), final(z, c, noise_mode="const"))  # the same G_ema
    train_gan(data, tmp_path / "plain", GanTrainConfig(kimg=0.008, **TINY))
    assert not (tmp_path / "plain" / "snapshots").exists()  # off by default
