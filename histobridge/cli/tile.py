"""``histobridge tile``: tile the annotated regions (or the tissue) of a QuPath project into Zarr.

The tiler and its dependencies are imported inside the command, so ``histobridge --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def _split(values: list[str] | None) -> list[str] | None:
    """Accept repeated options and comma-separated lists alike."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


def tile(
    project: Path = typer.Argument(..., help="QuPath project folder or .qpproj file."),
    out: Path = typer.Option(..., "--out", "-o", help="Zarr tile store to create or update."),
    tile_px: int = typer.Option(256, "--tile-px", min=1, help="Tile size in pixels."),
    tile_um: float = typer.Option(128.0, "--tile-um", min=0.001, help="Tile size in micrometres."),
    stride_px: int | None = typer.Option(None, "--stride-px", min=1, help="Step in output px (overlap)."),
    images: list[str] | None = typer.Option(None, "--images", help="Entry ids or names (a,b or repeat)."),
    classes: list[str] | None = typer.Option(None, "--classes", help="Only annotations of these classes."),
    min_coverage: float = typer.Option(0.5, "--min-coverage", min=0.0, max=1.0, help="Tile area inside."),
    tissue: bool = typer.Option(False, "--tissue", help="Keep only the tissue part of annotations."),
    whole_tissue: bool = typer.Option(False, "--whole-tissue", help="Tile all tissue; ignore annotations."),
    workers: int = typer.Option(2, "--workers", min=1, help="Reader threads."),
    mpp: float | None = typer.Option(None, "--mpp", help="µm/px to use instead of the slide's own."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Tile each image's annotations at a fixed size in px and µm; reruns skip finished images."""
    from histobridge.qupath.project import Project
    from histobridge.tiling import TileSpec, tile_project

    spec = TileSpec(tile_px=tile_px, tile_um=tile_um, stride_px=stride_px, min_coverage=min_coverage)
    report = tile_project(
        Project.open(project), out, spec, images=_split(images), classes=_split(classes), tissue=tissue,
        whole_tissue=whole_tissue, workers=workers, mpp=mpp, progress=progress,
    )  # fmt: skip
    _print_summary(report, spec)
    if report.failed:
        raise typer.Exit(1)


def _print_summary(report: Any, spec: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{spec.tile_px} px tiles of {spec.tile_um:g} µm → {report.store_path}")
    for col in ("id", "image", "status", "tiles", "seconds", "note"):
        table.add_column(col, justify="right" if col in ("tiles", "seconds") else "left")
    for r in report.images:
        table.add_row(r.entry_id, r.name, r.status, str(r.tiles), f"{r.seconds:.1f}", r.reason or "")
    console = Console()
    console.print(table)
    console.print(f"{report.tiles} tiles written in {report.seconds:.1f} s")


def register(app: typer.Typer) -> None:
    """Add the ``tile`` command to the main app."""
    app.command("tile")(tile)
