"""Hostile checkpoints: forged numpy values, storage and tree bombs, oversized declarations, bad metadata.

Cases that crashed or exhausted memory before the loader was hardened run in a child process
(``load_in_subprocess``), so a regression fails the test instead of killing pytest.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from histobridge.errors import CheckpointError, UnsafePickleError
from histobridge.models._pickle_values import LoadedArray
from histobridge.models._unpickle import load_pickle
from histobridge.models.checkpoints import load_generator, save_generator
from histobridge.models.stylegan2 import Generator, GeneratorConfig

sys.path.insert(0, os.path.dirname(__file__))
from _gan_pickles import (
    ForgedArray,
    ForgedDType,
    StandIns,
    huge_offset_struct_array,
    load_in_subprocess,
    object_pointer_array,
    stub_state,
    write_snapshot,
    wrong_size_array,
)

TINY = GeneratorConfig(
    z_dim=16, c_dim=2, w_dim=16, img_resolution=8, mapping_layers=2, channel_base=64, channel_max=8,
    conv_clamp=256,
)
GIB = 1 << 30
SUBARRAY = (np.dtype("<f8"), (2,))  # a dtype state's sub-array slot: (base dtype, shape)


def _generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(TINY).eval()


def _set_attr(dotted: str, name: str, value: object):
    def edit(data: dict) -> None:
        stub_state(data["G_ema"], dotted)[name] = value

    return edit


# ----------------------------------------------------------------------------- forged numpy values

FORGED = {
    "object_pointer": object_pointer_array,
    "struct_offset": huge_offset_struct_array,
    "wrong_size": wrong_size_array,
}


def test_forged_numpy_arrays_refused(tmp_path):
    paths: dict[Path, str] = {}
    for name, make in FORGED.items():
        alone = tmp_path / f"{name}_alone.pkl"
        alone.write_bytes(pickle.dumps({"G_ema": None, "training_set_kwargs": make()}, protocol=4))
        paths[alone] = name
        kwargs = write_snapshot(_generator(), tmp_path / f"{name}_kwargs.pkl",
                                training_set_kwargs={"labels": make()})
        paths[kwargs] = name
        gain = write_snapshot(_generator(), tmp_path / f"{name}_gain.pkl",
                              edit=_set_attr("mapping.fc0", "weight_gain", make()))
        paths[gain] = name
    results = load_in_subprocess(list(paths))
    for path, name in paths.items():
        kind, msg = results[str(path)]
        assert kind == "UnsafePickleError", (path.name, kind, msg)
        assert str(path) in msg and "numpy" in msg, msg
        if name != "wrong_size":
            assert "refused numpy dtype" in msg


def test_benign_array_as_weight_gain_is_a_clean_error(tmp_path):
    path = write_snapshot(_generator(), tmp_path / "g.pkl",
                          edit=_set_attr("mapping.fc0", "weight_gain", np.array([0.25])))
    with pytest.raises(CheckpointError, match=r"weight_gain at G_ema\.mapping\.fc0 must be a number") as err:
        load_generator(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("protocol", [2, 4])
def test_plain_numpy_values_are_rebuilt_from_bytes(tmp_path, protocol):
    values = {
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(12, dtype="<f4").reshape(3, 4)),
        "bools": np.array([True, False, True]),
        "complex": np.array([1 + 2j, -3j], dtype=np.complex128),
        "u16": np.array([[1, 65535]], dtype=np.uint16),
        "empty": np.zeros((0, 3), dtype=np.float64),
        "f32": np.float32(1.5), "i64": np.int64(-7), "flag": np.bool_(True), "gain": np.float64(0.125),
    }
    path = tmp_path / "values.pkl"
    path.write_bytes(pickle.dumps(values, protocol=protocol))
    got = load_pickle(path)
    for key, want in values.items():
        if isinstance(want, np.ndarray):
            assert isinstance(got[key], LoadedArray)
            arr = got[key].value
            assert arr.dtype == want.dtype and arr.shape == want.shape and np.array_equal(arr, want), key
            assert arr.flags.owndata or arr.base is not None
        else:
            assert type(got[key]) is type(want) and got[key] == want, key


@pytest.mark.parametrize(
    "value",
    [
        np.array(["a", 1], dtype=object),
        np.zeros(2, dtype=[("a", "<f4"), ("b", "<i2")]),
        np.array(["text"]),
        np.array([1], dtype="M8[ns]"),
        np.zeros(2, dtype="V3"),
        ForgedArray((1,), ForgedDType("f8", (3, "<", SUBARRAY, None, None, 16, 8, 0)), b"0" * 8),
    ],
    ids=["object", "structured", "unicode", "datetime", "void", "subarray"],
)
def test_other_numpy_dtypes_refused(tmp_path, value):
    path = tmp_path / "v.pkl"
    path.write_bytes(pickle.dumps({"x": value}, protocol=4))
    with pytest.raises(UnsafePickleError, match="numpy"):
        load_pickle(path)


class _Reduce:
    def __init__(self, *reduce: object) -> None:
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


@pytest.mark.parametrize(
    "target",
    [collections.OrderedDict, set],
    ids=["OrderedDict", "set"],
)
def test_build_only_fills_our_own_stand_ins(tmp_path, target):
    path = tmp_path / "build.pkl"
    path.write_bytes(pickle.dumps({"x": _Reduce(target, (), {"__class__": 1})}, protocol=4))
    with pytest.raises(UnsafePickleError, match="refused to BUILD"):
        load_pickle(path)


# ----------------------------------------------------------------------------- tensor storages


def legacy_blob(data: bytes, *, numel: int, count: int | None = None) -> bytes:
    """A nested ``torch.save(storage)`` blob in the legacy format, with the declared sizes chosen freely."""
    buf = io.BytesIO()
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    for obj in (0x1950A86A20F9469CFC6C, 1001, info):
        pickle.dump(obj, buf, protocol=2)
    marker = object()

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj is marker else None

    Writer(buf, protocol=2).dump(marker)
    pickle.dump(["0"], buf, protocol=2)
    buf.write(struct.pack("<q", numel if count is None else count))
    buf.write(data)
    return buf.getvalue()


def _tensor(blob: bytes, size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0) -> _Reduce:
    storage = _Reduce(torch.storage._load_from_bytes, (blob,))
    return _Reduce(torch._utils._rebuild_tensor_v2,
                   (storage, offset, size, stride, False, collections.OrderedDict()))


def test_storage_blob_round_trip(tmp_path):
    data = np.arange(6, dtype="<f4").tobytes()
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps({"t": _tensor(legacy_blob(data, numel=6), (2, 3), (3, 1))}, protocol=4))
    assert torch.equal(load_pickle(path)["t"], torch.arange(6, dtype=torch.float32).reshape(2, 3))


def test_storage_sizes_checked_before_allocation(tmp_path):
    cases = {
        "declared_huge": _tensor(legacy_blob(b"\0" * 16, numel=25_000_000_000), (4,), (1,)),
        "count_mismatch": _tensor(legacy_blob(b"\0" * 16, numel=4, count=3_000_000_000), (4,), (1,)),
        "view_past_end": _tensor(legacy_blob(b"\0" * 16, numel=4), (100,), (1,)),
        "broadcast_view": _tensor(legacy_blob(b"\0" * 16, numel=4), (1 << 20, 1 << 20), (0, 0)),
        "offset_past_end": _tensor(legacy_blob(b"\0" * 16, numel=4), (2,), (1,), offset=3),
        # BINBYTES8 declaring 2**40 bytes in the blob's first header pickle
        "header_bytes8": _tensor(b"\x80\x02\x8e" + (1 << 40).to_bytes(8, "little") + b"ab.", (1,), (1,)),
    }
    paths = []
    for name, tensor in cases.items():
        path = write_snapshot(_generator(), tmp_path / f"{name}.pkl", training_set_kwargs={"t": tensor})
        paths.append(path)
    results = load_in_subprocess(paths, address_space=2 * GIB)
    for path in paths:
        kind, msg = results[str(path)]
        assert kind == "CheckpointError", (path.name, kind, msg)
        assert str(path) in msg and ("storage" in msg or "reaches past" in msg), msg


# ----------------------------------------------------------------------------- module-tree bombs


def test_shared_branches_refused_quickly(tmp_path):
    si = StandIns()
    paths = {}
    with si.registered():
        for levels, why in ((40, "nested deeper"), (10, "more than once")):
            node = si.persisted("SynthesisLayer", {"_modules": {}, "_parameters": {}, "_buffers": {}})
            for _ in range(levels):  # 2**levels paths through levels + 1 objects
                node = si.persisted("SynthesisBlock", {"_modules": {"a": node, "b": node}})
            g = si.persisted("Generator", {"_modules": {"mapping": node, "synthesis": node}})
            path = tmp_path / f"bomb{levels}.pkl"
            path.write_bytes(pickle.dumps({"G_ema": g}, protocol=4))
            assert path.stat().st_size < 4096
            paths[path] = why
    results = load_in_subprocess(list(paths), timeout=60)
    for path, why in paths.items():
        kind, msg = results[str(path)]
        assert kind == "CheckpointError" and why in msg and str(path) in msg, msg


def _text(s: str) -> bytes:
    b = s.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def test_self_referencing_tree_refused(tmp_path):
    # G_ema's own _modules dict gets G_ema itself put into it after the object is built.
    data = b"".join([
        pickle.PROTO, b"\x02", pickle.EMPTY_DICT, _text("G_ema"),
        pickle.GLOBAL, b"torch_utils.persistence\n_reconstruct_persistent_obj\n",
        pickle.EMPTY_DICT, pickle.MARK,
        _text("type"), _text("class"), _text("version"), pickle.BININT1, b"\x06",
        _text("class_name"), _text("Generator"), _text("state"),
        pickle.EMPTY_DICT, pickle.MARK, _text("_modules"), pickle.EMPTY_DICT, pickle.BINPUT, b"\x01",
        pickle.SETITEMS, pickle.SETITEMS,
        pickle.TUPLE1, pickle.REDUCE, pickle.BINPUT, b"\x02",
        pickle.BINGET, b"\x01", _text("synthesis"), pickle.BINGET, b"\x02", pickle.SETITEM, pickle.POP,
        pickle.SETITEM, pickle.STOP,
    ])
    path = tmp_path / "loop.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="more than once") as err:
        load_generator(path)
    assert str(path) in str(err.value)


def test_deep_tree_refused(tmp_path):
    si = StandIns()
    with si.registered():
        node = si.persisted("SynthesisLayer", {"_modules": {}})
        for _ in range(30):
            node = si.persisted("SynthesisBlock", {"_modules": {"x": node}})
        path = tmp_path / "deep.pkl"
        path.write_bytes(pickle.dumps({"G_ema": si.persisted("Generator", {"_modules": {"mapping": node}})}))
    with pytest.raises(CheckpointError, match="nested deeper"):
        load_generator(path)


# ----------------------------------------------------------------------------- declared sizes


def test_declared_sizes_checked_before_allocation(tmp_path):
    paths = [
        write_snapshot(_generator(), tmp_path / "zdim_huge.pkl", edit=_set_attr("", "z_dim", 25_000_000)),
        write_snapshot(_generator(), tmp_path / "wdim_big.pkl",
                       edit=lambda d: stub_state(d["G_ema"]).update(z_dim=60_000, w_dim=60_000)),
    ]
    for name, change in {
        "budget": {"channel_base": 1 << 24, "channel_max": 1 << 16, "img_resolution": 1024},
        "zdim": {"z_dim": 60_000},
    }.items():
        weights = save_generator(_generator(), tmp_path / name / "g.safetensors")
        sidecar = weights.with_suffix(".json")
        doc = json.loads(sidecar.read_text())
        doc["config"].update(change)
        sidecar.write_text(json.dumps(doc))
        assert sidecar.stat().st_size < 1024
        paths.append(weights)
    results = load_in_subprocess(paths, address_space=2 * GIB)
    expected = [
        "z_dim must be an integer", "the config needs [60000]", "more than the",
        "the config needs [16, 60016]",
    ]
    for path, want in zip(paths, expected, strict=True):
        kind, msg = results[str(path)]
        assert kind == "CheckpointError" and want in msg, (path, msg)


# ----------------------------------------------------------------------------- metadata values


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"slideflow_kwargs": {"tile_px": "abc"}}', "slideflow_kwargs.tile_px"),
        ('{"tile_px": -5}', "tile_px"),
        ('{"tile_px": 1e300}', "tile_px"),
        ('{"resize": 99999999}', "resize"),
        ('{"slideflow_kwargs": {"tile_um": NaN}}', "tile_um"),
        ('{"tile_um": "big"}', "tile_um"),
        ('{"tile_um": -3}', "tile_um"),
        ('{"slideflow_kwargs": [1, 2]}', "slideflow_kwargs"),
        ('{"slideflow_kwargs": {"outcome_labels": {"0": 5}}}', "slideflow_kwargs.outcome_labels"),
        ('{"class_names": [1, 2]}', "class_names"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[1, 2]", "not a JSON object"),
        ("{not json", "unreadable training options"),
    ],
)
def test_malformed_training_options(tmp_path, text, key):
    path = write_snapshot(_generator(), tmp_path / "g.pkl")
    (tmp_path / "training_options.json").write_text(text)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    assert "training_options.json" in str(err.value) and key in str(err.value)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"config": {"z_dim": "16"}}, "z_dim"),
        ({"config": {"z_dim": -1}}, "z_dim"),
        ({"config": {"z_dim": 1e30}}, "z_dim"),
        ({"config": {"conv_clamp": float("nan")}}, "conv_clamp"),
        ({"config": {"architecture": 5}}, "architecture"),
        ({"config": {"use_noise": "yes"}}, "use_noise"),
        ({"config": {"img_resolution": 1 << 40}}, "img_resolution"),
        ({"config": [1, 2]}, "config"),
        ({"meta": {"tile_um": -1}}, "meta.tile_um"),
        ({"meta": {"class_names": "abc"}}, "meta.class_names"),
        ({"meta": {"tile_px": 1.5}}, "meta.tile_px"),
        ({"format_version": "x"}, "format_version"),
    ],
)
def test_malformed_sidecar(tmp_path, change, key):
    weights = save_generator(_generator(), tmp_path / "g.safetensors")
    sidecar = tmp_path / "g.json"
    doc = json.loads(sidecar.read_text())
    for k, v in change.items():
        if isinstance(v, dict) and isinstance(doc.get(k), dict):
            doc[k].update(v)
        else:
            doc[k] = v
    sidecar.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError) as err:
        load_generator(weights)
    assert str(sidecar) in str(err.value) and key in str(err.value)


def test_deeply_nested_sidecar(tmp_path):
    weights = save_generator(_generator(), tmp_path / "g.safetensors")
    (tmp_path / "g.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply") as err:
        load_generator(weights)
    assert "g.json" in str(err.value)


def test_tensor_shapes_must_match_the_config(tmp_path):
    weights = save_generator(_generator(), tmp_path / "g.safetensors")
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    tensors["mapping.fc1.bias"] = torch.zeros(5)
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match=r"mapping\.fc1\.bias has shape \[5\]"):
        load_generator(weights)
    tensors["mapping.fc1.bias"] = torch.zeros(16)
    tensors["mapping.fc0.weight"][0, 0] = float("nan")
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match=r"mapping\.fc0\.weight is not finite"):
        load_generator(weights)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x80\x05\x96" + (1 << 40).to_bytes(8, "little") + b"abc.", UnsafePickleError),  # BYTEARRAY8
        (b"\x80\x04X\x01\x00", CheckpointError),  # BINUNICODE with its length cut short
        (b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"ab.", CheckpointError),  # BINBYTES8, short
    ],
    ids=["bytearray8", "short_length", "bytes8_past_end"],
)
def test_declared_lengths_never_allocate(tmp_path, data, error):
    path = tmp_path / "len.pkl"
    path.write_bytes(data)
    with pytest.raises(error) as err:
        load_generator(path)
    assert str(path) in str(err.value)

