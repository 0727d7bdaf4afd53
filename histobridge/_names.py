"""File names derived from user text (image, class and region names)."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, default: str = "image") -> str:
    """``text`` with every run of characters outside ``A-Za-z0-9._-`` replaced by ``_``.

    Leading/trailing dots and underscores are dropped (no hidden files, no ``..``); an empty result
    becomes ``default``.
    """
    return _UNSAFE.sub("_", text).strip("._") or default


__all__ = ["safe_name"]
