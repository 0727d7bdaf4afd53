"""``gan blend``, ``gan layer-blend``, ``gan seeds`` and ``synth``: explaining classifiers with a cGAN.

The ``gan`` commands join the group defined in :mod:`histobridge.cli.gan`; ``synth`` is top level.
torch and the library modules are imported inside the commands so ``histobridge --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from histobridge.errors import InputError

_GEN_HELP = "Generator: snapshot .pkl or histobridge .safetensors."
_UM_HELP = "GAN tile width in µm, where the generator does not record it."


def _load_generator(path: Path, gan_um: float | None, device: str) -> Any:
    from histobridge.models.checkpoints import load_generator

    return load_generator(path, gan_um=gan_um, device=device)


def _load_classifier(path: Path | None, device: str | None) -> Any:
    if path is None:
        return None
    from histobridge.models.classifier import load_classifier

    return load_classifier(path, device=device)


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
        out[key.strip()] = value.strip()
    return out


def parse_floats(text: str, what: str) -> list[float]:
    """``"0.5,1"`` → [0.5, 1.0] with a clear error."""
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError as err:
        raise InputError(f"{what} {text!r}: expected comma-separated numbers") from err
    if not values:
        raise InputError(f"{what} {text!r}: no values")
    return values


def parse_splits(text: str, num_ws: int) -> tuple[int, ...]:
    """``auto`` (every split 0..num_ws) or a list/range of split points such as ``0,4,8`` or ``0-6``."""
    from histobridge.models.stylegan2 import parse_seeds
    from histobridge.synthetic.blending import auto_splits

    if text.strip().lower() == "auto":
        return auto_splits(num_ws)
    return tuple(parse_seeds(text))


def blend(
    generator: Path = typer.Argument(..., help=_GEN_HELP),
    seed: int = typer.Option(..., "--seed", help="Seed (z = RandomState(seed).randn)."),
    class_from: str = typer.Option(..., "--from", help="Start class (name or index)."),
    class_to: str = typer.Option(..., "--to", help="End class (name or index)."),
    steps: int = typer.Option(7, "--steps", min=2, help="Images from start to end, both included."),
    classifier: Path | None = typer.Option(None, "--classifier", help="Classify each step (WSInfer model)."),
    out: Path = typer.Option(Path("blend"), "--out", help="Output folder."),
    gan_um: float | None = typer.Option(None, "--gan-um", help=_UM_HELP),
    truncation_psi: float = typer.Option(1.0, "--truncation-psi", help="Truncation ψ (1 = none)."),
    device: str = typer.Option("cpu", "--device", help="torch device for the generator."),
) -> None:
    """Class blending: one seed from class A to class B with soft one-hot labels."""
    from histobridge.synthetic import blending

    G = _load_generator(generator, gan_um, device)
    clf = _load_classifier(classifier, device)
    res = blending.class_blend(
        G, seed, class_from, class_to, steps, classifier=clf, gan_um=gan_um, truncation_psi=truncation_psi
    )
    paths = blending.write_class_blend(res, out)
    for row in res.rows():
        preds = "  ".join(f"{k[5:]}={v:.3f}" for k, v in row.items() if k.startswith("pred_"))
        typer.echo(f"t={row['t']:.3f}  {preds}".rstrip())
    typer.echo(f"wrote {paths['png']}, {paths['csv'].name}, {paths['json'].name}")


def layer_blend(
    generator: Path = typer.Argument(..., help=_GEN_HELP),
    seed: str = typer.Option(..., "--seed", help="Seed or seeds (columns), e.g. 3 or 1,5,9-12."),
    class_from: str = typer.Option(..., "--from", help="Class A (name or index)."),
    class_to: str = typer.Option(..., "--to", help="Class B (name or index)."),
    layers: str | None = typer.Option(
        None, "--layers", help="w indices that keep class A, e.g. 0-5; the rest take class B."
    ),
    splits: str = typer.Option(
        "auto", "--splits", help="Rows 'layers 0..k-1 from A, rest from B': auto (every k) or e.g. 0,4,8."
    ),
    alpha: str = typer.Option("1.0", "--alpha", help="Mix fraction(s) toward B, e.g. 1 or 0.25,0.5,1."),
    out: Path = typer.Option(Path("layer_blend"), "--out", help="Output folder."),
    gan_um: float | None = typer.Option(None, "--gan-um", help=_UM_HELP),
    truncation_psi: float = typer.Option(1.0, "--truncation-psi", help="Truncation ψ (1 = none)."),
    device: str = typer.Option("cpu", "--device", help="torch device for the generator."),
) -> None:
    """Layer blending: w from class A at chosen layers, class B (mixed by α) at the others."""
    from histobridge.models.stylegan2 import parse_seeds
    from histobridge.synthetic import blending

    G = _load_generator(generator, gan_um, device)
    seeds = parse_seeds(seed)
    alphas = parse_floats(alpha, "--alpha")
    if layers is not None:
        layers_a = blending.parse_layers(layers, G.num_ws)
        grid = blending.layer_blend(
            G, seeds, class_from, class_to, layers_a=layers_a, alphas=alphas, truncation_psi=truncation_psi
        )
    else:
        grid = blending.layer_blend(
            G, seeds, class_from, class_to, splits=parse_splits(splits, G.num_ws), alphas=alphas,
            truncation_psi=truncation_psi,
        )  # fmt: skip
    paths = blending.write_layer_blend(grid, out)
    typer.echo(f"{len(grid.cells)} rows x {len(grid.cells[0])} columns ({G.num_ws} ws)")
    typer.echo(f"wrote {paths['png']}, {paths['csv'].name}, {paths['json'].name}")


def seeds(
    generator: Path = typer.Argument(..., help=_GEN_HELP),
    classifier: Path = typer.Option(..., "--classifier", help="Tile classifier (WSInfer model)."),
    seed_spec: str = typer.Option("0-99", "--seeds", help="Seeds: ranges and lists, e.g. 0-999."),
    class_from: str = typer.Option("0", "--from", help="Start class (name or index)."),
    class_to: str = typer.Option("1", "--to", help="End class (name or index)."),
    thresholds: str = typer.Option("0.25,0.5,0.75", "--thresholds", help="low,mid,high."),
    margin: float = typer.Option(0.1, "--margin", help="One-vs-rest margin required with >2 classes."),
    top: int = typer.Option(8, "--top", min=1, help="Best seeds to picture."),
    out: Path = typer.Option(Path("seeds"), "--out", help="Output folder."),
    gan_um: float | None = typer.Option(None, "--gan-um", help=_UM_HELP),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Seeds per forward pass."),
    device: str = typer.Option("cpu", "--device", help="torch device for the generator."),
) -> None:
    """Seed search: which seeds swap class (strong / weak / none) when only the label changes."""
    from histobridge.models.stylegan2 import parse_seeds
    from histobridge.synthetic import seeds as sd

    G = _load_generator(generator, gan_um, device)
    clf = _load_classifier(classifier, device)
    res = sd.seed_search(
        G, clf, parse_seeds(seed_spec), class_from, class_to, thresholds=sd.SwapThresholds.parse(thresholds),
        margin=margin, gan_um=gan_um, batch_size=batch_size,
    )  # fmt: skip
    paths = sd.write_seed_search(res, out, G=G, top=top)
    n = len(res.rows)
    typer.echo("  ".join(f"{k}: {v} ({v / n:.1%})" for k, v in res.counts().items()))
    typer.echo("best: " + ", ".join(f"{r.seed} ({r.concordance}, {r.delta:+.2f})" for r in res.best(top)))
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


def synth(
    project: Path = typer.Argument(..., help="QuPath project folder or .qpproj file."),
    generator: Path = typer.Option(..., "--generator", help=_GEN_HELP),
    store: Path | None = typer.Option(
        None, "--store", help="Existing tile store (default: tile the project)."
    ),
    classifier: Path | None = typer.Option(None, "--classifier", help="Also classify every synthetic tile."),
    n: int | None = typer.Option(
        None, "--n", min=1, help="Synthetic tiles per region (default: as many as real)."
    ),
    class_map: str | None = typer.Option(
        None, "--class-map", help="Region class to GAN class, e.g. tumor=1."
    ),
    seed0: int = typer.Option(0, "--seed0", min=0, help="First seed."),
    out: Path = typer.Option(
        Path("synth"), "--out", help="Output folder (tile store when tiling, montages)."
    ),
    gan_um: float | None = typer.Option(None, "--gan-um", help=_UM_HELP),
    workers: int = typer.Option(2, "--workers", min=1, help="Tiling threads."),
    device: str = typer.Option("cpu", "--device", help="torch device for the generator."),
) -> None:
    """Matched synthetic tiles for every annotated region, with class-swapped twins and montages."""
    from histobridge._atomic import write_json
    from histobridge.synthetic import synthesis as syn

    G = _load_generator(generator, gan_um, device)
    um = syn.gan_tile_um(G, gan_um)
    clf = _load_classifier(classifier, device)
    if store is None:
        store = out / "tiles.zarr"
        _tile_for_generator(project, store, int(G.img_resolution), um, workers)
    report = syn.matched_synthetic(
        store, G, clf, n, parse_class_map(class_map), seed0, gan_um=um, montage_dir=out / "montages"
    )
    for g in report.groups:
        regions = ", ".join(f"{r}: {k}" for r, k in g.per_region.items()) or "none"
        typer.echo(f"image {g.entry_id}: {g.status}, {g.n_synthetic} tiles (regions {regions})")
    write_json(out / "synth.json", {
        "store": str(store), "class_map": report.class_map, "seed0": seed0, "n": n,
        "groups": [{"entry_id": g.entry_id, "status": g.status, "n_synthetic": g.n_synthetic,
                    "per_region": {str(k): v for k, v in g.per_region.items()},
                    "skipped_regions": {str(k): v for k, v in g.skipped_regions.items()},
                    "montages": [str(p) for p in g.montages]} for g in report.groups],
    })  # fmt: skip
    typer.echo(f"{report.n_synthetic} synthetic tiles (and as many swapped twins) in {store}")


def _tile_for_generator(project: Path, store: Path, tile_px: int, tile_um: float, workers: int) -> None:
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


def register(app: typer.Typer) -> None:
    """Add the blending and seed commands to the ``gan`` group, and ``synth`` to the top level."""
    from histobridge.cli.gan import app as gan_app

    gan_app.command("blend")(blend)
    gan_app.command("layer-blend")(layer_blend)
    gan_app.command("seeds")(seeds)
    app.command("synth")(synth)
