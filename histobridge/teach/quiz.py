"""Blinded quiz forms: two matched forms (A/B) of disjoint items, a self-contained page and an answer key.

The page carries no answer in clear. For each question it holds a salted SHA-256 token of the right
answer and the feedback (answer, classifier prediction, where the tile came from) encrypted with a
key derived from that answer; the page finds the right option by hashing each one only when the
learner finishes. This is obfuscation against reading the source, not cryptographic secrecy (options
are few). The key that teachers score with is the separate ``answer_key.csv``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from histobridge._atomic import atomic_open, write_csv
from histobridge.errors import InputError
from histobridge.report.html import image_data_uri
from histobridge.teach._page import render_page
from histobridge.teach.items import ItemPool, TeachingItem
from histobridge.viz.pictures import to_pil

QuestionKind = Literal["class", "origin", "pair"]
ORIGIN_OPTIONS = ("real", "synthetic")
PAIR_OPTIONS = ("left", "right")
FORMS = ("A", "B")
KEY_COLUMNS = (
    "form",
    "position",
    "question_id",
    "question",
    "items",
    "kind",
    "answer",
    "options",
    "true_class",
    "predicted_class",
    "prediction",
    "seed",
    "source",
)


@dataclass(frozen=True)
class QuizPlan:
    """How many questions of each kind one form holds."""

    class_real: int = 4
    class_synthetic: int = 4
    origin_real: int = 4
    origin_synthetic: int = 4
    pairs: int = 2

    @property
    def size(self) -> int:
        return self.class_real + self.class_synthetic + self.origin_real + self.origin_synthetic + self.pairs


@dataclass(frozen=True)
class Question:
    """One question of a form: its tile(s), what is asked, and the right answer."""

    question_id: str
    question: QuestionKind
    items: tuple[TeachingItem, ...]
    options: tuple[str, ...]
    answer: str
    asked_class: str = ""  # for pairs: the class the learner is asked to find

    @property
    def prompt(self) -> str:
        if self.question == "class":
            return "Which class is this tile?"
        if self.question == "origin":
            return "Is this tile real or synthetic?"
        return f"One seed drawn as two classes. Which tile is {self.asked_class}?"


@dataclass(frozen=True)
class QuizForm:
    name: str
    questions: tuple[Question, ...]


def _front(pool: list[TeachingItem], n: int, what: str) -> list[TeachingItem]:
    """The first ``n`` (class-balanced order), removed from ``pool``."""
    if len(pool) < n:
        raise InputError(f"not enough {what} for two disjoint quiz forms: need {n}, have {len(pool)}")
    picked = pool[:n]
    del pool[:n]
    return picked


def _take(pool: list[TeachingItem], n: int, rng: np.random.Generator, what: str) -> list[TeachingItem]:
    if len(pool) < n:
        raise InputError(f"not enough {what} for two disjoint quiz forms: need {n}, have {len(pool)}")
    picked = [pool.pop(int(rng.integers(len(pool)))) for _ in range(n)]
    return picked


def _balanced(items: list[TeachingItem], classes: Sequence[str]) -> list[TeachingItem]:
    """Interleave classes so that drawing from the front stays balanced."""
    by_class = [[i for i in items if i.true_class == c] for c in classes]
    out: list[TeachingItem] = []
    while any(by_class):
        for group in by_class:
            if group:
                out.append(group.pop(0))
    return out


def build_forms(pool: ItemPool, plan: QuizPlan = QuizPlan(), seed: int = 0) -> tuple[QuizForm, QuizForm]:
    """Two forms with the same plan and no tile in common; shuffled with ``seed``."""
    rng = np.random.default_rng(seed)
    held = set(pool.held_out_real)
    real = [i for i in pool.of_kind("real") if i.item_id not in held]
    synthetic = pool.of_kind("synthetic")
    rng.shuffle(real)
    rng.shuffle(synthetic)
    real, synthetic = _balanced(real, pool.classes), _balanced(synthetic, pool.classes)
    swapped = {i.item_id: i for i in pool.of_kind("swapped")}
    pairs = sorted({tuple(sorted((i.item_id, i.pair or ""))) for i in swapped.values()})
    pair_list = [(swapped[a], swapped[b]) for a, b in pairs if a in swapped and b in swapped]
    forms = []
    for name in FORMS:
        asked: list[tuple[QuestionKind, tuple[TeachingItem, ...], tuple[str, ...], str, str]] = []
        for item in _front(real, plan.class_real, "real tiles"):
            asked.append(("class", (item,), pool.classes, item.true_class, ""))
        for item in _front(synthetic, plan.class_synthetic, "synthetic tiles"):
            asked.append(("class", (item,), pool.classes, item.true_class, ""))
        for item in _take(real, plan.origin_real, rng, "real tiles"):
            asked.append(("origin", (item,), ORIGIN_OPTIONS, "real", ""))
        for item in _take(synthetic, plan.origin_synthetic, rng, "synthetic tiles"):
            asked.append(("origin", (item,), ORIGIN_OPTIONS, "synthetic", ""))
        for a, b in _take_pairs(pair_list, plan.pairs, rng):
            # the learner looks for a's class; a is shown left or right at random
            left = bool(rng.integers(2))
            shown = (a, b) if left else (b, a)
            asked.append(("pair", shown, PAIR_OPTIONS, "left" if left else "right", a.true_class))
        qs = [Question(f"{name}{k:02d}", *q) for k, q in enumerate(asked)]
        order = rng.permutation(len(qs))
        shuffled = [qs[int(i)] for i in order]
        forms.append(QuizForm(name, tuple(shuffled)))
    return forms[0], forms[1]


def _take_pairs(
    pairs: list[tuple[TeachingItem, TeachingItem]], n: int, rng: np.random.Generator
) -> list[tuple[TeachingItem, TeachingItem]]:
    if len(pairs) < n:
        raise InputError(f"not enough swapped pairs for two disjoint quiz forms: need {n}, have {len(pairs)}")
    return [pairs.pop(int(rng.integers(len(pairs)))) for _ in range(n)]


def token(salt: str, question_id: str, answer: str) -> str:
    """The salted hash the page compares an option against."""
    return hashlib.sha256(f"{salt}|{question_id}|{answer}".encode()).hexdigest()


def _keystream(salt: str, question_id: str, answer: str, n: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{salt}|{question_id}|{answer}|k|{counter}".encode()).digest()
        counter += 1
    return out[:n]


def seal(salt: str, question_id: str, answer: str, payload: dict[str, object]) -> str:
    """Feedback encrypted with a key that only the right answer opens (base64)."""
    data = json.dumps(payload, separators=(",", ":")).encode()
    key = _keystream(salt, question_id, answer, len(data))
    return base64.b64encode(bytes(x ^ y for x, y in zip(data, key, strict=True))).decode()


def unseal(salt: str, question_id: str, answer: str, sealed: str) -> dict[str, object]:
    data = base64.b64decode(sealed)
    key = _keystream(salt, question_id, answer, len(data))
    return dict(json.loads(bytes(x ^ y for x, y in zip(data, key, strict=True))))


def _picture(q: Question) -> str:
    if q.question != "pair":
        return image_data_uri(to_pil(q.items[0].image))
    a, b = q.items
    gap = np.full((a.image.shape[0], 6, 3), 255, np.uint8)
    return image_data_uri(to_pil(np.concatenate([a.image, gap, b.image], axis=1)))


def _feedback(q: Question, classifier_classes: Sequence[str]) -> dict[str, object]:
    item = q.items[0] if q.question != "pair" else q.items[0 if q.answer == "left" else 1]
    preds = ", ".join(f"{c} {p:.2f}" for c, p in zip(classifier_classes, item.prediction, strict=False))
    return {
        "answer": q.answer,
        "kind": item.kind,
        "class": item.true_class,
        "source": item.source,
        "predicted": item.predicted_class,
        "prediction": preds,
    }


def _page_data(forms: Sequence[QuizForm], pool: ItemPool, salt: str, title: str) -> dict[str, object]:
    return {
        "title": title,
        "salt": salt,
        "forms": {
            f.name: [
                {
                    "id": q.question_id,
                    "prompt": q.prompt,
                    "options": list(q.options),
                    "image": _picture(q),
                    "token": token(salt, q.question_id, q.answer),
                    "sealed": seal(salt, q.question_id, q.answer, _feedback(q, pool.classifier_classes)),
                }
                for q in f.questions
            ]
            for f in forms
        },
    }


def key_rows(forms: Sequence[QuizForm]) -> list[dict[str, str]]:
    rows = []
    for f in forms:
        for pos, q in enumerate(f.questions):
            first = q.items[0] if q.question != "pair" else q.items[0 if q.answer == "left" else 1]
            rows.append(
                {
                    "form": f.name,
                    "position": str(pos + 1),
                    "question_id": q.question_id,
                    "question": q.question,
                    "items": " ".join(i.item_id for i in q.items),
                    "kind": first.kind,
                    "answer": q.answer,
                    "options": "|".join(q.options),
                    "true_class": first.true_class,
                    "predicted_class": first.predicted_class,
                    "prediction": " ".join(f"{p:.4f}" for p in first.prediction),
                    "seed": "" if first.seed is None else str(first.seed),
                    "source": first.source,
                }
            )
    return rows


def write_quiz(
    out_dir: str | Path,
    forms: Sequence[QuizForm],
    pool: ItemPool,
    *,
    seed: int,
    salt: str | None = None,
    title: str = "Real or synthetic? A histology quiz",
) -> dict[str, Path]:
    """``index.html`` (self-contained, offline) and ``answer_key.csv`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    salt = salt or secrets.token_hex(16)
    page = render_page(_page_data(forms, pool, salt, title))
    with atomic_open(out / "index.html", "w") as fh:
        fh.write(page)
    rows = key_rows(forms)
    write_csv(out / "answer_key.csv", KEY_COLUMNS, [[r[c] for c in KEY_COLUMNS] for r in rows])
    return {"page": out / "index.html", "key": out / "answer_key.csv"}
