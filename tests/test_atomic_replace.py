"""Replacing an output directory: the old one is set aside, never deleted before the new one is in."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from histobridge._atomic import atomic_path, copy_file, replace_dir


def test_replace_dir_swaps_and_cleans_up(tmp_path: Path) -> None:
    old, new = tmp_path / "out", tmp_path / "new"
    old.mkdir()
    (old / "a.txt").write_text("old")
    new.mkdir()
    (new / "b.txt").write_text("new")
    replace_dir(new, old)
    assert [p.name for p in old.iterdir()] == ["b.txt"] and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left aside


def test_failed_move_puts_the_old_directory_back(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "result"
    target.mkdir()
    (target / "a.txt").write_text("earlier result")
    real_replace = os.replace

    def full(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == target and Path(src).name == "result" and Path(src).parent.name.endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "b.txt").write_text("new result")
    assert (target / "a.txt").read_text() == "earlier result"  # the earlier result survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_copy_file_is_atomic(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 3_000_000)
    copy_file(src, tmp_path / "d" / "dst.bin")
    assert (tmp_path / "d" / "dst.bin").read_bytes() == src.read_bytes()
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["dst.bin"]
