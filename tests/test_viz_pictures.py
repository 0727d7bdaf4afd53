"""Montage and strip geometry, labels and atomic PNG output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from histobridge.errors import InputError
from histobridge.viz import pictures


def _tile(value: int, px: int = 20) -> np.ndarray:
    return np.full((px, px, 3), value, dtype=np.uint8)


def test_montage_without_labels_has_exact_size_and_places_tiles() -> None:
    cells = [[_tile(10), _tile(20), _tile(30)], [_tile(40), None, _tile(60)]]
    img = pictures.montage(cells, cell_px=20, pad=2)
    assert img.size == (3 * 22 + 2, 2 * 22 + 2)
    arr = np.asarray(img)
    assert tuple(arr[2 + 5, 2 + 22 + 5]) == (20, 20, 20)  # row 0, col 1
    assert tuple(arr[2 + 22 + 5, 2 + 44 + 5]) == (60, 60, 60)  # row 1, col 2
    assert tuple(arr[2 + 22 + 5, 2 + 22 + 5]) == pictures.BLANK  # the missing cell


def test_montage_labels_widen_the_picture_by_the_planned_bands() -> None:
    cells = [[_tile(0), _tile(255)], [_tile(100), _tile(200)]]
    kwargs = {"row_labels": ["real", "synthetic"], "col_labels": ["seed 1", "seed 2"]}
    layout = pictures.plan_layout(cells, **kwargs, captions=[["a", "b"], ["c", "d"]])
    img = pictures.montage(cells, **kwargs, captions=[["a", "b"], ["c", "d"]])
    assert img.size == layout.size
    assert layout.left > 0 and layout.top > 0 and layout.caption_h > 0
    assert layout.cell_px == 64  # small tiles are shown at least 64 px wide
    x, y = layout.cell_origin(1, 1)
    assert tuple(np.asarray(img)[y + 30, x + 30]) == (200, 200, 200)
    # text was drawn in the label band
    assert np.asarray(img)[: layout.top, :].min() < 128


def test_strip_size_and_caption_checks(tmp_path) -> None:
    imgs = [_tile(v, 32) for v in (0, 80, 160, 240)]
    s = pictures.strip(imgs, [f"t={t:.2f}" for t in (0, 1 / 3, 2 / 3, 1)], cell_px=32, min_cell_px=8)
    layout = pictures.plan_layout([imgs], captions=[["t=0.00", "t=0.33", "t=0.67", "t=1.00"]], cell_px=32)
    assert s.size == layout.size and s.size[0] >= 4 * 34
    with pytest.raises(InputError):
        pictures.strip(imgs, ["only one"])
    out = tmp_path / "sub" / "strip.png"
    pictures.save_png(s, out)
    assert Image.open(out).size == s.size
    assert [p.name for p in out.parent.iterdir()] == ["strip.png"]  # no temporary left behind


def test_bad_inputs() -> None:
    with pytest.raises(InputError):
        pictures.montage([])
    with pytest.raises(InputError):
        pictures.montage([[np.zeros((4, 4, 3), np.float32)]])
    with pytest.raises(InputError, match="row_labels"):
        pictures.montage([[_tile(0)]], row_labels=["a", "b"])
