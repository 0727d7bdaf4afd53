"""Colour controls on generated tiles with known content: a colour detector must be exposed by them,
a texture reader must not."""

from __future__ import annotations

import numpy as np
import pytest

from histobridge.demo.controls import baseline_swaps
from histobridge.errors import InputError
from histobridge.synthetic import controls as ctl
from histobridge.synthetic.seeds import SwapThresholds

PURPLE, PINK = (130, 80, 150), (200, 140, 170)


def _tiles(colour: tuple[int, int, int], striped: bool, n: int, seed: int) -> np.ndarray:
    """Class 0 is purple and striped, class 1 pink and smooth (with a little noise)."""
    rng = np.random.default_rng(seed)
    x = np.tile(np.asarray(colour, np.float64), (n, 16, 16, 1)) + rng.normal(0, 3, (n, 16, 16, 3))
    if striped:
        x[:, ::2] -= 40
    return np.clip(x, 0, 255).astype(np.uint8)


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    tiles = np.concatenate([_tiles(PURPLE, True, 20, seed), _tiles(PINK, False, 20, seed + 1)])
    return tiles, np.repeat([0, 1], 20)


class TextureReader:
    """Calls a tile class 0 when rows differ far more than columns (stripes), whatever its colour."""

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        g = ctl.grayscale(images)[..., 0].astype(np.float64)
        rows = np.abs(np.diff(g, axis=1)).mean(axis=(1, 2))
        cols = np.abs(np.diff(g, axis=2)).mean(axis=(1, 2)) + 1e-6
        p0 = 1 / (1 + np.exp(-(rows / cols - 2)))
        return np.stack([p0, 1 - p0], axis=1)


def test_baseline_is_the_nearest_mean_colour() -> None:
    tiles, labels = _data()
    base = ctl.ColourBaseline.fit(tiles, labels, ["A", "B"])
    assert base.predict(tiles).argmax(axis=1).tolist() == labels.tolist()
    # the purple class mean is its colour less half the stripe depth in every channel
    assert np.allclose(base.means[0], np.asarray(PURPLE) - 20, atol=1.5)
    assert np.allclose(base.means[1], PINK, atol=1.5)
    p = base.predict(tiles)
    assert np.allclose(p.sum(axis=1), 1) and p.min() >= 0


def test_recolour_moves_a_tile_to_the_target_statistics() -> None:
    tiles, _ = _data()
    mean, std = np.array([200.0, 100.0, 50.0]), np.array([10.0, 5.0, 2.0])
    moved = ctl.recolour(tiles[:3], mean, std).astype(np.float64)
    assert np.allclose(moved.mean(axis=(1, 2)), mean, atol=0.6)
    assert np.allclose(moved.std(axis=(1, 2)), std, atol=0.6)
    # the pattern survives: striped rows stay darker than their neighbours
    assert (moved[:, ::2, :, 0].mean() < moved[:, 1::2, :, 0].mean())


def test_grayscale_uses_luminance() -> None:
    tile = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]], np.uint8)
    g = ctl.grayscale(tile)
    assert g[0, 0, :, 0].tolist() == [76, 150, 29] and (g[..., 0] == g[..., 2]).all()


def test_a_colour_detector_is_exposed_and_a_texture_reader_is_not() -> None:
    tiles, labels = _data()
    base = ctl.ColourBaseline.fit(tiles, labels, ["A", "B"])
    stats = [ctl.pixel_stats(tiles[labels == k]) for k in (0, 1)]
    moved = np.concatenate([ctl.recolour(tiles[labels == 0], *stats[1]),
                            ctl.recolour(tiles[labels == 1], *stats[0])])
    # the colour detector follows the colour: recoloured tiles lose their class
    assert ctl.agreement(base.predict(moved), labels) == 0.0
    # the texture reader keeps it, and a colour-only rule does not match it there
    texture = TextureReader()
    assert ctl.agreement(texture.predict(moved), labels) == 1.0
    assert ctl.colour_carries(1.0, 0.0) is False and ctl.colour_carries(1.0, 0.97) is True
    assert ctl.colour_carries(float("nan"), 1.0) is False


def test_stain_swap_moves_stain_amounts_and_keeps_the_pattern() -> None:
    tiles, labels = _data()
    mean, std = ctl.stain_stats(tiles[labels == 1])
    moved = ctl.stain_swap(tiles[labels == 0], mean, std)
    got_mean, got_std = ctl.stain_stats(moved)
    # haematoxylin and eosin take the target's statistics (up to uint8 rounding); the residual stays
    assert np.allclose(got_mean[:2], mean[:2], atol=0.02) and np.allclose(got_std[:2], std[:2], atol=0.02)
    assert np.allclose(got_mean[2], ctl.stain_stats(tiles[labels == 0])[0][2], atol=0.02)
    g = ctl.grayscale(moved)[..., 0].astype(np.float64)
    assert g[:, ::2].mean() < g[:, 1::2].mean()  # stripes survive


def test_shuffled_pixels_keep_colours_and_lose_form() -> None:
    tiles, labels = _data()
    shuffled = ctl.shuffle_pixels(tiles, seed=1)
    for a, b in zip(tiles[:3], shuffled[:3], strict=True):  # the same pixels, in another order
        assert np.array_equal(np.sort(a.reshape(-1, 3), axis=0), np.sort(b.reshape(-1, 3), axis=0))
    assert not np.array_equal(shuffled, tiles)
    base = ctl.ColourBaseline.fit(tiles, labels, ["A", "B"])
    # the colour rule is unmoved by shuffling; the texture reader falls to chance
    assert ctl.shuffled_balanced_accuracy(base, tiles, labels, 2) == 1.0
    assert ctl.shuffled_balanced_accuracy(TextureReader(), tiles, labels, 2) == pytest.approx(0.5)
    # stain swapping exposes the colour rule as recolouring does, and spares the texture reader
    assert ctl.stain_swap_keeps_class(base, tiles, labels, ["A", "B"]) == {"A": 0.0, "B": 0.0}
    assert ctl.stain_swap_keeps_class(TextureReader(), tiles, labels, ["A", "B"]) == {"A": 1.0, "B": 1.0}


def test_balanced_accuracy_interval() -> None:
    labels = np.repeat([0, 1], [10, 90])
    pred = labels.copy()
    pred[:5] = 1  # half of the small class wrong
    ba, lo, hi = ctl.balanced_accuracy_ci(pred, labels, 2, resamples=300)
    assert ba == pytest.approx(0.75)  # plain accuracy would say 0.95
    assert lo < 0.75 < hi and lo >= 0.4 and hi <= 1.0


def test_fit_needs_every_class() -> None:
    tiles, labels = _data()
    with pytest.raises(InputError, match="no tiles of class 'C'"):
        ctl.ColourBaseline.fit(tiles, labels, ["A", "B", "C"])


def test_recording_predictor_and_baseline_swaps() -> None:
    """The baseline's swap verdicts come from the images the seed search classified, chunk by chunk."""
    tiles, labels = _data()
    base = ctl.ColourBaseline.fit(tiles, labels, ["A", "B"])

    class Fixed:
        config = None

        def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
            return np.tile([0.5, 0.5], (len(images), 1))

    rec = ctl.RecordingPredictor(Fixed(), base)
    # two chunks: (starts, ends) = (purple, pink) for 3 seeds, then (pink, purple) for 2 seeds
    assert rec.predict(np.concatenate([tiles[:3], tiles[20:23]])).shape == (6, 2)
    rec.predict(np.concatenate([tiles[20:22], tiles[:2]]))
    verdicts = baseline_swaps(rec.other_predictions(), [3, 2], 0, 1, SwapThresholds(), 0.1)
    assert verdicts == ["strong"] * 3 + ["none"] * 2
