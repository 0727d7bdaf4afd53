"""The pure-Python unpickler with its opcode table narrowed: the base of every snapshot reader here.

CPython's C unpickler cannot be changed opcode by opcode; the pure-Python one can. Here BUILD
only fills objects that are :class:`Buildable` (our inert stand-ins), BYTEARRAY8 (protocol 5,
which allocates its declared length before reading) is refused, and the number of opcodes is
capped. Readers must hand it an in-memory stream so a declared length can never make a read
larger than the file.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from histobridge.errors import CheckpointError, UnsafePickleError

MAX_OPCODES = 20_000_000


class Buildable(ABC):
    """Objects the pickle BUILD opcode may fill; everything else refuses BUILD."""

    @abstractmethod
    def build(self, state: Any) -> None:
        """Take ``state`` from the file, checking it (the one place file data meets the object)."""


def _load_build(self: Any) -> None:
    """BUILD only fills our own inert stand-ins; no library ``__setstate__`` ever sees file data."""
    state = self.stack.pop()
    inst = self.stack[-1]
    if not isinstance(inst, Buildable):
        raise UnsafePickleError(f"refused to BUILD (set the state of) a {type(inst).__name__} from file data")
    inst.build(state)


def _refuse_bytearray8(self: Any) -> None:
    raise UnsafePickleError("refused a protocol-5 BYTEARRAY8 (not used by network snapshots)")


def _counted(op: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(self: Any) -> None:
        self.opcodes += 1
        if self.opcodes > MAX_OPCODES:
            raise CheckpointError(f"more than {MAX_OPCODES} pickle opcodes; not a network snapshot")
        op(self)

    return run


_SPECIAL: dict[int, Callable[[Any], None]] = {
    pickle.BUILD[0]: _load_build,
    pickle.BYTEARRAY8[0]: _refuse_bytearray8,
}
_BASE: Any = pickle._Unpickler  # the pure-Python unpickler


class GatedUnpickler(_BASE):  # type: ignore[misc]
    """Pure-Python unpickler with BUILD gated, BYTEARRAY8 refused and an opcode budget."""

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = {
        key: _counted(_SPECIAL.get(key, op)) for key, op in _BASE.dispatch.items()
    }

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.opcodes = 0

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(f"the pickle asks for the global {module}.{name}, which is not allowed here")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"unexpected persistent id {pid!r:.80}")
