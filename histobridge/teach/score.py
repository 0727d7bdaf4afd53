"""Scoring the answer files learners download from the quiz page against ``answer_key.csv``.

Correctness is recomputed from the key (the ``correct`` column a page writes is not trusted).
Intervals are Wilson score intervals at 95 %, which stay inside [0, 1] for small forms.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from histobridge.errors import InputError

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson interval for k successes in n trials ((nan, nan) when n == 0)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass(frozen=True)
class LearnerScore:
    learner: str
    form: str
    answered: int
    correct: int
    by_question: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (correct, answered)

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.answered)


@dataclass(frozen=True)
class ScoreReport:
    learners: tuple[LearnerScore, ...]
    forms: dict[str, tuple[int, int]]  # form -> (correct, answered) over learners
    confusion: dict[tuple[str, str], int]  # (true class, answered class) for "which class?" questions

    def form_rows(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for name, (k, n) in sorted(self.forms.items()):
            lo, hi = wilson(k, n)
            rows.append(
                {
                    "form": name,
                    "answered": n,
                    "correct": k,
                    "accuracy": k / n if n else math.nan,
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
        return rows

    def learner_rows(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for s in self.learners:
            lo, hi = s.interval
            row: dict[str, object] = {
                "learner": s.learner,
                "form": s.form,
                "answered": s.answered,
                "correct": s.correct,
                "accuracy": s.accuracy,
                "ci_low": lo,
                "ci_high": hi,
            }
            for kind, (k, n) in sorted(s.by_question.items()):
                row[f"{kind}_accuracy"] = k / n if n else math.nan
            rows.append(row)
        return rows


def _read_csv(path: Path, need: Sequence[str]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read CSV ({err})") from err
    if rows and (missing := [c for c in need if c not in rows[0]]):
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return rows


def score_answers(answer_files: Sequence[str | Path], key_file: str | Path) -> ScoreReport:
    """Per learner and per form accuracy with 95 % intervals, and the class confusion counts."""
    key_path = Path(key_file)
    key = {r["question_id"]: r for r in _read_csv(key_path, ("question_id", "answer", "question", "form"))}
    if not key:
        raise InputError(f"{key_path}: the answer key is empty")
    learners: list[LearnerScore] = []
    forms: dict[str, list[int]] = {}
    confusion: Counter[tuple[str, str]] = Counter()
    for f in answer_files:
        path = Path(f)
        per: dict[tuple[str, str], list[tuple[str, str, bool]]] = {}
        for row in _read_csv(path, ("learner", "form", "question_id", "answer")):
            qid = row["question_id"]
            if qid not in key:
                raise InputError(
                    f"{path}: question {qid!r} is not in {key_path} (answers from another quiz?)"
                )
            truth = key[qid]
            ok = row["answer"] == truth["answer"]
            per.setdefault((row["learner"], row["form"]), []).append((truth["question"], qid, ok))
            if truth["question"] == "class":
                confusion[(truth["answer"], row["answer"])] += 1
        for (learner, form), answers in per.items():
            kinds: dict[str, list[int]] = {}
            for kind, _, ok in answers:
                kinds.setdefault(kind, [0, 0])
                kinds[kind][0] += int(ok)
                kinds[kind][1] += 1
            k = sum(ok for _, _, ok in answers)
            learners.append(
                LearnerScore(learner, form, len(answers), k, {q: (v[0], v[1]) for q, v in kinds.items()})
            )
            acc = forms.setdefault(form, [0, 0])
            acc[0] += k
            acc[1] += len(answers)
    if not learners:
        raise InputError("no answers in " + ", ".join(str(f) for f in answer_files))
    return ScoreReport(tuple(learners), {f: (v[0], v[1]) for f, v in forms.items()}, dict(confusion))
