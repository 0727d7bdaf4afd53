"""``histobridge project``: what histobridge sees in a QuPath project (images, sizes, annotations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Inspect QuPath projects.", no_args_is_help=True)


def _slide_facts(entry: Any, mpp: float | None) -> tuple[str, str, list[str]]:
    """(size, mpp with its source, problems) for one found image; never raises for one bad image."""
    from histobridge.errors import HistobridgeError

    try:
        with entry.open_slide(mpp=mpp, require_mpp=False) as slide:
            w, h = slide.dimensions
            size = f"{w}×{h}"
            if slide.offset != (0.0, 0.0):
                size += f" @({slide.offset[0]:g},{slide.offset[1]:g})"
            value = slide.mpp_or_none
    except HistobridgeError as err:
        return "?", "?", [str(err)]
    if value is None:
        return size, "missing", ["no pixel size: pass --mpp"]
    return size, f"{value:.4g} ({entry.mpp_source(mpp)})", []


def _class_counts(annotations: Any) -> str:
    counts = annotations.by_class()
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
    parts = [f"{name or 'unclassified'}: {n}" for name, n in ordered]
    return ", ".join(parts) or "-"


def _short(problem: str) -> str:
    """The first clause of a problem: the table shows the stored path, not every place tried."""
    return problem.split(" or ")[0].split("; ")[0]


@app.command("info")
def info(
    project: Path = typer.Argument(..., help="QuPath project folder or .qpproj file."),
    mpp: float | None = typer.Option(None, "--mpp", help="Pixel size (µm/px) to use for every image."),
    source: str = typer.Option("auto", "--source", help="Annotations from auto, qpdata, geojson or paquo."),
    slides: bool = typer.Option(True, "--slides/--no-slides", help="Open found slides for size and µm/px."),
) -> None:
    """List images: id, name, found?, size, µm/px (and where from), annotations per class, problems."""
    from rich.console import Console
    from rich.table import Table

    from histobridge.errors import HistobridgeError
    from histobridge.qupath.project import Project

    proj = Project.open(project)
    console = Console()
    console.print(f"[bold]{proj.path}[/bold]  QuPath {proj.version or '?'}  {len(proj.images)} image(s)")
    if proj.classes:
        console.print("classes: " + ", ".join(c.name for c in proj.classes))
    for note in proj.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    table = Table("id", "name", "found", "size (px)", "µm/px", "annotations", "per class", "problems")
    for e in proj.images:
        problems = [_short(e.problem)] if e.problem else []
        size = um = "-"
        if e.found and not e.problem and slides:
            size, um, extra = _slide_facts(e, mpp)
            problems += extra
        try:
            ann = proj.annotations(e, source=source)
            where, per_class = f"{ann.source} ({len(ann)})", _class_counts(ann)
            problems += [n for n in ann.notes if ann.source != "none"]
        except HistobridgeError as err:
            where, per_class = "error", "-"
            problems.append(str(err))
        found = "yes" if e.found else "[red]no[/red]"
        if e.relocated_from:
            found = "yes (moved)"
        table.add_row(str(e.entry_id), e.name, found, size, um, where, per_class, "\n".join(problems))
    console.print(table)


@app.command("scripts")
def scripts(
    project: Path = typer.Argument(..., help="QuPath project folder or .qpproj file."),
) -> None:
    """Copy histobridge's Groovy scripts into the project (QuPath: Automate > Project scripts)."""
    from histobridge.qupath.scripts import install_scripts

    for path in install_scripts(project):
        typer.echo(f"wrote {path}")
