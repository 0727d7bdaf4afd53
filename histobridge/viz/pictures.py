"""Labelled pictures of tiles: montage grids, captioned strips, atomic PNG output.

The pictures are meant for teaching and for the HTML report, so every function returns a
``PIL.Image`` (the caller decides where it goes) and text is drawn with Pillow's built-in font, which
needs no font files on the machine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from histobridge._atomic import atomic_path
from histobridge.errors import InputError
from histobridge.viz.text import font as _font

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
BLANK = (235, 235, 235)

ImageLike = np.ndarray | Image.Image


@dataclass(frozen=True)
class Layout:
    """Pixel geometry of a montage; exposed so callers and tests can predict the picture size."""

    rows: int
    cols: int
    cell_px: int
    col_w: int  # >= cell_px: wide enough for the captions and column labels
    pad: int
    left: int
    top: int
    caption_h: int

    @property
    def size(self) -> tuple[int, int]:
        width = self.left + self.cols * (self.col_w + self.pad) + self.pad
        height = self.top + self.rows * (self.cell_px + self.caption_h + self.pad) + self.pad
        return width, height

    def cell_origin(self, row: int, col: int) -> tuple[int, int]:
        """Top-left corner of the image in cell (row, col) (images are centred in their column)."""
        x = self.left + self.pad + col * (self.col_w + self.pad) + (self.col_w - self.cell_px) // 2
        y = self.top + self.pad + row * (self.cell_px + self.caption_h + self.pad)
        return x, y

    def column_left(self, col: int) -> int:
        return self.left + self.pad + col * (self.col_w + self.pad)


def _text_size(text: str, size: int) -> tuple[int, int]:
    if not text:
        return 0, 0
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    box = draw.multiline_textbbox((0, 0), text, font=_font(size), spacing=2)
    return int(box[2]) + 1, int(box[3]) + 1


def to_pil(image: ImageLike) -> Image.Image:
    """A uint8 HWC/HW array (or a PIL image) as an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise InputError(f"pictures need uint8 images, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InputError(f"pictures need HxWx3 images, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")


def _cell_px(cells: Sequence[Sequence[ImageLike | None]], cell_px: int | None, min_px: int) -> int:
    if cell_px is not None:
        if cell_px < 1:
            raise InputError(f"cell_px must be positive, got {cell_px}")
        return cell_px
    sizes = [max(to_pil(c).size) for row in cells for c in row if c is not None]
    return max([*sizes, min_px])


def montage(
    cells: Sequence[Sequence[ImageLike | None]],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    cell_px: int | None = None,
    min_cell_px: int = 64,
    pad: int = 2,
    font_size: int = 11,
) -> Image.Image:
    """A grid of tiles with optional row labels (left), column labels (top) and per-cell captions.

    Rows may be ragged; a ``None`` cell is drawn as a grey square. Every tile is resized (bicubic) to
    ``cell_px`` (default: the largest tile, at least ``min_cell_px``) so tiles of different sizes
    (the raw GAN image and the store tile) line up and tiny tiles stay visible.
    """
    rows = len(cells)
    cols = max((len(r) for r in cells), default=0)
    if rows == 0 or cols == 0:
        raise InputError("a montage needs at least one image")
    _check_labels(row_labels, rows, "row_labels")
    _check_labels(col_labels, cols, "col_labels")
    layout = plan_layout(cells, row_labels, col_labels, captions, cell_px, pad, font_size, min_cell_px)
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    for r, row in enumerate(cells):
        for c in range(cols):
            x, y = layout.cell_origin(r, c)
            cell = row[c] if c < len(row) else None
            if cell is None:
                draw.rectangle([x, y, x + layout.cell_px - 1, y + layout.cell_px - 1], fill=BLANK)
            else:
                tile = to_pil(cell)
                if tile.size != (layout.cell_px, layout.cell_px):
                    tile = tile.resize((layout.cell_px, layout.cell_px), Image.Resampling.BICUBIC)
                canvas.paste(tile, (x, y))
            text = captions[r][c] if captions is not None and c < len(captions[r]) else ""
            if text:
                draw.multiline_text(
                    (layout.column_left(c), y + layout.cell_px + 1), text, fill=TEXT, font=font, spacing=2
                )
        if row_labels is not None:
            _, y = layout.cell_origin(r, 0)
            draw.multiline_text((pad, y), row_labels[r], fill=TEXT, font=font, spacing=2)
    if col_labels is not None:
        for c, label in enumerate(col_labels):
            draw.multiline_text((layout.column_left(c), pad), label, fill=TEXT, font=font, spacing=2)
    return canvas


def plan_layout(
    cells: Sequence[Sequence[ImageLike | None]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    cell_px: int | None = None,
    pad: int = 2,
    font_size: int = 11,
    min_cell_px: int = 64,
) -> Layout:
    """The layout :func:`montage` will use (label bands sized to the text actually drawn)."""
    rows = len(cells)
    cols = max((len(r) for r in cells), default=0)
    px = _cell_px(cells, cell_px, min_cell_px)
    texts = [t for row in captions or () for t in row] + list(col_labels or ())
    col_w = max([px, *(_text_size(t, font_size)[0] for t in texts)])
    left = max((_text_size(t, font_size)[0] for t in row_labels or ()), default=0)
    top = max((_text_size(t, font_size)[1] for t in col_labels or ()), default=0)
    cap = max((_text_size(t, font_size)[1] for row in captions or () for t in row), default=0)
    return Layout(
        rows=rows,
        cols=cols,
        cell_px=px,
        col_w=col_w,
        pad=pad,
        left=left + pad if left else 0,
        top=top + pad if top else 0,
        caption_h=cap + 1 if cap else 0,
    )


def strip(
    images: Sequence[ImageLike],
    captions: Sequence[str] | None = None,
    *,
    title: str | None = None,
    cell_px: int | None = None,
    min_cell_px: int = 64,
    pad: int = 2,
    font_size: int = 11,
) -> Image.Image:
    """One row of tiles with a caption under each (e.g. an interpolation ``t`` and a prediction)."""
    if captions is not None and len(captions) != len(images):
        raise InputError(f"strip: {len(images)} images but {len(captions)} captions")
    return montage(
        [list(images)],
        row_labels=[title] if title else None,
        captions=[list(captions)] if captions is not None else None,
        cell_px=cell_px,
        min_cell_px=min_cell_px,
        pad=pad,
        font_size=font_size,
    )


def save_png(img: Image.Image, path: str | os.PathLike[str]) -> None:
    """Write a PNG atomically (a reader never sees half a picture)."""
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def _check_labels(labels: Sequence[str] | None, n: int, what: str) -> None:
    if labels is not None and len(labels) != n:
        raise InputError(f"montage: {what} has {len(labels)} entries for {n} {what.split('_')[0]}s")


__all__ = ["Layout", "montage", "plan_layout", "save_png", "strip", "to_pil"]
