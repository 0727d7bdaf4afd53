"""`sample init --force` over a project the user worked on: atomic copies, merged QuPath files, backups."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from histobridge.qupath import layout
from histobridge.qupath.sample import init_sample_project

MODEL = Path("models") / "classifier" / "torchscript_model.pt"


def test_force_keeps_classes_and_annotations_added_in_qupath(tmp_path: Path, cmu_slide: Path) -> None:
    init_sample_project(tmp_path, offline=True)
    classes = layout.classes_path(tmp_path)
    sample_classes = json.loads(classes.read_text())
    doc = json.loads(classes.read_text())
    doc["pathClasses"] = [
        *doc["pathClasses"][:-1],
        {"name": "Mine", "color": -123},
    ]  # QuPath: one removed, one added
    classes.write_text(json.dumps(doc))
    export = layout.annotation_path(tmp_path, 1)
    sample_features = json.loads(export.read_text())["features"]
    fc = json.loads(export.read_text())
    mine = {"type": "Feature", "id": "user-1", "geometry": {"type": "Point", "coordinates": [1, 2]},
            "properties": {"objectType": "annotation"}}  # fmt: skip
    fc["features"] = [*fc["features"][1:], mine]  # one sample feature deleted, one drawn
    export.write_text(json.dumps(fc))
    before_classes, before_export = classes.read_text(), export.read_text()

    init_sample_project(tmp_path, force=True, offline=True)

    merged = json.loads(classes.read_text())["pathClasses"]
    assert merged == [*sample_classes["pathClasses"], {"name": "Mine", "color": -123}]
    assert Path(f"{classes}.bkp").read_text() == before_classes
    features = json.loads(export.read_text())["features"]
    assert features == [*sample_features, mine]  # the sample restored, the user's feature kept
    assert Path(f"{export}.bkp").read_text() == before_export
    Path(f"{classes}.bkp").unlink()
    init_sample_project(tmp_path, force=True, offline=True)  # now a superset of the sample: left alone
    assert json.loads(classes.read_text())["pathClasses"] == merged and not Path(f"{classes}.bkp").exists()


def test_unchanged_project_is_not_rewritten_and_gets_no_backup(tmp_path: Path, cmu_slide: Path) -> None:
    init_sample_project(tmp_path, offline=True)
    model = tmp_path / MODEL
    stamp = model.stat().st_mtime_ns
    init_sample_project(tmp_path, force=True, offline=True)
    assert model.stat().st_mtime_ns == stamp
    assert not list(tmp_path.rglob("*.bkp"))


def test_killed_copy_leaves_the_old_file_whole(tmp_path: Path, cmu_slide: Path, monkeypatch) -> None:
    init_sample_project(tmp_path, offline=True)
    model = tmp_path / MODEL
    good = model.read_bytes()
    model.write_bytes(b"an older model")
    real_replace = os.replace

    def killed(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if os.fspath(dst) == os.fspath(model):
            raise KeyboardInterrupt  # killed between writing the copy and moving it in
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        init_sample_project(tmp_path, force=True, offline=True)
    assert model.read_bytes() == b"an older model"  # never a 0-byte or half-written model
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(os, "replace", real_replace)
    init_sample_project(tmp_path, force=True, offline=True)
    assert model.read_bytes() == good
