"""Thread budget: affinity, cgroup v1/v2 quotas and HISTOBRIDGE_THREADS, with faked system files."""

from __future__ import annotations

from pathlib import Path

import pytest

from histobridge import _threads
from histobridge.errors import InputError


def _v2(tmp_path: Path, cpu_max: str | None, *, nested: str | None = None) -> tuple[Path, Path]:
    root = tmp_path / "cg"
    leaf = root / "user.slice" / "job.scope"
    leaf.mkdir(parents=True)
    if cpu_max is not None:
        (root / "user.slice" / "cpu.max").write_text(cpu_max + "\n")
    if nested is not None:
        (leaf / "cpu.max").write_text(nested + "\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job.scope\n")
    return root, proc


def _use(monkeypatch: pytest.MonkeyPatch, root: Path, proc: Path, affinity: int) -> None:
    monkeypatch.setattr(_threads, "CGROUP_ROOT", root)
    monkeypatch.setattr(_threads, "PROC_CGROUP", proc)
    monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    monkeypatch.delenv(_threads.ENV_VAR, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_v2_quota_caps_the_affinity_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, proc = _v2(tmp_path, "200000 100000")
    assert _threads.cgroup_cpu_limit(root, proc) == 2.0
    _use(monkeypatch, root, proc, affinity=64)
    assert _threads.core_budget() == _threads.CoreBudget(2, "cgroup")


def test_v2_nested_quota_and_fractions_round_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, proc = _v2(tmp_path, "400000 100000", nested="150000 100000")
    assert _threads.cgroup_cpu_limit(root, proc) == 1.5
    _use(monkeypatch, root, proc, affinity=8)
    assert _threads.available_cores() == 1


def test_v2_without_quota_uses_affinity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, proc = _v2(tmp_path, "max 100000")
    assert _threads.cgroup_cpu_limit(root, proc) is None
    _use(monkeypatch, root, proc, affinity=3)
    assert _threads.core_budget() == _threads.CoreBudget(3, "affinity")


def test_v1_cfs_quota(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    folder = root / "cpu,cpuacct" / "docker" / "abc"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text("300000\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert _threads.cgroup_cpu_limit(root, proc) == 3.0
    (folder / "cpu.cfs_quota_us").write_text("-1\n")
    assert _threads.cgroup_cpu_limit(root, proc) is None


def test_missing_or_garbled_files_mean_no_quota(tmp_path: Path) -> None:
    assert _threads.cgroup_cpu_limit(tmp_path / "none", tmp_path / "none.txt") is None
    root, proc = _v2(tmp_path, "lots please")
    assert _threads.cgroup_cpu_limit(root, proc) is None


def test_environment_variable_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, proc = _v2(tmp_path, "100000 100000")
    _use(monkeypatch, root, proc, affinity=4)
    monkeypatch.setenv(_threads.ENV_VAR, "6")
    assert _threads.core_budget() == _threads.CoreBudget(6, _threads.ENV_VAR)
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(_threads.ENV_VAR, bad)
        with pytest.raises(InputError, match=_threads.ENV_VAR):
            _threads.available_cores()


def test_readers_plus_torch_never_exceed_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, proc = _v2(tmp_path, "400000 100000")
    _use(monkeypatch, root, proc, affinity=16)
    assert _threads.reader_threads() == 4
    assert _threads.reader_threads(8) == 4
    assert _threads.reader_threads(2) == 2
    for readers in range(0, 4):
        assert readers + _threads.torch_threads(readers) <= 4
    assert _threads.torch_threads(1) == 3
    assert _threads.torch_threads(9) == 1  # torch always gets one thread
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _threads.torch_threads(0) == 2


def test_configure_torch_threads_sets_intra_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    root, proc = _v2(tmp_path, "200000 100000")
    _use(monkeypatch, root, proc, affinity=8)
    before = torch.get_num_threads()
    try:
        assert _threads.configure_torch_threads(readers=1) == 1
        assert torch.get_num_threads() == 1
        assert _threads.configure_torch_threads() == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
