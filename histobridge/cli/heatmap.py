"""``histobridge heatmap``: run a tile classifier over a QuPath project and write the results back.

torch and the pipeline are imported inside the command only, so ``histobridge --help`` stays fast.
Exit code 0 only when every requested image was processed; otherwise a table says which images were
skipped or failed and why, and the exit code is 1.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from histobridge.cli._common import DEVICE_HELP, resolve_device, split_list

if TYPE_CHECKING:
    from histobridge.heatmap.pipeline import HeatmapReport

WRITE_BACK_HELP = (
    "auto (default: qpdata for images that have a data.qpdata, else geojson), geojson (for "
    "import_results.groovy), paquo (needs QuPath), qpdata (straight into data.qpdata, no QuPath "
    "needed; close the image in QuPath first), or none."
)
TISSUE_HELP = ("Classify only the tissue inside annotations; glass is left out (default). "
               "--no-tissue classifies the whole annotation.")


class WriteBack(str, Enum):
    auto = "auto"
    geojson = "geojson"
    paquo = "paquo"
    qpdata = "qpdata"
    none = "none"


def heatmap(
    project: Path = typer.Argument(..., help="QuPath project folder or .qpproj file."),
    model: Path = typer.Option(..., "--model", "-m", help="WSInfer model folder or TorchScript + .json."),
    images: list[str] | None = typer.Option(None, "--images", help="Entry ids or names (a,b or repeat)."),
    classes: list[str] | None = typer.Option(None, "--classes", help="Only annotations of these classes."),
    whole_tissue: bool = typer.Option(False, "--whole-tissue", help="Tile the tissue, not annotations."),
    tissue: bool = typer.Option(True, "--tissue/--no-tissue", help=TISSUE_HELP),
    closed_lines_as_areas: bool = typer.Option(
        False, "--closed-lines-as-areas", help="Read closed outlines (polylines) as areas."
    ),
    stride_div: int = typer.Option(1, "--stride-div", help="Tile overlap: stride = tile / N (1, 2 or 4)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1,
                                    help="Tiles read together (one slide block); the GPU runs them as one "
                                         "model batch, the CPU a few tiles at a time."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    uncertainty: int = typer.Option(0, "--uncertainty", min=0, help="MC-dropout passes (0 = off; e.g. 30)."),
    out: Path = typer.Option(Path("heatmaps"), "--out", "-o", help="Folder for GeoJSON, NPZ, CSV, PNG."),
    write_back: WriteBack = typer.Option(WriteBack.auto, "--write-back", help=WRITE_BACK_HELP),
    mpp: float | None = typer.Option(None, "--mpp", help="µm/px for images whose pixel size is unknown."),
    mpp_override: float | None = typer.Option(None, "--mpp-override", help="µm/px replacing images' own."),
    workers: int = typer.Option(2, "--workers", min=1, help="Tile reader threads."),
    prefix: str | None = typer.Option(None, "--prefix", help="Measurement prefix (default: model name)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Classify tiles of each image and write QuPath tiles with probability measurements."""
    if stride_div not in (1, 2, 4):
        raise typer.BadParameter("--stride-div must be 1, 2 or 4")
    from histobridge.cli._progress import ProgressDrawer
    from histobridge.heatmap.pipeline import HeatmapOptions, run_heatmap
    from histobridge.models.classifier import load_classifier
    from histobridge.qupath.project import Project

    options = HeatmapOptions(
        classes=tuple(split_list(classes) or ()), whole_tissue=whole_tissue, tissue=tissue,
        stride_div=stride_div, batch_size=batch_size, uncertainty=uncertainty, write_back=write_back.value,
        workers=workers, mpp=mpp, mpp_override=mpp_override, prefix=prefix,
        closed_lines_as_areas=closed_lines_as_areas,
    )
    proj = Project.open(project)
    from histobridge._threads import configure_torch_threads, reader_threads

    configure_torch_threads(readers=reader_threads(workers))  # readers + torch never exceed the cores
    clf = load_classifier(model, device=resolve_device(device))
    typer.echo(f"model: {clf}", err=as_json)
    with ProgressDrawer() as progress:
        report = run_heatmap(proj, clf, out, options, images=split_list(images), progress=progress)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: HeatmapReport) -> None:
    for r in report.results:
        rate = f"{r.tiles_per_s:.1f} tiles/s"
        typer.echo(f"{r.entry_id} {r.name}: {r.tiles} tiles in {r.seconds:.1f} s ({rate})")
        for note in r.notes:
            typer.echo(f"    note: {note}")
        for f in r.files:
            typer.echo(f"    {f}")
    missed = report.not_done
    if missed:  # plain aligned lines: never cut at the terminal's width, and easy to grep
        typer.echo("images not processed:")
        rows = [(str(o.entry_id), o.name, o.status) for o in missed]
        widths = [max(len(r[k]) for r in rows) for k in range(3)]
        for (eid, name, status), o in zip(rows, missed, strict=True):
            cells = f"{eid:<{widths[0]}}  {name:<{widths[1]}}  {status:<{widths[2]}}"
            typer.echo(f"  {cells}  {o.reason or ''}")
    done = len(report.outcomes) - len(missed)
    typer.echo(f"{report.tiles} tiles over {done} of {len(report.outcomes)} image(s); "
               f"results in {report.out_dir}")


def register(app: typer.Typer) -> None:
    """Add the top-level ``heatmap`` command."""
    app.command("heatmap")(heatmap)
