"""Train a small class-conditional StyleGAN2 on labelled tiles (``histobridge train gan``).

The recipe follows the StyleGAN2 / StyleGAN2-ADA papers: non-saturating logistic loss, R1 penalty
on reals applied lazily every ``r1_interval`` steps, an exponential moving average of the generator
(``G_ema``, the network that is exported) with its half-life given in thousands of images, optional
style mixing, dihedral data augmentation and light colour jitter applied to real and fake images
alike. Training is resumable: every snapshot stores G, D, G_ema, optimiser states, counters and the
random state in ``GAN_DIR/checkpoint.pt`` (loaded with ``weights_only=True``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from histobridge._atomic import atomic_open, atomic_path, write_json
from histobridge.errors import CheckpointError, InputError
from histobridge.models.augment import ColorJitter, color_jitter, random_dihedral, random_translate
from histobridge.models.discriminator import Discriminator, DiscriminatorConfig
from histobridge.models.stylegan2 import GanMeta, Generator, GeneratorConfig
from histobridge.models.training_data import TileArrays

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
GENERATOR_NAME = "generator"
SNAPSHOTS = "snapshots"


@dataclass(frozen=True)
class GanTrainConfig:
    """Hyper-parameters of one GAN training run (stored in the checkpoint and ``training.json``)."""

    resolution: int = 64
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 2
    channel_base: int = 2048
    channel_max: int = 128
    noise: bool = True  # per-pixel noise inputs; off forces z to carry the layout (short runs)
    const_noise: float = 0.0  # share of fake batches drawn with the constant noise buffers (see _noise_mode)
    batch: int = 16
    lr_g: float = 0.0025
    lr_d: float = 0.0025
    r1_gamma: float | None = None  # None: 0.0002 · resolution² / batch (StyleGAN2-ADA heuristic)
    r1_interval: int = 16
    ema_kimg: float = 1.0
    ema_rampup: float | None = 0.05
    style_mixing: float = 0.5
    color_p: float = 0.2
    translate: float = 0.125  # largest shift (fraction of the size) of D's augmentation
    ada_target: float | None = 0.6  # None: fixed augmentation; else adapt p to E[sign D(real)]
    ada_kimg: float = 10.0  # images (in kimg) for p to move from 0 to 1
    ada_max: float = 0.7  # cap: with p near 1 the augmentations start to leak into the generator
    kimg: float = 60.0
    minutes: float | None = None
    snapshot_kimg: float = 2.0
    keep_snapshots: bool = False  # also export G_ema at every snapshot into snapshots/ (for choosing one)
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto | off | bf16 | fp16

    @property
    def gamma(self) -> float:
        if self.r1_gamma is not None:
            return float(self.r1_gamma)
        return 0.0002 * self.resolution**2 / self.batch

    def generator_config(self, c_dim: int) -> GeneratorConfig:
        return GeneratorConfig(
            z_dim=self.z_dim, c_dim=c_dim, w_dim=self.w_dim, img_resolution=self.resolution,
            mapping_layers=self.mapping_layers, channel_base=self.channel_base, channel_max=self.channel_max,
            use_noise=self.noise,
        )

    def discriminator_config(self, c_dim: int) -> DiscriminatorConfig:
        return DiscriminatorConfig(
            c_dim=c_dim, img_resolution=self.resolution,
            channel_base=self.channel_base, channel_max=self.channel_max,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GanTrainResult:
    """What a call to :func:`train_gan` reached."""

    out_dir: Path
    generator_path: Path
    kimg: float
    steps: int
    seconds: float
    finished: bool


@dataclass
class _State:
    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0
    nimg: int = 0
    seconds: float = 0.0
    ada_p: float = 0.0
    sign_sum: float = 0.0
    sign_n: int = 0


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise InputError(f"amp must be auto, off, bf16 or fp16, got {amp!r}")
    if amp == "off" or device.type != "cuda":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def prepare_images(data: TileArrays, resolution: int) -> torch.Tensor:
    """uint8 NHWC tiles → float NCHW in [−1, 1] at the training resolution (area resampling)."""
    x = torch.from_numpy(data.tiles).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)
    return x.contiguous()


def _build_state(cfg: GanTrainConfig, c_dim: int, device: torch.device) -> _State:
    torch.manual_seed(cfg.seed)
    G = Generator(cfg.generator_config(c_dim)).to(device).train()
    D = Discriminator(cfg.discriminator_config(c_dim)).to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    # Lazy R1 is folded into the D step, so both optimisers use the plain StyleGAN2 settings.
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(0.0, 0.99), eps=1e-8)
    return _State(G, D, G_ema, opt_g, opt_d)


def _mapping(G: Generator, z: torch.Tensor, c: torch.Tensor, mixing: float) -> torch.Tensor:
    """w for a batch; with probability ``mixing`` a second z takes over from a random layer on."""
    ws: torch.Tensor = G.mapping(z, c, update_emas=True)
    if mixing > 0:
        n, num_ws = ws.shape[0], ws.shape[1]
        cut = torch.randint(1, num_ws, (n, 1), device=ws.device)
        cut = torch.where(torch.rand(n, 1, device=ws.device) < mixing, cut, torch.full_like(cut, num_ws))
        ws2 = G.mapping(torch.randn_like(z), c, update_emas=False)
        layer = torch.arange(num_ws, device=ws.device).reshape(1, -1)
        ws = torch.where((layer >= cut).unsqueeze(-1), ws2, ws)
    return ws


def _noise_mode(cfg: GanTrainConfig) -> str:
    """Seeds are rendered with the constant noise buffers, so a share of fakes is drawn that way too.

    Meant to push the layout from fresh noise into z. Its effect has not been measured in isolation
    (on the skin sample, layout variety across seeds rose only slowly with it), so it is off by default.
    """
    return "const" if cfg.const_noise > 0 and float(torch.rand(())) < cfg.const_noise else "random"


def _d_input(x: torch.Tensor, cfg: GanTrainConfig, p: float) -> torch.Tensor:
    """What D sees: differentiable translation (probability p) and colour jitter, for reals and fakes."""
    x = random_translate(x, cfg.translate, p)
    return color_jitter(x, ColorJitter(probability=max(p, cfg.color_p)))


@torch.no_grad()
def _adapt(st: _State, cfg: GanTrainConfig, real_logits: torch.Tensor) -> None:
    """ADA heuristic: raise p when D is over-confident on reals (E[sign D(real)] > target), else lower."""
    if cfg.ada_target is None:
        return
    st.sign_sum += float(real_logits.sign().sum())
    st.sign_n += real_logits.numel()
    if (st.step + 1) % 4 == 0 and st.sign_n:
        rt = st.sign_sum / st.sign_n
        delta = st.sign_n / (cfg.ada_kimg * 1000)
        st.ada_p = min(max(st.ada_p + (delta if rt > cfg.ada_target else -delta), 0.0), cfg.ada_max)
        st.sign_sum, st.sign_n = 0.0, 0


def _train_step(
    st: _State, cfg: GanTrainConfig, real: torch.Tensor, c_real: torch.Tensor,
    c_fake: Callable[[int], torch.Tensor], amp: torch.dtype | None, scaler: torch.amp.GradScaler | None,
) -> dict[str, float]:
    """One G step, then one D step (with the lazy R1 term every ``r1_interval`` steps)."""
    dev = real.device
    p = st.ada_p
    n = real.shape[0]
    autocast = torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None)
    # Generator: non-saturating loss softplus(-D(G(z))).
    st.G.requires_grad_(True)
    st.D.requires_grad_(False)
    c = c_fake(n)
    with autocast:
        fake = st.G.synthesis(_mapping(st.G, torch.randn(n, st.G.z_dim, device=dev), c, cfg.style_mixing),
                              noise_mode=_noise_mode(cfg))
        loss_g = F.softplus(-st.D(_d_input(fake, cfg, p), c)).float().mean()
    _backward_step(loss_g, st.opt_g, scaler)
    # Discriminator: softplus(D(fake)) + softplus(-D(real)) (+ R1 on reals).
    st.G.requires_grad_(False)
    st.D.requires_grad_(True)
    do_r1 = cfg.gamma > 0 and st.step % cfg.r1_interval == 0
    c = c_fake(n)
    with torch.no_grad(), autocast:
        fake = st.G(torch.randn(n, st.G.z_dim, device=dev), c, noise_mode=_noise_mode(cfg))
    real = real.detach().requires_grad_(do_r1)
    with autocast:
        logits_fake = st.D(_d_input(fake.float(), cfg, p), c)
        logits_real = st.D(_d_input(real, cfg, p), c_real)
        loss_d = F.softplus(logits_fake).float().mean() + F.softplus(-logits_real).float().mean()
    stats = {"loss_g": loss_g.item(), "loss_d": loss_d.item()}
    if do_r1:
        (grad,) = torch.autograd.grad(logits_real.float().sum(), real, create_graph=True)
        r1 = grad.square().sum(dim=(1, 2, 3)).mean()
        loss_d = loss_d + r1 * (cfg.gamma / 2) * cfg.r1_interval
        stats["r1"] = r1.item()
    _backward_step(loss_d, st.opt_d, scaler)
    stats["real_score"] = logits_real.detach().float().mean().item()
    stats["fake_score"] = logits_fake.detach().float().mean().item()
    _adapt(st, cfg, logits_real.detach().float())
    stats["ada_p"] = st.ada_p
    return stats


def _backward_step(
    loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> None:
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        torch.autograd.backward(loss)
        opt.step()
    else:
        torch.autograd.backward(scaler.scale(loss))
        scaler.step(opt)
        scaler.update()


@torch.no_grad()
def _update_ema(st: _State, cfg: GanTrainConfig) -> None:
    """G_ema ← lerp(G, G_ema, β) with β from the half-life ``ema_kimg`` (ramped up early on)."""
    ema_nimg = cfg.ema_kimg * 1000
    if cfg.ema_rampup is not None:
        ema_nimg = min(ema_nimg, st.nimg * cfg.ema_rampup)
    beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
    for p_ema, p in zip(st.G_ema.parameters(), st.G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(st.G_ema.buffers(), st.G.buffers(), strict=True):
        b_ema.copy_(b)


def save_checkpoint(st: _State, cfg: GanTrainConfig, data: TileArrays, path: Path) -> None:
    """Everything needed to continue: weights, optimiser states, counters and RNG state."""
    payload = {
        "format": "histobridge-gan-training-1",
        "config": cfg.to_dict(),
        "class_names": list(data.class_names),
        "tile_um": data.tile_um,
        "G": st.G.state_dict(), "D": st.D.state_dict(), "G_ema": st.G_ema.state_dict(),
        "opt_g": st.opt_g.state_dict(), "opt_d": st.opt_d.state_dict(),
        "step": st.step, "nimg": st.nimg, "seconds": st.seconds, "ada_p": st.ada_p,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(st: _State, cfg: GanTrainConfig, data: TileArrays, path: Path) -> None:
    """Restore a run saved by :func:`save_checkpoint` (no code from the file is executed)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: cannot read the training checkpoint: {err}") from err
    if not isinstance(ck, dict) or ck.get("format") != "histobridge-gan-training-1":
        raise CheckpointError(f"{path}: not a histobridge GAN training checkpoint")
    if list(ck["class_names"]) != list(data.class_names):
        raise CheckpointError(
            f"{path}: checkpoint classes {ck['class_names']} differ from the data's {list(data.class_names)}"
        )
    old = GanTrainConfig(**ck["config"])
    for key in ("resolution", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "noise"):
        if getattr(old, key) != getattr(cfg, key):
            raise CheckpointError(f"{path}: checkpoint has {key}={getattr(old, key)}, this run asks for "
                                  f"{getattr(cfg, key)}; use a new output folder")
    try:
        for name in ("G", "D", "G_ema", "opt_g", "opt_d"):
            getattr(st, name).load_state_dict(ck[name])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: checkpoint does not match the networks: {err}") from err
    st.step, st.nimg, st.seconds = int(ck["step"]), int(ck["nimg"]), float(ck["seconds"])
    st.ada_p = float(ck.get("ada_p", 0.0))
    torch.set_rng_state(ck["rng_cpu"])
    if ck["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ck["rng_cuda"])


@torch.no_grad()
def save_grid(
    G: Generator, class_names: tuple[str, ...], path: Path, per_class: int = 8, seed: int = 0
) -> None:
    """PNG with one row per class; the same z in every row, so class effects are visible."""
    from PIL import Image

    from histobridge.models.stylegan2 import to_uint8

    dev = next(G.parameters()).device
    z = torch.from_numpy(np.random.RandomState(seed).randn(per_class, G.z_dim)).to(dev, torch.float32)
    rows = []
    for k in range(len(class_names)):
        c = F.one_hot(torch.full((per_class,), k, device=dev), len(class_names)).to(torch.float32)
        imgs = to_uint8(G(z, c, noise_mode="const"))
        rows.append(np.concatenate(list(imgs), axis=1))
    with atomic_open(path, "wb") as fh:
        Image.fromarray(np.concatenate(rows, axis=0)).save(fh, format="PNG")


def export_generator(
    G_ema: Generator, data: TileArrays, out_dir: Path, name: str = GENERATOR_NAME
) -> Path:
    """Write the histobridge generator format (safetensors + JSON) with class names and tile size."""
    from histobridge.models.checkpoints import save_generator

    G_ema.meta = GanMeta(
        class_names=tuple(data.class_names), tile_px=G_ema.img_resolution, tile_um=data.tile_um,
        source="histobridge train gan", variant="histobridge",
    )
    path = out_dir / name
    save_generator(G_ema, path)
    return path


def _label_sampler(labels: torch.Tensor, c_dim: int) -> Callable[[int], torch.Tensor]:
    """Draw conditioning labels for fakes with the class frequencies of the training data."""
    def sample(n: int) -> torch.Tensor:
        idx = torch.randint(0, len(labels), (n,), device=labels.device)
        return F.one_hot(labels[idx], c_dim).to(torch.float32)

    return sample


def init_from_generator(st: _State, path: str | Path, data: TileArrays) -> None:
    """Start G and G_ema from an exported generator of the same architecture (D starts fresh).

    Why: the sample generator ships without its discriminator, so further training can only start
    from the generator's weights.
    """
    from histobridge.models.checkpoints import load_generator

    G0 = load_generator(path)
    if tuple(G0.meta.class_names) != tuple(data.class_names):
        raise CheckpointError(f"{path}: generator classes {list(G0.meta.class_names)} differ from the "
                              f"data's {list(data.class_names)}")
    try:
        st.G.load_state_dict(G0.state_dict())
        st.G_ema.load_state_dict(G0.state_dict())
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the generator does not match this run's architecture: {err}") from err


def train_gan(
    data: TileArrays, out_dir: str | Path, config: GanTrainConfig | None = None,
    *, progress: Callable[[dict[str, float]], None] | None = None, init: str | Path | None = None,
) -> GanTrainResult:
    """Train (or continue training) a conditional generator; stop at ``kimg`` total or ``minutes``.

    ``init``: an exported generator to start G from when the run has no checkpoint yet.
    """
    cfg = config or GanTrainConfig()
    if len(data.tiles) < 2:
        raise InputError(f"{data.source}: GAN training needs at least 2 tiles, got {len(data.tiles)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    amp = _amp_dtype(cfg.amp, device)
    c_dim = len(data.class_names)
    st = _build_state(cfg, c_dim, device)
    ckpt = out_dir / CHECKPOINT
    if ckpt.exists():
        load_checkpoint(st, cfg, data, ckpt)
        log.info("resuming %s at step %d (%.1f kimg)", ckpt, st.step, st.nimg / 1000)
    elif init is not None:
        init_from_generator(st, init, data)
        log.info("starting G from %s", init)
    images = prepare_images(data, cfg.resolution).to(device)
    labels = torch.from_numpy(data.labels).to(device)
    sampler = _label_sampler(labels, c_dim)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    finished = _run_loop(st, cfg, data, images, labels, sampler, amp, scaler, out_dir, progress)
    gen_path = export_generator(st.G_ema, data, out_dir)
    return GanTrainResult(out_dir, gen_path, st.nimg / 1000, st.step, st.seconds, finished)


def _run_loop(
    st: _State, cfg: GanTrainConfig, data: TileArrays, images: torch.Tensor, labels: torch.Tensor,
    sampler: Callable[[int], torch.Tensor], amp: torch.dtype | None, scaler: torch.amp.GradScaler | None,
    out_dir: Path, progress: Callable[[dict[str, float]], None] | None,
) -> bool:
    """Step until the budget is spent; snapshot every ``snapshot_kimg`` and at the end."""
    start = time.monotonic()
    start_seconds = st.seconds
    next_snap = (math.floor(st.nimg / (cfg.snapshot_kimg * 1000)) + 1) * cfg.snapshot_kimg * 1000
    c_dim = len(data.class_names)
    log_path = out_dir / "training_log.jsonl"
    finished = st.nimg >= cfg.kimg * 1000
    while not finished:
        idx = torch.randint(0, len(images), (cfg.batch,), device=images.device)
        real = random_dihedral(images[idx])
        c_real = F.one_hot(labels[idx], c_dim).to(torch.float32)
        stats = _train_step(st, cfg, real, c_real, sampler, amp, scaler)
        if not all(math.isfinite(v) for v in stats.values()):
            raise InputError(f"GAN training diverged at step {st.step} (non-finite loss {stats}); "
                             "lower the learning rates or raise --gamma")
        st.step += 1
        st.nimg += cfg.batch
        _update_ema(st, cfg)
        st.seconds = start_seconds + time.monotonic() - start
        stats.update(step=st.step, kimg=st.nimg / 1000, seconds=st.seconds)
        if progress is not None:
            progress(stats)
        finished = st.nimg >= cfg.kimg * 1000
        out_of_time = cfg.minutes is not None and time.monotonic() - start >= cfg.minutes * 60
        if st.nimg >= next_snap or finished or out_of_time:
            _snapshot(st, cfg, data, out_dir, log_path, stats)
            next_snap += cfg.snapshot_kimg * 1000
        if out_of_time:
            break
    return finished


def _snapshot(
    st: _State, cfg: GanTrainConfig, data: TileArrays, out_dir: Path, log_path: Path, stats: dict[str, float]
) -> None:
    save_checkpoint(st, cfg, data, out_dir / CHECKPOINT)
    save_grid(st.G_ema, data.class_names, out_dir / "samples" / f"grid-{st.nimg:08d}img.png")
    if cfg.keep_snapshots:
        (out_dir / SNAPSHOTS).mkdir(exist_ok=True)
        export_generator(st.G_ema, data, out_dir / SNAPSHOTS, f"generator-{st.nimg:08d}img")
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(stats) + "\n")
    write_json(out_dir / "training.json", {
        "config": cfg.to_dict(), "class_names": list(data.class_names), "tile_um": data.tile_um,
        "tiles": data.counts(), "step": st.step, "kimg": st.nimg / 1000, "seconds": round(st.seconds, 1),
        "ada_p": st.ada_p,
    })
    log.info("snapshot at %.1f kimg (step %d): %s", st.nimg / 1000, st.step, stats)


__all__ = [
    "GanTrainConfig",
    "GanTrainResult",
    "init_from_generator",
    "load_checkpoint",
    "pick_device",
    "prepare_images",
    "save_checkpoint",
    "save_grid",
    "train_gan",
]
