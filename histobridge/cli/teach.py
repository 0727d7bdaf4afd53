"""``histobridge teach PROJECT …`` (make the material) and ``histobridge teach score ANSWERS.csv…``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup


class _MakeByDefault(TyperGroup):
    """``teach PROJECT …`` runs ``make``; ``teach score …`` and ``teach make …`` run themselves."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args.insert(0, "make")
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=_MakeByDefault,
    no_args_is_help=True,
    help="Teaching material: blinded quizzes, teaching sheets, a synthetic-slide QuPath project.",
)


@app.command("make")
def make(
    project: Path = typer.Argument(..., help="QuPath project folder or project.qpproj."),
    generator: Path = typer.Option(
        ..., "--generator", "-g", help="Class-conditional generator (file or folder)."
    ),
    classifier: Path = typer.Option(
        ..., "--classifier", "-m", help="Tile classifier folder (WSInfer layout)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (must not hold earlier material)."),
    seed: int = typer.Option(0, help="Seed for item choice, shuffling and synthetic tiles (recorded)."),
    per_class: int = typer.Option(24, help="Synthetic tiles per class in the pool."),
    device: str = typer.Option("auto", help="auto, cpu, cuda[:N] or mps."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Quiz forms A/B (quiz/index.html + quiz/answer_key.csv), sheets/, qupath/project.qpproj."""
    from histobridge._threads import configure_torch_threads
    from histobridge.cli._common import generator_path, resolve_device
    from histobridge.models.checkpoints import load_generator
    from histobridge.models.classifier import load_classifier
    from histobridge.qupath.project import Project
    from histobridge.teach import TeachSettings, make_teaching

    configure_torch_threads(readers=1)
    settings = TeachSettings(seed=seed, synthetic_per_class=per_class)
    dev = resolve_device(device)
    G = load_generator(generator_path(generator), device=dev)
    clf = load_classifier(classifier, device=dev)
    result = make_teaching(Project.open(project), G, clf, out, settings)
    summary = {
        "quiz": str(result.quiz_page),
        "answer_key": str(result.answer_key),
        "sheets": [str(p) for p in result.sheets],
        "qupath_project": str(result.qupath_project),
        "items": result.items,
        "questions_per_form": result.questions_per_form,
    }
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"quiz:        {result.quiz_page} (forms A and B, {result.questions_per_form} questions each)")
    typer.echo(f"answer key:  {result.answer_key} (keep it from learners)")
    for p in result.sheets:
        typer.echo(f"sheet:       {p}")
    typer.echo(f"QuPath:      {result.qupath_project}")
    typer.echo("items:       " + ", ".join(f"{k} {v}" for k, v in result.items.items()))


@app.command("score")
def score(
    answers: list[Path] = typer.Argument(..., help="Answer CSVs downloaded from the quiz page."),
    key: Path = typer.Option(..., "--key", "-k", help="The quiz's answer_key.csv."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Accuracy with 95 % intervals per learner and per form, and the class confusion."""
    from histobridge.teach import score_answers

    rep = score_answers(answers, key)
    if json_out:
        doc = {
            "forms": rep.form_rows(),
            "learners": rep.learner_rows(),
            "confusion": [
                {"true": t, "answered": a, "count": n} for (t, a), n in sorted(rep.confusion.items())
            ],
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo("form  answered  correct  accuracy  95% interval")
    for r in rep.form_rows():
        typer.echo(
            f"{r['form']:<5} {r['answered']:>8} {r['correct']:>8} {r['accuracy']:>9.3f}  "
            f"{r['ci_low']:.3f}–{r['ci_high']:.3f}"
        )
    typer.echo("\nlearner               form  correct/answered  accuracy  95% interval")
    for s in rep.learners:
        lo, hi = s.interval
        typer.echo(
            f"{s.learner[:21]:<21} {s.form:<5} {s.correct:>7}/{s.answered:<8} "
            f"{s.accuracy:>9.3f}  {lo:.3f}–{hi:.3f}"
        )
    if rep.confusion:
        typer.echo(
            "\nwhich class? (true -> answered): "
            + ", ".join(f"{t}->{a}: {n}" for (t, a), n in sorted(rep.confusion.items()))
        )
