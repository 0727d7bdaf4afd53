"""The bundled skin sample project: materialised on the real CMU slide, annotations usable for training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shapely.geometry import box
from shapely.ops import unary_union
from typer.testing import CliRunner

from histobridge.errors import InputError
from histobridge.qupath.project import Project
from histobridge.qupath.sample import init_sample_project, sample_names
from histobridge.qupath.servers import path_to_uri

MIN_CLASS_AREA_PX = 600_000  # ≈ 0.15 mm² at 0.499 µm/px: enough 64 µm tiles per class


@pytest.fixture(scope="module")
def skin(cmu_slide: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    folder = tmp_path_factory.mktemp("sample") / "skin project"
    return Project.open(init_sample_project(folder, offline=True))


def test_sample_is_listed() -> None:
    assert "skin" in sample_names()


def test_sample_opens_on_the_real_slide(skin: Project) -> None:
    (e,) = skin.images
    assert e.found and e.problem is None and e.relocated_from is None
    assert e.path == skin.folder / "images" / "CMU-1-Small-Region.svs"
    with e.open_slide() as slide:
        assert slide.dimensions == (2220, 2967)
        assert slide.mpp == pytest.approx(0.499)
    doc = json.loads(skin.path.read_text())
    assert doc["uri"] == path_to_uri(skin.path) and doc["uri"].startswith("file:/")
    assert doc["images"][0]["serverBuilder"]["uri"] == path_to_uri(e.path)
    assert "%20" in doc["uri"]  # the folder name has a space: percent-encoded as QuPath does


def test_sample_classes(skin: Project) -> None:
    colors = {c.name: c.color for c in skin.classes}
    for name in ("Epidermis", "Dermis", "Background", "Ignore*", "Region*", "Tumor"):
        assert colors.get(name) is not None


def test_sample_annotations_are_usable_for_training(skin: Project) -> None:
    found = skin.annotations(skin.images[0])
    assert found.source == "qpdata" and found.notes == ()  # QuPath's own data file, as QuPath shows it
    counts = found.by_class()
    assert counts["Epidermis"] >= 4 and counts["Dermis"] >= 4 and counts["Background"] >= 1
    assert None in counts  # one unclassified annotation
    slide = box(0, 0, 2220, 2967)
    by_class: dict[str | None, list] = {}
    for a in found:
        assert a.geometry.is_valid and slide.contains(a.geometry)
        by_class.setdefault(a.path_class, []).append(a.geometry)
        assert a.object_id is not None and (a.display_color is not None or a.path_class is None)
    epidermis, dermis = unary_union(by_class["Epidermis"]), unary_union(by_class["Dermis"])
    assert epidermis.area >= MIN_CLASS_AREA_PX and dermis.area >= MIN_CLASS_AREA_PX
    assert epidermis.intersection(dermis).area == 0
    assert any(len(g.interiors) > 0 for g in by_class["Epidermis"])  # a polygon with holes


def test_sample_init_refuses_a_non_empty_folder(tmp_path: Path, cmu_slide: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        init_sample_project(tmp_path, offline=True)
    qpproj = init_sample_project(tmp_path, force=True, offline=True)
    assert qpproj.is_file() and (tmp_path / "keep.txt").read_text() == "mine"
    again = init_sample_project(tmp_path, force=True, offline=True)
    assert again == qpproj and len(list((tmp_path / "histobridge" / "backups").iterdir())) == 1
    with pytest.raises(InputError, match="no sample project"):
        init_sample_project(tmp_path / "x", name="nope")


def test_cli_sample_init_and_project_info(tmp_path: Path, cmu_slide: Path) -> None:
    from histobridge.cli import app

    runner = CliRunner()
    dest = tmp_path / "cli"
    result = runner.invoke(app, ["sample", "init", str(dest), "--offline"])
    assert result.exit_code == 0, result.output
    assert (dest / "project.qpproj").is_file()
    result = runner.invoke(app, ["project", "info", str(dest)], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    assert "CMU-1-Small-Region.svs" in result.output and "2220×2967" in result.output
    assert "0.499 (slide)" in result.output and "Epidermis: 6" in result.output
    assert "qpdata (15)" in result.output  # QuPath's data file, shipped with the sample


def test_sample_annotations_sit_on_the_right_tissue(skin: Project) -> None:
    """Pixel check of the drawn classes: epidermis dark purple, dermis pink and lighter, glass white."""
    import numpy as np
    from shapely import contains_xy

    e = skin.images[0]
    with e.open_slide() as slide:
        img = slide.read_region(0, 0, 2220, 2967).astype(float)
    yy, xx = np.mgrid[0:2967:4, 0:2220:4]
    stats: dict[str | None, list[tuple[float, float]]] = {}
    for a in skin.annotations(e):
        inside = contains_xy(a.geometry, xx + 0.5, yy + 0.5)
        px = img[yy[inside], xx[inside]]
        stats.setdefault(a.path_class, []).append((px.mean(), (px[:, 0] - px[:, 2]).mean()))
    epi, der, bg = stats["Epidermis"], stats["Dermis"], stats["Background"]
    assert max(b for b, _ in epi) < min(b for b, _ in der)  # every epidermis region darker than any dermis
    assert np.mean([rb for _, rb in der]) > np.mean([rb for _, rb in epi]) + 10  # dermis redder (eosin)
    assert min(b for b, _ in bg) > 235
