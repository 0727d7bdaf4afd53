"""Handing freed heap memory back to the operating system between the phases of a long run.

glibc keeps freed blocks for reuse, per thread arena. After a phase whose buffers are not needed
again (a slide's thumbnail, an image's inference), the main arena can hold 50–100 MiB that the
reader threads, which allocate from their own arenas, never reuse: ``malloc_trim`` returns it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Any


@functools.cache
def _trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # absent from non-glibc C libraries (musl)
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim(0)``); False where there is no such call."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True


__all__ = ["release_freed_memory"]
