"""Truncated, damaged and foreign files: always a QPDataError naming the file and the byte offset."""

from __future__ import annotations

import random
from pathlib import Path

import _qpdata_writer as W
import pytest

from histobridge.errors import QPDataError
from histobridge.qupath.qpdata import iter_objects, read_qpdata


def _sample() -> bytes:
    names = W.coll_ser_list(["m1", "m2", "m3"])
    cells = [
        W.PO(
            "cell",
            roi=W.roi("polygon", x=[0, 9, 9, 0], y=[0, 0, 9, 9]),
            nucleus=W.roi("ellipse", x=1, y=1, x2=5, y2=5),
            measurements=W.float_list(names, [1, 2, 3]),
        )
        for _ in range(40)
    ]
    ann = W.PO(
        "annotation",
        roi=W.roi(
            "geometry",
            wkb=bytes.fromhex(
                "00000000030000000100000004"
                + "0000000000000000" * 2
                + "4024000000000000"
                + "0000000000000000"
                + "0000000000000000"
                + "4024000000000000"
                + "0000000000000000" * 2
            ),
        ),
        children=cells,
    )
    return W.qpdata_bytes(W.PO("root", children=[ann]), "0.6.0")


def _write(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "broken.qpdata"
    p.write_bytes(data)
    return p


def test_sample_is_complete(tmp_path: Path) -> None:
    data = read_qpdata(_write(tmp_path, _sample()))
    assert data.counts() == {"root": 1, "annotation": 1, "cell": 40}
    assert data.objects[1].geometry.area == pytest.approx(50)


@pytest.mark.parametrize("fraction", [0.001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_truncation_is_reported(tmp_path: Path, fraction: float) -> None:
    full = _sample()
    cut = max(1, int(len(full) * fraction))
    path = _write(tmp_path, full[:cut])
    with pytest.raises(QPDataError) as info:
        read_qpdata(path)
    msg = str(info.value)
    assert str(path) in msg and "byte offset" in msg


@pytest.mark.parametrize("missing", [1, 2, 3, 5, 6])
def test_truncated_eof_marker(tmp_path: Path, missing: int) -> None:
    full = _sample()
    path = _write(tmp_path, full[:-missing])
    with pytest.raises(QPDataError, match="byte offset"):
        read_qpdata(path)


def test_missing_eof_marker(tmp_path: Path) -> None:
    data = W.qpdata_bytes(W.PO("root"), eof=False)
    with pytest.raises(QPDataError, match='"EOF" marker'):
        read_qpdata(_write(tmp_path, data))


def test_streaming_raises_after_partial_output(tmp_path: Path) -> None:
    full = _sample()
    path = _write(tmp_path, full[: int(len(full) * 0.6)])
    seen = []
    with pytest.raises(QPDataError):
        for obj in iter_objects(path):
            seen.append(obj)
    assert 0 < len(seen) < 42  # the cells read before the cut came out, then the error


def test_trailing_bytes_after_eof_noted(tmp_path: Path) -> None:
    data = read_qpdata(_write(tmp_path, W.qpdata_bytes(W.PO("root")) + b"\x00\x01"))
    assert any("after the EOF marker" in n for n in data.notes)


def test_damaged_wkb(tmp_path: Path) -> None:
    ann = W.PO("annotation", roi=W.roi("geometry", wkb=b"\x00\x00\x00\x00\x03\xff"))
    with pytest.raises(QPDataError, match="damaged ROI"):
        read_qpdata(_write(tmp_path, W.qpdata_bytes(W.PO("root", children=[ann]))))


def test_foreign_and_empty_files(tmp_path: Path) -> None:
    w = W.StreamWriter()
    w.prim(W.P("utf", "Something else"))
    w.drain()
    with pytest.raises(QPDataError, match="not a QuPath data file"):
        read_qpdata(_write(tmp_path, bytes(w.out)))
    with pytest.raises(QPDataError, match="empty file"):
        read_qpdata(_write(tmp_path, b""))
    with pytest.raises(QPDataError, match="cannot open"):
        read_qpdata(tmp_path / "nope.qpdata")
    with pytest.raises(QPDataError, match="magic"):
        read_qpdata(_write(tmp_path, b'{"type": "FeatureCollection"}'))


def test_random_damage_never_escapes_as_another_error(tmp_path: Path) -> None:
    """Flipped bytes give a QPDataError or a parse; never an unrelated exception or a hang."""
    full = bytearray(_sample())
    rng = random.Random(1234)
    outcomes = {"error": 0, "parsed": 0}
    for _ in range(150):
        damaged = bytearray(full)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(8, len(damaged))] = rng.randrange(256)
        path = _write(tmp_path, bytes(damaged))
        try:
            read_qpdata(path)
            outcomes["parsed"] += 1
        except QPDataError as err:
            assert "byte offset" in str(err)
            outcomes["error"] += 1
    assert outcomes["error"] > 0
