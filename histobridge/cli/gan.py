"""``histobridge gan``: every command on class-conditional StyleGAN2 generators, in one place.

``info`` / ``convert`` / ``generate`` inspect, convert and sample a generator; ``blend``,
``layer-blend`` and ``seeds`` explain a classifier with it. All of them take the generator the same
way (a ``.pkl`` snapshot, a histobridge ``.safetensors``, or a folder holding one), read number
options with one grammar (:mod:`histobridge.ranges`), name classes with one rule
(:mod:`histobridge.synthetic.conditioning`) and take ``--device auto|cpu|cuda[:N]|mps``.
Options are parsed before the generator is loaded, so a typo fails at once.

torch and the library modules are imported inside the commands only, so building the CLI stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from histobridge.cli._common import DEVICE_HELP, generator_path, resolve_device
from histobridge.errors import HistobridgeError
from histobridge.ranges import parse_floats, parse_seeds

app = typer.Typer(
    help="StyleGAN2 generators: inspect, convert, generate, class/layer blending, class-swap seeds.",
    no_args_is_help=True,
)

GEN_HELP = "Generator: snapshot .pkl, histobridge .safetensors, or a folder holding one."
UM_HELP = "GAN tile width in µm, where the generator does not record it."
SEEDS_HELP = "Seeds: a,b,c-d or c-d:step, e.g. 0-15 or 1,5,9-12."
MONTAGE_MAX = 64  # images in generate's montage.png; every seed still gets its own PNG


# ----------------------------------------------------------------------------- shared helpers


def load_generator(
    path: Path, gan_um: float | None, device: str = "cpu", class_names: str | None = None
) -> Any:
    """Load a generator from a file or folder onto a resolved device."""
    from histobridge.models.checkpoints import load_generator as _load

    names = None
    if class_names:
        names = tuple(n.strip() for n in class_names.split(",") if n.strip())
    return _load(generator_path(path), gan_um=gan_um, device=device, class_names=names)


def load_classifier(path: Path | None, device: str) -> Any:
    if path is None:
        return None
    from histobridge.models.classifier import load_classifier as _load

    return _load(path, device=device)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failed write (read-only folder, full disk…) into one error naming the path."""
    try:
        yield
    except HistobridgeError:
        raise
    except OSError as err:
        where = err.filename or path
        raise HistobridgeError(f"cannot write {where}: {err.strerror or err}") from err


def describe_generator(G: Any) -> dict[str, Any]:
    """The facts ``gan info`` prints, as a dict (also used for JSON records)."""
    cfg, meta = G.config, G.meta
    return {
        "source": meta.source,
        "variant": meta.variant,
        "architecture": cfg.architecture,
        "resolution": cfg.img_resolution,
        "channels": cfg.img_channels,
        "num_ws": G.num_ws,
        "z_dim": cfg.z_dim,
        "w_dim": cfg.w_dim,
        "c_dim": cfg.c_dim,
        "label": "scalar in [0, 1] (interpolated embedding)" if cfg.interp_embed else "one-hot",
        "classes": list(meta.class_names),
        "tile_px": meta.tile_px,
        "tile_um": meta.tile_um,
        "mapping_layers": cfg.mapping_layers,
        "channel_base": cfg.channel_base,
        "channel_max": cfg.channel_max,
        "conv_clamp": cfg.conv_clamp,
        "parameters": sum(p.numel() for p in G.parameters()),
    }


def montage(images: Any, cols: int | None = None, pad: int = 2) -> Any:
    """NHWC uint8 images → one grid image (white gaps)."""
    import numpy as np

    n, h, w, c = images.shape
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = images[i]
    return grid


# ----------------------------------------------------------------------------- info / convert / generate


@app.command("info")
def info(
    generator: Path = typer.Argument(..., help=GEN_HELP),
    gan_um: float | None = typer.Option(None, "--gan-um", help=UM_HELP),
) -> None:
    """Show a generator's architecture, labels and tile size."""
    desc = describe_generator(load_generator(generator, gan_um))
    for key, value in desc.items():
        if key == "tile_um" and value is None:
            value = "unknown (pass --gan-um where µm matter)"
        elif key == "classes":
            value = ", ".join(f"{i}={n}" for i, n in enumerate(value)) or "(unconditional)"
        elif key == "parameters":
            value = f"{value:,}"
        typer.echo(f"{key:>15}: {value}")


@app.command("convert")
def convert(
    src: Path = typer.Argument(
        ..., help="Network snapshot .pkl (NVLabs, StyleGAN3-repo or Slideflow), or a folder."
    ),
    out: Path = typer.Argument(..., help="Output .safetensors (the config .json goes beside it)."),
    gan_um: float | None = typer.Option(None, "--gan-um", help="Tile width in µm to record."),
    class_names: str | None = typer.Option(None, "--class-names", help="Comma-separated class names."),
) -> None:
    """Convert a pickle snapshot into code-free safetensors + JSON."""
    from histobridge.models.checkpoints import save_generator

    G = load_generator(src, gan_um, class_names=class_names)
    with writing(out):
        weights = save_generator(G, out)
    typer.echo(f"wrote {weights} and {weights.with_suffix('.json')}")
    if G.meta.tile_um is None:
        typer.echo("note: tile size in µm unknown; pass --gan-um to record it", err=True)


@app.command("generate")
def generate(
    generator: Path = typer.Argument(..., help=GEN_HELP),
    out: Path = typer.Option(..., "--out", help="Output folder for the PNGs."),
    class_: str | None = typer.Option(
        None,
        "--class",
        help="Class name (any case, or an unambiguous prefix) or index; 0..1 for scalar labels.",
    ),
    seeds: str = typer.Option("0-7", "--seeds", help=SEEDS_HELP),
    truncation_psi: float = typer.Option(1.0, "--truncation-psi", help="Truncation ψ (1 = none)."),
    noise_mode: str = typer.Option("const", "--noise-mode", help="const | random | none."),
    gan_um: float | None = typer.Option(None, "--gan-um", help="Tile width in µm to record."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per forward pass."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Write one PNG per seed plus a montage of the first 64; z comes from RandomState(seed)."""
    import numpy as np
    from PIL import Image

    from histobridge._atomic import atomic_path, write_json
    from histobridge.synthetic import conditioning as cond

    seed_list = parse_seeds(seeds)
    cond.check_noise_mode(noise_mode)
    G = load_generator(generator, gan_um, resolve_device(device))
    weights = cond.class_rows(G, class_, 1)
    shown: list[Any] = []
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(seed_list), batch_size):
            chunk = list(seed_list[start : start + batch_size])
            images = cond.render_uint8(
                G, chunk, np.repeat(weights, len(chunk), axis=0), truncation_psi=truncation_psi,
                noise_mode=noise_mode, batch_size=batch_size,
            )  # fmt: skip
            for seed, img in zip(chunk, images, strict=True):
                with atomic_path(out / f"seed{seed:04d}.png") as tmp:
                    Image.fromarray(img).save(tmp, format="PNG")
            shown.extend(images[: max(0, MONTAGE_MAX - len(shown))])
        with atomic_path(out / "montage.png") as tmp:
            Image.fromarray(montage(np.stack(shown))).save(tmp, format="PNG")
        write_json(out / "generate.json", {
            "generator": describe_generator(G), "class": class_, "class_weights": weights[0].tolist(),
            "seeds": list(seed_list), "truncation_psi": truncation_psi, "noise_mode": noise_mode,
        })  # fmt: skip
    typer.echo(f"wrote {len(seed_list)} images and montage.png to {out}")


# ----------------------------------------------------------------------------- explaining a classifier


@app.command("blend")
def blend(
    generator: Path = typer.Argument(..., help=GEN_HELP),
    seed: str = typer.Option(
        ..., "--seed", "--seeds", help="Seed or seeds (one strip each), e.g. 3 or 1,5,9-12."
    ),
    class_from: str = typer.Option(..., "--from", help="Start class (name, prefix or index)."),
    class_to: str = typer.Option(..., "--to", help="End class (name, prefix or index)."),
    steps: str = typer.Option(
        "7", "--steps", help="Images from start to end (a count >= 2), or the positions t, e.g. 0,0.3,0.5,1."
    ),
    classifier: Path | None = typer.Option(None, "--classifier", help="Classify each step (WSInfer model)."),
    out: Path = typer.Option(Path("blend"), "--out", help="Output folder."),
    gan_um: float | None = typer.Option(None, "--gan-um", help=UM_HELP),
    truncation_psi: float = typer.Option(1.0, "--truncation-psi", help="Truncation ψ (1 = none)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Class blending: one seed from class A to class B with soft one-hot labels."""
    from histobridge.synthetic import blending

    seeds = parse_seeds(seed, what="--seed")
    positions = blending.blend_positions(steps)
    dev = resolve_device(device)
    G = load_generator(generator, gan_um, dev)
    clf = load_classifier(classifier, dev)
    for s in seeds:
        res = blending.class_blend(
            G,
            s,
            class_from,
            class_to,
            positions,
            classifier=clf,
            gan_um=gan_um,
            truncation_psi=truncation_psi,
        )
        with writing(out):
            paths = blending.write_class_blend(res, out)
        for row in res.rows():
            preds = "  ".join(f"{k[5:]}={v:.3f}" for k, v in row.items() if k.startswith("pred_"))
            typer.echo(f"seed {s}  t={row['t']:.3f}  {preds}".rstrip())
        typer.echo(f"wrote {paths['png']}, {paths['csv'].name}, {paths['json'].name}")


@app.command("layer-blend")
def layer_blend(
    generator: Path = typer.Argument(..., help=GEN_HELP),
    seed: str = typer.Option(..., "--seed", "--seeds", help="Seed or seeds (columns), e.g. 3 or 1,5,9-12."),
    class_from: str = typer.Option(..., "--from", help="Class A (name, prefix or index)."),
    class_to: str = typer.Option(..., "--to", help="Class B (name, prefix or index)."),
    layers: str | None = typer.Option(
        None, "--layers", help="w indices that keep class A, e.g. 0-5 or 0,2,4-6; the rest take class B."
    ),
    splits: str = typer.Option(
        "auto",
        "--splits",
        help="Rows 'layers 0..k-1 from A, rest from B': auto (every k) or e.g. 0,4,8 or 0-12:2.",
    ),
    alpha: str = typer.Option(
        "1.0", "--alpha", help="Mix fraction(s) toward B in [0, 1], e.g. 1 or 0.25,0.5,1."
    ),
    out: Path = typer.Option(Path("layer_blend"), "--out", help="Output folder."),
    gan_um: float | None = typer.Option(None, "--gan-um", help=UM_HELP),
    truncation_psi: float = typer.Option(1.0, "--truncation-psi", help="Truncation ψ (1 = none)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Layer blending: w from class A at chosen layers, class B (mixed by α) at the others."""
    from histobridge.synthetic import blending

    seeds = parse_seeds(seed, what="--seed", max_count=1_000)
    alphas = parse_floats(alpha, what="--alpha", lo=0.0, hi=1.0)
    layers_a = None if layers is None else blending.parse_layers(layers)
    split_points = blending.parse_splits(splits)
    G = load_generator(generator, gan_um, resolve_device(device))
    if layers_a is not None:
        grid = blending.layer_blend(
            G, seeds, class_from, class_to, layers_a=layers_a, alphas=alphas, truncation_psi=truncation_psi
        )
    else:
        grid = blending.layer_blend(
            G, seeds, class_from, class_to, splits=split_points, alphas=alphas, truncation_psi=truncation_psi
        )
    with writing(out):
        paths = blending.write_layer_blend(grid, out)
    typer.echo(f"{len(grid.cells)} rows x {len(grid.cells[0])} columns ({G.num_ws} ws)")
    typer.echo(f"wrote {paths['png']}, {paths['csv'].name}, {paths['json'].name}")


@app.command("seeds")
def seeds(
    generator: Path = typer.Argument(..., help=GEN_HELP),
    classifier: Path = typer.Option(..., "--classifier", help="Tile classifier (WSInfer model)."),
    seed_spec: str = typer.Option("0-99", "--seeds", help=SEEDS_HELP + " At most 100,000."),
    class_from: str = typer.Option("0", "--from", help="Start class (name, prefix or index)."),
    class_to: str = typer.Option("1", "--to", help="End class (name, prefix or index)."),
    thresholds: str = typer.Option("0.25,0.5,0.75", "--thresholds", help="low,mid,high."),
    margin: float = typer.Option(0.1, "--margin", help="One-vs-rest margin required with >2 classes."),
    top: int = typer.Option(8, "--top", min=1, help="Best seeds to picture."),
    out: Path = typer.Option(Path("seeds"), "--out", help="Output folder."),
    gan_um: float | None = typer.Option(None, "--gan-um", help=UM_HELP),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Seeds per forward pass."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Seed search: which seeds swap class (strong / weak / none) when only the label changes."""
    from histobridge.synthetic import seeds as sd

    seed_list = parse_seeds(seed_spec)
    th = sd.SwapThresholds.parse(thresholds)
    dev = resolve_device(device)
    G = load_generator(generator, gan_um, dev)
    clf = load_classifier(classifier, dev)
    res = sd.seed_search(
        G,
        clf,
        seed_list,
        class_from,
        class_to,
        thresholds=th,
        margin=margin,
        gan_um=gan_um,
        batch_size=batch_size,
    )
    with writing(out):
        paths = sd.write_seed_search(res, out, G=G, top=top)
    n = len(res.rows)
    typer.echo("  ".join(f"{k}: {v} ({v / n:.1%})" for k, v in res.counts().items()))
    typer.echo("best: " + ", ".join(f"{r.seed} ({r.concordance}, {r.delta:+.2f})" for r in res.best(top)))
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


__all__ = [
    "app",
    "describe_generator",
    "generator_path",
    "load_classifier",
    "load_generator",
    "montage",
    "resolve_device",
    "writing",
]
