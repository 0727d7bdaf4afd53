"""QuPath's project class list (``classifiers/classes.json``) and its packed ARGB colours.

QuPath stores a colour as one Java ``int``: packed ARGB, so opaque colours are negative numbers
(``-65536`` is opaque red). Python ints are unbounded, hence the explicit 32-bit wrap both ways.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from histobridge._atomic import write_json
from histobridge.errors import ProjectError
from histobridge.qupath.annotations import PathClass

_U32 = 1 << 32
_I32_MAX = (1 << 31) - 1


def argb_to_rgb(value: int) -> tuple[int, int, int]:
    """Decode a packed (signed or unsigned) 32-bit ARGB int into ``(r, g, b)``; alpha is dropped."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"packed ARGB colour must be an int, not {value!r}")
    v = value % _U32
    return (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF


def argb_to_rgb_or_none(value: Any) -> tuple[int, int, int] | None:
    """Like :func:`argb_to_rgb` for values that may be absent: ``None`` (or a non-int) gives None.

    QuPath stores "no colour" as a null ``Integer`` (objects without their own colour); readers of
    such fields use this variant, everything else the strict one.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        return None
    return argb_to_rgb(value)


def rgb_to_argb(rgb: Sequence[int], alpha: int = 255) -> int:
    """Encode ``(r, g, b)`` as QuPath writes it: packed ARGB as a signed 32-bit int."""
    if len(rgb) != 3:
        raise ValueError(f"expected (r, g, b), got {rgb!r}")
    parts = [int(c) for c in (alpha, *rgb)]
    if any(not 0 <= c <= 255 for c in parts):
        raise ValueError(f"colour components must be 0..255, got rgb={tuple(rgb)!r} alpha={alpha}")
    a, r, g, b = parts
    v = (a << 24) | (r << 16) | (g << 8) | b
    return v - _U32 if v > _I32_MAX else v


def _parse_class(item: Any, where: str) -> PathClass:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ProjectError(f"{where}: each pathClasses entry needs a string 'name', got {item!r}")
    color = item.get("color")
    if color is None:
        return PathClass(item["name"], None)
    if isinstance(color, bool) or not isinstance(color, int):
        raise ProjectError(
            f"{where}: class {item['name']!r} has colour {color!r}; expected a packed ARGB int"
        )
    return PathClass(item["name"], argb_to_rgb(color))


def read_classes(path: str | os.PathLike[str]) -> list[PathClass]:
    """Classes from a ``classes.json`` file (or a project folder holding ``classifiers/classes.json``).

    A missing file means an empty list, as in QuPath, which deletes the file when no class is left.
    """
    p = Path(path)
    if p.is_dir():
        from histobridge.qupath.layout import classes_path

        p = classes_path(p)
    if not p.exists():
        return []
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProjectError(f"{p}: cannot read class list: {err}") from err
    items = doc.get("pathClasses") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ProjectError(f"{p}: expected {{'pathClasses': [...]}}, found {type(doc).__name__}")
    return [_parse_class(item, str(p)) for item in items]


def write_classes(path: str | os.PathLike[str], classes: Iterable[PathClass]) -> None:
    """Write ``classes.json`` atomically; a class without a colour gets QuPath's neutral grey."""
    items = [
        {"name": c.name, "color": rgb_to_argb(c.color if c.color is not None else (128, 128, 128))}
        for c in classes
    ]
    write_json(path, {"pathClasses": items})


def class_color(classes: Iterable[PathClass], name: str | None) -> tuple[int, int, int] | None:
    """The colour of class ``name`` in ``classes`` (None when absent or unclassified)."""
    if name is None:
        return None
    for c in classes:
        if c.name == name:
            return c.color
    return None


__all__ = [
    "argb_to_rgb",
    "argb_to_rgb_or_none",
    "class_color",
    "read_classes",
    "rgb_to_argb",
    "write_classes",
]
