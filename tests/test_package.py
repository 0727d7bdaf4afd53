"""The package surface: public names, the error tree, a fast CLI, atomic output, sample data."""

from __future__ import annotations

import gzip
import inspect
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import histobridge
import histobridge.cli
from histobridge import _atomic, datasets, errors, testing

REPO = Path(__file__).resolve().parents[1]


def _run_python(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


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


# Modules documented as cheap to import: the package roots and every CLI module (commands import torch
# inside their bodies). The last case imports torch on purpose, so the check is shown able to fail.
_CLI_MODULES = sorted(m.name for m in pkgutil.iter_modules(histobridge.cli.__path__, "histobridge.cli."))
_LIGHT = ["histobridge", "histobridge.__main__", "histobridge.cli", *_CLI_MODULES, "histobridge.datasets",
          "histobridge.models", "histobridge.qupath", "histobridge.slides", "histobridge.tiling"]  # fmt: skip


@pytest.mark.parametrize(
    ("module", "imports_torch"),
    [*((m, False) for m in _LIGHT), ("histobridge.models.stylegan2", True)],
)
def test_light_modules_do_not_import_torch(module: str, imports_torch: bool) -> None:
    """Each module in a fresh interpreter: this pytest process may have imported torch already."""
    code = f"import importlib, sys; importlib.import_module({module!r}); print('torch' in sys.modules)"
    proc = _run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(imports_torch)


def test_the_cli_modules_are_all_covered() -> None:
    assert {"histobridge.cli.demo", "histobridge.cli.gan", "histobridge.cli.heatmap"} <= set(_CLI_MODULES)


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


def test_version_from_the_console_script_and_python_m() -> None:
    proc = _run_python("-m", "histobridge", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"histobridge {histobridge.__version__}"
    proc = _run_python("-c", "from histobridge.cli import main; main()", "--version")
    assert proc.stdout.strip() == f"histobridge {histobridge.__version__}"
    proc = _run_python("-m", "histobridge")
    assert proc.returncode in (0, 2) and "Usage: histobridge" in proc.stdout + proc.stderr
    script = shutil.which("histobridge")
    if script is not None:  # the console script exists once the package is installed
        out = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120, check=True)
        assert out.stdout.strip() == f"histobridge {histobridge.__version__}"


def test_missing_bundled_data_names_the_fix() -> None:
    """A source tree that was never installed has no data packages; the error says what to run."""
    from histobridge import _bundled

    with pytest.raises(errors.HistobridgeError, match=r"pip install -e \.") as info:
        _bundled.bundled_roots("histobridge.no_such_data", "no_such_data")
    assert "no_such_data/" in str(info.value)
    (root,) = _bundled.bundled_roots("histobridge.sample_projects", "sample_projects")
    assert (root / "skin" / "project.qpproj").is_file()


def test_one_version_source() -> None:
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "histobridge.__version__"}
    assert not (REPO / "setup.py").exists()


def test_pyproject_lists_every_package() -> None:
    """Mapped data folders rule out automatic discovery, so a new sub-package must be listed by hand."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "histobridge").rglob("__init__.py")
    }
    assert listed == on_disk | {"histobridge.sample_projects", "histobridge.qupath_scripts"}


def test_declared_dependencies_are_what_the_package_imports() -> None:
    """numcodecs' crc32c extra pulls a module nothing imports; google_crc32c is imported directly."""
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in deps}
    assert not any("[" in d for d in deps)
    assert {"google-crc32c", "numcodecs", "zarr", "torch", "tifffile", "imagecodecs"} <= names
    assert "crc32c" not in names


def test_python_m_names_a_folder_that_hides_the_package(tmp_path: Path) -> None:
    """An empty ``histobridge/`` in the current folder wins over an editable install's finder.

    The finder below is what an editable install adds (children of ``histobridge`` from the
    checkout), so the package itself becomes a namespace while its submodules still load.
    """
    (tmp_path / "histobridge").mkdir()
    code = (
        "import runpy, sys\n"
        "from importlib.machinery import PathFinder\n"
        "class Checkout:\n"
        "    @staticmethod\n"
        "    def find_spec(name, path=None, target=None):\n"
        "        if name.rpartition('.')[0] == 'histobridge':\n"
        f"            return PathFinder.find_spec(name, [{str(REPO / 'histobridge')!r}])\n"
        "        return None\n"
        "sys.meta_path.insert(0, Checkout)\n"
        "sys.argv = ['histobridge', '--version']\n"
        "runpy.run_module('histobridge', run_name='__main__', alter_sys=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = _run_python("-c", code, cwd=tmp_path, env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(tmp_path / "histobridge") in lines[0] and "__init__.py" in lines[0]


@pytest.mark.slow
def test_wheel_ships_the_sample_project_and_scripts(tmp_path: Path, cmu_slide: Path) -> None:
    """Build the wheel, install it into a bare folder, and use its bundled data from there."""
    import importlib.util

    # Reuse this environment's setuptools when it has one (no index needed); else pip fetches it.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    proc = _run_python(
        "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(tmp_path / "dist"), str(REPO)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("histobridge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("sample_projects", "qupath_scripts"):
        for f in (REPO / folder).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                assert f"histobridge/{folder}/{f.relative_to(REPO / folder).as_posix()}" in names
    assert {"histobridge/__main__.py", "histobridge/py.typed"} <= names
    site = tmp_path / "site"
    proc = _run_python("-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel))
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "work"
    work.mkdir()
    check = (
        "import histobridge, histobridge.qupath.scripts as s\n"
        "print(histobridge.__file__)\n"
        "print(len(s.script_source('import_results.groovy')) > 0)\n"
    )
    proc = _run_python("-c", check, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    where, has_script = proc.stdout.split()
    assert where.startswith(str(site)) and has_script == "True"
    proc = _run_python(
        "-m", "histobridge", "sample", "init", str(work / "skin"), "--offline", cwd=work, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert (work / "skin" / "project.qpproj").is_file()
    assert (work / "skin" / "models" / "classifier" / "config.json").is_file()


@pytest.mark.parametrize("layout", ["pages", "subifds", "ome"])
def test_generated_pyramid_reads_back_exactly(tmp_path: Path, layout: testing.Layout) -> None:
    from histobridge.slides import open_slide

    level0 = np.random.default_rng(0).integers(0, 256, (300, 520, 3), dtype=np.uint8)
    pyramid = testing.build_pyramid(level0, 3)
    path = testing.write_pyramid(tmp_path / f"{layout}.tif", pyramid, mpp=0.25, tile=128, layout=layout)
    with open_slide(path) as slide:
        assert slide.level_dimensions == ((520, 300), (260, 150), (130, 75))
        assert slide.mpp == pytest.approx(0.25)
        np.testing.assert_array_equal(slide.read_region(0, 0, 520, 300), level0)
        np.testing.assert_array_equal(slide.read_region(0, 0, 520, 300, level=1), pyramid[1])


def test_streamed_tiles_write_the_same_slide_as_an_array(tmp_path: Path) -> None:
    import tifffile

    level0 = np.random.default_rng(1).integers(0, 256, (256, 384, 3), dtype=np.uint8)

    def tiles() -> Iterator[np.ndarray]:
        for ty in range(2):
            for tx in range(3):
                yield level0[ty * 128 : (ty + 1) * 128, tx * 128 : (tx + 1) * 128]

    a = testing.write_pyramid(tmp_path / "a.tif", [level0], tile=128, mpp=None)
    b = testing.write_pyramid(tmp_path / "b.tif", [testing.TiledLevel(384, 256, tiles)], tile=128, mpp=None)
    np.testing.assert_array_equal(tifffile.imread(a), tifffile.imread(b))
    np.testing.assert_array_equal(tifffile.imread(b), level0)
    with pytest.raises(ValueError, match="layout"):
        testing.write_pyramid(tmp_path / "c.tif", [level0], layout="strips")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one level"):
        testing.write_pyramid(tmp_path / "d.tif", [])
