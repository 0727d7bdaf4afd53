"""The server JSON at the start of a ``.qpdata`` file: read it, or swap it without touching the rest.

QuPath writes ``"Data file version 3"`` as block data and then the server JSON (builder and URI) as
the stream's first object. Swapping that one string changes its length only; every later
back-reference keeps its handle, so the rest of the file is copied byte for byte. A file moved to
another machine (a bundled sample) is pointed at its image this way.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from histobridge.errors import QPDataError
from histobridge.qupath.qpdata.jwriter import mutf8
from histobridge.qupath.qpdata.stream import TC_BLOCKDATA, TC_LONGSTRING, TC_STRING, decode_modified_utf8


def _server_span(data: bytes, where: str) -> tuple[int, int, int]:
    """(start of the string record, start of its text, end of its text)."""
    if data[:4] != b"\xac\xed\x00\x05":
        raise QPDataError(f"{where}: not a Java serialization stream (no AC ED 00 05 at byte offset 0)")
    if len(data) < 8 or data[4] != TC_BLOCKDATA:
        raise QPDataError(f"{where}: no data file version block at byte offset 4")
    at = 6 + data[5]
    (m,) = struct.unpack_from(">H", data, 6) if at >= 8 else (0,)
    if not data[8 : 8 + m].startswith(b"Data file version"):
        raise QPDataError(f"{where}: not a QuPath data file (no 'Data file version' at byte offset 6)")
    if at < len(data) and data[at] == TC_STRING:
        (n,) = struct.unpack_from(">H", data, at + 1)
        start = at + 3
    elif at < len(data) and data[at] == TC_LONGSTRING:
        (n,) = struct.unpack_from(">q", data, at + 1)
        start = at + 9
    else:
        raise QPDataError(f"{where}: no server string at byte offset {at}")
    if start + n > len(data):
        raise QPDataError(f"{where}: server string runs past the end of the file")
    return at, start, start + n


def read_server_json(data: bytes, where: str = "data file") -> dict[str, Any]:
    """The server JSON of a 0.3+ data file (``dataVersion``, ``qupathVersion``, ``server``, ``id``)."""
    _, start, end = _server_span(data, where)
    text = decode_modified_utf8(data[start:end])
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise QPDataError(f"{where}: the server string is not JSON ({err}); a QuPath 0.2 file?") from None
    if not isinstance(doc, dict):
        raise QPDataError(f"{where}: the server string is not a JSON object")
    return doc


def with_server_json(data: bytes, server: dict[str, Any], where: str = "data file") -> bytes:
    """``data`` with its server JSON replaced by ``server`` (everything else byte-identical)."""
    at, _, end = _server_span(data, where)
    text = mutf8(json.dumps(server, separators=(",", ":"), ensure_ascii=False))
    if len(text) <= 0xFFFF:
        record = bytes((TC_STRING,)) + struct.pack(">H", len(text)) + text
    else:
        record = bytes((TC_LONGSTRING,)) + struct.pack(">q", len(text)) + text
    return data[:at] + record + data[end:]


__all__ = ["read_server_json", "with_server_json"]
