"""``histobridge heatmap``: run a tile classifier over a QuPath project and write the results back.

torch and the pipeline are imported inside the command only, so ``histobridge --help`` stays fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer

WRITE_BACK_HELP = ("geojson (for import_results.groovy), paquo (needs QuPath), qpdata (straight into "
                   "data.qpdata, no QuPath needed; close the image in QuPath first), or none.")


class WriteBack(str, Enum):
    geojson = "geojson"
    paquo = "paquo"
    qpdata = "qpdata"
    none = "none"


def _split(values: list[str] | None) -> list[str] | None:
    """Accept repeated options and comma-separated lists alike."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


def heatmap(
    project: Path = typer.Argument(..., help="QuPath project folder or .qpproj file."),
    model: Path = typer.Option(..., "--model", "-m", help="WSInfer model folder or TorchScript + .json."),
    images: list[str] | None = typer.Option(None, "--images", help="Entry ids or names (a,b or repeat)."),
    classes: list[str] | None = typer.Option(None, "--classes", help="Only annotations of these classes."),
    whole_tissue: bool = typer.Option(False, "--whole-tissue", help="Tile the tissue, not annotations."),
    stride_div: int = typer.Option(1, "--stride-div", help="Tile overlap: stride = tile / N (1, 2 or 4)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Tiles per model batch."),
    device: str | None = typer.Option(None, "--device", help="cuda, mps or cpu (default: best found)."),
    uncertainty: int = typer.Option(0, "--uncertainty", min=0, help="MC-dropout passes (0 = off; e.g. 30)."),
    out: Path = typer.Option(Path("heatmaps"), "--out", "-o", help="Folder for GeoJSON, NPZ, CSV, PNG."),
    write_back: WriteBack = typer.Option(WriteBack.geojson, "--write-back", help=WRITE_BACK_HELP),
    mpp: float | None = typer.Option(None, "--mpp", help="µm/px to use when a slide records none."),
    workers: int = typer.Option(2, "--workers", min=1, help="Tile reader threads."),
    prefix: str | None = typer.Option(None, "--prefix", help="Measurement prefix (default: model name)."),
) -> None:
    """Classify tiles of each image and write QuPath tiles with probability measurements."""
    if stride_div not in (1, 2, 4):
        raise typer.BadParameter("--stride-div must be 1, 2 or 4")
    from histobridge.heatmap.pipeline import run_heatmap
    from histobridge.models.classifier import load_classifier

    clf = load_classifier(model, device=device)
    typer.echo(f"model: {clf}")
    with _Progress() as progress:
        report = run_heatmap(
            project, clf, out, images=_split(images), classes=_split(classes), whole_tissue=whole_tissue,
            stride_div=stride_div, batch_size=batch_size, uncertainty=uncertainty,
            write_back=write_back.value, workers=workers, progress=progress.update, mpp=mpp, prefix=prefix,
        )
    for r in report.images:
        rate = f"{r.tiles_per_s:.1f} tiles/s"
        typer.echo(f"{r.entry_id} {r.name}: {r.tiles} tiles in {r.seconds:.1f} s ({rate})")
        for note in r.notes:
            typer.echo(f"    note: {note}")
        for f in r.files:
            typer.echo(f"    {f}")
    for s in report.skipped:
        typer.echo(f"skipped {s}", err=True)
    typer.echo(f"{report.tiles} tiles over {len(report.images)} image(s); results in {report.out_dir}")


class _Progress:
    """A rich progress bar per image, fed by run_heatmap's (name, done, total) callback."""

    def __enter__(self) -> _Progress:
        from rich import progress as rp

        self._bar = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                                rp.TimeRemainingColumn(), transient=False)
        self._tasks: dict[str, Any] = {}
        self._bar.__enter__()
        return self

    def update(self, name: str, done: int, total: int) -> None:
        if name not in self._tasks:
            self._tasks[name] = self._bar.add_task(name, total=total)
        self._bar.update(self._tasks[name], completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)


def register(app: typer.Typer) -> None:
    """Add the top-level ``heatmap`` command."""
    app.command("heatmap")(heatmap)
