"""How long-running library calls report: one progress callback type and one per-image outcome record.

The library never draws progress itself (no rich import below the CLI): it calls a
:data:`ProgressCallback` with :class:`ProgressEvent` records, and the CLI (or a notebook, or the
server) decides how to show them. Every pipeline that works image by image returns one
:class:`ImageOutcome` per requested image, so callers apply one failure policy: a run whose requested
work did not all happen is not a success (:func:`all_done`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` units (tiles, seeds, steps) of ``task``, for ``item`` (an image, a stage)."""

    task: str
    done: int
    total: int | None = None
    item: str | None = None
    message: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """The default callback: report nothing."""


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one requested image: ``done`` (with ``count`` units written), ``skipped``
    (nothing to do, with the reason) or ``failed`` (an error, with its message)."""

    entry_id: int | str
    name: str
    status: Status
    count: int = 0
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


def all_done(outcomes: Sequence[ImageOutcome]) -> bool:
    """True when every requested image was processed (an empty request is not a success)."""
    return bool(outcomes) and all(o.ok for o in outcomes)
