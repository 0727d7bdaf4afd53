"""``histobridge sample``: a ready-to-open QuPath project on a real H&E slide, with annotations."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Bundled sample QuPath projects.", no_args_is_help=True)


@app.command("init")
def init(
    dest: Path = typer.Argument(..., help="Folder to create the project in (empty or new)."),
    name: str = typer.Option("skin", "--name", help="Which sample project."),
    force: bool = typer.Option(
        False, "--force", help="Write into a non-empty folder, replacing the sample's files."
    ),
    offline: bool = typer.Option(False, "--offline", help="Use only the local dataset cache."),
) -> None:
    """Copy the sample project, fetch its slide into DEST/images and point the project at it."""
    from histobridge.qupath.sample import init_sample_project

    qpproj = init_sample_project(dest, name, force=force, offline=offline)
    typer.echo(f"sample project {name!r} ready: {qpproj}")
    typer.echo(f"open it in QuPath, or try: histobridge project info {qpproj.parent}")


@app.command("list")
def list_samples() -> None:
    """Names of the bundled sample projects."""
    from histobridge.qupath.sample import sample_names

    for name in sample_names():
        typer.echo(name)
