"""Pipelined tile inference: reader threads prepare batches while the model runs.

Reading a tile (decode + resample) happens in a small thread pool; each job fills one batch. At
most ``prefetch`` batches are in flight, so memory stays bounded however large the slide. The
calling thread only runs the model, in batch order, so the results line up with the input
coordinates. Slide readers and torch release the GIL for their heavy work, which is what lets the
two overlap.

On the CPU (:func:`infer_tiles`'s fast path) the readers fill recycled uint8 buffers and the model
thread converts a few tiles at a time (:func:`cpu_chunk`) into one float32 buffer laid out
channels-last: the uint8 NHWC tiles are already in that order, so the conversion is one straight
pass, and oneDNN's convolutions run faster on it than on NCHW. The config's steps then run in place,
the same torch kernels in the same order as :meth:`TileClassifier.preprocess`. Small forward chunks
keep the activations of a batch (hundreds of MiB for 64 tiles of 224 px through a ResNet-18) out of
peak memory and, measured at one thread, run as fast as whole batches or faster; the read batch
stays large, because a batch decodes one spatial block of the slide. Elsewhere (CUDA, or preprocessing
that changes the shape) the readers return ready float batches, as the device wants whole batches.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from histobridge._memory import heap_kept_for_reuse
from histobridge.errors import ModelError

if TYPE_CHECKING:
    import torch

    from histobridge.models.classifier import TileClassifier
    from histobridge.slides import Slide

log = logging.getLogger(__name__)
B = TypeVar("B")
R = TypeVar("R")


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


def read_tiles(slide: Slide, coords: np.ndarray, tile_px: int, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, tile_px, tile_px, 3) for level-0 float rectangles (x, y, w, h), each resampled once.

    Uses the tiler's block reader (one decode per spatial cell) when the slide offers batch reads.
    ``out`` (uint8, that shape) is filled instead of a new array.
    """
    if out is None:
        out = np.empty((len(coords), tile_px, tile_px, 3), np.uint8)
    if len(coords) and hasattr(slide, "read_scaled_batch"):
        from histobridge.tiling.tiler import read_batch as read_block_batch

        return read_block_batch(slide, coords, tile_px, float(coords[0, 2]), out=out)
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
    scale = 255.0  # pixel scale before ToTensor; stain normalisation works on [0, 1]
    for step in classifier.config.transform:
        if step.name == "ToTensor":
            steps.append(("div", 255.0))
            scale = 1.0
        elif step.name == "StainNormalize":  # per tile, so a chunk gives what the whole batch gives
            steps.append(("stain", (step.arguments, scale)))
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
    """uint8 NHWC tiles → ``out[:n]``, float32 NCHW in ``out``'s layout: one conversion, then in place."""
    import torch

    n = len(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or tuple(out.shape[1:]) != (3, *tiles.shape[1:3]):
        raise ModelError(f"expected tiles as (N, H, W, 3) matching {tuple(out.shape[1:])}, got {tiles.shape}")
    if n > len(out):
        raise ModelError(f"{n} tiles do not fit a buffer of {len(out)}")
    x = out[:n]
    x.copy_(torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2))
    target, width = x, 0
    if n and x.permute(0, 2, 3, 1).is_contiguous():
        # NHWC memory: one row per image row, per-channel values as a repeating row pattern. A
        # (1, 3, 1, 1) operand broadcast over NHWC memory is 5x slower than this, for the same values.
        width = tiles.shape[2]
        target = x.permute(0, 2, 3, 1).view(n * tiles.shape[1], width * 3)
    for op, arg in steps:
        if op == "stain":
            from histobridge.models.stain import apply

            arguments, scale = arg
            x.copy_(apply(x / scale, arguments) * scale)
            continue
        if width and isinstance(arg, torch.Tensor):
            arg = arg.reshape(3).repeat(width)
        if op == "div":
            target.div_(arg)
        else:
            target.sub_(arg)
    return x


def channels_last_buffer(n: int, px: int) -> torch.Tensor:
    """A float32 (n, 3, px, px) tensor stored as NHWC: uint8 tiles convert into it in one straight pass."""
    import torch

    return torch.empty((n, px, px, 3), dtype=torch.float32).permute(0, 3, 1, 2)


CPU_CHUNK_PIXELS = 4 * 224 * 224
"""Pixels per forward call on the CPU: 4 tiles of 224 px. Chunks of 4–16 such tiles ran at the same
speed (1 thread, a small CNN and a ResNet-18), a whole batch of 32 slower; peak memory grows with it."""


def cpu_chunk(classifier: TileClassifier, batch_size: int) -> int | None:
    """Tiles per forward call on the CPU fast path, or None when batches go to the model whole."""
    if classifier.device.type != "cpu" or in_place_steps(classifier) is None:
        return None
    px = classifier.config.patch_size_pixels
    return max(1, min(batch_size, CPU_CHUNK_PIXELS // (px * px)))


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


def _prefetched(
    slices: list[slice], job: Callable[[slice, B | None], R], new_buffer: Callable[[], B] | None,
    workers: int, depth: int,
) -> Iterator[tuple[slice, R, float]]:
    """Run ``job(slice, buffer)`` in ``workers`` threads, ``depth`` ahead; yield results in order.

    With ``new_buffer``, each job gets a buffer recycled once the consumer asks for the next result,
    so at most ``depth + 1`` buffers ever exist.
    """
    free: list[B] = []
    pending: deque[tuple[slice, B | None, Future[R]]] = deque()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="histobridge-read")

    def submit(sl: slice) -> None:
        buf = None if new_buffer is None else (free.pop() if free else new_buffer())
        pending.append((sl, buf, pool.submit(job, sl, buf)))

    try:
        todo = iter(slices)
        for sl in todo:
            submit(sl)
            if len(pending) >= depth:
                break
        while pending:
            sl, buf, fut = pending.popleft()
            t0 = time.perf_counter()
            result = fut.result()
            waited = time.perf_counter() - t0
            nxt = next(todo, None)
            if nxt is not None:
                submit(nxt)
            yield sl, result, waited
            if buf is not None:
                free.append(buf)  # the consumer is done with this result
    finally:
        for _, _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _depth(workers: int, prefetch: int | None) -> int:
    return max(1, prefetch if prefetch is not None else 2 * max(1, int(workers)))


def iter_tiles(
    slide: Slide, coords: np.ndarray, tile_px: int, *, batch_size: int = 64, workers: int = 2,
    prefetch: int | None = None,
) -> Iterator[tuple[slice, np.ndarray, float]]:
    """Yield (slice, uint8 tiles, seconds waited) in order while up to ``prefetch`` batches are read.

    Each batch is a view of a recycled buffer, valid only until the next one is asked for.
    """
    slices = batch_slices(len(coords), batch_size)
    size = max((sl.stop - sl.start for sl in slices), default=0)

    def job(sl: slice, buf: np.ndarray | None) -> np.ndarray:
        assert buf is not None
        return read_tiles(slide, coords[sl], tile_px, out=buf[: sl.stop - sl.start])

    def new_buffer() -> np.ndarray:
        return np.empty((size, tile_px, tile_px, 3), np.uint8)

    yield from _prefetched(slices, job, new_buffer, int(workers), _depth(workers, prefetch))


def iter_batches(
    slide: Slide, coords: np.ndarray, classifier: TileClassifier, *, batch_size: int = 64,
    workers: int = 2, prefetch: int | None = None, reuse_buffers: bool = False,
) -> Iterator[tuple[slice, torch.Tensor, float]]:
    """Yield (slice, float batch, seconds waited) in order while up to ``prefetch`` batches are being read.

    With ``reuse_buffers`` each batch is a view of a recycled buffer, valid only until the next
    batch is asked for (copy it to keep it); ``prefetch + 1`` buffers exist at most.
    """
    import torch

    steps = in_place_steps(classifier) if reuse_buffers else None
    px = classifier.config.patch_size_pixels

    def job(sl: slice, buf: torch.Tensor | None) -> torch.Tensor:
        into = None if buf is None or steps is None else (buf, steps)
        return read_batch(slide, coords[sl], classifier, into)

    def new_buffer() -> torch.Tensor:
        return torch.empty((batch_size, 3, px, px), dtype=torch.float32)

    slices = batch_slices(len(coords), batch_size)
    yield from _prefetched(slices, job, new_buffer if steps is not None else None, int(workers),
                           _depth(workers, prefetch))


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
    px = classifier.config.patch_size_pixels
    chunk, steps = cpu_chunk(classifier, batch_size), in_place_steps(classifier)
    buf = channels_last_buffer(chunk, px) if chunk is not None else None
    batches: Iterator[tuple[slice, Any, float]] = (
        iter_tiles(slide, coords, px, batch_size=batch_size, workers=workers, prefetch=prefetch)
        if buf is not None
        else iter_batches(slide, coords, classifier, batch_size=batch_size, workers=workers,
                          prefetch=prefetch, reuse_buffers=True)
    )  # fmt: skip
    with heap_kept_for_reuse():  # each forward call reuses the pages the previous one freed
        for sl, batch, waited in batches:
            wait_s += waited
            t0 = time.perf_counter()
            step = chunk or len(batch)
            for a in range(0, len(batch), step):
                x = batch[a : a + step]
                if buf is not None and steps is not None:  # uint8 tiles: convert this chunk only
                    x = preprocess_into(x, buf, steps)
                p, s = classifier.predict_batch(x, uncertainty)
                probs[sl.start + a : sl.start + a + len(x)] = p
                if std is not None and s is not None:
                    std[sl.start + a : sl.start + a + len(x)] = s
            model_s += time.perf_counter() - t0
            if progress is not None:
                progress(sl.stop - sl.start)
    wall = time.perf_counter() - t_start
    log.debug("%d tiles in %.2fs (model %.2fs, waiting for reads %.2fs)", n, wall, model_s, wait_s)
    return InferenceResult(probs=probs, std=std, wall_s=wall, model_s=model_s, wait_s=wait_s)


__all__ = [
    "CPU_CHUNK_PIXELS",
    "InferenceResult",
    "batch_slices",
    "channels_last_buffer",
    "cpu_chunk",
    "in_place_steps",
    "infer_tiles",
    "iter_batches",
    "iter_tiles",
    "preprocess_into",
    "read_batch",
    "read_tiles",
]
