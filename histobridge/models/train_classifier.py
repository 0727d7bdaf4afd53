"""Train a small tile classifier on a ``histobridge tile`` store (``histobridge train classifier``).

Neighbouring (and overlapping, when tiled with a stride) tiles of one annotation are nearly the same
image, so a random tile split would measure memory rather than skill. The held-out set is therefore
made of whole annotations (regions), chosen per class with a fixed seed. The exported model is the
WSInfer layout (TorchScript + ``config.json``) that :func:`~histobridge.models.classifier.load_classifier`
reads, and the held-out metrics are measured through that exported file, as users will run it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from histobridge._atomic import write_json
from histobridge.errors import InputError
from histobridge.models.augment import ColorJitter, StainJitter, augment_batch
from histobridge.models.training_data import TileArrays

log = logging.getLogger(__name__)

ARCHITECTURE = "histobridge-smallcnn"
METRICS_NAME = "metrics.json"
_MEAN = (0.5, 0.5, 0.5)
_STD = (0.25, 0.25, 0.25)
STAIN_NORMS = ("none", "reinhard")


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Hyper-parameters of one classifier training run (recorded in ``metrics.json``)."""

    epochs: int = 12
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 24
    dropout: float = 0.2
    holdout: float = 0.25
    seed: int = 0
    jitter: bool = True
    stain_scale: float = 0.0  # HED stain jitter (0: off); see augment.StainJitter
    stain_shift: float = 0.0
    grayscale: float = 0.0  # probability of a grey training tile
    colour_mix: float = 0.0  # probability of another tile's colour statistics
    class_swap: float = 0.0  # probability of the other class's pixel statistics (per-channel mean, SD)
    stain_norm: str = "none"  # "reinhard": per-tile Reinhard to the training tiles' mean statistics
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.stain_norm not in STAIN_NORMS:
            raise InputError(f"stain_norm must be one of {', '.join(STAIN_NORMS)}, got {self.stain_norm!r}")
        for name in ("grayscale", "colour_mix", "class_swap"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} is a probability (0..1), got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClassifierTrainResult:
    out_dir: Path
    metrics: dict[str, Any]


class SmallCNN(nn.Module):
    """Four conv stages (BN + ReLU, 2× pooling) and global average pooling: enough for tissue types."""

    def __init__(self, num_classes: int, width: int = 24, dropout: float = 0.2) -> None:
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 4]
        stages: list[nn.Module] = []
        for i in range(4):
            stages += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i < 3:
                stages.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3))
        out: torch.Tensor = self.head(self.dropout(x))
        return out


def split_by_region(
    labels: np.ndarray, regions: np.ndarray, holdout: float = 0.25, seed: int = 0
) -> np.ndarray:
    """Boolean mask of held-out tiles: whole regions, about ``holdout`` of each class's tiles.

    A region counts for the class most of its tiles carry. Each class with at least two regions
    gives at least one region to the held-out set and keeps at least one for training.
    """
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    region_ids = np.unique(regions)
    majority = {int(r): int(np.bincount(labels[regions == r]).argmax()) for r in region_ids}
    for k in np.unique(labels):
        own = np.array(sorted(r for r, m in majority.items() if m == int(k)), dtype=np.int64)
        if len(own) < 2:
            log.warning("class %d has %d region(s): none is held out", k, len(own))
            continue
        sizes = {int(r): int((regions == r).sum()) for r in own}
        target = holdout * sum(sizes.values())
        order = [int(r) for r in rng.permutation(own)]
        # First pick: a random region not far above the target (else the smallest), then fill up.
        fitting = [r for r in order if sizes[r] <= 1.5 * target]
        first = fitting[0] if fitting else min(order, key=lambda r: sizes[r])
        chosen, taken = [first], sizes[first]
        for r in order:
            if r != first and len(chosen) < len(own) - 1 and taken + sizes[r] <= target:
                chosen.append(r)
                taken += sizes[r]
        held |= np.isin(regions, chosen)
    return held


def _to_input(tiles: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC → float NCHW in [0, 1] (the config's ToTensor step)."""
    return torch.from_numpy(tiles).to(device).permute(0, 3, 1, 2).to(torch.float32) / 255.0


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(_MEAN, device=x.device).reshape(1, 3, 1, 1)
    std = torch.tensor(_STD, device=x.device).reshape(1, 3, 1, 1)
    return (x - mean) / std


def class_pixel_stats(train: TileArrays) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class: the per-channel mean and SD over every pixel of its tiles, in [0, 1], (C, 3) each."""
    means, stds = [], []
    for k in range(len(train.class_names)):
        px = train.tiles[train.labels == k].reshape(-1, 3).astype(np.float64) / 255.0
        means.append(px.mean(axis=0) if len(px) else np.full(3, 0.5))
        stds.append(px.std(axis=0) if len(px) else np.full(3, 0.25))
    return torch.tensor(np.array(means), dtype=torch.float32), torch.tensor(np.array(stds),
                                                                             dtype=torch.float32)


def swap_class_colours(
    x: torch.Tensor, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor], probability: float,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """With ``probability``, a tile's per-channel mean and SD become another class's pixel statistics.

    Why: the recolour control (docs/method.md) does exactly this to real tiles; showing every class in
    every class's colours during training leaves colour statistics no use as a shortcut.
    """
    n, c = x.shape[0], stats[0].shape[0]
    if probability <= 0 or n == 0 or c < 2:
        return x
    shift = torch.randint(1, c, (n,), generator=gen).to(x.device)
    other = (y + shift) % c
    mean, std = stats[0].to(x.device)[other].view(n, 3, 1, 1), stats[1].to(x.device)[other].view(n, 3, 1, 1)
    mu, sd = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True).clamp(min=1e-4)
    moved = ((x - mu) / sd * std + mean).clamp(0.0, 1.0)
    pick = (torch.rand(n, generator=gen) < probability).to(x.device).view(n, 1, 1, 1)
    return torch.where(pick, moved, x)


def _fit(
    model: SmallCNN, train: TileArrays, cfg: ClassifierTrainConfig, device: torch.device,
    progress: Callable[[dict[str, float]], None] | None, stain_ref: dict[str, Any] | None = None,
) -> list[dict[str, float]]:
    """Class-weighted cross-entropy, AdamW, cosine learning-rate decay; returns per-epoch stats.

    Training tiles go through the same stain normalisation (``stain_ref``) as the exported model's
    preprocessing, after augmentation: the model learns on what it will be shown.
    """
    from histobridge.models.stain import apply as stain_apply

    gen = torch.Generator().manual_seed(cfg.seed)
    counts = np.bincount(train.labels, minlength=len(train.class_names)).astype(np.float64)
    balance = counts.sum() / np.maximum(counts, 1) / len(counts)
    weight = torch.tensor(balance, dtype=torch.float32, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, -(-len(train.tiles) // cfg.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    jitter = ColorJitter(brightness=0.05, contrast=0.1, saturation=0.1) if cfg.jitter else None
    stain = (StainJitter(cfg.stain_scale, cfg.stain_shift, cfg.grayscale, mix=cfg.colour_mix)
             if max(cfg.stain_scale, cfg.stain_shift, cfg.grayscale, cfg.colour_mix) > 0 else None)
    labels = torch.from_numpy(train.labels).to(device)
    colour_stats = class_pixel_stats(train)
    history = []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(train.tiles), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for start in range(0, len(order), cfg.batch):
            idx = order[start : start + cfg.batch]
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            x = _to_input(train.tiles[idx.numpy()], device)
            y = labels[idx.to(device)]
            x = swap_class_colours(x, y, colour_stats, cfg.class_swap, gen)
            x = augment_batch(x, jitter, value_range=(0.0, 1.0), gen=gen, stain=stain)
            if stain_ref is not None:
                x = stain_apply(x.clamp(0.0, 1.0), stain_ref)
            logits = model(_normalize(x))
            loss = F.cross_entropy(logits, y, weight=weight)
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt.step()
            sched.step()
            total += len(idx)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(idx)
        total = max(total, 1)
        stats = {"epoch": epoch + 1, "loss": loss_sum / total, "train_accuracy": correct / total}
        history.append(stats)
        log.info("epoch %d: %s", epoch + 1, stats)
        if progress is not None:
            progress(stats)
    return history


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def heldout_metrics(probs: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, balanced accuracy and confusion matrix of held-out predictions."""
    if len(labels) == 0:
        return {"heldout_accuracy": None, "balanced_accuracy": None, "confusion_matrix": None}
    pred = probs.argmax(1)
    cm = confusion(labels, pred, len(class_names))
    per_class = [cm[i, i] / cm[i].sum() for i in range(len(class_names)) if cm[i].sum()]
    return {
        "heldout_accuracy": float((pred == labels).mean()),
        "balanced_accuracy": float(np.mean(per_class)),
        "confusion_matrix": cm.tolist(),
    }


def train_classifier(
    data: TileArrays, out_dir: str | Path, config: ClassifierTrainConfig | None = None,
    *, progress: Callable[[dict[str, float]], None] | None = None,
) -> ClassifierTrainResult:
    """Train, export (TorchScript + WSInfer config) and evaluate on held-out regions."""
    from histobridge.models.classifier import load_classifier, make_config, save_classifier
    from histobridge.models.train_gan import pick_device

    cfg = config or ClassifierTrainConfig()
    if data.tile_um is None:
        raise InputError(f"{data.source}: the tile store does not record tile_um; cannot write spacing_um_px")
    if len(data.class_names) < 2:
        names = list(data.class_names)
        raise InputError(f"{data.source}: a classifier needs at least two classes, got {names}")
    t0 = time.monotonic()
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    held = split_by_region(data.labels, data.regions, cfg.holdout, cfg.seed)
    train, test = data.subset(~held), data.subset(held)
    if len(train.tiles) < 2:
        n = len(train.tiles)
        raise InputError(f"{data.source}: only {n} training tiles left after holding out regions")
    stain_ref = None
    if cfg.stain_norm == "reinhard":
        from histobridge.models.stain import fit_reinhard

        stain_ref = {"method": "reinhard", **fit_reinhard(train.tiles)}
    model = SmallCNN(len(data.class_names), cfg.width, cfg.dropout).to(device)
    history = _fit(model, train, cfg, device, progress, stain_ref)
    out_dir = Path(out_dir)
    model_cfg = make_config(
        data.class_names, data.tile_px, data.tile_um / data.tile_px, architecture=ARCHITECTURE,
        mean=_MEAN, std=_STD, stain=stain_ref,
        extras={"histobridge": {"name": out_dir.name, "trained_on": Path(data.source).name,
                                "tile_um": data.tile_um}},
    )
    save_classifier(model.eval().cpu(), model_cfg, out_dir)
    exported = load_classifier(out_dir, device="cpu")
    probs = exported.predict(test.tiles) if len(test.tiles) else np.zeros((0, len(data.class_names)))
    metrics = {
        **heldout_metrics(probs, test.labels, data.class_names),
        "class_names": list(data.class_names),
        "counts": {"train": train.counts(), "heldout": test.counts()},
        "regions": {"train": sorted({int(r) for r in train.regions}),
                    "heldout": sorted({int(r) for r in test.regions})},
        "epochs": cfg.epochs,
        "final_train_accuracy": history[-1]["train_accuracy"] if history else None,
        "seconds": round(time.monotonic() - t0, 1),
        "config": cfg.to_dict(),
    }
    write_json(out_dir / METRICS_NAME, metrics)
    return ClassifierTrainResult(out_dir, metrics)


__all__ = [
    "ARCHITECTURE",
    "STAIN_NORMS",
    "ClassifierTrainConfig",
    "ClassifierTrainResult",
    "SmallCNN",
    "class_pixel_stats",
    "confusion",
    "heldout_metrics",
    "split_by_region",
    "swap_class_colours",
    "train_classifier",
]
