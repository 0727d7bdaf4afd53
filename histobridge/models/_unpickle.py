"""Restricted unpickler for StyleGAN network snapshots: data only, never code.

Snapshot pickles rebuild every network through a "persistent object" reconstructor that, in the
original tooling, executes source text embedded in the file. Here ``find_class`` is the only door
to globals (GLOBAL, STACK_GLOBAL, INST, OBJ and EXT all pass through it) and it hands out a short
allow-list of our own functions: the reconstructor becomes an inert :class:`PersistentStub`,
numpy values and tensors are rebuilt from checked raw bytes (``_pickle_values``), and the BUILD
opcode may only fill those stand-ins. Everything else raises :class:`UnsafePickleError` before
anything is called. The module tree is then checked (no sharing, no cycles, bounded size) before
anything walks it.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import os
import pickle
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from histobridge.errors import CheckpointError, UnsafePickleError
from histobridge.models._gated_unpickler import GatedUnpickler
from histobridge.models._pickle_values import (
    NDARRAY,
    load_storage,
    np_dtype,
    np_reconstruct,
    np_scalar,
    rebuild_parameter,
    rebuild_tensor,
)

log = logging.getLogger(__name__)

PERSISTENCE_VERSION = 6
_PERSISTENCE_SUFFIX = "torch_utils.persistence"
MAX_TREE_DEPTH = 12
MAX_TREE_NODES = 5_000


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
    def modules(self) -> dict[str, Any]:
        """Child objects by name (``None`` entries kept); a malformed ``_modules`` is an error."""
        mods = self.state.get("_modules")
        if mods is None:
            return {}
        if not isinstance(mods, Mapping) or not all(isinstance(k, str) for k in mods):
            raise CheckpointError(f"{self.class_name}._modules is not a mapping of names to modules")
        return dict(mods)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)


def _make_reconstructor(module: str) -> Callable[[Any], PersistentStub]:
    def reconstruct(meta: Any) -> PersistentStub:
        if not isinstance(meta, dict):
            raise CheckpointError(f"persistent object metadata is a {type(meta).__name__}, not a dict")
        if meta.get("type") != "class" or meta.get("version") != PERSISTENCE_VERSION:
            raise CheckpointError(
                f"unsupported persistent object (type={meta.get('type')!r:.40},"
                f" version={meta.get('version')!r:.40};"
                f" expected type='class', version={PERSISTENCE_VERSION})"
            )
        src = meta.get("module_src", "")
        src_bytes = src.encode("utf-8", "replace") if isinstance(src, str) else b""
        state = meta.get("state")
        name = meta.get("class_name")
        if not isinstance(name, str):
            raise CheckpointError(f"persistent object class name is a {type(name).__name__}, not text")
        return PersistentStub(
            class_name=name,
            version=PERSISTENCE_VERSION,
            module=module,
            module_sha1=hashlib.sha1(src_bytes).hexdigest(),
            state=state if isinstance(state, dict) else {},
        )

    return reconstruct


def _codecs_encode(obj: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """Protocol 2 writes bytes as ``_codecs.encode(text, 'latin1')``; allow only that use."""
    if not isinstance(obj, str) or not isinstance(encoding, str) or not isinstance(errors, str):
        raise UnsafePickleError("refused _codecs.encode with non-text arguments")
    if encoding.lower().replace("-", "") not in ("latin1", "utf8") or errors != "strict":
        raise UnsafePickleError(f"refused _codecs.encode with encoding {encoding!r}")
    return obj.encode(encoding, errors)


def _bytes(*args: Any) -> bytes:
    """Protocol 2 writes an empty bytes object as ``bytes()``; any argument (a size) is refused."""
    if args:
        raise UnsafePickleError("refused bytes(...) with arguments")
    return b""


_EXACT: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch.storage", "_load_from_bytes"): load_storage,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("__builtin__", "bytes"): _bytes,
    ("builtins", "bytes"): _bytes,
    ("numpy", "dtype"): np_dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _EXACT[(_mod, "scalar")] = np_scalar
    _EXACT[(_mod, "_reconstruct")] = np_reconstruct


def _is_dnnlib_util(module: str) -> bool:
    return module in ("dnnlib", "dnnlib.util") or module.endswith((".dnnlib", ".dnnlib.util"))


class RestrictedUnpickler(GatedUnpickler):
    """Unpickler whose ``find_class`` resolves only allow-listed globals and whose BUILD is gated."""

    def __init__(self, file: Any, *, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise UnsafePickleError(f"{self.source}: a global name that is not text")
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
        if (module, name) == ("numpy", "ndarray"):
            return NDARRAY
        found = _EXACT.get((module, name))
        if found is not None:
            return found
        raise UnsafePickleError(
            f"{self.source}: the pickle asks for the global {module}.{name}, which is not on the allow-list"
            " of a StyleGAN snapshot; refusing to load it (nothing from the file was executed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: unexpected persistent id {pid!r:.80} in a network snapshot")


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle a snapshot file with the allow-list; tensors land on the CPU.

    The file is read whole first so that no length declared inside it can make a read allocate
    more than the file holds.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot open the checkpoint: {err}") from err
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=str(path)).load()
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise type(err)(f"{path}: {err}") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            OverflowError, RecursionError, UnicodeError, AssertionError, struct.error) as err:
        raise CheckpointError(f"{path}: not a readable network snapshot pickle: {err!s:.200}") from err


def check_tree(root: PersistentStub, where: str = "G_ema") -> list[tuple[str, PersistentStub]]:
    """Every module of the tree once, parents first; shared or cyclic sub-modules and huge trees refused.

    A pickle can reference one object from many places, so a tiny file can describe a tree with
    2**40 paths or a module that contains itself. Real networks are trees of a few hundred modules.
    """
    seen: set[int] = set()
    out: list[tuple[str, PersistentStub]] = []
    todo: list[tuple[str, PersistentStub, int]] = [(where, root, 0)]
    while todo:
        name, stub, depth = todo.pop()
        if id(stub) in seen:
            raise CheckpointError(f"module {name} appears more than once in the network (shared or cyclic)")
        seen.add(id(stub))
        out.append((name, stub))
        if len(out) > MAX_TREE_NODES:
            raise CheckpointError(f"the network has more than {MAX_TREE_NODES} modules")
        for child_name, child in reversed(list(stub.modules.items())):
            if child is None:
                continue
            if not isinstance(child, PersistentStub):
                kind = type(child).__name__
                raise CheckpointError(f"module {name}.{child_name} is a {kind}, not a network object")
            if depth + 1 > MAX_TREE_DEPTH:
                raise CheckpointError(f"the network is nested deeper than {MAX_TREE_DEPTH} levels at {name}")
            todo.append((f"{name}.{child_name}", child, depth + 1))
    return out


def iter_state_tensors(root: PersistentStub) -> list[tuple[str, torch.Tensor]]:
    """The ``state_dict()`` of a checked stub tree: parameters and persistent buffers, depth first."""
    out: list[tuple[str, torch.Tensor]] = []
    for where, stub in check_tree(root, ""):
        prefix = where[1:] + "." if where else ""
        skip = stub.attr("_non_persistent_buffers_set") or ()
        if not isinstance(skip, set | frozenset | list | tuple):
            raise CheckpointError(f"{prefix or 'the generator'}: _non_persistent_buffers_set is not a set")
        for key in ("_parameters", "_buffers"):
            entries = stub.attr(key) or {}
            if not isinstance(entries, Mapping):
                raise CheckpointError(f"{prefix}{key} is a {type(entries).__name__}, not a mapping")
            for name, value in entries.items():
                if value is None or (key == "_buffers" and name in skip):
                    continue
                if not isinstance(name, str) or not isinstance(value, torch.Tensor):
                    raise CheckpointError(f"{prefix}{name!s:.40} is a {type(value).__name__}, not a tensor")
                out.append((prefix + name, value.detach()))
    return out
