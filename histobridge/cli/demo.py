"""``histobridge demo``: the whole pipeline on the embedded skin sample, with an HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from histobridge.cli._common import DEVICE_HELP

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
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Run the whole mission on the embedded skin sample and write report.html."""
    from rich.console import Console
    from rich.table import Table

    from histobridge._threads import configure_torch_threads, reader_threads
    from histobridge.cli._progress import ProgressDrawer
    from histobridge.demo.run import STAGES, DemoOptions, run_demo
    from histobridge.runs import ProgressEvent

    options = DemoOptions(  # checked here, before anything is fetched or computed
        out_dir=out, seeds=seeds, synthetic_per_region=per_region if per_region != 0 else None,
        workers=workers, offline=offline, device=device,
    )
    console = Console()
    with ProgressDrawer() as progress:

        def hook(stage: str, event: str) -> None:
            i = STAGES.index(stage)
            if event == "start":
                progress(ProgressEvent("stages", i, len(STAGES), message=_LABELS[stage]))
            else:
                progress(ProgressEvent("stages", i + 1, len(STAGES)))

        configure_torch_threads(readers=min(workers, reader_threads(workers)))
        result = run_demo(options, hook=hook, progress=progress)
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
    console.print(f"report:  {result.report}", soft_wrap=True)
    qpproj = result.out_dir / "project" / "project.qpproj"
    console.print(f"project: {qpproj} (open it in QuPath)", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
