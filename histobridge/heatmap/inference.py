"""Pipelined tile inference: reader threads prepare batches while the model runs.

Reading a tile (decode + resample) and preprocessing it happen in a small thread pool; each job
returns one ready-to-run batch tensor. At most ``prefetch`` batches are in flight, so memory stays
bounded (``prefetch × batch_size`` tiles) however large the slide. The calling thread only runs the
model, in batch order, so the results line up with the input coordinates. Slide readers and torch
release the GIL for their heavy work, which is what lets the two overlap.

:func:`infer_tiles` preprocesses into a few float32 NCHW buffers that are reused batch after batch:
one converting copy from the uint8 tiles, then the config's steps in place, the same torch kernels
in the same order as :meth:`TileClassifier.preprocess` (so the values are identical). Chained
out-of-place steps would allocate five batch-sized temporaries per batch, and the allocator keeps
freed blocks of that size, which is what made peak memory grow to about 1 GiB.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from histobridge.errors import ModelError

if TYPE_CHECKING:
    import torch

    from histobridge.models.classifier import TileClassifier
    from histobridge.slides import Slide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceResult:
    """Per-tile probabilities (N, C) in input order, MC-dropout SD when asked, and where time went."""

    probs: np.ndarray
    std: np.ndarray | None
    wall_s: float
    model_s: float
    wait_s: float

    @property
    def tiles_per_s(self) -> float:
        return len(self.probs) / self.wall_s if self.wall_s > 0 else float("nan")


def read_tiles(slide: Slide, coords: np.ndarray, tile_px: int) -> np.ndarray:
    """uint8 (N, tile_px, tile_px, 3) for level-0 float rectangles (x, y, w, h), each resampled once.

    Uses the tiler's block reader (one decode per spatial cell) when the slide offers batch reads.
    """
    if len(coords) and hasattr(slide, "read_scaled_batch"):
        from histobridge.tiling.tiler import read_batch as read_block_batch

        return read_block_batch(slide, coords, tile_px, float(coords[0, 2]))
    out = np.empty((len(coords), tile_px, tile_px, 3), np.uint8)
    for i, (x, y, w, h) in enumerate(coords):
        out[i] = slide.read_scaled(float(x), float(y), float(w), float(h), tile_px)
    return out


def in_place_steps(classifier: TileClassifier) -> list[tuple[str, Any]] | None:
    """The config's preprocessing as in-place operations, or None when it needs the generic path.

    Tiles are read at the model's own size, so a ``Resize`` to that size does nothing; any other
    ``Resize`` (or an unknown step) changes the shape and goes through ``classifier.preprocess``.
    """
    import torch

    px = classifier.config.patch_size_pixels
    steps: list[tuple[str, Any]] = []
    for step in classifier.config.transform:
        if step.name == "ToTensor":
            steps.append(("div", 255.0))
        elif step.name == "Resize":
            size = step.arguments["size"]
            hw = (size, size) if isinstance(size, int) else (size[0], size[1])
            if hw != (px, px):
                return None
        elif step.name == "Normalize":
            mean = torch.tensor(step.arguments["mean"], dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(step.arguments["std"], dtype=torch.float32).view(1, 3, 1, 1)
            steps += [("sub", mean), ("div", std)]
        else:
            return None
    return steps


def preprocess_into(tiles: np.ndarray, out: torch.Tensor, steps: Sequence[tuple[str, Any]]) -> torch.Tensor:
    """uint8 NHWC tiles → ``out[:n]`` float32 NCHW, converted once and then transformed in place."""
    import torch

    n = len(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or tuple(out.shape[1:]) != (3, *tiles.shape[1:3]):
        raise ModelError(f"expected tiles as (N, H, W, 3) matching {tuple(out.shape[1:])}, got {tiles.shape}")
    x = out[:n]
    x.copy_(torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2))
    for op, arg in steps:
        if op == "div":
            x.div_(arg)
        else:
            x.sub_(arg)
    return x


def read_batch(
    slide: Slide, coords: np.ndarray, classifier: TileClassifier,
    into: tuple[torch.Tensor, Sequence[tuple[str, Any]]] | None = None,
) -> torch.Tensor:
    """One model-ready batch: tiles read at the model's size, then its own preprocessing (on CPU).

    With ``into`` (a buffer and :func:`in_place_steps`), the batch is a view of that buffer.
    """
    tiles = read_tiles(slide, coords, classifier.config.patch_size_pixels)
    batch = classifier.preprocess(tiles) if into is None else preprocess_into(tiles, *into)
    if classifier.device.type == "cuda":
        batch = batch.pin_memory()
    return batch


def batch_slices(n: int, batch_size: int) -> list[slice]:
    if batch_size < 1:
        raise ModelError(f"batch_size must be ≥ 1, got {batch_size}")
    return [slice(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]


def iter_batches(
    slide: Slide, coords: np.ndarray, classifier: TileClassifier, *, batch_size: int = 64,
    workers: int = 2, prefetch: int | None = None, reuse_buffers: bool = False,
) -> Iterator[tuple[slice, torch.Tensor, float]]:
    """Yield (slice, batch, seconds waited) in order while up to ``prefetch`` batches are being read.

    With ``reuse_buffers`` each batch is a view of a recycled buffer, valid only until the next
    batch is asked for (copy it to keep it); ``prefetch + 1`` buffers exist at most.
    """
    import torch

    slices = batch_slices(len(coords), batch_size)
    workers = max(1, int(workers))
    depth = max(1, prefetch if prefetch is not None else 2 * workers)
    steps = in_place_steps(classifier) if reuse_buffers else None
    px = classifier.config.patch_size_pixels
    free: list[torch.Tensor] = []
    pending: deque[tuple[slice, torch.Tensor | None, Future[torch.Tensor]]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="histobridge-read")

    def submit(sl: slice) -> None:
        buf: torch.Tensor | None = None
        if steps is not None:
            buf = free.pop() if free else torch.empty((batch_size, 3, px, px), dtype=torch.float32)
        into = (buf, steps) if buf is not None and steps is not None else None
        pending.append((sl, buf, pool.submit(read_batch, slide, coords[sl], classifier, into)))

    try:
        todo = iter(slices)
        for sl in todo:
            submit(sl)
            if len(pending) >= depth:
                break
        while pending:
            sl, buf, fut = pending.popleft()
            t0 = time.perf_counter()
            batch = fut.result()
            waited = time.perf_counter() - t0
            nxt = next(todo, None)
            if nxt is not None:
                submit(nxt)
            yield sl, batch, waited
            if buf is not None:
                free.append(buf)  # the consumer is done with this batch
    finally:
        for _, _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def infer_tiles(
    slide: Slide, coords: np.ndarray, classifier: TileClassifier, *, batch_size: int = 64, workers: int = 2,
    uncertainty: int = 0, prefetch: int | None = None, progress: Callable[[int], None] | None = None,
) -> InferenceResult:
    """Run ``classifier`` over every rectangle of ``coords`` on ``slide``; see the module docstring."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 4)
    n, c = len(coords), classifier.config.num_classes
    probs = np.empty((n, c), np.float32)
    std = np.empty((n, c), np.float32) if uncertainty > 0 else None
    model_s = wait_s = 0.0
    t_start = time.perf_counter()
    for sl, batch, waited in iter_batches(
        slide, coords, classifier, batch_size=batch_size, workers=workers, prefetch=prefetch,
        reuse_buffers=True,
    ):
        wait_s += waited
        t0 = time.perf_counter()
        p, s = classifier.predict_batch(batch, uncertainty)
        model_s += time.perf_counter() - t0
        probs[sl] = p
        if std is not None and s is not None:
            std[sl] = s
        if progress is not None:
            progress(sl.stop - sl.start)
    wall = time.perf_counter() - t_start
    log.debug("%d tiles in %.2fs (model %.2fs, waiting for reads %.2fs)", n, wall, model_s, wait_s)
    return InferenceResult(probs=probs, std=std, wall_s=wall, model_s=model_s, wait_s=wait_s)


__all__ = [
    "InferenceResult",
    "batch_slices",
    "in_place_steps",
    "infer_tiles",
    "iter_batches",
    "preprocess_into",
    "read_batch",
    "read_tiles",
]
