"""The package surface: public names, the error tree, a fast CLI, atomic output, sample data."""

from __future__ import annotations

import gzip
import inspect
import json
import subprocess
import sys

import pytest

import histobridge
from histobridge import _atomic, datasets, errors


def test_public_names_resolve() -> None:
    assert set(histobridge.__all__) == {
        "HistobridgeError", "Project", "__version__", "load_classifier", "load_generator", "open_slide",
    }  # fmt: skip
    for name in histobridge.__all__:
        assert getattr(histobridge, name) is not None
    with pytest.raises(AttributeError):
        histobridge.no_such_thing  # noqa: B018


def test_every_error_derives_from_the_root_and_a_builtin() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert set(errors.__all__) == {c.__name__ for c in classes}
    for cls in classes:
        assert issubclass(cls, errors.HistobridgeError)
        if cls is not errors.HistobridgeError:
            assert any(issubclass(cls, b) for b in (ValueError, OSError)), cls
    assert issubclass(errors.SlideNotFoundError, FileNotFoundError)
    assert issubclass(errors.UnsafePickleError, errors.ModelError)


def test_help_is_fast_and_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from histobridge.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "for cmd in ('demo', 'tile', 'heatmap', 'gan', 'synth', 'qpdata', 'train', 'project', 'sample'):\n"
        "    assert cmd in r.output, cmd\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_library_errors_become_one_line_and_exit_1(tmp_path) -> None:
    missing = tmp_path / "nope"
    proc = subprocess.run(
        [sys.executable, "-c", "from histobridge.cli import main; main()", "project", "info", str(missing)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_atomic_open_keeps_the_old_file_when_writing_fails(tmp_path) -> None:
    target = tmp_path / "out.json"
    _atomic.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), _atomic.atomic_open(target) as fh:
        fh.write("partial")
        raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_gzip_and_nan_refused(tmp_path) -> None:
    target = tmp_path / "x.json.gz"
    _atomic.write_json(target, {"a": [1, 2]})
    assert json.loads(gzip.decompress(target.read_bytes())) == {"a": [1, 2]}
    with pytest.raises(ValueError):
        _atomic.write_json(tmp_path / "bad.json", {"a": float("nan")})
    assert not (tmp_path / "bad.json").exists()


def test_backup_file_copies_next_to_the_original(tmp_path) -> None:
    f = tmp_path / "project.qpproj"
    f.write_text("{}")
    assert _atomic.backup_file(f).read_text() == "{}"
    assert _atomic.backup_file(tmp_path / "absent") is None


def test_unknown_dataset_and_offline_miss_are_clear(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HISTOBRIDGE_CACHE", str(tmp_path))
    with pytest.raises(errors.DatasetError, match="unknown dataset"):
        datasets.fetch("nope")
    with pytest.raises(errors.DatasetError, match="offline"):
        datasets.fetch("cmu-small-region", offline=True)


def test_cached_file_with_wrong_hash_is_not_trusted(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HISTOBRIDGE_CACHE", str(tmp_path))
    ds = datasets.DATASETS["cmu-small-region"]
    bad = tmp_path / ds.sha256[:12] / ds.filename
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a slide")
    with pytest.raises(errors.DatasetError):
        datasets.fetch("cmu-small-region", offline=True)
    assert not bad.exists()


def test_sample_slide_matches_its_checksum(cmu_slide) -> None:
    assert datasets.sha256_of(cmu_slide) == datasets.DATASETS["cmu-small-region"].sha256


def test_usage_errors_exit_2_with_a_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from histobridge.cli import main; main()", "no-such-command"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "No such command" in proc.stderr and "Traceback" not in proc.stderr
