"""Class blending (soft one-hot labels) and layer blending (per-layer swap or mix of w)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _synthetic_helpers import reference_probs, tiny_classifier, tiny_generator
from PIL import Image

from histobridge.errors import InputError
from histobridge.models.stylegan2 import onehot, z_from_seed
from histobridge.synthetic import blending


@pytest.fixture(scope="module")
def G():
    return tiny_generator(c_dim=3, res=16, tile_um=64.0, names=("adeno", "squam", "normal"))


def _plain(G, seed, c):
    with torch.no_grad():
        return G(z_from_seed(seed, G.z_dim), c)[0]


def test_class_blend_endpoints_equal_plain_generation(G) -> None:
    imgs = blending.class_blend_images(G, 7, "adeno", "normal", [0.0, 1.0])
    a, b = _plain(G, 7, onehot(0, 3)), _plain(G, 7, onehot(2, 3))
    assert (imgs[0] - a).abs().max() <= 1e-5
    assert (imgs[1] - b).abs().max() <= 1e-5
    assert (a - b).abs().max() > 1e-2  # the classes really differ


def test_class_blend_at_t_is_generation_with_soft_label(G) -> None:
    t = 0.3
    imgs = blending.class_blend_images(G, 11, 1, 0, [t])
    soft = torch.tensor([[t, 1 - t, 0.0]])  # from class 1 towards class 0
    assert (imgs[0] - _plain(G, 11, soft)).abs().max() <= 1e-5


def test_soft_label_equals_interpolated_embedding(G) -> None:
    """The paper interpolates embed(onehot); the embedding is affine, so the soft label is the same."""
    t = 0.4
    with torch.no_grad():
        e0 = G.mapping.embed(onehot(0, 3))
        e1 = G.mapping.embed(onehot(1, 3))
        mixed = G.mapping.embed(torch.from_numpy(blending.blend_weights(3, 0, 1, [t])).float())
    assert (mixed - ((1 - t) * e0 + t * e1)).abs().max() <= 1e-5


def test_class_blend_with_classifier_writes_strip_and_tables(G, tmp_path) -> None:
    clf = tiny_classifier(tmp_path, ["adeno", "squam", "normal"], px=12, um_px=4.0)
    res = blending.class_blend(G, 5, "adeno", "squam", steps=4, classifier=clf)
    np.testing.assert_allclose(res.ts, [0, 1 / 3, 2 / 3, 1])
    assert res.raw.shape == (4, 16, 16, 3) and res.ready.shape == (4, 12, 12, 3)
    np.testing.assert_allclose(res.predictions, reference_probs(res.ready, 3), atol=1e-5)
    paths = blending.write_class_blend(res, tmp_path / "out")
    rows = json.loads(paths["json"].read_text())["rows"]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[2]["pred_squam"] == pytest.approx(float(res.predictions[2, 1]))
    header = paths["csv"].read_text().splitlines()[0]
    assert header == "step,t,seed,class_from,class_to,pred_adeno,pred_squam,pred_normal"
    w, h = Image.open(paths["png"]).size
    assert w >= 4 * 64 and h >= 64


def test_class_blend_needs_two_steps(G) -> None:
    with pytest.raises(InputError):
        blending.class_blend(G, 0, 0, 1, steps=1)


def test_layer_blend_all_from_a_is_a_and_none_from_a_is_b(G) -> None:
    everything = range(G.num_ws)
    all_a = blending.layer_blend_images(G, [3], "adeno", "squam", everything)
    none_a = blending.layer_blend_images(G, [3], "adeno", "squam", [])
    assert (all_a[0] - _plain(G, 3, onehot(0, 3))).abs().max() <= 1e-5
    assert (none_a[0] - _plain(G, 3, onehot(1, 3))).abs().max() <= 1e-5


def test_layer_blend_alpha_endpoints(G) -> None:
    a0 = blending.layer_blend_images(G, [4], 0, 2, [0, 1], alpha=0.0)
    a1 = blending.layer_blend_images(G, [4], 0, 2, [0, 1], alpha=1.0)
    half = blending.layer_blend_images(G, [4], 0, 2, [0, 1], alpha=0.5)
    assert (a0[0] - _plain(G, 4, onehot(0, 3))).abs().max() <= 1e-5
    # alpha = 1 keeps A's w only at layers 0 and 1
    with torch.no_grad():
        w_a = G.mapping(z_from_seed(4, G.z_dim), onehot(0, 3))
        w_b = G.mapping(z_from_seed(4, G.z_dim), onehot(2, 3))
        w = w_b.clone()
        w[:, :2] = w_a[:, :2]
        ref1 = G.synthesis(w)[0]
        w[:, 2:] = 0.5 * w_a[:, 2:] + 0.5 * w_b[:, 2:]
        ref_half = G.synthesis(w)[0]
    assert (a1[0] - ref1).abs().max() <= 1e-5
    assert (half[0] - ref_half).abs().max() <= 1e-5


def test_layer_indices_are_checked(G) -> None:
    assert blending.parse_layers("0-2,4", G.num_ws) == (0, 1, 2, 4)
    assert blending.parse_layers("", G.num_ws) == ()
    with pytest.raises(InputError, match="outside"):
        blending.parse_layers(f"0-{G.num_ws}", G.num_ws)
    with pytest.raises(InputError):
        blending.parse_layers("a-b", G.num_ws)
    with pytest.raises(InputError, match="alpha"):
        blending.layer_blend_images(G, [0], 0, 1, [0], alpha=1.5)


def test_layer_blend_grid_records_and_picture(G, tmp_path) -> None:
    grid = blending.layer_blend(G, [1, 2], "adeno", "normal", alphas=(1.0, 0.5))
    assert grid.splits == tuple(range(G.num_ws + 1))
    assert len(grid.cells) == G.num_ws + 1 and all(len(r) == 4 for r in grid.cells)
    k2 = grid.cells[2][3]
    assert k2.layers_a == (0, 1) and k2.layers_b == tuple(range(2, G.num_ws))
    assert (k2.seed, k2.alpha, k2.class_a, k2.class_b) == (2, 0.5, "adeno", "normal")
    ref = blending.layer_blend_images(G, [2], 0, 2, [0, 1], alpha=0.5)
    from histobridge.models.stylegan2 import to_uint8

    np.testing.assert_array_equal(k2.image, to_uint8(ref)[0])
    paths = blending.write_layer_blend(grid, tmp_path)
    images = json.loads(paths["json"].read_text())["images"]
    assert len(images) == (G.num_ws + 1) * 4
    assert images[-1]["layers_a"] == list(range(G.num_ws)) and images[-1]["layers_b"] == []
    w, h = Image.open(paths["png"]).size
    assert w >= 4 * 64 and h >= (G.num_ws + 1) * 64


def test_layer_blend_explicit_layers_single_row(G) -> None:
    grid = blending.layer_blend(G, [0], 0, 1, layers_a=[0, 1, 2])
    assert len(grid.cells) == 1 and grid.cells[0][0].layers_a == (0, 1, 2)


def test_scalar_label_generator_blends_through_its_label() -> None:
    from histobridge.models.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(1)
    cfg = GeneratorConfig(z_dim=32, w_dim=32, c_dim=1, interp_embed=True, img_resolution=16, mapping_layers=2,
                          channel_base=256, channel_max=32)  # fmt: skip
    G = Generator(cfg).eval()
    imgs = blending.class_blend_images(G, 2, 0, 1, [0.0, 0.3, 1.0])
    for img, t in zip(imgs, (0.0, 0.3, 1.0), strict=True):
        assert (img - _plain(G, 2, torch.tensor([[t]]))).abs().max() <= 1e-5
