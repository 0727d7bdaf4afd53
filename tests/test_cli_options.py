"""Command-line options that mean one thing everywhere: training defaults, --device, --json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from histobridge.cli import app
from histobridge.cli._common import resolve_device, split_list


@dataclass
class _Data:
    tiles: np.ndarray

    def counts(self) -> dict[str, int]:
        return {"A": len(self.tiles)}


@dataclass
class _GanResult:
    finished: bool = True
    kimg: float = 0.0
    steps: int = 0
    generator_path: Path = Path("g")


@pytest.fixture
def captured(monkeypatch):
    """Replace data loading and training by recorders: only the config the CLI builds is checked."""
    import histobridge.models.train_gan as tg
    import histobridge.models.training_data as td

    seen: dict[str, object] = {}
    monkeypatch.setattr(td, "load_tiles", lambda store, classes: _Data(np.zeros((3, 8, 8, 3), np.uint8)))

    def fake_train(data, out, cfg, progress):
        seen["cfg"] = cfg
        return _GanResult()

    monkeypatch.setattr(tg, "train_gan", fake_train)
    return seen


def test_train_gan_takes_its_defaults_from_the_config(captured, tmp_path):
    from histobridge.models.train_gan import GanTrainConfig

    res = CliRunner().invoke(app, ["train", "gan", str(tmp_path / "s"), "-o", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    assert captured["cfg"] == GanTrainConfig()
    res = CliRunner().invoke(app, ["train", "gan", str(tmp_path / "s"), "-o", str(tmp_path / "g"),
                                   "--batch", "8", "--no-noise", "--ada-target", "0", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    cfg = captured["cfg"]
    assert (cfg.batch, cfg.noise, cfg.ada_target, cfg.device) == (8, False, None, "cpu")
    assert cfg.kimg == GanTrainConfig().kimg and "config: GanTrainConfig(" in res.output


def test_device_and_list_options():
    assert resolve_device("auto") == resolve_device("AUTO") == resolve_device("") == "cpu"  # no GPU here
    assert resolve_device(" cpu ") == "cpu"
    assert split_list(["a,b", " c "]) == ["a", "b", "c"] and split_list([",", ""]) is None


def test_train_classifier_takes_its_defaults_from_the_config(monkeypatch, tmp_path):
    import histobridge.models.train_classifier as tc
    import histobridge.models.training_data as td
    from histobridge.models.train_classifier import ClassifierTrainConfig

    seen = []
    monkeypatch.setattr(td, "load_tiles", lambda store, classes: _Data(np.zeros((3, 8, 8, 3), np.uint8)))

    def fake_train(data, out, cfg, progress):
        seen.append(cfg)
        raise SystemExit(0)  # stop before the summary, which needs real metrics

    monkeypatch.setattr(tc, "train_classifier", fake_train)
    CliRunner().invoke(app, ["train", "classifier", str(tmp_path / "s"), "-o", str(tmp_path / "m")])
    CliRunner().invoke(app, ["train", "classifier", str(tmp_path / "s"), "-o", str(tmp_path / "m"),
                             "--no-jitter", "--epochs", "3"])
    CliRunner().invoke(app, ["train", "classifier", str(tmp_path / "s"), "-o", str(tmp_path / "m"),
                             "--stain-norm", "reinhard", "--stain-scale", "0.5", "--grayscale", "0.3"])
    res = CliRunner().invoke(app, ["train", "classifier", str(tmp_path / "s"), "-o", str(tmp_path / "m"),
                                   "--stain-norm", "macenko"])
    assert seen[0] == ClassifierTrainConfig()
    assert (seen[1].jitter, seen[1].epochs, seen[1].lr) == (False, 3, ClassifierTrainConfig().lr)
    assert (seen[2].stain_norm, seen[2].stain_scale, seen[2].grayscale) == ("reinhard", 0.5, 0.3)
    assert seen[2].stain_shift == ClassifierTrainConfig().stain_shift and len(seen) == 3
    assert "stain_norm must be one of none, reinhard" in str(res.exception)  # refused before any work
    assert type(res.exception).__name__ == "InputError"


def test_project_info_json(tmp_path, cmu_slide):
    """``project info --json``: every field in full, whatever the terminal width or redirection."""
    import json

    from histobridge.qupath.sample import init_sample_project

    proj = init_sample_project(tmp_path / "skin", "skin", offline=True).parent
    res = CliRunner().invoke(app, ["project", "info", str(proj), "--json"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    (img,) = doc["images"]
    assert doc["project"].endswith("project.qpproj") and "Epidermis" in doc["classes"]
    assert img["name"] == "CMU-1-Small-Region.svs" and img["found"] is True and img["size"] == [2220, 2967]
    assert img["mpp"] == pytest.approx(0.499) and img["mpp_source"] == "slide"
    assert img["annotations"] == "qpdata" and img["annotation_count"] == 15  # the sample ships QuPath data
    assert img["per_class"]["Epidermis"] == 6 and img["problems"] == []
    table = CliRunner().invoke(app, ["project", "info", str(proj)], env={"COLUMNS": "220"})
    assert "2220×2967" in table.output and "0.499 (slide)" in table.output and "Epidermis: 6" in table.output


def test_project_info_says_the_data_file_is_missing(tmp_path, shared_dir):
    """A QuPath 0.4 project whose data.qpdata is gone: QuPath's counts and the problem, not "none (0)"."""
    import json
    import shutil

    proj = tmp_path / "foci"
    shutil.copytree(shared_dir / "fixtures" / "qupath" / "foci-0.4", proj)
    for p in proj.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    (proj / "data" / "242" / "data.qpdata").unlink()
    res = CliRunner().invoke(app, ["project", "info", str(proj), "--json"])
    (img,) = [i for i in json.loads(res.output)["images"] if i["id"] == 242]
    assert img["annotations"] == "none" and img["stored_counts"] == {"annotation": 1063}
    assert any("data file missing" in p and "1063 annotations" in p for p in img["problems"])
    table = CliRunner().invoke(app, ["project", "info", str(proj)], env={"COLUMNS": "400"})
    assert "data file missing (QuPath counted 1063 annotation)" in table.output


def test_progress_drawer_draws_events_and_messages():
    """One drawer for every command: a bar per (task, item), messages above; nothing for 0-of-1 counts."""
    import io

    from rich.console import Console

    from histobridge.cli._progress import ProgressDrawer
    from histobridge.runs import ProgressEvent

    buf = io.StringIO()
    with ProgressDrawer(Console(file=buf, width=100, force_terminal=False)) as draw:
        draw(ProgressEvent("images", 0, 1))
        draw(ProgressEvent("heatmap", 0, 40, "slide-a.svs"))
        draw(ProgressEvent("heatmap", 40, 40, "slide-a.svs", message="written"))
        tasks = {t.description: (t.completed, t.total) for t in draw._bar.tasks}  # type: ignore[union-attr]
    assert tasks == {"heatmap: slide-a.svs": (40, 40)}
    assert "slide-a.svs: written" in buf.getvalue()
    with ProgressDrawer(enabled=False) as quiet:
        quiet(ProgressEvent("heatmap", 1, 2))  # disabled: accepted and ignored


def test_library_does_not_import_rich():
    import subprocess
    import sys

    code = ("import sys, histobridge.heatmap.pipeline, histobridge.demo.run, histobridge.viz.overlay; "
            "print('rich' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
