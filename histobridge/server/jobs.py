"""Long requests as jobs: a bounded worker pool, a visible queue, progress, cancel and a result TTL.

A job waits in a FIFO queue (its position is reported) until one of ``workers`` threads takes it;
nothing is ever dropped. Work functions get a :class:`JobContext` whose ``progress`` raises
:class:`JobCancelled` once the job is cancelled, so a cancel stops at the next batch. Finished jobs
are kept ``ttl_s`` seconds, then forgotten. A client that disconnects does not stop its job.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from histobridge.runs import ProgressEvent
from histobridge.server.problems import ConflictError, NotFoundError, problem_for

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")


class JobCancelled(Exception):
    """Raised inside a job's work at its next progress report after a cancel."""


@dataclass
class Job:
    """One submitted piece of work and what is known about it."""

    job_id: str
    kind: str
    work: Callable[[JobContext], Any]
    state: str = "queued"
    done: int = 0
    total: int | None = None
    message: str | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    version: int = 0

    def record(self, position: int | None) -> dict[str, Any]:
        return {
            "id": self.job_id,
            "kind": self.kind,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "queue_position": position,
            "error": self.error,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }


class JobContext:
    """What a job's work function may do: report progress (and be stopped there)."""

    def __init__(self, job: Job, manager: JobManager) -> None:
        self.job = job
        self.manager = manager

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        if self.job.cancel.is_set():
            raise JobCancelled(self.job.job_id)
        self.manager._update(self.job, done=done, total=total, message=message)

    def event(self, event: ProgressEvent) -> None:
        """The library's progress callback (:data:`histobridge.runs.ProgressCallback`)."""
        self.progress(event.done, event.total, event.message)

    def check(self) -> None:
        if self.job.cancel.is_set():
            raise JobCancelled(self.job.job_id)


class JobManager:
    """``workers`` threads over one FIFO queue; finished jobs are kept for ``ttl_s`` seconds."""

    def __init__(self, workers: int = 2, ttl_s: float = 3600.0) -> None:
        self.ttl_s = ttl_s
        self.jobs: dict[str, Job] = {}
        self.queue: collections.deque[str] = collections.deque()
        self.cond = threading.Condition()
        self.stopping = False
        self.counter = itertools.count(1)
        self.threads = [
            threading.Thread(target=self._worker, name=f"histobridge-job-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self.threads:
            t.start()

    # -- public -------------------------------------------------------------------------------------
    def submit(self, kind: str, work: Callable[[JobContext], Any]) -> Job:
        job = Job(f"{next(self.counter)}-{uuid.uuid4().hex[:12]}", kind, work)
        with self.cond:
            self._purge()
            self.jobs[job.job_id] = job
            self.queue.append(job.job_id)
            self.cond.notify_all()
        return job

    def get(self, job_id: str) -> Job:
        with self.cond:
            self._purge()
            job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r} (unknown, or its result expired after {self.ttl_s:g} s)")
        return job

    def status(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        with self.cond:
            return job.record(self._position(job))

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        with self.cond:
            if job.state in FINISHED:
                raise ConflictError(f"job {job_id} already {job.state}; nothing to cancel")
            job.cancel.set()
            if job.state == "queued":
                self.queue.remove(job_id)
                self._finish(job, "cancelled")
            return job.record(self._position(job))

    def result(self, job_id: str, wait_s: float = 0.0) -> Any:
        """The finished job's result; waits up to ``wait_s`` for it. Not ready yet: 409."""
        job = self.wait(job_id, lambda j: j.state in FINISHED, wait_s)
        if job.state == "done":
            return job.result
        if job.state == "failed":
            return None
        raise ConflictError(
            f"job {job_id} is {job.state}; no result" + (" yet" if job.state in ("queued", "running") else "")
        )

    def wait(self, job_id: str, until: Callable[[Job], bool], timeout: float) -> Job:
        job = self.get(job_id)
        deadline = time.monotonic() + max(0.0, timeout)
        with self.cond:
            while not until(job):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
        return job

    def wait_change(self, job: Job, version: int, timeout: float) -> int:
        """Block until the job's version moves past ``version`` (or ``timeout``); returns the version."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while job.version == version and job.state not in FINISHED:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return job.version

    def counts(self) -> dict[str, int]:
        with self.cond:
            states = collections.Counter(j.state for j in self.jobs.values())
            return {
                "queued": len(self.queue),
                "running": states.get("running", 0),
                "workers": len(self.threads),
                "kept": len(self.jobs),
            }

    def shutdown(self) -> None:
        with self.cond:
            self.stopping = True
            for job_id in list(self.queue):
                self._finish(self.jobs[job_id], "cancelled")
            self.queue.clear()
            for job in self.jobs.values():
                job.cancel.set()
            self.cond.notify_all()
        for t in self.threads:
            t.join(timeout=10)

    # -- internals ----------------------------------------------------------------------------------
    def _position(self, job: Job) -> int | None:
        if job.state != "queued":
            return None
        try:
            return self.queue.index(job.job_id) + 1
        except ValueError:
            return None

    def _update(self, job: Job, **values: Any) -> None:
        with self.cond:
            for k, v in values.items():
                if v is not None:
                    setattr(job, k, v)
            job.version += 1
            self.cond.notify_all()

    def _finish(self, job: Job, state: str, **values: Any) -> None:
        job.state = state
        job.finished = time.time()
        for k, v in values.items():
            setattr(job, k, v)
        job.work = _done_work  # drop references to request data
        job.version += 1
        self.cond.notify_all()

    def _purge(self) -> None:
        now = time.time()
        for job_id in [
            k
            for k, j in self.jobs.items()
            if j.state in FINISHED and j.finished is not None and now - j.finished > self.ttl_s
        ]:
            del self.jobs[job_id]

    def _worker(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                job = self.jobs[self.queue.popleft()]
                job.state, job.started = "running", time.time()
                job.version += 1
                self.cond.notify_all()
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            result = job.work(JobContext(job, self))
        except JobCancelled:
            with self.cond:
                self._finish(job, "cancelled")
        except Exception as err:  # reported as the job's problem document, never lost
            if problem_for(err)["status"] >= 500:
                log.exception("job %s (%s) failed", job.job_id, job.kind)
            with self.cond:
                self._finish(job, "failed", error=problem_for(err))
        else:
            with self.cond:
                if job.total is not None:
                    job.done = job.total
                self._finish(job, "done", result=result)


def _done_work(ctx: JobContext) -> None:
    raise ConflictError("job already finished")


__all__ = ["FINISHED", "Job", "JobCancelled", "JobContext", "JobManager"]
