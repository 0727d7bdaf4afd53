"""``histobridge qpdata``: look into QuPath ``.qpdata`` files and export their objects as GeoJSON."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Read QuPath .qpdata files without QuPath: header, object counts, GeoJSON export.",
    no_args_is_help=True,
)


def _types(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [t.strip() for t in value.split(",") if t.strip()]


@app.command("to-geojson")
def to_geojson(
    file: Path = typer.Argument(..., help="The .qpdata file (e.g. <project>/data/<id>/data.qpdata)."),
    out: Path = typer.Argument(..., help="Output .geojson (or .geojson.gz) FeatureCollection."),
    types: str | None = typer.Option(
        None, "--types", help="Comma-separated object types: annotation,detection,tile,cell,tmaCore."
    ),
    closed_lines_as_areas: bool = typer.Option(
        False, "--closed-lines-as-areas",
        help="Write closed polylines (outlines that end where they start) as polygons, i.e. as areas.",
    ),
) -> None:
    """Export objects as QuPath 0.4+ GeoJSON, streamed (children are written before their parent).

    Invalid polygons are written repaired; an object whose ROI cannot be written (a NaN or infinite
    coordinate) is left out and reported, never the whole file.
    """
    import dataclasses
    from collections.abc import Iterator
    from typing import Any

    from histobridge.errors import AnnotationError
    from histobridge.qupath.geojson import write_features
    from histobridge.qupath.geometry import NoteCounter, closed_line_area, is_closed_line
    from histobridge.qupath.qpdata.convert import to_geojson_feature
    from histobridge.qupath.qpdata.reader import iter_objects

    notes = NoteCounter()

    def features() -> Iterator[dict[str, Any]]:
        for obj in iter_objects(file, types=_types(types)):
            if closed_lines_as_areas and is_closed_line(obj.geometry):
                obj = dataclasses.replace(obj, geometry=closed_line_area(obj.geometry))
                notes.add("closed outline written as a polygon", obj.label)
            try:
                feature = to_geojson_feature(obj)
            except AnnotationError as err:
                notes.add("object left out", str(err))
                continue
            if feature is not None:
                yield feature

    n = write_features(out, features())
    typer.echo(f"wrote {n} features to {out}")
    for note in notes.lines():
        typer.echo(f"note: {note}", err=True)


@app.command("info")
def info(file: Path = typer.Argument(..., help="The .qpdata file.")) -> None:
    """Print the header and the number of objects per type and class."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from histobridge.qupath.qpdata.reader import QPDataStream

    counts: Counter[tuple[str, str]] = Counter()
    stream = QPDataStream(file)
    for obj in stream:
        counts[(obj.object_type, obj.path_class or "Unclassified")] += 1
    h = stream.header
    console = Console()
    console.print(f"[bold]{file}[/bold]")
    version = h.qupath_version or "unknown (< 0.3)"
    console.print(f"data file version {h.data_version}; written by QuPath {version}")
    uri = (h.server or {}).get("uri") or h.image_path
    console.print(f"image: {uri or 'unknown'}; type: {h.image_type or 'unset'}")
    if h.tma_grid:
        console.print(f"TMA grid: {h.tma_grid[0]} x {h.tma_grid[1]}")
    table = Table("type", "class", "count")
    for (kind, cls), n in sorted(counts.items()):
        table.add_row(kind, cls, str(n))
    console.print(table)
    for note in h.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


@app.command("from-geojson")
def from_geojson(
    project: Path = typer.Argument(..., help="The QuPath project folder."),
    image: int = typer.Option(..., "--image", help="Image entry ID (data/<ID>/data.qpdata)."),
    geojson: Path | None = typer.Option(
        None, "--geojson", help="GeoJSON to read (default: the image's export under histobridge/annotations)."
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Replace an existing data.qpdata (the old one is kept as data.qpdata.bkp)."
    ),
) -> None:
    """Write an image's GeoJSON annotations into its data.qpdata, so that QuPath shows them."""
    from histobridge.qupath.qpdata.from_geojson import qpdata_from_geojson

    done = qpdata_from_geojson(project, image, geojson, replace=replace)
    typer.echo(f"wrote {done.report.annotations} annotations from {done.source} to {done.report.path}")
    if done.report.backup is not None:
        typer.echo(f"previous file kept as {done.report.backup}")
    for note in done.notes:
        typer.echo(f"note: {note}", err=True)
