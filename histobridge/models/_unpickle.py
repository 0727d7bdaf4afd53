"""Restricted unpickler for StyleGAN network snapshots: data only, never code.

Snapshot pickles rebuild every network through a "persistent object" reconstructor that, in the
original tooling, executes source text embedded in the file. Here ``find_class`` is the only door
to globals (GLOBAL, STACK_GLOBAL, INST, OBJ and EXT all pass through it) and it hands out a short
allow-list: the reconstructor becomes an inert :class:`PersistentStub`, tensors come from torch's
own rebuild helpers, and the nested storage blobs are read with ``torch.load(weights_only=True)``.
Everything else raises :class:`UnsafePickleError` before anything is called.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histobridge.errors import CheckpointError, UnsafePickleError

log = logging.getLogger(__name__)

PERSISTENCE_VERSION = 6
_PERSISTENCE_SUFFIX = "torch_utils.persistence"


class AttrDict(dict):  # type: ignore[type-arg]
    """Stand-in for the ``EasyDict`` kwargs containers: a dict with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class PersistentStub:
    """An unpickled persistent network object: its class name and ``__dict__``, nothing runnable."""

    class_name: str
    version: int
    module: str
    module_sha1: str
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def modules(self) -> dict[str, PersistentStub]:
        return dict(self.state.get("_modules") or {})

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)


def _make_reconstructor(module: str) -> Callable[[Any], PersistentStub]:
    def reconstruct(meta: Any) -> PersistentStub:
        if not isinstance(meta, dict):
            raise CheckpointError(f"persistent object metadata is a {type(meta).__name__}, not a dict")
        if meta.get("type") != "class" or meta.get("version") != PERSISTENCE_VERSION:
            raise CheckpointError(
                f"unsupported persistent object (type={meta.get('type')!r}, version={meta.get('version')!r};"
                f" expected type='class', version={PERSISTENCE_VERSION})"
            )
        src = meta.get("module_src", "")
        src_bytes = src.encode("utf-8", "replace") if isinstance(src, str) else b""
        state = meta.get("state")
        return PersistentStub(
            class_name=str(meta.get("class_name")),
            version=int(meta["version"]),
            module=module,
            module_sha1=hashlib.sha1(src_bytes).hexdigest(),
            state=state if isinstance(state, dict) else {},
        )

    return reconstruct


def _load_storage(blob: bytes) -> Any:
    """A nested legacy ``torch.save(storage)`` blob, read by torch's weights-only loader."""
    try:
        return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
    except Exception as err:
        raise CheckpointError(f"cannot read a tensor storage blob: {err}") from err


def _codecs_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol 2 writes bytes as ``_codecs.encode(text, 'latin1')``; allow only that use."""
    if not isinstance(obj, str) or encoding.lower().replace("-", "") not in ("latin1", "utf8"):
        raise UnsafePickleError(f"refused _codecs.encode with encoding {encoding!r}")
    return obj.encode(encoding, errors)


def _numpy_multiarray(name: str) -> Any:
    core = getattr(np, "_core", None) or np.core
    return getattr(core.multiarray, name)


_EXACT: dict[tuple[str, str], Callable[[], Any]] = {
    ("torch.storage", "_load_from_bytes"): lambda: _load_storage,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): lambda: torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: torch._utils._rebuild_parameter_with_state,
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("builtins", "set"): lambda: set,
    ("builtins", "frozenset"): lambda: frozenset,
    ("__builtin__", "set"): lambda: set,
    ("__builtin__", "frozenset"): lambda: frozenset,
    ("_codecs", "encode"): lambda: _codecs_encode,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy", "ndarray"): lambda: np.ndarray,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _name in ("scalar", "_reconstruct"):
        _EXACT[(_mod, _name)] = lambda n=_name: _numpy_multiarray(n)


def _is_dnnlib_util(module: str) -> bool:
    return module in ("dnnlib", "dnnlib.util") or module.endswith((".dnnlib", ".dnnlib.util"))


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only allow-listed globals."""

    def __init__(self, file: Any, *, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if module == "dnnlib.tflib.network" or module.startswith("dnnlib.tflib"):
            raise CheckpointError(
                f"{self.source}: this is a TensorFlow-era StyleGAN pickle ({module}.{name}); only PyTorch"
                " snapshots are supported. Convert it first with the PyTorch repository's legacy converter."
            )
        if name == "_reconstruct_persistent_obj" and (
            module == _PERSISTENCE_SUFFIX or module.endswith("." + _PERSISTENCE_SUFFIX)
        ):
            return _make_reconstructor(module)
        if name == "EasyDict" and _is_dnnlib_util(module):
            return AttrDict
        factory = _EXACT.get((module, name))
        if factory is not None:
            return factory()
        raise UnsafePickleError(
            f"{self.source}: the pickle asks for the global {module}.{name}, which is not on the allow-list"
            " of a StyleGAN snapshot; refusing to load it (nothing from the file was executed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: unexpected persistent id {pid!r} in a network snapshot")


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle a snapshot file with the allow-list; tensors land on the CPU."""
    path = Path(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed in finally
    except OSError as err:
        raise CheckpointError(f"{path}: cannot open the checkpoint: {err}") from err
    try:
        return RestrictedUnpickler(fh, source=str(path)).load()
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise type(err)(f"{path}: {err}") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError) as err:
        raise CheckpointError(f"{path}: not a readable network snapshot pickle: {err}") from err
    finally:
        fh.close()


def iter_state_tensors(stub: PersistentStub, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """The ``state_dict()`` of a stub tree: parameters and persistent buffers, depth first."""
    out: list[tuple[str, torch.Tensor]] = []
    skip = set(stub.attr("_non_persistent_buffers_set") or ())
    for key in ("_parameters", "_buffers"):
        for name, value in (stub.attr(key) or {}).items():
            if value is None or (key == "_buffers" and name in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
            out.append((prefix + name, value.detach()))
    for name, child in stub.modules.items():
        if child is None:
            continue
        if not isinstance(child, PersistentStub):
            raise CheckpointError(f"module {prefix}{name} is a {type(child).__name__}, not a network object")
        out.extend(iter_state_tensors(child, prefix + name + "."))
    return out
