"""QuPath server builders (``serverBuilder`` in ``project.qpproj``) and image URIs.

A builder is either a plain ``"uri"`` reader or a wrapper around other builders (rotation, crop,
channel maths…). histobridge reads pixels straight from the file, so a
wrapper is honoured only when its effect can be reproduced exactly: ``pyramidize`` (same pixels)
and ``cropped`` (an offset and a size). Every other wrapper changes the pixels QuPath shows, so
the entry gets a ``problem`` instead of silently tiling different pixels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

PASS_THROUGH = frozenset({"uri", "pyramidize", "cropped"})
UNSUPPORTED: dict[str, str] = {
    "rotated": "a rotated image",
    "affine": "an affine-transformed image",
    "channels": "concatenated channels",
    "color": "a colour/channel transform",
    "swapRedBlue": "reordered RGB channels",
    "color_deconvolved": "a colour-deconvolved image",
    "normalized": "a normalised image",
    "typeConvert": "a pixel-type conversion",
    "sparse": "a sparse image assembled from several regions",
    "z_concatenated": "a z-concatenation of several images",
    "sliced": "a z/t slice selection",
    "z_projected": "a z-projection",
}
UM_PER_UNIT: dict[str, float] = {
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "mm": 1000.0, "nm": 0.001,
}
_WINDOWS_DRIVE = re.compile(r"^/?[A-Za-z]:([/\\]|$)")


@dataclass(frozen=True)
class ServerInfo:
    """What histobridge needs from one entry's server builder."""

    uri: str | None
    uris: tuple[str, ...]
    provider: str | None
    args: tuple[str, ...]
    chain: tuple[str, ...]
    crop_region: tuple[float, float, float, float] | None
    mpp_override: float | None
    problem: str | None
    stored_size: tuple[int, int] | None = None  # (width, height) of the file as QuPath read it


def _uri_builders(node: Any, found: list[Mapping[str, Any]]) -> None:
    """Every plain ``uri`` builder anywhere inside ``node`` (wrappers nest them under various keys)."""
    if isinstance(node, Mapping):
        kind = node.get("builderType")
        if kind == "uri" or (kind is None and isinstance(node.get("uri"), str)):
            found.append(node)
            return
        for value in node.values():
            _uri_builders(value, found)
    elif isinstance(node, list):
        for value in node:
            _uri_builders(value, found)


def _chain(builder: Mapping[str, Any]) -> tuple[list[str], list[Mapping[str, Any]]]:
    """Builder types from the outermost to the innermost along the ``builder`` links."""
    types: list[str] = []
    nodes: list[Mapping[str, Any]] = []
    node: Any = builder
    while isinstance(node, Mapping):
        kind = node.get("builderType") or ("uri" if isinstance(node.get("uri"), str) else "?")
        types.append(str(kind))
        nodes.append(node)
        node = node.get("builder")
    return types, nodes


def pixel_size_um(metadata: Any) -> float | None:
    """µm/px from ``ImageServerMetadata.pixelCalibration``; None when absent or in pixels."""
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("pixelCalibration"), Mapping):
        return None
    cal = metadata["pixelCalibration"]
    values = []
    for key in ("pixelWidth", "pixelHeight"):
        item = cal.get(key)
        if not isinstance(item, Mapping):
            continue
        factor = UM_PER_UNIT.get(str(item.get("unit", "")).strip())
        value = item.get("value")
        if factor is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value) and value > 0:
            values.append(float(value) * factor)
    return sum(values) / len(values) if values else None


def stored_size(metadata: Any) -> tuple[int, int] | None:
    """(width, height) from ``ImageServerMetadata``; None when absent or not positive integers."""
    if not isinstance(metadata, Mapping):
        return None
    w, h = metadata.get("width"), metadata.get("height")
    if isinstance(w, bool) or isinstance(h, bool) or not isinstance(w, int) or not isinstance(h, int):
        return None
    return (w, h) if w > 0 and h > 0 else None


Rect = tuple[float, float, float, float]


def _crop(nodes: list[Mapping[str, Any]], where: str) -> tuple[Rect | None, str | None]:
    """Combined crop of all ``cropped`` wrappers (inner regions are relative to the outer ones)."""
    x = y = 0.0
    size: tuple[float, float] | None = None
    for node in reversed(nodes):  # innermost first: each region is in its inner server's space
        if node.get("builderType") != "cropped":
            continue
        region = node.get("region")
        try:
            rx, ry, rw, rh = (float(region[k]) for k in ("x", "y", "width", "height"))
        except (TypeError, KeyError, ValueError):
            return None, f"{where}: 'cropped' server without a usable region ({region!r})"
        if int(region.get("z", 0) or 0) or int(region.get("t", 0) or 0):
            return None, f"{where}: 'cropped' server selects another z/t plane; only plane 0 is read"
        x, y, size = x + rx, y + ry, (rw, rh)
    return ((x, y, size[0], size[1]) if size else None), None


def _args_problem(args: tuple[str, ...]) -> str | None:
    for i, a in enumerate(args):
        if a in ("--rotate", "--order"):
            return f"server argument {a} changes the pixels; only the file as stored can be read"
        if a == "--series" and i + 1 < len(args) and args[i + 1].strip() != "0":
            return f"Bio-Formats series {args[i + 1]} is selected; only series 0 (the main image) is read"
    return None


def resolve_server(builder: Any, where: str) -> ServerInfo:
    """Resolve a ``serverBuilder`` to its image URI and the conditions for reading it ourselves."""
    if not isinstance(builder, Mapping):
        return ServerInfo(None, (), None, (), (), None, None, f"{where}: no serverBuilder object")
    types, nodes = _chain(builder)
    leaves: list[Mapping[str, Any]] = []
    _uri_builders(builder, leaves)
    uris = tuple(str(leaf["uri"]) for leaf in leaves if isinstance(leaf.get("uri"), str))
    leaf = leaves[0] if leaves else {}
    args = tuple(str(a) for a in leaf.get("args") or ())
    provider = leaf.get("providerClassName") if isinstance(leaf.get("providerClassName"), str) else None
    mpp = next((v for v in (pixel_size_um(n.get("metadata")) for n in nodes) if v is not None), None)
    crop, problem = _crop(nodes, where)
    bad = [t for t in types if t not in PASS_THROUGH]
    if bad:
        what = UNSUPPORTED.get(bad[0], f"an unknown server type {bad[0]!r}")
        problem = (f"{where}: QuPath shows {what} (serverBuilder {' > '.join(types)}); histobridge reads "
                   "pixels straight from the file and would tile different pixels, so this image is skipped")
    elif not uris:
        problem = f"{where}: serverBuilder names no image URI"
    elif len(set(uris)) > 1:
        n = len(set(uris))
        problem = f"{where}: serverBuilder combines {n} image files; only single-file images are read"
    else:
        arg_problem = _args_problem(args)
        problem = problem or (f"{where}: {arg_problem}" if arg_problem else None)
    size = stored_size(leaf.get("metadata"))
    return ServerInfo(uris[0] if uris else None, uris, provider, args, tuple(types), crop, mpp, problem, size)


def is_openslide(provider: str | None) -> bool:
    """True for QuPath's OpenSlide reader (which crops to the slide bounds by default)."""
    return provider is not None and "openslide" in provider.lower()


def uri_to_path(uri: str) -> PurePath | None:
    """Local path of a ``file:`` URI in any of Java's or Python's spellings; None when not local.

    ``file:/a%20b``, ``file:///a%20b`` and ``file://localhost/a`` give ``/a b``; Windows drive
    URIs (``file:/C:/x``) give a :class:`PureWindowsPath`; ``file://server/share/x`` gives a UNC path.
    """
    if not uri:
        return None
    if "://" not in uri and not uri.lower().startswith("file:"):
        return _pure(uri) if uri.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(uri) else None
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        return None
    path = unquote(parts.path)
    if parts.netloc and parts.netloc.lower() != "localhost":
        return PureWindowsPath(f"//{parts.netloc}{path}")
    return _pure(path)


def _pure(path: str) -> PurePath:
    if _WINDOWS_DRIVE.match(path):
        return PureWindowsPath(path.lstrip("/"))
    return PurePosixPath(path)


def path_to_uri(path: str | Path) -> str:
    """Java-style ``file:/abs/path`` URI (percent-encoded), as QuPath writes it in a project."""
    p = Path(path).absolute()
    text = p.as_posix()
    if not text.startswith("/"):
        text = "/" + text  # Windows drive paths: file:/C:/...
    return "file:" + quote(text, safe="/:@!$&'()*+,;=-._~")


def same_uri(a: str, b: str) -> bool:
    """Whether two URIs name the same local file (``file:/`` and ``file:///`` spellings alike)."""
    pa, pb = uri_to_path(a), uri_to_path(b)
    if pa is None or pb is None:
        return a == b
    return pa == pb


__all__ = [
    "ServerInfo",
    "is_openslide",
    "path_to_uri",
    "pixel_size_um",
    "resolve_server",
    "same_uri",
    "stored_size",
    "uri_to_path",
]
