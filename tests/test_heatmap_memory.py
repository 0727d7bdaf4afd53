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


# The model's activations: megabytes allocated and freed once per forward call. Freed at the top of
# the heap, past glibc's trim threshold, they go back to the system and the next call faults the
# same pages in again (about 1 s of system time per 324 tiles of a small CNN).
CHURN = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from histobridge._memory import heap_kept_for_reuse

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

    def calls(n=20):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            acts = [np.ones(2**20) for _ in range(3)]  # 3 x 8 MiB, touched
            del acts
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    calls(1)  # glibc raises its own thresholds after the first mapped block is freed
    plain = calls()
    with heap_kept_for_reuse() as active:
        with heap_kept_for_reuse():  # nested blocks share the setting
            kept = calls()
        held = rss()
    print(active, plain, kept, held, rss())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_heap_kept_for_reuse_stops_refaulting_freed_activations() -> None:
    out = subprocess.run([sys.executable, "-c", CHURN], capture_output=True, text=True, check=True)
    active, plain, kept, held, after = out.stdout.split()
    assert active == "True"
    # plainly, every call faults its 24 MiB in again (fewer faults where pages are huge); kept, the
    # pages freed by one call serve the next
    assert int(kept) * 5 < int(plain)
    assert float(after) < float(held) - 16  # handed back when the outermost block ended


def test_every_model_call_of_an_inference_runs_with_the_heap_kept(tmp_path, monkeypatch) -> None:
    """infer_tiles wraps all its model calls, and only them, in one heap_kept_for_reuse block."""
    import contextlib

    import numpy as np

    from histobridge.heatmap import inference
    from histobridge.models.classifier import load_classifier
    from tests._heatmap_helpers import ColourNet, config_dict, save_model

    clf = load_classifier(save_model(tmp_path, ColourNet(), config_dict()))
    state = {"inside": 0, "blocks": 0}
    seen: list[int] = []

    @contextlib.contextmanager
    def recording():
        state["inside"] += 1
        state["blocks"] += 1
        try:
            yield True
        finally:
            state["inside"] -= 1

    real = clf.predict_batch

    def predict_batch(batch, passes=0):
        seen.append(state["inside"])
        return real(batch, passes)

    class Slide:
        def read_scaled(self, x, y, w, h, out_px):
            return np.full((out_px, out_px, 3), int(x) % 256, np.uint8)

    monkeypatch.setattr(inference, "heap_kept_for_reuse", recording)
    monkeypatch.setattr(clf, "predict_batch", predict_batch)
    coords = np.zeros((40, 4))
    coords[:, 0], coords[:, 2:] = np.arange(40), 64.0
    res = inference.infer_tiles(Slide(), coords, clf, batch_size=8, workers=2)
    assert len(res.probs) == 40 and len(seen) >= 5
    assert seen == [1] * len(seen) and state == {"inside": 0, "blocks": 1}
