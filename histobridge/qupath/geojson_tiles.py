"""Tile features serialised from arrays in bulk: the bytes the per-feature writer gives, without a loop.

A heatmap writes 10⁵–10⁶ tiles. Per tile only a UUID and seven numbers change; everything else is
one of a few constant pieces. Numbers are formatted for a whole array at once (orjson writes the
shortest round-trip digits, as ``repr`` does, and where ``repr`` spells a number otherwise that one
is spelt by ``repr``), UUIDs come from one ``os.urandom`` call, and the pieces of every feature are
laid out in a table of text references joined with one ``str.join`` per chunk of rows
(``bytes.join`` takes several times as long over millions of small pieces).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import orjson

from histobridge.errors import AnnotationError
from histobridge.qupath.geojson_load import parse_json

CHUNK_ROWS = 16384  # rows assembled per join: bounds the piece table (~30 references a row)
SEPARATOR = b",\n"  # between features; never inside one (compact JSON escapes newlines)
# repr writes fixed notation for 1e-4 <= |v| < 1e16; orjson does too, with the same digits, but
# spells smaller and larger numbers otherwise (0.00001 for 1e-05, 1e-9 for 1e-09).
_REPR_LOW, _REPR_HIGH = 1e-4, 1e16
_HEX = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), np.uint16)  # byte → its two hex digits
_UUID_GROUPS = ((0, 8), (9, 13), (14, 18), (19, 23), (24, 36))  # where the 32 digits go, between dashes


@dataclass(frozen=True)
class FeatureBlock:
    """Features already serialised: compact JSON objects, UTF-8, joined by ``",\\n"`` in a few chunks.

    Immutable, so one block can be written to several files (they then share the tile ids).
    Iterating gives each feature's text, as the per-feature serialisers do.
    """

    chunks: tuple[bytes, ...]
    count: int

    def __iter__(self) -> Iterator[str]:
        return iter(self.texts())

    def __len__(self) -> int:
        return self.count

    def write_to(self, fh: IO[bytes]) -> None:
        """The features, separated, without a bracket around them."""
        for i, chunk in enumerate(self.chunks):
            if i:
                fh.write(SEPARATOR)
            fh.write(chunk)

    def texts(self) -> list[str]:
        """Each feature's JSON text."""
        sep = SEPARATOR.decode()
        return [t for chunk in self.chunks for t in chunk.decode("utf-8").split(sep)]

    def features(self) -> list[dict[str, Any]]:
        """Each feature parsed (one parse of the whole block)."""
        parsed: list[dict[str, Any]] = parse_json(b"[" + SEPARATOR.join(self.chunks) + b"]")
        return parsed


def number_texts(values: np.ndarray) -> list[str]:
    """``repr(float(v))`` for every finite value (row-major); non-finite ones give ``"null"``."""
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    if not flat.size:
        return []
    out = orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode("ascii").split(",")
    size = np.abs(flat)
    with np.errstate(invalid="ignore"):
        other = ((size < _REPR_LOW) & (size > 0)) | ((size >= _REPR_HIGH) & (size < np.inf))
    for i in np.flatnonzero(other).tolist():
        out[i] = repr(float(flat[i]))
    return out


def round_half_even_3(values: np.ndarray) -> np.ndarray:
    """``round(v, 3)`` for every value, exactly as Python rounds (from the exact binary value).

    ``rint(v * 1000) / 1000`` gives the same float unless ``v * 1000`` lies so close to a half that
    the product's rounding may have moved it across; those few are rounded by Python.
    """
    v = np.asarray(values, dtype=np.float64)
    scaled = v * 1000.0
    out = np.rint(scaled) / 1000.0
    with np.errstate(invalid="ignore"):
        doubtful = ~(np.abs(scaled - np.floor(scaled) - 0.5) > np.abs(scaled) * 1e-15 + 1e-12)
        doubtful |= ~(np.abs(scaled) < 2.0**52)
    flat_in, flat_out = v.reshape(-1), out.reshape(-1)
    for i in np.flatnonzero(doubtful.reshape(-1)).tolist():
        flat_out[i] = round(float(flat_in[i]), 3)
    return out


def uuid4_texts(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs in the canonical lower-case spelling (``str(uuid.uuid4())``)."""
    raw = np.frombuffer(os.urandom(16 * n), np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = _HEX[raw].view(np.uint8)  # (n, 32)
    out = np.full((n, 36), ord("-"), np.uint8)
    done = 0
    for start, end in _UUID_GROUPS:
        out[:, start:end] = digits[:, done:done + end - start]
        done += end - start
    text = out.tobytes().decode("ascii")
    return [text[i:i + 36] for i in range(0, 36 * n, 36)]


def check_rectangles(xywh: np.ndarray) -> None:
    """Every tile needs finite coordinates and a positive size; the first that has not is named."""
    with np.errstate(invalid="ignore"):
        good = np.isfinite(xywh).all(axis=1) & (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
    bad = np.flatnonzero(~good)
    if bad.size:
        x0, y0, w0, h0 = xywh[bad[0]].tolist()
        raise AnnotationError(f"tile ({x0}, {y0}, {w0}, {h0}) needs finite coordinates and a positive size")


def encode_tiles(
    xywh: np.ndarray,
    class_index: np.ndarray,
    class_props: Sequence[str],
    keys: Sequence[str],
    values: np.ndarray,
) -> FeatureBlock:
    """Rectangle tiles as compact GeoJSON Features.

    ``class_props[k]`` is the text of the ``properties`` object up to the measurements (no closing
    brace) for tiles of class ``k``; ``keys`` the measurement names, each JSON-quoted with its
    colon. A row with a non-finite value writes only its finite measurements (no
    ``measurements`` at all when none is finite).
    """
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    vals = np.asarray(values, dtype=np.float64).reshape(len(xywh), len(keys))
    check_rectangles(xywh)
    props = np.empty(len(class_props), dtype=object)
    props[:] = ["]]]}," + p for p in class_props]
    chunks = [
        _encode_chunk(xywh[s:s + CHUNK_ROWS], np.asarray(class_index)[s:s + CHUNK_ROWS], props, keys,
                      vals[s:s + CHUNK_ROWS]).encode("utf-8")
        for s in range(0, len(xywh), CHUNK_ROWS)
    ]
    return FeatureBlock(tuple(chunks), len(xywh))


def _encode_chunk(xywh: np.ndarray, cls: np.ndarray, props: np.ndarray, keys: Sequence[str],
                  vals: np.ndarray) -> str:
    n, m = len(xywh), len(keys)
    x0, y0 = xywh[:, 0], xywh[:, 1]
    corners = round_half_even_3(np.column_stack([x0, y0, x0 + xywh[:, 2], y0 + xywh[:, 3]]))
    ax, ay, bx, by = _objects(number_texts(corners)).reshape(n, 4).T  # each text made an object once
    table = np.empty((n, 24 + 2 * m), dtype=object)
    table[:, 0] = SEPARATOR.decode() + '{"type":"Feature","id":"'
    table[:, 1] = _objects(uuid4_texts(n))
    table[:, 2] = '","geometry":{"type":"Polygon","coordinates":[[['
    # the ring (x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0), each point as "x,y" then "],["
    for j, (px, py) in enumerate(((ax, ay), (bx, ay), (bx, by), (ax, by), (ax, ay))):
        table[:, 3 + 4 * j] = px
        table[:, 4 + 4 * j] = ","
        table[:, 5 + 4 * j] = py
        table[:, 6 + 4 * j] = "],["
    table[:, 22] = props[cls]  # the last point ends the ring, then the class's properties
    if m:
        texts = _objects(number_texts(vals)).reshape(n, m)
        for k in range(m):
            table[:, 23 + 2 * k] = (',"measurements":{' if k == 0 else ",") + keys[k]
            table[:, 24 + 2 * k] = texts[:, k]
        table[:, 23 + 2 * m] = "}}}"
        for r in np.flatnonzero(~np.isfinite(vals).all(axis=1)).tolist():
            kept = [k + repr(v) for k, v in zip(keys, vals[r].tolist(), strict=True) if math.isfinite(v)]
            table[r, 23:] = ""
            table[r, 23] = ',"measurements":{' + ",".join(kept) + "}}}" if kept else "}}"
    else:
        table[:, 23] = "}}"
    table[0, 0] = table[0, 0][len(SEPARATOR):]  # the separator goes between rows only
    return "".join(table.reshape(-1).tolist())


def _objects(texts: list[str]) -> np.ndarray:
    out = np.empty(len(texts), dtype=object)
    out[:] = texts
    return out
