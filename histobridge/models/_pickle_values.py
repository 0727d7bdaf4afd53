"""Values a snapshot pickle may contain beyond plain Python data, rebuilt by our own code.

The unpickler never hands numpy's or torch's reconstructors to the file. numpy dtypes, scalars
and arrays, tensor storages and tensors are rebuilt here from their raw bytes after checking
every declared size against the bytes actually present: only plain numeric dtypes (bool,
signed/unsigned ints, floats, complex) with an explicit byte order, no object, structured,
sub-array or void dtypes, and no view reaching outside its storage.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import struct
from typing import Any

import numpy as np
import torch

from histobridge.errors import CheckpointError, UnsafePickleError
from histobridge.models._gated_unpickler import Buildable, GatedUnpickler

MAX_ARRAY_DIMS = 32
_DTYPE_CODE = re.compile(r"^[<>=|]?(b1|[iu][1248]|f[248]|c(8|16))$")
_BYTE_ORDERS = ("<", ">", "|", "=")


class DTypeSpec(Buildable):
    """Stands in for ``numpy.dtype(code, align, copy)`` until its pickled state (byte order) arrives."""

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(code, str) or not _DTYPE_CODE.match(code):
            raise UnsafePickleError(
                f"refused numpy dtype {code!r}: only bool, integer, float and complex dtypes are allowed"
            )
        self.base = np.dtype(code)
        self.byteorder = "="

    def build(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2:
            raise UnsafePickleError("refused a numpy dtype state that is not a (version, byteorder, …) tuple")
        order = state[1]
        extra = state[2:5]
        if order not in _BYTE_ORDERS or any(v is not None for v in extra):
            raise UnsafePickleError(
                f"refused numpy dtype state {state!r:.120}: sub-arrays, names and fields are not allowed"
            )
        self.byteorder = order

    @property
    def dtype(self) -> np.dtype[Any]:
        if self.byteorder == "<":
            return self.base.newbyteorder("<")
        if self.byteorder == ">":
            return self.base.newbyteorder(">")
        return self.base


class NDArrayMarker:
    """What the file gets for ``numpy.ndarray``: a token ``_reconstruct`` accepts, nothing callable."""


NDARRAY = NDArrayMarker()


class LoadedArray(Buildable):
    """A numpy array from the file, as a fresh array built with ``np.frombuffer`` (``.value``)."""

    def __init__(self) -> None:
        self.value: np.ndarray[Any, Any] | None = None

    def build(self, state: Any) -> None:
        if self.value is not None:
            raise UnsafePickleError("refused a second BUILD of one numpy array")
        if not isinstance(state, tuple) or len(state) != 5:
            raise UnsafePickleError("refused a numpy array state not (version, shape, dtype, order, data)")
        _, shape, spec, fortran, raw = state
        if not isinstance(spec, DTypeSpec):
            raise UnsafePickleError(f"refused a numpy array whose dtype is a {type(spec).__name__}")
        if not isinstance(raw, bytes | bytearray):
            raise UnsafePickleError("refused a numpy array whose data is not raw bytes (object arrays)")
        dims = _shape(shape)
        expected = math.prod(dims) * spec.dtype.itemsize
        if expected != len(raw):
            raise UnsafePickleError(
                f"numpy array {dims} of {spec.dtype} needs {expected} bytes, the file has {len(raw)}"
            )
        flat = np.frombuffer(bytes(raw), dtype=spec.dtype)
        self.value = flat.reshape(dims, order="F" if fortran else "C").copy()

    def __repr__(self) -> str:
        return f"LoadedArray({self.value!r})"


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > MAX_ARRAY_DIMS:
        raise UnsafePickleError(f"refused a numpy array shape {shape!r:.80}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**62 for d in shape):
        raise UnsafePickleError(f"refused a numpy array shape {shape!r:.80}")
    return shape


def np_dtype(code: Any, align: Any = False, copy: Any = True) -> DTypeSpec:
    return DTypeSpec(code, align, copy)


def np_reconstruct(cls: Any, shape: Any = (0,), typecode: Any = b"b") -> LoadedArray:
    """``numpy…multiarray._reconstruct(ndarray, …)``: an empty holder that BUILD fills with checked bytes."""
    if cls is not NDARRAY:
        raise UnsafePickleError(f"refused numpy _reconstruct of {type(cls).__name__}")
    return LoadedArray()


def np_scalar(spec: Any, data: Any = None) -> Any:
    """``numpy…multiarray.scalar(dtype, bytes)``: a numpy scalar read from exactly ``itemsize`` bytes."""
    if not isinstance(spec, DTypeSpec):
        raise UnsafePickleError(f"refused a numpy scalar whose dtype is a {type(spec).__name__}")
    if not isinstance(data, bytes | bytearray) or len(data) != spec.dtype.itemsize:
        raise UnsafePickleError(f"refused a numpy {spec.dtype} scalar not of {spec.dtype.itemsize} bytes")
    return np.frombuffer(bytes(data), dtype=spec.dtype)[0]


# ----------------------------------------------------------------------------- torch storages

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class Storage:
    """A flat CPU tensor holding one storage's elements, read from the blob's own bytes."""

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat


class _BlobUnpickler(GatedUnpickler):
    """Reads the small header pickles of a legacy storage blob: storage type names, nothing else."""

    def __init__(self, fh: Any) -> None:
        super().__init__(fh)
        self.pids: list[tuple[str, torch.dtype, int]] = []

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise UnsafePickleError(f"storage blob asks for {module}.{name}, which is not a storage type")

    def persistent_load(self, pid: Any) -> Any:
        ok = isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
        if not ok or not isinstance(pid[1], torch.dtype) or not isinstance(pid[2], str):
            raise CheckpointError(f"unexpected persistent id {pid!r:.80} in a storage blob")
        numel = pid[4]
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise CheckpointError(f"storage blob declares {numel!r:.40} elements")
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("storage views inside a storage blob are not supported")
        self.pids.append((pid[2], pid[1], numel))
        return pid[2]


def load_storage(blob: Any) -> Storage:
    """A nested legacy ``torch.save(storage)`` blob: sizes are checked against the bytes present first."""
    if not isinstance(blob, bytes | bytearray):
        raise UnsafePickleError(f"refused a storage blob that is a {type(blob).__name__}")
    fh = io.BytesIO(blob)
    try:
        magic = _BlobUnpickler(fh).load()
        proto = _BlobUnpickler(fh).load()
        info = _BlobUnpickler(fh).load()
        reader = _BlobUnpickler(fh)
        root = reader.load()
        keys = _BlobUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            OverflowError, RecursionError, UnicodeError, AssertionError, struct.error) as err:
        raise CheckpointError(f"cannot read a tensor storage blob: {err!s:.200}") from err
    if magic != _LEGACY_MAGIC or proto != _LEGACY_PROTOCOL:
        raise CheckpointError("a tensor storage blob has an unknown header")
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise CheckpointError("a tensor storage blob is not little-endian")
    if len(reader.pids) != 1 or keys != [reader.pids[0][0]] or root != reader.pids[0][0]:
        raise CheckpointError("a tensor storage blob does not hold exactly one storage")
    _, dtype, numel = reader.pids[0]
    size = torch.empty(0, dtype=dtype).element_size()
    head = fh.read(8)
    if len(head) != 8 or int.from_bytes(head, "little") != numel:
        raise CheckpointError("a tensor storage blob's element count disagrees with its header")
    data = fh.read()
    if len(data) != numel * size:
        raise CheckpointError(f"a tensor storage blob declares {numel * size} bytes but holds {len(data)}")
    flat = torch.frombuffer(bytearray(data), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
    return Storage(flat)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or len(value) > MAX_ARRAY_DIMS:
        raise CheckpointError(f"tensor {what} {value!r:.80} is not a tuple of integers")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**62 for v in value):
        raise CheckpointError(f"tensor {what} {value!r:.80} is not a tuple of non-negative integers")
    return tuple(value)


def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2``: a view inside its storage with no more elements than it."""
    if not isinstance(storage, Storage):
        raise UnsafePickleError(f"refused a tensor built on a {type(storage).__name__}, not a storage")
    dims, steps = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0 or len(dims) != len(steps):
        raise CheckpointError(f"tensor offset {offset!r:.40} or stride {steps} does not fit size {dims}")
    numel = math.prod(dims)
    avail = storage.flat.numel() - offset
    if numel:
        last = sum((d - 1) * s for d, s in zip(dims, steps, strict=True))
        if last >= avail or numel > avail:
            raise CheckpointError(
                f"a tensor of size {dims} reaches past its storage of {storage.flat.numel()} elements"
            )
    return storage.flat.as_strided(dims, steps, offset)


def rebuild_parameter(data: Any, *_ignored: Any) -> torch.Tensor:
    """``torch._utils._rebuild_parameter[_with_state]``: the data only (hooks and extra state dropped)."""
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError(f"refused a parameter whose data is a {type(data).__name__}")
    return data
