"""``--write-back paquo`` keeps what it rewrites: the project file in histobridge's backups (never over
QuPath's own ``project.qpproj.backup``) and the image's ``data.qpdata`` as ``data.qpdata.bkp``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from histobridge.qupath import layout
from histobridge.qupath.paquo import write as pw


def test_paquo_write_backs_up_the_project_and_the_data_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qpproj = tmp_path / "project.qpproj"
    qpproj.write_text('{"version": "0.5.1", "images": []}')
    qupath_backup = tmp_path / "project.qpproj.backup"
    qupath_backup.write_text("QuPath's own backup")
    data = layout.qpdata_path(tmp_path, 3)
    data.parent.mkdir(parents=True)
    data.write_bytes(b"original data")
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "written 7\n", "")

    monkeypatch.setattr(pw, "paquo_ready", lambda: (True, "ok"))
    monkeypatch.setattr(pw.subprocess, "run", fake_run)
    assert pw.write_tiles_paquo(qpproj, 3, tmp_path / "tiles.geojson", prefix="m") == 7
    assert seen and seen[0][-4:] == [str(qpproj), "3", str(tmp_path / "tiles.geojson"), "m"]
    assert qupath_backup.read_text() == "QuPath's own backup"  # untouched
    (copy,) = layout.backups_dir(tmp_path).glob("project.qpproj.*")
    assert copy.read_text() == qpproj.read_text()
    assert data.with_name("data.qpdata.bkp").read_bytes() == b"original data"
