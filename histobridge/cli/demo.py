"""``histobridge demo``: the whole pipeline on the embedded skin sample, with an HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

_LABELS = {
    "sample": "Sample project (slide fetched once, then cached)",
    "tile": "Tiling annotated regions into Zarr",
    "heatmap": "Classifier heatmap → QuPath tile measurements",
    "synthetic": "Matched synthetic tiles + class-swapped twins",
    "seeds": "Class-swap seed search",
    "blend": "Class blending and layer blending",
    "report": "report.html + metrics.json",
}


def demo(
    out: Path = typer.Option(Path("histobridge-demo"), "--out", help="Output folder (reruns resume here)."),
    seeds: int = typer.Option(256, help="Seeds to search for class swaps."),
    per_region: int = typer.Option(
        0, "--per-region", help="Synthetic tiles per region (0: as many as real ones)."
    ),
    workers: int = typer.Option(2, help="Reader threads."),
    offline: bool = typer.Option(False, help="Use only the local cache for the sample slide."),
) -> None:
    """Run the whole mission on the embedded skin sample and write report.html."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from histobridge.demo.run import STAGES, DemoOptions, run_demo

    console = Console()
    options = DemoOptions(
        out_dir=out, seeds=seeds, synthetic_per_region=per_region or None, workers=workers, offline=offline
    )
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        tasks = {s: bar.add_task(_LABELS[s], total=1, start=False) for s in STAGES}

        def hook(stage: str, event: str) -> None:
            if event == "start":
                bar.start_task(tasks[stage])
            else:
                bar.update(tasks[stage], completed=1)

        result = run_demo(options, hook=hook, progress=False)
    m = result.metrics
    table = Table(title="histobridge demo", show_header=False)
    for key in (
        "tiles",
        "heatmap_tiles",
        "classifier_heldout_accuracy",
        "synthetic_agreement",
        "strong_swap_rate",
    ):
        v = m[key]
        table.add_row(key, f"{v:.3f}" if isinstance(v, float) else str(v))
    table.add_row("seconds", f"{m['seconds']['total']:.1f}")
    console.print(table)
    console.print(f"report:  {result.report}")
    console.print(f"project: {result.out_dir / 'project' / 'project.qpproj'} (open it in QuPath)")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
