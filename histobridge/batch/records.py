"""What a batch did: one :class:`StepResult` per image-step around the library's own outcome record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histobridge.runs import ImageOutcome


@dataclass(frozen=True)
class StepResult:
    """One image-step (``teach`` is one per project, with entry id ``"*"``). ``resumed``: skipped
    because an earlier run finished it with the same settings and inputs."""

    project: str
    step: str
    outcome: ImageOutcome
    seconds: float = 0.0
    resumed: bool = False
    key: str | None = None  # the resume key the step was run under

    @property
    def failed(self) -> bool:
        return self.outcome.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "project": self.project, "step": self.step, "entry_id": str(o.entry_id), "name": o.name,
            "status": o.status, "count": o.count, "reason": o.reason, "seconds": round(self.seconds, 3),
            "resumed": self.resumed,
        }  # fmt: skip


@dataclass(frozen=True)
class BatchReport:
    """Every image-step of one batch; ``ok`` when none failed (skipped images are reported, not failures)."""

    out: Path
    results: tuple[StepResult, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    workers: int = 0
    scheduler: str | None = None
    dashboard: str | None = None

    @property
    def failed(self) -> tuple[StepResult, ...]:
        return tuple(r for r in self.results if r.failed)

    @property
    def ok(self) -> bool:
        return bool(self.results) and not self.failed

    @property
    def images_done(self) -> int:
        return sum(1 for r in self.results if r.outcome.ok and not r.resumed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "seconds": round(self.seconds, 3), "workers": self.workers,
            "scheduler": self.scheduler, "dashboard": self.dashboard,
            "failed": len(self.failed), "steps": [r.to_dict() for r in self.results],
        }  # fmt: skip


__all__ = ["BatchReport", "StepResult"]
