"""The one progress drawer of the command line: :class:`~histobridge.runs.ProgressEvent` as rich bars.

The library only emits events (it never imports rich); every command that shows progress passes a
:class:`ProgressDrawer` as the ``progress`` callback. Bars go to stderr, so ``--json`` output on
stdout stays clean.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING

from histobridge.runs import ProgressEvent

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


class ProgressDrawer:
    """One bar per (task, item) pair, created on its first event; thread-safe.

    An overall count (no item) of at most one unit, such as ``images`` 0 of 1, is not drawn: the
    per-item bar says it all.
    ``message`` fields are printed above the bars.
    """

    def __init__(self, console: Console | None = None, *, enabled: bool = True) -> None:
        self._console = console
        self._enabled = enabled
        self._bar: Progress | None = None
        self._tasks: dict[tuple[str, str | None], TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> ProgressDrawer:
        if self._enabled:
            from rich import progress as rp
            from rich.console import Console

            console = self._console or Console(stderr=True)
            self._bar = rp.Progress(
                rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                rp.TimeElapsedColumn(), rp.TimeRemainingColumn(), console=console,
            )
            self._bar.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, event: ProgressEvent) -> None:
        bar = self._bar
        if bar is None:
            return
        with self._lock:
            if event.message:
                bar.console.print(f"{event.item + ': ' if event.item else ''}{event.message}")
            if event.item is None and event.total is not None and event.total <= 1:
                return
            key = (event.task, event.item)
            task = self._tasks.get(key)
            if task is None:
                label = f"{event.task}: {key[1]}" if key[1] else event.task
                task = self._tasks[key] = bar.add_task(label, total=event.total)
            bar.update(task, completed=event.done, total=event.total)


__all__ = ["ProgressDrawer"]
