"""Batch runs on a local Dask cluster write exactly what the single commands write, image by image."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed", reason="batch runs need the 'batch' extra (dask.distributed)")

from histobridge.batch import BatchSettings
from histobridge.batch.graph import REPORT_NAME, run_batch
from histobridge.errors import InputError
from tests._heatmap_helpers import (
    BLUE_POLY,
    RED_POLY,
    ColourNet,
    annotation,
    config_dict,
    save_model,
    slide_pixels,
    write_slide,
)
from tests._synthetic_helpers import tiny_generator

PROVIDER = "qupath.lib.images.servers.bioformats.BioFormatsServerBuilder"
CLASSES = {"Red": -65536, "Blue": -16776961}


def build_project(folder: Path, slides: list[tuple[Path, list[dict]]]) -> Path:
    """A QuPath project of several images, each with its exported annotations."""
    from histobridge.qupath import layout

    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i, (slide, _) in enumerate(slides, start=1):
        images.append({
            "serverBuilder": {"builderType": "uri", "uri": "file:" + slide.resolve().as_posix(),
                              "providerClassName": PROVIDER, "args": ["--series", "0"]},
            "entryID": i, "imageName": slide.name, "metadata": {},
        })  # fmt: skip
    qpproj = {"version": "0.6.0", "createTimestamp": 1767225600000, "modifyTimestamp": 1767225600000,
              "uri": "file:" + (folder / "project.qpproj").resolve().as_posix(), "lastID": len(slides),
              "images": images}  # fmt: skip
    (folder / "project.qpproj").write_text(json.dumps(qpproj))
    (folder / "classifiers").mkdir(exist_ok=True)
    (folder / "classifiers" / "classes.json").write_text(
        json.dumps({"pathClasses": [{"name": k, "color": v} for k, v in CLASSES.items()]})
    )
    for i, (_, feats) in enumerate(slides, start=1):
        ann = layout.annotation_path(folder, i)
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return folder


def cohort(tmp: Path, n_good: int = 3, sample: Path | None = None) -> list[tuple[Path, list[dict]]]:
    """Generated pyramids with known colours (each shifted), the sample slide if given, one broken file."""
    feats = [annotation(RED_POLY, "Red", "red"), annotation(BLUE_POLY, "Blue", "blue")]
    out = []
    base = slide_pixels()
    for k in range(n_good):
        out.append((write_slide(tmp / f"gen{k}.tif", np.roll(base, 24 * k, axis=1)), feats))
    if sample is not None:
        square = [(400.0, 400.0), (1424.0, 400.0), (1424.0, 1424.0), (400.0, 1424.0)]
        out.append((sample, [annotation(square, "Red", "sample")]))
    broken = tmp / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x13" * 4000)  # a TIFF header over garbage
    out.append((broken, feats))
    return out


def make_models(tmp: Path) -> tuple[Path, Path]:
    """A heatmap classifier (colour means) and a tiny two-class generator (16 px over 64 µm), saved."""
    from histobridge.models.gan_format import save_generator

    G = tiny_generator(c_dim=2, res=16, tile_um=64.0, names=("Red", "Blue"))
    gen = save_generator(G, tmp / "gen.safetensors")
    model = save_model(tmp, ColourNet((4.0, 0.0, 4.0)), config_dict(patch=16, spacing=4.0))
    return model, gen


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_models(tmp_path_factory.mktemp("models"))


def settings_for(out: Path, models: tuple[Path, Path], steps: str = "tile,heatmap,synth") -> BatchSettings:
    model, gen = models
    return BatchSettings(steps=tuple(steps.split(",")), out=out, model=model, generator=gen, n=3)


def sequential(project: Path, out: Path, models: tuple[Path, Path]) -> None:
    """The single commands back to back, as ``tile``, ``heatmap`` and ``synth`` run them."""
    from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap
    from histobridge.models.checkpoints import load_generator
    from histobridge.models.classifier import load_classifier
    from histobridge.qupath.project import Project
    from histobridge.synthetic.matched import matched_synthetic
    from histobridge.tiling import TileSpec, TilingOptions, tile_project

    model, gen = models
    G = load_generator(gen)
    store = out / "tiles.zarr"
    tile_project(Project.open(project), store, TileSpec(16, 64.0), TilingOptions(workers=1))
    run_heatmap(project, load_classifier(model), out / "heatmap", HeatmapOptions(workers=1))
    matched_synthetic(store, G, None, 3, None, 0, montage_dir=out / "synth" / "montages")


def without_ids(data: bytes) -> list[dict]:
    """GeoJSON features less their ``id``: QuPath object ids are fresh random UUIDs on every run."""
    feats = json.loads(data)["features"]
    return [{k: v for k, v in f.items() if k != "id"} for f in feats]


def content(path: Path) -> object:
    """What a file holds: gzip decompressed (its header has a time), JSON parsed, NPZ arrays."""
    if path.name.endswith(".geojson.gz"):
        return without_ids(gzip.decompress(path.read_bytes()))
    if path.name.endswith(".gz"):
        return gzip.decompress(path.read_bytes())
    if path.suffix == ".npz":
        with np.load(path) as z:
            return {k: z[k].tobytes() for k in z.files}
    if path.name == "zarr.json":
        return json.loads(path.read_text())
    return path.read_bytes()


def tree(root: Path) -> dict[str, object]:
    skip = (".lock", ".batch", REPORT_NAME)
    return {
        str(p.relative_to(root)): content(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(s in p.name or s in p.parts for s in skip)
    }


def predictions(project: Path) -> dict[str, object]:
    folder = project / "histobridge" / "predictions"
    return {p.name: content(p) for p in sorted(folder.glob("*.gz"))}


def same_outputs(batch_root: Path, ref_root: Path) -> None:
    got, want = tree(batch_root), tree(ref_root)
    assert sorted(got) == sorted(want)
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, differ[:5]


@pytest.mark.slow  # a local Dask cluster: ~17 s
def test_batch_on_two_local_workers_writes_what_the_single_commands_write(
    tmp_path, models, cmu_slide
) -> None:
    slides = cohort(tmp_path, 2, cmu_slide)
    ref = build_project(tmp_path / "ref" / "proj", slides)
    mine = build_project(tmp_path / "mine" / "proj", slides)
    sequential(ref, tmp_path / "ref_out", models)
    settings = settings_for(tmp_path / "out", models)
    events = []
    report = run_batch([mine], settings, workers=2, progress=events.append)
    same_outputs(tmp_path / "out" / "proj", tmp_path / "ref_out")
    assert predictions(mine) == predictions(ref) and len(predictions(mine)) == 3
    assert (tmp_path / "out" / "proj" / "tiles.zarr" / "3" / "synthetic").is_dir()  # the sample slide too
    by = {(r.step, str(r.outcome.entry_id)): r for r in report.results}
    assert len(by) == 12 and report.workers == 2
    assert by[("tile", "4")].failed and by[("heatmap", "4")].failed
    assert "broken.tif" in (by[("tile", "4")].outcome.reason or "")
    assert by[("synth", "4")].outcome.status == "skipped"
    assert all(by[(s, e)].outcome.ok for s in ("tile", "heatmap", "synth") for e in "123")
    assert not report.ok
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert saved["failed"] == 2 and len(saved["steps"]) == 12
    last = [e for e in events if e.task == "batch"][-1]
    assert (last.done, last.total) == (12, 12)

    # a rerun does only what failed: the done image-steps are skipped, their files untouched
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "proj").rglob("*") if p.is_file()}
    again = run_batch([mine], settings, workers=1)
    resumed = [r for r in again.results if r.resumed]
    assert len(resumed) == 9 and all(r.outcome.ok for r in resumed)
    assert {(r.step, str(r.outcome.entry_id)) for r in again.results if not r.resumed} == {
        ("tile", "4"), ("heatmap", "4"), ("synth", "4")
    }
    unchanged = {p: p.stat().st_mtime_ns for p in stamps if p.exists() and ".batch" not in p.parts}
    assert unchanged == {p: t for p, t in stamps.items() if ".batch" not in p.parts}
    same_outputs(tmp_path / "out" / "proj", tmp_path / "ref_out")


def test_settings_refuse_what_a_step_cannot_do(tmp_path) -> None:
    with pytest.raises(InputError, match="needs --generator"):
        BatchSettings(steps=("tile", "synth"), out=tmp_path, tile_px=16, tile_um=64.0)
    with pytest.raises(InputError, match="needs --model"):
        BatchSettings(steps=("heatmap",), out=tmp_path)
    with pytest.raises(InputError, match="steps must be"):
        BatchSettings(steps=("tiles",), out=tmp_path)
    with pytest.raises(InputError, match="needs step tile"):
        BatchSettings(steps=("synth",), out=tmp_path, generator=tmp_path / "g.pkl")
    with pytest.raises(InputError, match="paquo"):
        from histobridge.heatmap.pipeline import HeatmapOptions

        paquo = HeatmapOptions(write_back="paquo")
        BatchSettings(steps=("heatmap",), out=tmp_path, model=tmp_path, heatmap=paquo)
    with pytest.raises(InputError, match="both"):
        BatchSettings(steps=("tile",), out=tmp_path, tile_px=16)


def test_two_projects_with_one_folder_name_get_their_own_output_folders(tmp_path) -> None:
    from histobridge.batch import project_paths

    a, b = tmp_path / "a" / "proj", tmp_path / "b" / "proj" / "project.qpproj"
    got = project_paths([a, b], tmp_path / "out")
    assert [p.root.name for p in got] == ["proj", "proj-2"]


def test_heatmap_lock_is_per_image(tmp_path) -> None:
    """A run holding image 1 does not stop another run on image 2 of the same project (batch tasks)."""
    from histobridge._locks import FileLock
    from histobridge.heatmap.pipeline import predictions_lock, run_heatmap
    from histobridge.models.classifier import load_classifier

    feats = [annotation(RED_POLY, "Red")]
    slides = [(write_slide(tmp_path / f"s{k}.tif"), feats) for k in range(2)]
    proj = build_project(tmp_path / "proj", slides)
    model = load_classifier(save_model(tmp_path, ColourNet((4.0, 0.0, 4.0)), config_dict()))
    held = FileLock(predictions_lock(proj, 1), "first run").acquire(0)
    try:
        report = run_heatmap(proj, model, tmp_path / "out", images=[2])
    finally:
        held.release()
    assert report.ok



def test_cli_batch_reports_the_bad_image_and_exits_non_zero(tmp_path) -> None:
    from typer.testing import CliRunner

    from histobridge.cli import app

    proj = build_project(tmp_path / "proj", cohort(tmp_path, 2))
    other = build_project(tmp_path / "other" / "proj", cohort(tmp_path, 1)[:1])  # a second project
    out = tmp_path / "out"
    args = ["batch", str(proj), str(other), "--steps", "tile", "--tile-px", "16", "--tile-um", "64",
            "--out", str(out),
            "--workers", "1", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "3 of 4 image-steps done" in result.stdout
    assert "failed:" in result.stderr and "proj/broken.tif" in result.stderr and "tile" in result.stderr
    saved = json.loads((out / REPORT_NAME).read_text())
    assert [(s["project"], s["status"]) for s in saved["steps"]] == [
        ("proj", "done"), ("proj", "done"), ("proj", "failed"), ("proj-2", "done")
    ]
    assert sorted(p.name for p in (out / "proj" / "tiles.zarr").iterdir() if p.is_dir()) == ["1", "2"]
    assert sorted(p.name for p in (out / "proj-2" / "tiles.zarr").iterdir() if p.is_dir()) == ["1"]


@pytest.mark.slow
def test_teach_step_runs_once_per_project_and_resumes(tmp_path, cmu_slide) -> None:
    from histobridge.demo.run import sample_model_paths
    from histobridge.qupath.sample import init_sample_project
    from histobridge.teach import TeachSettings
    from histobridge.teach.quiz import QuizPlan
    from histobridge.teach.sheet import SheetSettings

    project = init_sample_project(tmp_path / "skin", "skin", offline=True)
    clf_dir, gen = sample_model_paths()
    teach = TeachSettings(
        synthetic_per_class=16, swaps_per_direction=4, search_seeds=12, transition_rows=3, transition_steps=5,
        quiz=QuizPlan(class_real=3, class_synthetic=3, origin_real=3, origin_synthetic=3, pairs=2),
        sheet=SheetSettings(examples=4, blend_strips=2, blend_steps=5, curve_seeds=4, curve_steps=9),
    )  # fmt: skip
    out = tmp_path / "out"
    settings = BatchSettings(steps=("teach",), out=out, model=clf_dir, generator=gen, teach=teach)
    report = run_batch([project], settings, workers=1)
    assert report.ok and [(r.step, r.outcome.status) for r in report.results] == [("teach", "done")]
    material = tmp_path / "out" / "skin" / "teach"
    assert (material / "teach.json").is_file() and (material / "qupath" / "project.qpproj").is_file()
    again = run_batch([project], settings, workers=1)
    assert again.ok and again.results[0].resumed  # not refused as "already exists": skipped


class _Recorder:
    """A stand-in client: records what would be submitted, with which resources."""

    def __init__(self, resources: dict[str, float]) -> None:
        self.resources = resources
        self.submitted: list[tuple[str, object]] = []

    def scheduler_info(self) -> dict:
        return {"workers": {"tcp://a": {"resources": self.resources}, "tcp://b": {"resources": {}}}}

    def submit(self, fn, *args, key: str, pure: bool, resources: object) -> str:
        self.submitted.append((key.split("-")[0], resources))
        return key


@pytest.mark.parametrize("declared, wanted", [({"GPU": 1}, {"GPU": 1}), ({}, None)])
def test_model_steps_ask_for_a_gpu_only_when_a_worker_declares_one(
    tmp_path, models, declared, wanted
) -> None:
    from histobridge.batch.graph import _Graph
    from histobridge.batch.layout import project_paths
    from histobridge.qupath.project import Project

    proj = build_project(tmp_path / "proj", cohort(tmp_path, 1)[:1])
    client = _Recorder(declared)
    graph = _Graph(client, settings_for(tmp_path / "out", models), (16, 64.0))
    graph.add_project(project_paths([proj], tmp_path / "out")[0], Project.open(proj))
    assert sorted(client.submitted, key=str) == sorted(
        [("tile", None), ("heatmap", wanted), ("synth", wanted)], key=str
    )
