"""Heatmap pictures: a class's probability grid drawn over the slide thumbnail, with a colour bar.

Drawn with Pillow only (no plotting library needed). Grid cells without a tile (NaN) stay
transparent, so the tissue underneath remains visible where nothing was predicted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from histobridge._atomic import atomic_path
from histobridge.errors import InputError

# A perceptually ordered dark-blue → teal → yellow ramp (anchor colours, interpolated linearly).
RAMP_ANCHORS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (48, 18, 90)),
    (0.25, (56, 82, 140)),
    (0.5, (34, 145, 140)),
    (0.75, (110, 200, 90)),
    (1.0, (250, 230, 40)),
)
BAR_W = 18
MARGIN = 8


@dataclass(frozen=True)
class HeatGrid:
    """A regular grid of values in level-0 pixels: cell (row, col) covers origin + (col, row) · step."""

    values: np.ndarray  # (rows, cols) float, NaN where no tile
    origin: tuple[float, float]
    step: float


def colour_lut(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 colours along the ramp."""
    pos = np.array([a for a, _ in RAMP_ANCHORS])
    cols = np.array([c for _, c in RAMP_ANCHORS], dtype=np.float64)
    t = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(t, pos, cols[:, k]) for k in range(3)], axis=1).round().astype(np.uint8)


def colourise(values: np.ndarray, vmin: float = 0.0, vmax: float = 1.0, alpha: int = 170) -> np.ndarray:
    """RGBA uint8 for a float array; NaN becomes fully transparent."""
    lut = colour_lut()
    span = vmax - vmin if vmax > vmin else 1.0
    finite = np.isfinite(values)
    idx = np.zeros(values.shape, np.int64)
    idx[finite] = np.clip((values[finite] - vmin) / span * 255.0, 0, 255).round().astype(np.int64)
    rgba = np.zeros((*values.shape, 4), np.uint8)
    rgba[..., :3] = lut[idx]
    rgba[..., 3] = np.where(finite, alpha, 0)
    return rgba


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def overlay_picture(
    thumbnail: np.ndarray, thumb_downsample: float, grid: HeatGrid, *, title: str = "",
    vmin: float = 0.0, vmax: float = 1.0,
) -> Image.Image:
    """The thumbnail with ``grid`` blended on at its exact level-0 position, plus a labelled colour bar."""
    base = Image.fromarray(np.ascontiguousarray(thumbnail[..., :3])).convert("RGBA")
    rows, cols = grid.values.shape
    if rows and cols:
        heat = Image.fromarray(colourise(grid.values, vmin, vmax), "RGBA")
        x0 = grid.origin[0] / thumb_downsample
        y0 = grid.origin[1] / thumb_downsample
        w = max(1, round(cols * grid.step / thumb_downsample))
        h = max(1, round(rows * grid.step / thumb_downsample))
        heat = heat.resize((w, h), Image.Resampling.NEAREST)
        layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
        layer.paste(heat, (round(x0), round(y0)))
        base = Image.alpha_composite(base, layer)
    return _with_colour_bar(base.convert("RGB"), title, vmin, vmax)


def _with_colour_bar(img: Image.Image, title: str, vmin: float, vmax: float) -> Image.Image:
    font = _font()
    label_w = 44
    top = 22 if title else MARGIN
    out = Image.new("RGB", (img.width + 2 * MARGIN + BAR_W + label_w, img.height + top + MARGIN), "white")
    out.paste(img, (0, top))
    draw = ImageDraw.Draw(out)
    if title:
        draw.text((MARGIN, 4), title, fill=(0, 0, 0), font=font)
    bar_h = max(32, min(img.height, 256))
    ramp = colour_lut(bar_h)[::-1]
    bar = np.repeat(ramp[:, None, :], BAR_W, axis=1)
    bx, by = img.width + MARGIN, top
    out.paste(Image.fromarray(bar, "RGB"), (bx, by))
    draw.rectangle((bx - 1, by - 1, bx + BAR_W, by + bar_h), outline=(0, 0, 0))
    for frac in (0.0, 0.5, 1.0):
        y = by + round((1 - frac) * (bar_h - 1))
        draw.line((bx + BAR_W, y, bx + BAR_W + 3, y), fill=(0, 0, 0))
        draw.text((bx + BAR_W + 5, y - 6), f"{vmin + frac * (vmax - vmin):.2g}", fill=(0, 0, 0), font=font)
    return out


def write_overlays(
    thumbnail: np.ndarray, thumb_downsample: float, stack: np.ndarray, origin: tuple[float, float],
    step: float, names: Sequence[str], paths: Sequence[str | os.PathLike[str]], *, title_prefix: str = "",
) -> None:
    """One PNG per class (``stack`` is (rows, cols, classes)), each written atomically."""
    if stack.ndim != 3 or stack.shape[2] != len(names) or len(names) != len(paths):
        raise InputError(
            f"overlay: {stack.shape} heatmap does not match {len(names)} names / {len(paths)} paths"
        )
    for k, (name, path) in enumerate(zip(names, paths, strict=True)):
        grid = HeatGrid(stack[..., k], origin, step)
        pic = overlay_picture(thumbnail, thumb_downsample, grid, title=f"{title_prefix}{name}")
        with atomic_path(path) as tmp:
            pic.save(tmp, format="PNG", compress_level=1)  # fast: level 6 costs ~0.5 s per 1024² picture


__all__ = ["HeatGrid", "colour_lut", "colourise", "overlay_picture", "write_overlays"]
