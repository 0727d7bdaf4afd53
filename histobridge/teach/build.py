"""``teach``: quiz forms, teaching sheets and a synthetic-slide QuPath project from one project,
one classifier and one class-conditional generator."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from histobridge._atomic import write_json
from histobridge.errors import InputError
from histobridge.runs import ProgressCallback, ProgressEvent, no_progress
from histobridge.teach.quiz import QuizPlan
from histobridge.teach.sheet import SheetSettings

if TYPE_CHECKING:
    from histobridge.models.classifier import TileClassifier
    from histobridge.models.stylegan2 import Generator
    from histobridge.qupath.project import Project

STAGES = ("items", "quiz", "sheets", "qupath")


@dataclass(frozen=True)
class TeachSettings:
    """What to make; the defaults fit the sample project (about a minute on a laptop CPU)."""

    seed: int = 0
    synthetic_per_class: int = 24
    swaps_per_direction: int = 8
    quiz: QuizPlan = field(default_factory=QuizPlan)
    sheet: SheetSettings = field(default_factory=SheetSettings)
    search_seeds: int = 64
    transition_rows: int = 6
    transition_steps: int = 9
    workers: int = 1

    def __post_init__(self) -> None:
        counts = {
            "synthetic_per_class": self.synthetic_per_class,
            "swaps_per_direction": self.swaps_per_direction,
            "search_seeds": self.search_seeds,
            "transition_steps": self.transition_steps,
        }
        bad = [f"{k}={v}" for k, v in counts.items() if v < 1]
        if self.seed < 0 or bad or self.transition_rows < 0:
            raise InputError(f"teach settings must be positive (seed ≥ 0): {', '.join(bad) or self.seed}")
        if self.transition_steps < 2:
            raise InputError("transition_steps must be at least 2 (both ends of the blend)")


@dataclass(frozen=True)
class TeachResult:
    out_dir: Path
    quiz_page: Path
    answer_key: Path
    sheets: tuple[Path, ...]
    qupath_project: Path
    items: dict[str, int]
    questions_per_form: int


def make_teaching(
    project: Project,
    G: Generator,
    classifier: TileClassifier,
    out_dir: str | Path,
    settings: TeachSettings = TeachSettings(),
    progress: ProgressCallback = no_progress,
) -> TeachResult:
    """Build everything under ``out_dir``: ``quiz/``, ``sheets/``, ``qupath/`` and ``teach.json``."""
    from histobridge.synthetic.seeds import seed_search
    from histobridge.teach.items import collect_items
    from histobridge.teach.quiz import build_forms, write_quiz
    from histobridge.teach.sheet import write_sheet
    from histobridge.teach.slide_project import write_slide_project

    out = Path(out_dir)
    if (out / "qupath" / "project.qpproj").exists():
        raise InputError(f"{out}: teaching material already exists here; choose a new --out folder")

    def stage(k: int) -> None:
        progress(ProgressEvent("teach", k, len(STAGES), item=STAGES[k] if k < len(STAGES) else None))

    stage(0)
    pool = collect_items(
        project,
        G,
        classifier,
        out / "work",
        synthetic_per_class=settings.synthetic_per_class,
        swaps_per_direction=settings.swaps_per_direction,
        seed0=settings.seed,
        workers=settings.workers,
    )
    stage(1)
    forms = build_forms(pool, settings.quiz, seed=settings.seed)
    quiz = write_quiz(out / "quiz", forms, pool, seed=settings.seed)
    stage(2)
    first_seed = settings.seed + 10_000  # away from the seeds the quiz's synthetic tiles use
    sheets, transitions = [], {}
    for a, b in itertools.combinations(pool.classes, 2):
        search = seed_search(G, classifier, range(first_seed, first_seed + settings.search_seeds), a, b)
        sheets.append(write_sheet(out / "sheets", pool, G, classifier, a, b, search, settings.sheet)["html"])
        strong = [r.seed for r in search.best(settings.transition_rows)]
        transitions[(a, b)] = strong
    stage(3)
    colors = {c.name: c.color for c in project.classes if c.color is not None}
    qpproj = write_slide_project(
        out / "qupath", pool, G, classifier, transitions, steps=settings.transition_steps, class_colors=colors
    )
    stage(4)
    counts = {kind: len(pool.of_kind(kind)) for kind in ("real", "synthetic", "swapped")}
    counts["real_held_out"] = len(pool.held_out_real)
    result = TeachResult(out, quiz["page"], quiz["key"], tuple(sheets), qpproj, counts, settings.quiz.size)
    write_json(
        out / "teach.json",
        {
            "seed": settings.seed,
            "items": counts,
            "held_out_real": list(pool.held_out_real),
            "questions_per_form": settings.quiz.size,
            "forms": ["A", "B"],
            "quiz": str(quiz["page"].relative_to(out)),
            "answer_key": str(quiz["key"].relative_to(out)),
            "sheets": [str(p.relative_to(out)) for p in sheets],
            "qupath_project": str(qpproj.relative_to(out)),
            "settings": asdict(settings),
        },
    )
    return result
