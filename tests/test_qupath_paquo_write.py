"""``--write-back paquo`` keeps what it rewrites: the project file in histobridge's backups (never over
QuPath's own ``project.qpproj.backup``) and the image's ``data.qpdata`` as ``data.qpdata.bkp``, which
QuPath's own save deletes after a good write. The real QuPath runs are in test_qupath_tier_paquo.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from histobridge.errors import ProjectError
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
    seen: list[tuple[list[str], object]] = []
    bkp = data.with_name("data.qpdata.bkp")

    def qupath_saves(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        """What DefaultProject.saveImageData does: data file to .bkp, write, delete the .bkp."""
        seen.append((cmd, kw.get("env")))
        data.replace(bkp)
        data.write_bytes(b"with tiles")
        bkp.unlink()
        return subprocess.CompletedProcess(cmd, 0, "written 7\n", "")

    monkeypatch.setattr(pw, "paquo_ready", lambda qupath_dir=None: (True, "ok"))
    monkeypatch.setattr(pw.subprocess, "run", qupath_saves)
    assert pw.write_tiles_paquo(qpproj, 3, tmp_path / "tiles.geojson", prefix="m", qupath_dir="/q") == 7
    (cmd, env), = seen
    assert cmd[-4:] == [str(qpproj), "3", str(tmp_path / "tiles.geojson"), "m"]
    assert isinstance(env, dict) and env["PAQUO_QUPATH_DIR"] == "/q"  # the chosen QuPath, for the child only
    assert qupath_backup.read_text() == "QuPath's own backup"  # untouched
    (copy,) = layout.backups_dir(tmp_path).glob("project.qpproj.*")
    assert copy.read_text() == qpproj.read_text()
    assert bkp.read_bytes() == b"original data" and data.read_bytes() == b"with tiles"
    assert sorted(p.name for p in data.parent.iterdir()) == ["data.qpdata", "data.qpdata.bkp"]


def test_paquo_write_that_does_not_confirm_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qpproj = tmp_path / "project.qpproj"
    qpproj.write_text('{"version": "0.5.1", "images": []}')
    monkeypatch.setattr(pw, "paquo_ready", lambda qupath_dir=None: (True, "ok"))
    monkeypatch.setattr(pw.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, "", "some warning"))
    with pytest.raises(ProjectError, match="did not say how many tiles"):
        pw.write_tiles_paquo(qpproj, 1, tmp_path / "tiles.geojson", prefix="m")
