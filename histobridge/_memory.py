"""Heap memory during and between the phases of a long run (glibc only; elsewhere these do nothing).

glibc keeps freed blocks for reuse, per thread arena. After a phase whose buffers are not needed
again (a slide's thumbnail, an image's inference), the main arena can hold 50–100 MiB that the
reader threads, which allocate from their own arenas, never reuse: ``malloc_trim`` returns it.

Within a phase the opposite is wanted. A model's activations (megabytes per forward call) are freed at
the end of every call; when they sit at the top of the heap, glibc gives them back to the system
(``brk`` down, past its trim threshold) and the next call faults the same pages in again, zeroed by
the kernel. Measured on a small CNN at one thread: 310 000 page faults and ~1 s of system time per
324 tiles, 15–20 % of the model's own time. :func:`heap_kept_for_reuse` holds freed memory in the
heap for the length of a phase and hands it back at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
import threading
from collections.abc import Iterator
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
"""Blocks up to this size come from the heap, not their own mapping: glibc's own ceiling for the
threshold it raises by itself (64-bit), fixed so that it no longer depends on what was freed before."""
KEEP_FREE = 512 * 2**20
"""Free memory at the top of the heap kept during a phase: more than any chunk of activations."""
AFTER_TRIM = 2 * MMAP_THRESHOLD
"""The trim threshold outside phases: what glibc's own rule reaches once the mmap threshold is at its
ceiling (twice that threshold)."""


@functools.cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # absent from non-glibc C libraries (musl)  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def release_freed_memory() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim(0)``); False where there is no such call."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


_lock = threading.Lock()
_holders = 0


@contextlib.contextmanager
def heap_kept_for_reuse() -> Iterator[bool]:
    """Keep freed heap memory for reuse until the outermost such block ends, then hand it back.

    Yields whether the setting took effect (glibc). Process-wide, as malloc's settings are: nested
    and concurrent blocks (server jobs) share it, and the last to end restores the trim threshold
    and calls :func:`release_freed_memory`.
    """
    global _holders
    libc = _libc()
    if libc is None:
        yield False
        return
    with _lock:
        if _holders == 0:
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE)
        _holders += 1
    try:
        yield True
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                libc.mallopt(M_TRIM_THRESHOLD, AFTER_TRIM)
                libc.malloc_trim(0)


__all__ = ["heap_kept_for_reuse", "release_freed_memory"]
