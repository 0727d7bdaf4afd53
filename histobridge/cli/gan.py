"""``histobridge gan``: inspect, convert and sample class-conditional StyleGAN2 generators.

torch is imported inside the commands only, so building the CLI stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="StyleGAN2 generators: inspect, convert snapshots to safetensors, generate tiles.",
    no_args_is_help=True,
)


def _load(path: Path, gan_um: float | None, class_names: str | None = None) -> Any:
    from histobridge.models.checkpoints import load_generator

    names = None
    if class_names:
        names = tuple(n.strip() for n in class_names.split(",") if n.strip())
    return load_generator(path, gan_um=gan_um, class_names=names)


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


@app.command("info")
def info(
    generator: Path = typer.Argument(..., help="Snapshot .pkl or histobridge .safetensors generator."),
    gan_um: float | None = typer.Option(None, "--gan-um", help="Tile width in µm, if not recorded."),
) -> None:
    """Show a generator's architecture, labels and tile size."""
    desc = describe_generator(_load(generator, gan_um))
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
    src: Path = typer.Argument(..., help="Network snapshot .pkl (NVLabs, StyleGAN3-repo or Slideflow)."),
    out: Path = typer.Argument(..., help="Output .safetensors (the config .json goes beside it)."),
    gan_um: float | None = typer.Option(None, "--gan-um", help="Tile width in µm to record."),
    class_names: str | None = typer.Option(None, "--class-names", help="Comma-separated class names."),
) -> None:
    """Convert a pickle snapshot into code-free safetensors + JSON."""
    from histobridge.models.checkpoints import save_generator

    G = _load(src, gan_um, class_names)
    weights = save_generator(G, out)
    typer.echo(f"wrote {weights} and {weights.with_suffix('.json')}")
    if G.meta.tile_um is None:
        typer.echo("note: tile size in µm unknown; pass --gan-um to record it", err=True)


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


@app.command("generate")
def generate(
    generator: Path = typer.Argument(..., help="Snapshot .pkl or histobridge .safetensors generator."),
    out: Path = typer.Option(..., "--out", help="Output folder for the PNGs."),
    class_: str | None = typer.Option(None, "--class", help="Class name or index (0..1 for scalar labels)."),
    seeds: str = typer.Option("0-7", "--seeds", help="Seeds: ranges and lists, e.g. 0-15 or 1,5,9-12."),
    truncation_psi: float = typer.Option(1.0, "--truncation-psi", help="Truncation ψ (1 = none)."),
    noise_mode: str = typer.Option("const", "--noise-mode", help="const | random | none."),
    gan_um: float | None = typer.Option(None, "--gan-um", help="Tile width in µm to record."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per forward pass."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
) -> None:
    """Write one PNG per seed plus a montage; z comes from RandomState(seed)."""
    import torch
    from PIL import Image

    from histobridge._atomic import atomic_path, write_json
    from histobridge.models.stylegan2 import label_for, parse_seeds, to_uint8, z_from_seeds

    seed_list = parse_seeds(seeds)
    G = _load(generator, gan_um).to(device)
    label = label_for(G, class_)
    images = []
    with torch.inference_mode():
        for start in range(0, len(seed_list), batch_size):
            chunk = seed_list[start : start + batch_size]
            z = z_from_seeds(chunk, G.z_dim).to(device)
            c = None if label is None else label.expand(len(chunk), -1).to(device)
            img = G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)  # type: ignore[arg-type]
            images.append(to_uint8(img))
    import numpy as np

    batch = np.concatenate(images)
    out.mkdir(parents=True, exist_ok=True)
    for seed, img in zip(seed_list, batch, strict=True):
        with atomic_path(out / f"seed{seed:04d}.png") as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    with atomic_path(out / "montage.png") as tmp:
        Image.fromarray(montage(batch)).save(tmp, format="PNG")
    write_json(out / "generate.json", {
        "generator": describe_generator(G), "class": class_, "seeds": seed_list,
        "truncation_psi": truncation_psi, "noise_mode": noise_mode,
    })
    typer.echo(f"wrote {len(seed_list)} images and montage.png to {out}")
