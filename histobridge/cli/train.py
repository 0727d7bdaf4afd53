"""``histobridge train``: train a tile classifier or a class-conditional GAN on a tile store.

torch is imported inside the commands only, so ``histobridge --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Train models on a Zarr tile store made by `histobridge tile`.", no_args_is_help=True)

_CLASSES_HELP = "Classes to train on, in output order (repeat or comma-separate); default: all labelled."


def _classes(values: list[str] | None) -> list[str] | None:
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    return names or None


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@app.command("classifier")
def classifier(
    store: Path = typer.Argument(..., help="Tile store (from `histobridge tile`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write (config.json + TorchScript)."),
    classes: list[str] = typer.Option(None, "--classes", "-c", help=_CLASSES_HELP),
    epochs: int = typer.Option(12, help="Passes over the training tiles."),
    batch: int = typer.Option(64, help="Tiles per step."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (one-cycle schedule)."),
    width: int = typer.Option(24, help="Channels of the first conv stage."),
    holdout: float = typer.Option(0.25, help="Fraction of each class's tiles held out, as whole regions."),
    seed: int = typer.Option(0, help="Seed for the split, initialisation and augmentation."),
    no_jitter: bool = typer.Option(False, "--no-jitter", help="Disable colour jitter."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1…"),
    threads: int = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
) -> None:
    """Train a small CNN; hold out whole annotations; write TorchScript, config.json and metrics.json."""
    from histobridge.models.train_classifier import ClassifierTrainConfig, train_classifier
    from histobridge.models.training_data import load_tiles

    _threads(threads)
    data = load_tiles(store, _classes(classes))
    typer.echo(f"{len(data.tiles)} tiles from {store}: {data.counts()}")
    cfg = ClassifierTrainConfig(epochs=epochs, batch=batch, lr=lr, width=width, holdout=holdout, seed=seed,
                                jitter=not no_jitter, device=device)

    def show(stats: dict[str, float]) -> None:
        typer.echo(f"epoch {int(stats['epoch'])}/{epochs}: loss {stats['loss']:.4f}, "
                   f"train accuracy {stats['train_accuracy']:.3f}")

    result = train_classifier(data, out, cfg, progress=show)
    m = result.metrics
    acc = m["heldout_accuracy"]
    typer.echo(f"held-out accuracy: {'n/a' if acc is None else f'{acc:.3f}'} on {m['counts']['heldout']} "
               f"(regions {m['regions']['heldout']}); confusion {m['confusion_matrix']}")
    typer.echo(f"wrote {result.out_dir} in {m['seconds']:.0f} s")


@app.command("gan")
def gan(
    store: Path = typer.Argument(..., help="Tile store (from `histobridge tile`)."),
    out: Path = typer.Option(..., "--out", "-o", help="GAN folder (checkpoint, samples, generator)."),
    classes: list[str] = typer.Option(None, "--classes", "-c", help=_CLASSES_HELP),
    kimg: float = typer.Option(60.0, help="Total training length in thousands of real images shown."),
    minutes: float = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    resolution: int = typer.Option(64, help="Image size (tiles are resized if the store differs)."),
    batch: int = typer.Option(16),
    gamma: float = typer.Option(None, help="R1 weight; default 0.0002·resolution²/batch."),
    lr_g: float = typer.Option(0.0025, "--lr-g"),
    lr_d: float = typer.Option(0.0025, "--lr-d"),
    z_dim: int = typer.Option(128, "--z-dim"),
    w_dim: int = typer.Option(128, "--w-dim"),
    mapping_layers: int = typer.Option(2, "--mapping-layers"),
    channel_base: int = typer.Option(2048, "--channel-base"),
    channel_max: int = typer.Option(128, "--channel-max"),
    no_noise: bool = typer.Option(False, "--no-noise", help="No noise inputs: z alone sets the layout."),
    const_noise: float = typer.Option(0.0, "--const-noise", help="Share of fakes with const noise."),
    ema_kimg: float = typer.Option(1.0, "--ema-kimg", help="Half-life of the generator average (kimg)."),
    style_mixing: float = typer.Option(0.5, "--style-mixing", help="Probability of style mixing."),
    color_p: float = typer.Option(0.2, "--color-p", help="Least probability of colour jitter on D's inputs."),
    ada_target: float = typer.Option(0.6, "--ada-target", help="Adaptive augmentation target (0: off)."),
    ada_kimg: float = typer.Option(10.0, "--ada-kimg", help="kimg for the augmentation p to go 0 → 1."),
    ada_max: float = typer.Option(0.7, "--ada-max", help="Upper limit of the augmentation p."),
    snapshot_kimg: float = typer.Option(2.0, "--snapshot-kimg", help="Checkpoint + sample grid interval."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1…"),
    amp: str = typer.Option("auto", help="Mixed precision on GPU: auto, off, bf16, fp16."),
    threads: int = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
) -> None:
    """Train a class-conditional StyleGAN2; resumes from GAN_DIR/checkpoint.pt when it exists."""
    from histobridge.models.train_gan import CHECKPOINT, GanTrainConfig, train_gan
    from histobridge.models.training_data import load_tiles

    _threads(threads)
    data = load_tiles(store, _classes(classes))
    typer.echo(f"{len(data.tiles)} tiles from {store}: {data.counts()}")
    if (out / CHECKPOINT).exists():
        typer.echo(f"resuming from {out / CHECKPOINT}")
    cfg = GanTrainConfig(
        resolution=resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers,
        channel_base=channel_base, channel_max=channel_max, noise=not no_noise, const_noise=const_noise,
        batch=batch, lr_g=lr_g, lr_d=lr_d,
        r1_gamma=gamma, ema_kimg=ema_kimg, style_mixing=style_mixing, color_p=color_p, kimg=kimg,
        ada_target=ada_target or None, ada_kimg=ada_kimg, ada_max=ada_max,
        minutes=minutes, snapshot_kimg=snapshot_kimg, seed=seed, device=device, amp=amp,
    )
    every = max(1, round(200 / batch))

    def show(stats: dict[str, Any]) -> None:
        if int(stats["step"]) % every == 0:
            typer.echo(f"kimg {stats['kimg']:.1f}  loss G {stats['loss_g']:.3f}  D {stats['loss_d']:.3f}  "
                       f"aug p {stats['ada_p']:.2f}  {stats['seconds']:.0f} s")

    result = train_gan(data, out, cfg, progress=show)
    state = "finished" if result.finished else "stopped (time budget); run again to continue"
    typer.echo(f"{state} at {result.kimg:.1f} kimg, step {result.steps}; generator: {result.generator_path}")
