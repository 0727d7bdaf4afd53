"""``histobridge train``: train a tile classifier or a class-conditional GAN on a tile store.

torch is imported inside the commands only, so ``histobridge --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import typer

from histobridge.cli._common import DEVICE_HELP, split_list

app = typer.Typer(help="Train models on a Zarr tile store made by `histobridge tile`.", no_args_is_help=True)

_CLASSES_HELP = "Classes to train on, in output order (repeat or comma-separate); default: all labelled."


_DEFAULT = "default: the training config's"
Config = TypeVar("Config")


def _config(cls: type[Config], **given: Any) -> Config:
    """``cls`` with its own defaults, except for the options given on the command line (None: not given).

    The defaults live in one place, the config dataclass; the options here only name them.
    """
    return cls(**{k: v for k, v in given.items() if v is not None})


def _threads(threads: int | None) -> None:
    """``--threads`` when given, else as many torch threads as the cores this process may use."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    else:
        from histobridge._threads import configure_torch_threads

        configure_torch_threads()


@app.command("classifier")
def classifier(
    store: Path = typer.Argument(..., help="Tile store (from `histobridge tile`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write (config.json + TorchScript)."),
    classes: list[str] = typer.Option(None, "--classes", "-c", help=_CLASSES_HELP),
    epochs: int | None = typer.Option(None, help=f"Passes over the training tiles ({_DEFAULT})."),
    batch: int | None = typer.Option(None, help=f"Tiles per step ({_DEFAULT})."),
    lr: float | None = typer.Option(None, help=f"Peak learning rate, one-cycle schedule ({_DEFAULT})."),
    width: int | None = typer.Option(None, help=f"Channels of the first conv stage ({_DEFAULT})."),
    holdout: float | None = typer.Option(
        None, help=f"Share of each class held out as whole regions ({_DEFAULT})."
    ),
    seed: int | None = typer.Option(
        None, help=f"Seed for the split, initialisation and augmentation ({_DEFAULT})."
    ),
    jitter: bool | None = typer.Option(None, "--jitter/--no-jitter", help=f"Colour jitter ({_DEFAULT})."),
    stain_norm: str | None = typer.Option(
        None, help=f"Stain normalisation in the model's preprocessing: none or reinhard ({_DEFAULT})."
    ),
    stain_scale: float | None = typer.Option(None, help=f"HED stain jitter: ±share of a stain ({_DEFAULT})."),
    stain_shift: float | None = typer.Option(None, help=f"HED stain jitter: ±optical density ({_DEFAULT})."),
    grayscale: float | None = typer.Option(None, help=f"Share of grey training tiles ({_DEFAULT})."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads: int = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
) -> None:
    """Train a small CNN; hold out whole annotations; write TorchScript, config.json and metrics.json.

    The sample classifier's recipe: --stain-norm reinhard --stain-scale 0.5 --stain-shift 0.1 --grayscale 0.3
    (docs/method.md).
    """
    from histobridge.cli._progress import ProgressDrawer
    from histobridge.models.train_classifier import ClassifierTrainConfig, train_classifier
    from histobridge.models.training_data import load_tiles
    from histobridge.runs import ProgressEvent

    cfg = _config(
        ClassifierTrainConfig,
        epochs=epochs,
        batch=batch,
        lr=lr,
        width=width,
        holdout=holdout,
        seed=seed,
        jitter=jitter,
        stain_norm=stain_norm,
        stain_scale=stain_scale,
        stain_shift=stain_shift,
        grayscale=grayscale,
        device=device,
    )
    _threads(threads)
    data = load_tiles(store, split_list(classes))
    typer.echo(f"{len(data.tiles)} tiles from {store}: {data.counts()}")
    typer.echo(f"config: {cfg}")

    with ProgressDrawer() as progress:

        def show(stats: dict[str, float]) -> None:
            epoch = int(stats["epoch"])
            line = (
                f"epoch {epoch}/{cfg.epochs}: loss {stats['loss']:.4f}, "
                f"train accuracy {stats['train_accuracy']:.3f}"
            )
            progress(ProgressEvent("epochs", epoch, cfg.epochs, message=line))

        result = train_classifier(data, out, cfg, progress=show)
    m = result.metrics
    acc = m["heldout_accuracy"]
    typer.echo(
        f"held-out accuracy: {'n/a' if acc is None else f'{acc:.3f}'} on {m['counts']['heldout']} "
        f"(regions {m['regions']['heldout']}); confusion {m['confusion_matrix']}"
    )
    typer.echo(f"wrote {result.out_dir} in {m['seconds']:.0f} s")


@app.command("gan")
def gan(
    store: Path = typer.Argument(..., help="Tile store (from `histobridge tile`)."),
    out: Path = typer.Option(..., "--out", "-o", help="GAN folder (checkpoint, samples, generator)."),
    classes: list[str] = typer.Option(None, "--classes", "-c", help=_CLASSES_HELP),
    kimg: float | None = typer.Option(
        None, help=f"Training length in thousands of real images ({_DEFAULT})."
    ),
    minutes: float | None = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    resolution: int | None = typer.Option(None, help=f"Image size; tiles are resized to it ({_DEFAULT})."),
    batch: int | None = typer.Option(None, help=_DEFAULT),
    gamma: float | None = typer.Option(None, help="R1 weight; default 0.0002·resolution²/batch."),
    lr_g: float | None = typer.Option(None, "--lr-g", help=_DEFAULT),
    lr_d: float | None = typer.Option(None, "--lr-d", help=_DEFAULT),
    z_dim: int | None = typer.Option(None, "--z-dim", help=_DEFAULT),
    w_dim: int | None = typer.Option(None, "--w-dim", help=_DEFAULT),
    mapping_layers: int | None = typer.Option(None, "--mapping-layers", help=_DEFAULT),
    channel_base: int | None = typer.Option(None, "--channel-base", help=_DEFAULT),
    channel_max: int | None = typer.Option(None, "--channel-max", help=_DEFAULT),
    noise: bool | None = typer.Option(
        None, "--noise/--no-noise", help="Noise inputs; off: z alone sets the layout."
    ),
    const_noise: float | None = typer.Option(None, "--const-noise", help="Share of fakes with const noise."),
    ema_kimg: float | None = typer.Option(
        None, "--ema-kimg", help="Half-life of the generator average (kimg)."
    ),
    style_mixing: float | None = typer.Option(None, "--style-mixing", help="Probability of style mixing."),
    color_p: float | None = typer.Option(
        None, "--color-p", help="Least probability of colour jitter on D's inputs."
    ),
    ada_target: float | None = typer.Option(
        None, "--ada-target", help="Adaptive augmentation target (0: off)."
    ),
    ada_kimg: float | None = typer.Option(
        None, "--ada-kimg", help="kimg for the augmentation p to go 0 → 1."
    ),
    ada_max: float | None = typer.Option(None, "--ada-max", help="Upper limit of the augmentation p."),
    snapshot_kimg: float | None = typer.Option(
        None, "--snapshot-kimg", help="Checkpoint + sample grid interval."
    ),
    seed: int | None = typer.Option(None, help=_DEFAULT),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    amp: str | None = typer.Option(None, help="Mixed precision on GPU: auto, off, bf16, fp16."),
    threads: int = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
) -> None:
    """Train a class-conditional StyleGAN2; resumes from GAN_DIR/checkpoint.pt when it exists.

    Options left out take GanTrainConfig's defaults (printed at the start as ``config: …``).
    """
    from dataclasses import replace

    from histobridge.cli._progress import ProgressDrawer
    from histobridge.models.train_gan import CHECKPOINT, GanTrainConfig, train_gan
    from histobridge.models.training_data import load_tiles
    from histobridge.runs import ProgressEvent

    cfg = _config(
        GanTrainConfig,
        resolution=resolution,
        z_dim=z_dim,
        w_dim=w_dim,
        mapping_layers=mapping_layers,
        channel_base=channel_base,
        channel_max=channel_max,
        noise=noise,
        const_noise=const_noise,
        batch=batch,
        lr_g=lr_g,
        lr_d=lr_d,
        r1_gamma=gamma,
        ema_kimg=ema_kimg,
        style_mixing=style_mixing,
        color_p=color_p,
        kimg=kimg,
        ada_target=ada_target,
        ada_kimg=ada_kimg,
        ada_max=ada_max,
        minutes=minutes,
        snapshot_kimg=snapshot_kimg,
        seed=seed,
        device=device,
        amp=amp,
    )
    if ada_target == 0:  # 0 on the command line switches adaptive augmentation off
        cfg = replace(cfg, ada_target=None)
    _threads(threads)
    data = load_tiles(store, split_list(classes))
    typer.echo(f"{len(data.tiles)} tiles from {store}: {data.counts()}")
    typer.echo(f"config: {cfg}")
    if (out / CHECKPOINT).exists():
        typer.echo(f"resuming from {out / CHECKPOINT}")
    every = max(1, round(200 / cfg.batch))
    with ProgressDrawer() as progress:

        def show(stats: dict[str, Any]) -> None:
            line = None
            if int(stats["step"]) % every == 0:
                line = (
                    f"kimg {stats['kimg']:.1f}  loss G {stats['loss_g']:.3f}  D {stats['loss_d']:.3f}  "
                    f"aug p {stats['ada_p']:.2f}  {stats['seconds']:.0f} s"
                )
            progress(
                ProgressEvent(
                    "real images shown",
                    round(1000 * float(stats["kimg"])),
                    round(1000 * cfg.kimg),
                    message=line,
                )
            )

        result = train_gan(data, out, cfg, progress=show)
    state = "finished" if result.finished else "stopped (time budget); run again to continue"
    typer.echo(f"{state} at {result.kimg:.1f} kimg, step {result.steps}; generator: {result.generator_path}")
