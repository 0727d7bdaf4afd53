"""``histobridge batch``: tile, heatmap, synth (and teach) over whole projects as one Dask task graph.

Runs on a new local cluster of worker processes, or on a running cluster given by its scheduler
address. Exit status: 0 only when no image-step failed; otherwise 1, after a table of what failed and
why (``batch_report.json`` in ``--out`` holds every image-step).
"""

from __future__ import annotations

from pathlib import Path

import typer

from histobridge.cli._common import split_list


def batch(
    projects: list[Path] = typer.Argument(..., help="QuPath project folders or .qpproj files."),
    steps: list[str] = typer.Option(["tile,heatmap,synth"], "--steps", help="tile,heatmap,synth,teach."),
    out: Path = typer.Option(..., "--out", "-o", help="Output root: one folder per project."),
    model: Path | None = typer.Option(None, "--model", help="Tile classifier (heatmap, teach)."),
    generator: Path | None = typer.Option(None, "--generator", help="Conditional generator (synth, teach)."),
    tile_px: int | None = typer.Option(None, "--tile-px", help="Tile px (default: the generator's)."),
    tile_um: float | None = typer.Option(None, "--tile-um", help="Tile µm (default: the generator's)."),
    gan_um: float | None = typer.Option(None, "--gan-um", help="µm of a generator tile, if unrecorded."),
    n: int | None = typer.Option(None, "--n", min=1, help="Synthetic tiles per region."),
    class_map: str | None = typer.Option(None, "--class-map", help="Region to generator class: a=b,c=d."),
    seed0: int = typer.Option(0, "--seed0", min=0, help="First seed of the synthetic tiles."),
    classify_synthetic: bool = typer.Option(False, "--classify-synthetic", help="Classify them too."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local worker processes."),
    device: str = typer.Option("cpu", "--device", help="Torch device on the workers: cpu, cuda, cuda:1."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Tiles, heatmaps and matched synthetic tiles for every image of every project, in parallel."""
    from histobridge.batch import BatchSettings
    from histobridge.batch.graph import REPORT_NAME, run_batch
    from histobridge.cli._progress import ProgressDrawer
    from histobridge.cli.synth import parse_class_map

    settings = BatchSettings(
        steps=tuple(split_list(steps) or ()), out=out, model=model, generator=generator, tile_px=tile_px,
        tile_um=tile_um, gan_um=gan_um, n=n, class_map=tuple(parse_class_map(class_map).items()), seed0=seed0,
        classify_synthetic=classify_synthetic, device=device,
    )  # fmt: skip
    with ProgressDrawer(enabled=not quiet) as drawer:
        report = run_batch(projects, settings, scheduler=scheduler, workers=workers, progress=drawer)
    done = sum(1 for r in report.results if r.outcome.ok)
    resumed = sum(1 for r in report.results if r.resumed)
    typer.echo(
        f"{done} of {len(report.results)} image-steps done ({resumed} from an earlier run) on "
        f"{report.workers} worker(s) in {report.seconds:.1f} s; report: {out / REPORT_NAME}"
    )
    if report.dashboard:
        typer.echo(f"dashboard: {report.dashboard}")
    skipped = [r for r in report.results if r.outcome.status == "skipped"]
    for r in skipped:
        typer.echo(f"skipped  {r.project}  {r.step:<8} {r.outcome.name}: {r.outcome.reason}")
    if report.failed:
        typer.echo("failed:", err=True)
        width = max(len(f"{r.project}/{r.outcome.name}") for r in report.failed)
        for r in report.failed:
            where = f"{r.project}/{r.outcome.name}"
            typer.echo(f"  {where:<{width}}  {r.step:<8} {r.outcome.reason}", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``batch`` to the top level."""
    app.command("batch")(batch)


__all__ = ["batch", "register"]
