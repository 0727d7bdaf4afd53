"""Teaching material on the real sample project: quiz forms, answer hiding, scoring, sheets, the
synthetic-slide QuPath project, and the quiz page driven in a real browser (Chromium via Playwright)."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from histobridge.teach.quiz import FORMS, QuizPlan, token, unseal
from histobridge.teach.score import score_answers, wilson

SMALL = dict(
    synthetic_per_class=16, swaps_per_direction=4, search_seeds=12, transition_rows=3, transition_steps=5
)


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory, cmu_slide: Path):
    from histobridge.demo.run import sample_model_paths
    from histobridge.models.checkpoints import load_generator
    from histobridge.models.classifier import load_classifier
    from histobridge.qupath.project import Project
    from histobridge.qupath.sample import init_sample_project
    from histobridge.teach import TeachSettings, make_teaching
    from histobridge.teach.sheet import SheetSettings

    root = tmp_path_factory.mktemp("teach")
    project = Project.open(init_sample_project(root / "skin", "skin", offline=True))
    clf_dir, gen = sample_model_paths()
    settings = TeachSettings(
        **SMALL,
        quiz=QuizPlan(class_real=3, class_synthetic=3, origin_real=3, origin_synthetic=3, pairs=2),
        sheet=SheetSettings(examples=4, blend_strips=2, blend_steps=5, curve_seeds=4, curve_steps=9),
    )
    result = make_teaching(project, load_generator(gen), load_classifier(clf_dir), root / "out", settings)
    return result


def _key(result) -> list[dict[str, str]]:
    with result.answer_key.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _page_data(result) -> dict:
    text = result.quiz_page.read_text(encoding="utf-8")
    m = re.search(r"<script type='application/json' id='quiz-data'>(.*?)</script>", text, re.S)
    assert m is not None
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_forms_are_disjoint_complete_and_never_repeat(material):
    key = _key(material)
    per_form = {f: [r for r in key if r["form"] == f] for f in FORMS}
    assert all(len(rows) == material.questions_per_form == 14 for rows in per_form.values())
    items = {f: [i for r in rows for i in r["items"].split()] for f, rows in per_form.items()}
    for f in FORMS:
        assert len(items[f]) == len(set(items[f])), f"an item repeats within form {f}"
    assert not set(items["A"]) & set(items["B"]), "forms A and B share a tile"
    kinds = {f: sorted(r["question"] for r in rows) for f, rows in per_form.items()}
    assert kinds["A"] == kinds["B"]  # matched forms: same question mix
    assert kinds["A"].count("pair") == 2 and kinds["A"].count("class") == 6


def test_real_tiles_nearest_to_synthetic_ones_are_never_asked(material):
    teach = json.loads((material.out_dir / "teach.json").read_text())
    held = set(teach["held_out_real"])
    assert held and len(held) == teach["items"]["real_held_out"]
    asked = {i for r in _key(material) for i in r["items"].split()}
    assert not held & asked


def test_nearest_real_finds_the_source_tile():
    from histobridge.teach.items import nearest_real

    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    noisy = real[[4, 1]].astype(np.int16) + rng.integers(-3, 4, (2, 16, 16, 3))
    assert nearest_real(real, np.clip(noisy, 0, 255).astype(np.uint8)).tolist() == [4, 1]


def test_forms_skip_held_out_tiles_and_say_when_the_pool_is_too_small():
    from histobridge.errors import InputError
    from histobridge.teach.items import ItemPool, TeachingItem
    from histobridge.teach.quiz import build_forms

    img = np.zeros((16, 16, 3), np.uint8)
    real = [TeachingItem(f"r{k}", "real", "AB"[k % 2], img) for k in range(20)]
    synth = [TeachingItem(f"s{k}", "synthetic", "AB"[k % 2], img, seed=k) for k in range(20)]
    pairs = []
    for k in range(4):
        pairs += [
            TeachingItem(f"w{k}a", "swapped", "A", img, seed=k, pair=f"w{k}b"),
            TeachingItem(f"w{k}b", "swapped", "B", img, seed=k, pair=f"w{k}a"),
        ]
    held = tuple(f"r{k}" for k in range(0, 20, 3))
    pool = ItemPool(("A", "B"), ("A", "B"), tuple(real + synth + pairs), held, 16, 8.0)
    plan = QuizPlan(class_real=2, class_synthetic=2, origin_real=2, origin_synthetic=2, pairs=2)
    a, b = build_forms(pool, plan, seed=3)
    used = [i.item_id for f in (a, b) for q in f.questions for i in q.items]
    assert len(used) == len(set(used)) and not set(held) & set(used)
    assert build_forms(pool, plan, seed=3) == (a, b)  # the recorded seed reproduces the forms
    with pytest.raises(InputError, match="real tiles"):
        build_forms(pool, QuizPlan(class_real=6, origin_real=4), seed=0)


def test_page_holds_no_answer_in_clear(material):
    data = _page_data(material)
    key = {r["question_id"]: r for r in _key(material)}
    for form in FORMS:
        for q in data["forms"][form]:
            assert set(q) == {"id", "prompt", "options", "image", "token", "sealed"}
            truth = key[q["id"]]
            # options depend on the question kind only, never on the answer
            assert q["options"] in (["left", "right"], ["real", "synthetic"], ["Epidermis", "Dermis"])
            assert q["token"] == token(data["salt"], q["id"], truth["answer"])
            wrong = [o for o in q["options"] if o != truth["answer"]]
            assert all(q["token"] != token(data["salt"], q["id"], o) for o in wrong)
            assert unseal(data["salt"], q["id"], truth["answer"], q["sealed"])["answer"] == truth["answer"]
            assert truth["source"] not in json.dumps(q)
    text = material.quiz_page.read_text(encoding="utf-8")
    assert (
        "answer_key" not in text and "true_class" not in text and "predicted" not in text.split("<script>")[0]
    )


def test_scoring_recomputes_from_the_key(material, tmp_path):
    key = _key(material)
    rows = [r for r in key if r["form"] == "A"]
    answers = tmp_path / "ann_A.csv"
    with answers.open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["learner", "form", "question_id", "answer", "correct", "seconds"])
        for k, r in enumerate(rows):
            wrong = next(o for o in r["options"].split("|") if o != r["answer"])
            wr.writerow(["ann", "A", r["question_id"], r["answer"] if k % 2 == 0 else wrong, 1, 2.0])
    rep = score_answers([answers], material.answer_key)
    (s,) = rep.learners
    assert (s.learner, s.form, s.answered, s.correct) == ("ann", "A", 14, 7)
    assert rep.form_rows()[0]["accuracy"] == 0.5
    assert sum(rep.confusion.values()) == sum(r["question"] == "class" for r in rows)


def test_wilson_interval_known_values():
    lo, hi = wilson(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    assert wilson(0, 0)[0] != wilson(0, 0)[0]  # nan
    assert math.isclose(wilson(10, 10)[1], 1.0) and math.isclose(wilson(0, 10)[0], 0.0, abs_tol=1e-12)


def test_score_refuses_answers_from_another_quiz(material, tmp_path):
    from histobridge.errors import InputError

    bad = tmp_path / "x.csv"
    bad.write_text("learner,form,question_id,answer\nann,A,Z99,left\n")
    with pytest.raises(InputError, match="Z99"):
        score_answers([bad], material.answer_key)


def test_teaching_sheet_has_curve_and_strips(material):
    (sheet,) = material.sheets
    assert sheet.is_file() and sheet.with_suffix(".png").is_file()
    with (sheet.parent / (sheet.stem + "_curve.csv")).open() as fh:
        rows = list(csv.DictReader(fh))
    groups = {r["group"] for r in rows}
    assert groups == {"strong", "weak"}
    for r in rows:
        if int(r["seeds"]) and r["mean"] != "nan":
            assert 0.0 <= float(r["mean"]) <= 1.0
    steps = [r for r in rows if r["group"] == "strong"]
    if int(steps[0]["seeds"]):
        # min–max normalised per seed: the ends are the extremes, up to a saturated output that
        # wavers by a few 1e-4 over the last steps, where P is within 1e-3 of 1 for the sample models
        assert float(steps[0]["mean"]) == pytest.approx(0.0, abs=1e-3)
        assert float(steps[-1]["mean"]) == pytest.approx(1.0, abs=1e-3)


def test_synthetic_slide_project_reads_back(material):
    from histobridge.qupath.project import Project
    from histobridge.slides import open_slide

    proj = Project.open(material.qupath_project)
    names = sorted(e.name for e in proj.images)
    assert names == ["synthetic_Dermis.tif", "synthetic_Epidermis.tif", "transitions_Epidermis_to_Dermis.tif"]
    for entry in proj.images:
        assert entry.found
        found = proj.annotations(entry, object_types=("tile",))
        assert found.source != "none"  # read from the data.qpdata histobridge wrote
        anns = found.annotations
        with open_slide(entry.path) as slide:
            assert math.isclose(slide.mpp, 80.0 / 64, rel_tol=1e-6)
            w, h = slide.dimensions
            assert slide.level_count >= 2
            for a in anns:
                x0, y0, x1, y1 = a.geometry.bounds
                assert (x1 - x0, y1 - y0) == (64, 64) and x1 <= w and y1 <= h
        if entry.name.startswith("synthetic_"):
            cls = entry.name[len("synthetic_") : -4]
            assert len(anns) == 16 and {a.path_class for a in anns} == {cls}
            assert all(a.measurements["synthetic"] == 1.0 and "P(Dermis)" in a.measurements for a in anns)
        else:
            assert len(anns) == 3 * 5
            ends = [a for a in anns if a.measurements["swapped"] == 1.0]
            assert len(ends) == 6 and {a.path_class for a in ends} == {"Epidermis", "Dermis"}


def test_cli_score_prints_table(material, tmp_path):
    from typer.testing import CliRunner

    from histobridge.cli import app

    rows = [r for r in _key(material) if r["form"] == "B"]
    answers = tmp_path / "bo_B.csv"
    answers.write_text(
        "learner,form,question_id,answer\n"
        + "".join(f"bo,B,{r['question_id']},{r['answer']}\n" for r in rows)
    )
    res = CliRunner().invoke(
        app, ["teach", "score", str(answers), "--key", str(material.answer_key), "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["learners"][0]["correct"] == 14 and doc["forms"][0]["accuracy"] == 1.0


def _browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    return playwright, exe


@pytest.mark.parametrize("all_right", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_quiz_in_a_real_browser(material, tmp_path, all_right):
    sync_api, exe = _browser()
    key = [r for r in _key(material) if r["form"] == "A"]
    key.sort(key=lambda r: int(r["position"]))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(material.quiz_page.as_uri())
        page.fill("#learner", "tester")
        page.click("button[data-form=A]")
        for r in key:
            assert page.inner_text("#progress") == f"{r['position']} / {len(key)}"
            choice = (
                r["answer"] if all_right else next(o for o in r["options"].split("|") if o != r["answer"])
            )
            page.click(f"#options button[data-option='{choice}']")
        page.wait_for_selector("#result:not([hidden])")
        expected = len(key) if all_right else 0
        assert page.inner_text("#score") == f"{expected} / {len(key)}"
        truths = page.locator("#feedback td.truth").all_inner_texts()
        assert truths == [r["answer"] for r in key]
        with page.expect_download() as dl:
            page.click("#download")
        saved = tmp_path / "answers.csv"
        dl.value.save_as(saved)
        page.screenshot(path=str(tmp_path / "quiz-result.png"), full_page=True)
        browser.close()
    rep = score_answers([saved], material.answer_key)
    assert rep.learners[0].correct == expected and rep.learners[0].learner == "tester"
