"""Freed heap memory goes back to the OS between the phases of a heatmap run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A fresh interpreter, so the heap is only what this script makes: 80 MiB of 100 KiB blocks (below
# glibc's mmap threshold, so they live on the heap), each followed by a small block that stays: the
# freed space is then scattered holes, which glibc keeps (a fragmented heap, as after a thumbnail).
SCRIPT = textwrap.dedent("""
    from histobridge._memory import release_freed_memory

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

    blocks, pins = [], []
    for _ in range(800):
        blocks.append(bytearray(b"x" * (100 * 1024)))
        pins.append(bytearray(b"y" * 1024))  # above pymalloc's 512 bytes: on the C heap
    before = rss()
    del blocks
    freed = rss()
    print(before, freed, release_freed_memory(), rss())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's (Linux)")
def test_release_freed_memory_returns_the_freed_heap():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    before, freed, released, after = out.stdout.split()
    assert released == "True"
    assert float(freed) > float(before) - 20  # glibc kept what was freed ...
    assert float(after) < float(freed) - 60  # ... until it was handed back
