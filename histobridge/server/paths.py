"""Which files a request may name: only what lies under the configured folders.

Refused: URL schemes (``file:``, ``http:``…), any ``..`` component, and paths whose resolved form
(symlinks followed) leaves every allowed root. Nothing is opened before the check passes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

from histobridge.server.problems import ForbiddenPathError, NotFoundError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:(//|[^\\/]|$)")


class PathGuard:
    """Resolve request paths against allowed roots (resolved once, at start)."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = tuple(dict.fromkeys(Path(r).expanduser().resolve() for r in roots))

    def allowed(self, path: Path) -> bool:
        real = path.resolve()
        return any(real == r or real.is_relative_to(r) for r in self.roots)

    def resolve(self, text: str, *, what: str = "path") -> Path:
        """The real path of ``text`` (absolute, or relative to a root) if it stays inside a root."""
        if not isinstance(text, str) or not text.strip():
            raise ForbiddenPathError(f"{what}: empty path")
        if "\x00" in text:
            raise ForbiddenPathError(f"{what}: {text!r} contains a NUL character")
        if _SCHEME.match(text) and not PureWindowsPath(text).drive:
            raise ForbiddenPathError(f"{what}: {text!r} is a URL; name a file under the served folders")
        parts = set(PurePosixPath(text.replace("\\", "/")).parts)
        if ".." in parts:
            raise ForbiddenPathError(f"{what}: {text!r} contains '..'; name a file under the served folders")
        raw = Path(text).expanduser()
        candidates = [raw] if raw.is_absolute() else [r / raw for r in self.roots]
        for cand in candidates:
            if not self.allowed(cand):
                continue
            if cand.exists():
                return cand.resolve()
        if raw.is_absolute() and not self.allowed(raw):
            raise ForbiddenPathError(f"{what}: {text} is outside the served folders")
        if any(c.exists() for c in candidates):
            raise ForbiddenPathError(f"{what}: {text} leads outside the served folders (symlink)")
        raise NotFoundError(f"{what}: {text} not found under the served folders")


__all__ = ["PathGuard"]
