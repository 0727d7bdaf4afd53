"""``histobridge tile``: tile the annotated regions (or the tissue) of a QuPath project into Zarr.

The tiler and its dependencies are imported inside the command, so ``histobridge --help`` stays fast.
Exit status: 0 only when every requested image was tiled; otherwise 1, after a table of what was
skipped or failed and why (``--json`` prints the same summary as JSON).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from histobridge.runs import ProgressEvent
    from histobridge.tiling import TileSpec, TilingReport


def _split(values: list[str] | None) -> list[str] | None:
    """Accept repeated options and comma-separated lists alike."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


def tile(
    project: Path = typer.Argument(..., help="QuPath project folder or .qpproj file."),
    out: Path = typer.Option(..., "--out", "-o", help="Zarr tile store to create or update."),
    tile_px: int = typer.Option(256, "--tile-px", help="Tile size in pixels."),
    tile_um: float = typer.Option(128.0, "--tile-um", help="Tile size in micrometres."),
    stride_px: int | None = typer.Option(None, "--stride-px", help="Step in output px (overlap)."),
    images: list[str] | None = typer.Option(None, "--images", help="Entry ids or names (a,b or repeat)."),
    classes: list[str] | None = typer.Option(None, "--classes", help="Only annotations of these classes."),
    min_coverage: float = typer.Option(0.5, "--min-coverage", help="Fraction of a tile inside (0-1)."),
    tissue: bool = typer.Option(False, "--tissue", help="Keep only the tissue part of annotations."),
    whole_tissue: bool = typer.Option(False, "--whole-tissue", help="Tile all tissue; ignore annotations."),
    workers: int = typer.Option(2, "--workers", min=1, help="Reader threads."),
    mpp: float | None = typer.Option(
        None, "--mpp", help="µm/px for images whose file and project record none (never replaces one)."
    ),
    mpp_override: float | None = typer.Option(
        None,
        "--mpp-override",
        help="µm/px replacing every image's own pixel size (each replacement is shown).",
    ),
    mpp_range: tuple[float, float] = typer.Option(
        (0.05, 20.0), "--mpp-range", help="Plausible µm/px for --mpp/--mpp-override (catches typos)."
    ),
    max_tiles: int = typer.Option(2_000_000, "--max-tiles", help="Refuse an image planning more tiles."),
    replace: bool = typer.Option(
        False, "--replace", help="Replace groups written with another tile size (refused otherwise)."
    ),
    closed_lines_as_areas: bool = typer.Option(
        False, "--closed-lines-as-areas", help="Read closed outlines (polylines) as areas."
    ),
    compression: str = typer.Option(
        "lz4", "--compression", help="Tile compression: lz4 (Blosc) or none (faster, ~12 % more disk)."
    ),
    resample: str = typer.Option(
        "exact",
        "--resample",
        help="exact, or fast: JPEG slides shrunk 2x or more are decoded at 1/2-1/8 first "
        "(~40-75 % less CPU, pixels differ; see docs/tiling.md).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Tile each image's annotations at a fixed size in px and µm; reruns skip finished images."""
    from histobridge.qupath.project import Project
    from histobridge.tiling import TileSpec, TilingOptions, tile_project

    spec = TileSpec(tile_px=tile_px, tile_um=tile_um, stride_px=stride_px, min_coverage=min_coverage)
    chosen = _split(classes)
    options = TilingOptions(
        classes=tuple(chosen) if chosen else None, tissue=tissue, whole_tissue=whole_tissue, workers=workers,
        mpp=mpp, mpp_override=mpp_override, mpp_range=mpp_range, max_tiles=max_tiles, replace=replace,
        closed_lines_as_areas=closed_lines_as_areas, compression=compression, resample=resample,
    )  # fmt: skip
    qp = Project.open(project)
    with _Bars(progress and not as_json) as bars:
        report = tile_project(qp, out, spec, options, images=_split(images), progress=bars.update)
    if as_json:
        typer.echo(json.dumps(summary(report, spec), indent=2))
    else:
        _print_summary(report, spec)
    if not report.ok:
        missing = len(report.not_done)
        typer.echo(
            f"error: {missing} of {len(report.images)} requested image(s) not tiled (reasons above)", err=True
        )
        raise typer.Exit(1)


def summary(report: TilingReport, spec: TileSpec) -> dict[str, Any]:
    """The run as plain data: what ``--json`` prints."""
    return {
        "store": str(report.store_path), "tile_px": spec.tile_px, "tile_um": spec.tile_um,
        "ok": report.ok, "tiles_written": report.tiles, "seconds": round(report.seconds, 3),
        "images": [
            {"entry_id": d.outcome.entry_id, "name": d.outcome.name, "status": d.outcome.status,
             "tiles": d.outcome.count, "reason": d.outcome.reason, "up_to_date": d.up_to_date,
             "mpp": d.mpp, "mpp_source": d.mpp_source, "seconds": round(d.seconds, 3)}
            for d in report.details
        ],
        "warnings": list(report.warnings),
    }  # fmt: skip


def _print_summary(report: TilingReport, spec: TileSpec) -> None:
    from rich.console import Console
    from rich.table import Table

    # Redirected output is not cut at 80 columns: the table is as wide as its content.
    console = Console() if sys.stdout.isatty() else Console(width=400, no_color=True)
    table = Table(title=f"{spec.tile_px} px tiles of {spec.tile_um:g} µm → {report.store_path}")
    for col in ("id", "image", "status", "tiles", "µm/px", "seconds", "note"):
        table.add_column(col, justify="right" if col in ("tiles", "seconds") else "left", overflow="fold")
    for d in report.details:
        o = d.outcome
        cal = f"{d.mpp:.4g} ({d.mpp_source})" if d.mpp is not None else ""
        table.add_row(
            str(o.entry_id), o.name, o.status, str(o.count), cal, f"{d.seconds:.1f}", o.reason or ""
        )
    console.print(table)
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False)
    console.print(f"{report.tiles} tiles written in {report.seconds:.1f} s", highlight=False)


class _Bars:
    """Rich progress on stderr: images done, and the tiles of each image being written."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bar: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> _Bars:
        if self._enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self._bar.start()
        return self

    def update(self, event: ProgressEvent) -> None:
        if self._bar is None:
            return
        key = f"{event.task}:{event.item}" if event.task == "tiles" else event.task
        with self._lock:
            if key not in self._tasks:
                label = "images" if event.task == "images" else f"  {event.item}"
                self._tasks[key] = self._bar.add_task(label, total=event.total)
            self._bar.update(self._tasks[key], completed=event.done, total=event.total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def register(app: typer.Typer) -> None:
    """Add the ``tile`` command to the main app."""
    app.command("tile")(tile)
