"""The bundled Groovy scripts: found from the package, copied into a project, CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from histobridge.cli import app
from histobridge.errors import ProjectError
from histobridge.qupath.scripts import SCRIPTS, install_scripts, script_source


def test_sources_are_the_repository_files() -> None:
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1] / "qupath_scripts"
    for name in SCRIPTS:
        assert script_source(name) == (repo / name).read_text(encoding="utf-8")
    with pytest.raises(ProjectError, match="unknown script"):
        script_source("nope.groovy")


def test_install_into_project_folder_or_qpproj(tmp_path) -> None:
    (tmp_path / "project.qpproj").write_text("{}")
    written = install_scripts(tmp_path / "project.qpproj")
    assert [p.name for p in written] == list(SCRIPTS)
    assert all(p.parent == tmp_path / "scripts" and p.stat().st_size > 0 for p in written)
    with pytest.raises(ProjectError, match="not a QuPath project folder"):
        install_scripts(tmp_path / "missing")


def test_cli_writes_scripts(tmp_path) -> None:
    result = CliRunner().invoke(app, ["project", "scripts", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "scripts" / "import_results.groovy").is_file()
