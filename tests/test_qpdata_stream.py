"""The Java serialization stream parser on its own (grammar, block data, handles, JDK classes)."""

from __future__ import annotations

import uuid

import _qpdata_writer as W
import pytest

from histobridge.errors import QPDataError
from histobridge.qupath.qpdata.jdk import HANDLERS
from histobridge.qupath.qpdata.stream import JavaEnum, JavaObject, JavaStream, decode_modified_utf8


def _stream(*objects, prims=()) -> JavaStream:
    w = W.StreamWriter()
    for p in prims:
        w.prim(p)
    for o in objects:
        w.write(o)
    w.drain()
    return JavaStream(bytes(w.out), "mem.qpdata", dict(HANDLERS))


def test_primitives_straddle_block_records() -> None:
    """BlockDataOutputStream splits a value across two records at the 1024-byte boundary."""
    values = list(range(-300, 300))
    s = _stream(prims=[W.P("b", 7), *(W.P("i", v) for v in values), W.P("d", 2.5), W.P("z", True)])
    assert s.block_bytes(1) == b"\x07"
    assert [s.block_int() for _ in values] == values
    assert s.block_double() == 2.5 and s.block_bool() is True


def test_jdk_collections_and_boxes() -> None:
    u = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
    s = _stream(
        W.array_list([W.integer(3), "x", None]),
        W.unmodifiable_list(["a", "b"]),
        W.coll_ser_list(["p", "q"]),
        W.hash_map({"k": W.boolean(True), "n": W.Obj(W.DOUBLE, {"value": 1.25})}, linked=True),
        W.uuid_obj(u),
        W.Enum(W.IMAGE_TYPE, "FLUORESCENCE"),
        W.Arr(W.FLOAT_ARRAY, [1.0, 2.5]),
        W.Arr(W.BYTE_ARRAY, b"\x01\x02"),
        W.Arr(W.OBJECT_ARRAY, ["s", None]),
    )
    assert s.read_object() == [3, "x", None]
    assert s.read_object() == ["a", "b"]
    assert s.read_object() == ["p", "q"]
    assert s.read_object() == {"k": True, "n": 1.25}
    assert s.read_object() == u
    assert s.read_object() == JavaEnum("qupath.lib.images.ImageData$ImageType", "FLUORESCENCE")
    assert list(s.read_object()) == [1.0, 2.5]
    assert s.read_object() == b"\x01\x02"
    assert s.read_object() == ["s", None]


def test_back_references_and_replay() -> None:
    """A lazily kept array referenced again is re-read from its offset and then kept."""
    arr = W.Arr(W.FLOAT_ARRAY, [1.0, 2.0, 3.0])
    long_text = "y" * 100
    holder = W.array_list([arr, long_text])
    s = _stream(holder, arr, long_text, holder)
    first = s.read_object()
    assert list(first[0]) == [1.0, 2.0, 3.0]
    again = s.read_object()  # TC_REFERENCE to a value stored as an offset
    assert list(again) == [1.0, 2.0, 3.0]
    assert s.read_object() == long_text
    assert s.read_object() is first  # kept collections come back as the same object


def test_unknown_serializable_class_is_walked() -> None:
    desc = W.Desc(
        "org.example.Thing", W.SC_SER | W.SC_WRITE, [("I", "n", None), ("L", "label", "Ljava/lang/String;")]
    )
    s = _stream(W.Obj(desc, {"n": 5, "label": "hi"}, {desc.name: [W.P("i", 9), "extra"]}), "after")
    obj = s.read_object()
    assert isinstance(obj, JavaObject) and obj.fields == {"n": 5, "label": "hi"}
    assert obj.custom == [b"\x00\x00\x00\x09", "extra"]
    assert s.read_object() == "after"
    assert any("org.example.Thing" in w for w in s.warnings)


def test_modified_utf8() -> None:
    text = "a\x00b\u00e9\U0001f600"
    assert decode_modified_utf8(W.mutf8(text)) == text
    with pytest.raises(QPDataError):
        decode_modified_utf8(b"\xff\xfe")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "magic"),
        (b"PK\x03\x04zipfile", "magic"),
        (b"\xac\xed\x00\x04", "version"),
        (b"\xac\xed\x00\x05\x20", "invalid type code 0x20"),
        (b"\xac\xed\x00\x05\x71\x00\x7e\x00\x05", "unknown handle"),
        (b"\xac\xed\x00\x05\x74\x00\x10abc", "truncated"),
        (b"\xac\xed\x00\x05\x7b", "exception"),
    ],
)
def test_bad_streams_raise_with_offset(data: bytes, message: str) -> None:
    with pytest.raises(QPDataError, match=message) as info:
        s = JavaStream(data, "bad.qpdata", dict(HANDLERS))
        s.read_object()
    assert "bad.qpdata" in str(info.value)
    assert "byte offset" in str(info.value)
