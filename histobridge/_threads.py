"""How many threads to run: the cores this process may really use, shared between readers and torch.

Why: ``os.cpu_count()`` reports the host's cores, not the ones a container or ``taskset`` grants, and
torch starts one intra-op thread per host core. On a machine whose few cores are shared, threads
beyond the granted cores do not add speed: they queue behind each other and torch's spinning
workers stall (a run on two shared cores was 9x slower with torch's default than with one thread).

The budget is the smallest of: the CPU affinity mask, the cgroup CPU quota (v2 ``cpu.max``, v1
``cpu.cfs_quota_us / cpu.cfs_period_us``, rounded down, at least 1), and ``HISTOBRIDGE_THREADS``
when set, which replaces the first two (for a user who knows better, or a benchmark).
Readers plus torch intra-op threads never exceed the budget.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from histobridge.errors import InputError

ENV_VAR = "HISTOBRIDGE_THREADS"
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CoreBudget:
    """Cores this process may use and what decided it (``affinity``, ``cgroup`` or the variable)."""

    cores: int
    source: str


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_limit(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    if text is None:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_limit(folder: Path) -> float | None:
    quota_text, period_text = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    if quota_text is None or period_text is None:
        return None
    try:
        quota, period = float(quota_text), float(period_text)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None  # -1: no quota


def _ancestors(root: Path, rel: str) -> list[Path]:
    """``root/rel`` and each folder above it up to ``root`` (a parent's quota caps its children)."""
    parts = [p for p in rel.strip("/").split("/") if p and p != ".."]
    return [root.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_cpu_limit(root: Path | None = None, proc_cgroup: Path | None = None) -> float | None:
    """CPUs granted by the cgroup quota (may be fractional), or None when there is no quota."""
    root = CGROUP_ROOT if root is None else root
    membership = _read(PROC_CGROUP if proc_cgroup is None else proc_cgroup) or ""
    limits: list[float] = []
    for line in membership.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, rel = fields
        if controllers == "":  # v2 unified hierarchy
            limits += [v for f in _ancestors(root, rel) if (v := _v2_limit(f)) is not None]
        elif "cpu" in controllers.split(","):
            for mount in (root / controllers, root / "cpu,cpuacct", root / "cpu"):
                if mount.is_dir():
                    limits += [v for f in _ancestors(mount, rel) if (v := _v1_limit(f)) is not None]
                    break
    if not membership:  # no /proc (or unreadable): look at the root folder alone
        limits += [v for v in (_v2_limit(root), _v1_limit(root / "cpu")) if v is not None]
    return min(limits) if limits else None


def _affinity() -> int:
    getter = getattr(os, "sched_getaffinity", None)
    if getter is not None:
        try:
            return max(1, len(getter(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def _env_threads() -> int | None:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{ENV_VAR}={raw!r}: must be a whole number of threads, at least 1")
    return value


def core_budget() -> CoreBudget:
    """The cores this process may use (see the module text for the rule)."""
    env = _env_threads()
    if env is not None:
        return CoreBudget(env, ENV_VAR)
    cores, source = _affinity(), "affinity"
    quota = cgroup_cpu_limit()
    if quota is not None and max(1, math.floor(quota)) < cores:
        cores, source = max(1, math.floor(quota)), "cgroup"
    return CoreBudget(cores, source)


def available_cores() -> int:
    """:func:`core_budget` as a number."""
    return core_budget().cores


def reader_threads(requested: int | None = None) -> int:
    """Reader threads to start: ``requested`` (or all cores when None), never more than the cores."""
    cores = available_cores()
    return cores if requested is None else max(1, min(int(requested), cores))


def torch_threads(readers: int = 0) -> int:
    """Intra-op threads torch may use beside ``readers`` busy reader threads (at least 1).

    An ``OMP_NUM_THREADS`` the user set is an upper limit too.
    """
    budget = max(1, available_cores() - max(0, readers))
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        budget = min(budget, int(omp))
    return budget


def configure_torch_threads(readers: int = 0) -> int:
    """Set torch's intra-op threads to :func:`torch_threads` and inter-op threads to 1; return the former.

    Call it once before inference or training, passing the number of reader threads that will run
    beside torch. Inter-op threads can only be set before torch first uses them; a later call keeps
    what torch has.
    """
    import torch

    n = torch_threads(readers)
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # already set, or inter-op work already started
        torch.set_num_interop_threads(1)
    return n
