"""``histobridge synth``: matched synthetic tiles (and class-swapped twins) for a project's regions.

A top-level command because it works on a QuPath project, not on a generator alone; it takes the
generator, ``--device`` and number options exactly as the ``gan`` commands do
(:mod:`histobridge.cli.gan`). torch is imported inside the command only.
"""

from __future__ import annotations

from pathlib import Path

import typer

from histobridge.cli._common import DEVICE_HELP, resolve_device
from histobridge.cli.gan import GEN_HELP, UM_HELP, load_classifier, load_generator, writing
from histobridge.errors import InputError
from histobridge.ranges import SEED_MAX


def parse_class_map(text: str | None) -> dict[str, str]:
    """``"tumor=class1,stroma=0"`` → {region class: generator class name or index}."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(
                f"--class-map {text!r}: {part!r} is not of the form region_class=generator_class"
            )
        if key.strip() in out:
            raise InputError(f"--class-map {text!r}: region class {key.strip()!r} is mapped twice")
        out[key.strip()] = value.strip()
    return out


def synth(
    project: Path = typer.Argument(..., help="QuPath project folder or .qpproj file."),
    generator: Path = typer.Option(..., "--generator", help=GEN_HELP),
    store: Path | None = typer.Option(
        None, "--store", help="Existing tile store (default: tile the project)."
    ),
    classifier: Path | None = typer.Option(None, "--classifier", help="Also classify every synthetic tile."),
    n: int | None = typer.Option(
        None, "--n", min=1, help="Synthetic tiles per region (default: as many as real)."
    ),
    class_map: str | None = typer.Option(
        None, "--class-map", help="Region class to GAN class (name, prefix or index), e.g. tumor=1."
    ),
    seed0: int = typer.Option(0, "--seed0", min=0, max=SEED_MAX, help="First seed."),
    out: Path = typer.Option(
        Path("synth"), "--out", help="Output folder (tile store when tiling, montages)."
    ),
    gan_um: float | None = typer.Option(None, "--gan-um", help=UM_HELP),
    workers: int = typer.Option(2, "--workers", min=1, help="Tiling threads."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Matched synthetic tiles for every annotated region, with class-swapped twins and montages."""
    from histobridge._atomic import write_json
    from histobridge.synthetic.fov import gan_tile_um
    from histobridge.synthetic.matched import matched_synthetic

    mapping = parse_class_map(class_map)
    dev = resolve_device(device)
    G = load_generator(generator, gan_um, dev)
    um = gan_tile_um(G, gan_um)
    clf = load_classifier(classifier, dev)
    untiled = 0
    if store is None:
        store = out / "tiles.zarr"
        with writing(store):
            untiled = _tile_for_generator(project, store, int(G.img_resolution), um, workers)
    with writing(out):
        report = matched_synthetic(store, G, clf, n, mapping, seed0, gan_um=um, montage_dir=out / "montages")
    for g in report.groups:
        regions = ", ".join(f"{r}: {k}" for r, k in g.per_region.items()) or "none"
        typer.echo(f"image {g.entry_id}: {g.status}, {g.n_synthetic} tiles (regions {regions})")
    with writing(out):
        write_json(out / "synth.json", {
            "store": str(store), "class_map": report.class_map, "seed0": seed0, "n": n,
            "groups": [{"entry_id": g.entry_id, "status": g.status, "n_synthetic": g.n_synthetic,
                        "per_region": {str(k): v for k, v in g.per_region.items()},
                        "skipped_regions": {str(k): v for k, v in g.skipped_regions.items()},
                        "montages": [str(p) for p in g.montages]} for g in report.groups],
        })  # fmt: skip
    typer.echo(f"{report.n_synthetic} synthetic tiles (and as many swapped twins) in {store}")
    if untiled:
        typer.echo(f"error: {untiled} image(s) could not be tiled, so have no synthetic tiles", err=True)
        raise typer.Exit(1)


def _tile_for_generator(project: Path, store: Path, tile_px: int, tile_um: float, workers: int) -> int:
    """Tile the annotated regions at the GAN's own geometry so real and synthetic tiles compare 1:1."""
    from histobridge.qupath.project import Project
    from histobridge.tiling import TileSpec, TilingOptions, tile_project

    report = tile_project(
        Project.open(project),
        store,
        TileSpec(tile_px=tile_px, tile_um=tile_um),
        TilingOptions(workers=workers),
    )
    for img in report.not_done:
        typer.echo(f"warning: image {img.entry_id} ({img.name}) not tiled: {img.reason}", err=True)
    typer.echo(f"tiles of {tile_px} px over {tile_um:g} µm in {store} ({report.tiles} new)")
    return len(report.not_done)


def register(app: typer.Typer) -> None:
    """Add ``synth`` to the top level."""
    app.command("synth")(synth)


__all__ = ["parse_class_map", "register", "synth"]
