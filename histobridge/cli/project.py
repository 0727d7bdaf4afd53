"""``histobridge project``: what histobridge sees in a QuPath project (images, sizes, annotations)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from histobridge.qupath.project import ImageEntry, Project

app = typer.Typer(help="Inspect QuPath projects.", no_args_is_help=True)


def _slide_facts(entry: ImageEntry, mpp: float | None, mpp_override: float | None) -> dict[str, Any]:
    """Size, offset and µm/px (with its source) of one found image; never raises for one bad image."""
    from histobridge.errors import HistobridgeError

    try:
        with entry.open_slide(mpp=mpp_override, fill_mpp=mpp, require_mpp=False) as slide:
            w, h = slide.dimensions
            facts: dict[str, Any] = {"size": [int(w), int(h)], "offset": [float(v) for v in slide.offset]}
            value, source = slide.mpp_or_none, slide.mpp_source
    except HistobridgeError as err:
        return {"problems": [str(err)]}
    facts["mpp"] = value
    facts["mpp_source"] = source if value is not None else None
    facts["problems"] = [] if value is not None else ["no pixel size: pass --mpp"]
    return facts


def _short(problem: str) -> str:
    """The first clause of a problem: the table shows the stored path, not every place tried."""
    return problem.split(" or ")[0].split("; ")[0]


def image_record(
    project: Project, entry: ImageEntry, *, mpp: float | None, mpp_override: float | None, source: str,
    slides: bool,
) -> dict[str, Any]:
    """What histobridge sees of one image, as plain data (the table and ``--json`` show the same)."""
    from histobridge.errors import HistobridgeError

    rec: dict[str, Any] = {
        "id": entry.entry_id, "name": entry.name, "found": entry.found, "image_problem": entry.problem,
        "relocated_from": entry.relocated_from, "path": str(entry.path) if entry.path else None,
        "size": None, "offset": None, "mpp": None, "mpp_source": None, "annotations": None,
        "annotation_count": 0, "per_class": {}, "stored_counts": {}, "problems": [],
    }
    if entry.found and not entry.problem and slides:
        facts = _slide_facts(entry, mpp, mpp_override)
        rec["problems"] += facts.pop("problems")
        rec.update(facts)
    try:
        ann = project.annotations(entry, source=source)
        counts = ann.by_class()
        ordered = sorted(counts.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
        rec["annotations"], rec["annotation_count"] = ann.source, len(ann)
        rec["per_class"] = {name or "unclassified": n for name, n in ordered}
        rec["problems"] += [n for n in ann.notes if ann.source != "none"]
        rec["stored_counts"] = dict(ann.stored_counts or {})  # what QuPath's summary.json counted
        if ann.problem:  # e.g. data.qpdata missing while QuPath counted objects
            rec["problems"].append(ann.problem)
    except HistobridgeError as err:
        rec["annotations"] = "error"
        rec["problems"].append(str(err))
    return rec


def _row(rec: dict[str, Any]) -> list[str]:
    size = "-"
    if rec["size"] is not None:
        size = f"{rec['size'][0]}×{rec['size'][1]}"
        if rec["offset"] and any(rec["offset"]):
            size += f" @({rec['offset'][0]:g},{rec['offset'][1]:g})"
    if rec["mpp"] is not None:
        um = f"{rec['mpp']:.4g} ({rec['mpp_source']})"
    else:
        um = "missing" if rec["size"] is not None else "-"
    found = ("yes (moved)" if rec["relocated_from"] else "yes") if rec["found"] else "[red]no[/red]"
    where = "error" if rec["annotations"] == "error" else f"{rec['annotations']} ({rec['annotation_count']})"
    if rec["annotations"] == "none" and rec["stored_counts"]:
        stored = ", ".join(f"{n} {kind}" for kind, n in rec["stored_counts"].items())
        where = f"data file missing (QuPath counted {stored})"
    per_class = ", ".join(f"{k}: {v}" for k, v in rec["per_class"].items()) or "-"
    problems = ([_short(rec["image_problem"])] if rec["image_problem"] else []) + rec["problems"]
    return [str(rec["id"]), rec["name"], found, size, um, where, per_class, "\n".join(problems)]


@app.command("info")
def info(
    project: Path = typer.Argument(..., help="QuPath project folder or .qpproj file."),
    mpp: float | None = typer.Option(None, "--mpp", help="µm/px for images whose pixel size is unknown."),
    mpp_override: float | None = typer.Option(None, "--mpp-override", help="µm/px replacing images' own."),
    source: str = typer.Option("auto", "--source", help="Annotations from auto, qpdata, geojson or paquo."),
    slides: bool = typer.Option(True, "--slides/--no-slides", help="Open found slides for size and µm/px."),
    as_json: bool = typer.Option(False, "--json", help="Print everything as JSON (never cut to a width)."),
) -> None:
    """List images: id, name, found?, size, µm/px (and where from), annotations per class, problems."""
    from histobridge.qupath.project import Project

    proj = Project.open(project)
    records = [image_record(proj, e, mpp=mpp, mpp_override=mpp_override, source=source, slides=slides)
               for e in proj.images]
    if as_json:
        doc = {"project": str(proj.path), "qupath_version": proj.version, "classes": proj.class_names(),
               "notes": list(proj.notes), "images": records}
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{proj.path}[/bold]  QuPath {proj.version or '?'}  {len(proj.images)} image(s)")
    if proj.classes:
        console.print("classes: " + ", ".join(c.name for c in proj.classes))
    for note in proj.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    table = Table("id", "name", "found", "size (px)", "µm/px", "annotations", "per class", "problems")
    for rec in records:
        table.add_row(*_row(rec))
    console.print(table)


@app.command("scripts")
def scripts(
    project: Path = typer.Argument(..., help="QuPath project folder or .qpproj file."),
) -> None:
    """Copy histobridge's Groovy scripts into the project (QuPath: Automate > Project scripts)."""
    from histobridge.qupath.scripts import install_scripts

    for path in install_scripts(project):
        typer.echo(f"wrote {path}")
