"""Crop-then-resize geometry, generation, and matched synthetic tiles in a tile store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from _synthetic_helpers import reference_probs, tiny_classifier, tiny_generator, tiny_store
from PIL import Image

from histobridge.errors import CalibrationError, InputError, ModelError, StoreError
from histobridge.models.stylegan2 import onehot, to_uint8, z_from_seed
from histobridge.synthetic import conditioning as cond
from histobridge.synthetic import synthesis as syn


def test_crop_box_lung_numbers() -> None:
    box = syn.crop_box(512, 400.0, 302.0)
    assert (box.size, box.left, box.top) == (386, 63, 63)
    assert box.fraction == pytest.approx(0.755)


def test_crop_box_equal_fields_means_no_crop() -> None:
    box = syn.crop_box(512, 302.0, 302.0)
    assert (box.size, box.left, box.top) == (512, 0, 0)
    # float noise just below 1 must not shave a pixel off
    assert syn.crop_box(512, 302.0, 302.0 * (1 - 1e-12)).size == 512


def test_crop_refuses_wider_target() -> None:
    with pytest.raises(ModelError, match="wider than the GAN tile"):
        syn.crop_box(512, 302.0, 400.0)
    with pytest.raises(CalibrationError):
        syn.crop_box(512, 0.0, 10.0)


def test_crop_then_resize_matches_pillow_on_the_centre_crop() -> None:
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (2, 512, 512, 3), dtype=np.uint8)
    out = syn.crop_then_resize(imgs, 400.0, 302.0, 299)
    assert out.shape == (2, 299, 299, 3) and out.dtype == np.uint8
    crop = Image.fromarray(imgs[1, 63 : 63 + 386, 63 : 63 + 386])
    expected = np.asarray(crop.resize((299, 299), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(out[1], expected)


def test_crop_then_resize_keeps_pixels_when_sizes_agree() -> None:
    imgs = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    np.testing.assert_array_equal(syn.crop_then_resize(imgs, 10.0, 5.0, 4), imgs[:, 2:6, 2:6])
    with pytest.raises(InputError):
        syn.crop_then_resize(imgs.astype(np.float32), 10.0, 5.0, 4)


def test_resolve_class_by_name_or_index() -> None:
    G = tiny_generator(c_dim=3, names=("Adeno", "Squamous", "Normal"))
    assert cond.resolve_class(G, "squamous") == 1
    assert cond.resolve_class(G, "2") == 2
    assert cond.resolve_class(G, 0) == 0
    with pytest.raises(InputError, match="unknown class"):
        cond.resolve_class(G, "stroma")
    with pytest.raises(InputError, match="out of range"):
        cond.resolve_class(G, 3)


def test_gan_um_needed_when_generator_lacks_it() -> None:
    G = tiny_generator(tile_um=None)
    with pytest.raises(CalibrationError, match="--gan-um"):
        syn.gan_tile_um(G)
    assert syn.gan_tile_um(G, 50.0) == 50.0


def test_generate_equals_plain_forward_and_classifies_crop(tmp_path) -> None:
    G = tiny_generator(c_dim=2, res=16, tile_um=64.0)
    clf = tiny_classifier(tmp_path, ["class0", "class1"], px=12, um_px=4.0)  # 48 µm field
    out = syn.generate(G, [3, 4], "class1", classifier=clf, batch_size=1)
    with torch.no_grad():
        ref = G(torch.cat([z_from_seed(3, 32), z_from_seed(4, 32)]), onehot(1, 2, 2))
    np.testing.assert_array_equal(out.raw, to_uint8(ref))
    box = syn.crop_box(16, 64.0, 48.0)
    assert (box.size, box.left) == (12, 2)
    np.testing.assert_array_equal(out.ready, out.raw[:, 2:14, 2:14])
    np.testing.assert_allclose(out.predictions, reference_probs(out.ready, 2), atol=1e-5)


# ----------------------------------------------------------------------------- matched synthetic


def _sub(store, entry="0"):
    return zarr.open_group(str(store), mode="r")[entry]["synthetic"]


def test_matched_synthetic_counts_twins_and_predictions(tmp_path) -> None:
    G = tiny_generator(c_dim=2, res=16, tile_um=64.0, names=("Tumor", "Stroma"))
    store = tiny_store(
        tmp_path / "s.zarr",
        [("tumor", 3), (None, 2), ("Stroma", 2), ("Other", 1)],
        classes=("Tumor", "Stroma", "Other"),
    )
    clf = tiny_classifier(tmp_path, ["Tumor", "Stroma"], px=12, um_px=4.0)
    rep = syn.matched_synthetic(store, G, clf, seed0=10, montage_dir=tmp_path / "m", batch_size=2)
    sub = _sub(store)
    assert sub.attrs["complete"] is True
    np.testing.assert_array_equal(sub["regions"][:], [0, 0, 0, 2, 2])
    np.testing.assert_array_equal(sub["seeds"][:], [10, 11, 12, 13, 14])
    np.testing.assert_array_equal(sub["classes"][:], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(sub["swap_classes"][:], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(sub["labels"][:], [-1, -1, -1, 1, 1])  # "tumor" is not a store class
    from histobridge.tiling.store import open_store

    seen = open_store(store).group("0").synthetic()  # the store's own reader finds the sub-group
    assert seen is not None and len(seen) == 5 and seen.complete
    assert sub["tiles"].shape == (5, 16, 16, 3) and sub["predictions"].shape == (5, 2)
    # the swapped twin is the same seed under the other class
    twin = syn.generate(G, [12], "Stroma").raw
    np.testing.assert_array_equal(sub["swapped"][2], twin[0])
    np.testing.assert_array_equal(sub["tiles"][2], syn.generate(G, [12], "Tumor").raw[0])
    ready = syn.crop_then_resize(np.asarray(sub["tiles"][:]), 64.0, 48.0, 12)
    np.testing.assert_allclose(sub["predictions"][:], reference_probs(ready, 2), atol=1e-5)
    g = rep.groups[0]
    assert g.per_region == {0: 3, 2: 2} and set(g.skipped_regions) == {1, 3}
    assert [p.name for p in g.montages] == ["0_region0.png", "0_region2.png"]
    w, h = Image.open(g.montages[0]).size
    assert w > 3 * 64 and h > 3 * 64  # three rows of at least 64-px cells


def test_matched_synthetic_n_class_map_and_resize_to_store_geometry(tmp_path) -> None:
    G = tiny_generator(c_dim=3, res=32, tile_um=64.0)
    store = tiny_store(tmp_path / "s.zarr", [("tumour", 1), ("class2", 5)], tile_px=8, tile_um=32.0)
    rep = syn.matched_synthetic(store, G, n=2, class_map={"tumour": "class1"}, montage_dir=tmp_path / "m")
    sub = _sub(store)
    np.testing.assert_array_equal(sub["classes"][:], [1, 1, 2, 2])
    np.testing.assert_array_equal(sub["swap_classes"][:], [2, 2, 0, 0])  # next class for >2 classes
    raw = syn.generate(G, [0, 1, 2, 3], np.eye(3)[[1, 1, 2, 2]]).raw
    np.testing.assert_array_equal(sub["tiles"][:], syn.crop_then_resize(raw, 64.0, 32.0, 8))
    assert "predictions" not in sub
    assert rep.class_map == {"tumour": "class1", "class2": "class2"}


def test_matched_synthetic_resumes_and_skips_finished_groups(tmp_path, monkeypatch) -> None:
    G = tiny_generator(c_dim=2)
    store = tiny_store(tmp_path / "s.zarr", [("class0", 5)])
    from histobridge.synthetic import matched as _matched

    calls = {"n": 0}
    real_render = cond.render_uint8

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # batch 1 done (2 calls), fail inside batch 2
            raise RuntimeError("interrupted")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(cond, "render_uint8", flaky)
    with pytest.raises(RuntimeError):
        syn.matched_synthetic(store, G, montage_dir=tmp_path / "m", batch_size=2)
    part = zarr.open_group(str(store), mode="r")["0"]["synthetic.partial"]
    assert part.attrs["filled"] == 2 and not part.attrs["complete"]
    monkeypatch.setattr(cond, "render_uint8", real_render)
    rep = syn.matched_synthetic(store, G, montage_dir=tmp_path / "m", batch_size=2)
    assert rep.groups[0].status == "resumed"
    full = syn.generate(G, [0, 1, 2, 3, 4], "class0").raw
    np.testing.assert_array_equal(_sub(store)["tiles"][:], full)
    assert not (store / "0" / "synthetic.partial").exists()
    again = syn.matched_synthetic(store, G, montage_dir=tmp_path / "m")
    assert again.groups[0].status == "up-to-date"
    assert _matched.SUBGROUP == "synthetic"


def test_matched_synthetic_refuses_store_wider_than_gan(tmp_path) -> None:
    G = tiny_generator(c_dim=2, tile_um=64.0)
    store = tiny_store(tmp_path / "s.zarr", [("class0", 1)], tile_um=100.0)
    with pytest.raises(StoreError, match="never extended"):
        syn.matched_synthetic(store, G, montage_dir=tmp_path / "m")


def test_matched_synthetic_needs_a_matching_class(tmp_path) -> None:
    G = tiny_generator(c_dim=2)
    store = tiny_store(tmp_path / "s.zarr", [("stroma", 1)])
    with pytest.raises(InputError, match="class map"):
        syn.matched_synthetic(store, G, montage_dir=tmp_path / "m")


def test_classifier_wider_than_gan_is_refused_before_writing(tmp_path) -> None:
    G = tiny_generator(c_dim=2, tile_um=64.0)
    wide = tiny_classifier(tmp_path, ["class0", "class1"], px=12, um_px=8.0)  # 96 µm > 64 µm
    with pytest.raises(ModelError, match="wider than the GAN tile"):
        syn.generate(G, [0], 0, classifier=wide)
    store = tiny_store(tmp_path / "s.zarr", [("class0", 2)])
    with pytest.raises(ModelError, match="wider than the GAN tile"):
        syn.matched_synthetic(store, G, wide, montage_dir=tmp_path / "m")
    assert not (store / "0" / "synthetic.partial").exists() and not (store / "0" / "synthetic").exists()
