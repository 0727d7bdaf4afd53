"""Tile classifiers in WSInfer's format: a TorchScript module plus a ``config.json``.

The config, not the caller, decides tile size, µm/px, preprocessing and class names, so a model is
always run at the resolution it was trained at. Three layouts load the same way:

* a WSInfer model directory (``config.json`` + ``torchscript_model.pt``),
* a TorchScript file with a sidecar ``<name>.json`` in the same schema,
* models histobridge trains itself (written by :func:`save_classifier` as a WSInfer directory).

Models output logits; probabilities are their softmax, or a sigmoid for a single output, as WSInfer
does. Loading uses ``torch.jit.load`` only: TorchScript archives carry no pickled Python code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from histobridge._atomic import atomic_path, write_json
from histobridge.errors import ModelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
MODEL_NAME = "torchscript_model.pt"
REQUIRED_KEYS = (
    "spec_version",
    "architecture",
    "num_classes",
    "class_names",
    "patch_size_pixels",
    "spacing_um_px",
    "transform",
)
TRANSFORM_NAMES = ("Resize", "ToTensor", "Normalize")
EXTRA_KEY = "histobridge"


# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TransformStep:
    """One preprocessing step of the WSInfer schema (``Resize``, ``ToTensor`` or ``Normalize``)."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.arguments:
            out["arguments"] = _plain(self.arguments)
        return out


@dataclass(frozen=True)
class ClassifierConfig:
    """The WSInfer model config; ``extras`` keeps any other top-level keys (e.g. ``"histobridge"``)."""

    spec_version: str
    architecture: str
    num_classes: int
    class_names: tuple[str, ...]
    patch_size_pixels: int
    spacing_um_px: float
    transform: tuple[TransformStep, ...]
    extras: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def tile_um(self) -> float:
        """Side of the tile in micrometres: what the model sees, whatever the slide's pixel size."""
        return self.patch_size_pixels * self.spacing_um_px

    @property
    def name(self) -> str | None:
        """Display name recorded by histobridge (``extras["histobridge"]["name"]``), if any."""
        meta = self.extras.get(EXTRA_KEY)
        if isinstance(meta, Mapping) and isinstance(meta.get("name"), str) and meta["name"]:
            return str(meta["name"])
        return None

    @classmethod
    def from_dict(cls, data: Any, source: str = "<config>") -> ClassifierConfig:
        """Validate a parsed config; every problem found is listed in one :class:`ModelError`."""
        if not isinstance(data, Mapping):
            raise ModelError(f"{source}: a model config must be a JSON object, got {type(data).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ModelError(
                f"{source}: model config is missing required key(s) {', '.join(missing)}; the config decides "
                "tile size (patch_size_pixels), µm/px (spacing_um_px), preprocessing (transform) and class "
                "names, so the model cannot be used without them"
            )
        problems: list[str] = []
        cfg = cls(
            spec_version=_check_str(data, "spec_version", problems),
            architecture=_check_str(data, "architecture", problems),
            num_classes=_check_int(data, "num_classes", problems),
            class_names=_check_names(data, problems),
            patch_size_pixels=_check_int(data, "patch_size_pixels", problems),
            spacing_um_px=_check_spacing(data, problems),
            transform=_check_transform(data.get("transform"), problems),
            extras=MappingProxyType({k: v for k, v in data.items() if k not in REQUIRED_KEYS}),
        )
        if not problems and len(cfg.class_names) != cfg.num_classes:
            problems.append(
                f"class_names has {len(cfg.class_names)} names but num_classes is {cfg.num_classes}"
            )
        if problems:
            raise ModelError(f"{source}: invalid model config: " + "; ".join(problems))
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> ClassifierConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ModelError(f"{path}: model config not found") from err
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelError(f"{path}: model config is not readable JSON ({err})") from err
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON view; WSInfer readers ignore the extra top-level keys."""
        out: dict[str, Any] = {
            "spec_version": self.spec_version,
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "patch_size_pixels": self.patch_size_pixels,
            "spacing_um_px": self.spacing_um_px,
            "transform": [t.to_dict() for t in self.transform],
        }
        out.update({k: _plain(v) for k, v in self.extras.items()})
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_str(data: Mapping[str, Any], key: str, problems: list[str]) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        problems.append(f"{key} must be a non-empty string, got {value!r}")
        return ""
    return value


def _check_int(data: Mapping[str, Any], key: str, problems: list[str]) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(f"{key} must be an integer ≥ 1, got {value!r}")
        return 1
    return value


def _check_spacing(data: Mapping[str, Any], problems: list[str]) -> float:
    value = data["spacing_um_px"]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and math.isfinite(value) and value > 0
    if not ok:
        problems.append(f"spacing_um_px must be a positive number (µm per pixel), got {value!r}")
        return 1.0
    return float(value)


def _check_names(data: Mapping[str, Any], problems: list[str]) -> tuple[str, ...]:
    names = data["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        problems.append(f"class_names must be a list of non-empty strings, got {names!r}")
        return ()
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"class_names must be unique; repeated: {', '.join(dupes)}")
    return tuple(names)


def _check_transform(steps: Any, problems: list[str]) -> tuple[TransformStep, ...]:
    if not isinstance(steps, list):
        problems.append(f"transform must be a list of steps, got {steps!r}")
        return ()
    out: list[TransformStep] = []
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping) or not isinstance(step.get("name"), str):
            problems.append(f"transform[{i}] must be an object with a 'name'")
            continue
        extra = set(step) - {"name", "arguments"}
        if extra:
            problems.append(f"transform[{i}] has unknown key(s) {', '.join(sorted(extra))}")
        name, args = step["name"], step.get("arguments") or {}
        if name not in TRANSFORM_NAMES:
            problems.append(f"transform[{i}] name {name!r} is not one of {', '.join(TRANSFORM_NAMES)}")
        elif not isinstance(args, Mapping):
            problems.append(f"transform[{i}] arguments must be an object")
        else:
            problems.extend(f"transform[{i}] ({name}): {p}" for p in _check_step_args(name, args))
            out.append(TransformStep(name, MappingProxyType(dict(args))))
    return tuple(out)


def _check_step_args(name: str, args: Mapping[str, Any]) -> list[str]:
    if name == "Resize":
        size = args.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return []
        if isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size):
            return []
        return [f"size must be a positive integer or [height, width], got {size!r}"]
    if name == "Normalize":
        bad = [k for k in ("mean", "std") if not _three_numbers(args.get(k))]
        if not bad and any(v == 0 for v in args["std"]):
            bad.append("std (zero)")
        return [f"{', '.join(bad)} must be lists of 3 numbers"] if bad else []
    return []


def _three_numbers(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )


# ------------------------------------------------------------------------------------------ classifier


def select_device(device: str | None = None) -> torch.device:
    """The device to run on: the override if given, else CUDA, else Apple MPS, else CPU."""
    import torch

    if device:
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise ModelError(f"unknown device {device!r} ({err})") from err
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"device {device!r} requested but CUDA is not available")
        mps = getattr(torch.backends, "mps", None)
        if dev.type == "mps" and not (mps is not None and mps.is_available()):
            raise ModelError(f"device {device!r} requested but Apple MPS is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class TileClassifier:
    """A loaded model with its config: uint8 RGB tiles in, class probabilities out."""

    def __init__(self, module: Any, config: ClassifierConfig, *, device: str | None = None,
                 source: Path | None = None, name: str | None = None) -> None:
        import torch

        self.config = config
        self.source = source
        self.name = name or config.name or (source.stem if source else config.architecture)
        self.device = select_device(device)
        self._gpu = self.device.type == "cuda"
        self._autocast = self._gpu
        module = module.to(self.device)
        if self._gpu:
            module = module.to(memory_format=torch.channels_last)
        self.module = module.eval()
        self._checked_output = False

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names

    def __repr__(self) -> str:
        c = self.config
        return (f"TileClassifier({self.name!r}, classes={list(c.class_names)}, {c.patch_size_pixels} px at "
                f"{c.spacing_um_px:g} µm/px, device={self.device})")

    # -- preprocessing ----------------------------------------------------------------------------
    def preprocess(self, images: np.ndarray | torch.Tensor, device: Any = None) -> torch.Tensor:
        """uint8 NHWC RGB → float NCHW following the config's transform list (Resize/ToTensor/Normalize).

        Runs on ``device`` (default: CPU) so reader threads can prepare batches while the model runs.
        """
        import torch
        import torch.nn.functional as F

        x = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ModelError(f"{self.name}: expected tiles as (N, H, W, 3) RGB, got shape {tuple(x.shape)}")
        x = x.to(device or "cpu").permute(0, 3, 1, 2).float()
        for step in self.config.transform:
            if step.name == "ToTensor":
                x = x / 255.0
            elif step.name == "Resize":
                size = step.arguments["size"]
                hw = (size, size) if isinstance(size, int) else (size[0], size[1])
                if tuple(x.shape[-2:]) != hw:
                    x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
            elif step.name == "Normalize":
                mean = torch.tensor(step.arguments["mean"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
                std = torch.tensor(step.arguments["std"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
                x = (x - mean) / std
        return x.contiguous()

    # -- inference --------------------------------------------------------------------------------
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits (float32, on CPU) for one preprocessed batch, under inference mode."""
        import torch

        with torch.inference_mode():
            x = batch.to(self.device, non_blocking=True)
            if self._gpu:
                x = x.contiguous(memory_format=torch.channels_last)
            out = self._run(x)
            if isinstance(out, (tuple, list)):
                out = out[0]
            out = out.float().reshape(out.shape[0], -1).cpu()
        if not self._checked_output:
            if out.shape[1] != self.config.num_classes:
                raise ModelError(
                    f"{self.source or self.name}: model outputs {out.shape[1]} values per tile but the "
                    f"config declares num_classes={self.config.num_classes}"
                )
            self._checked_output = True
        result: torch.Tensor = out
        return result

    def _run(self, x: torch.Tensor) -> Any:
        """The module call; float16 autocast on CUDA, dropped for good if the model cannot take it."""
        import torch

        if not self._autocast:
            return self.module(x)
        try:
            with torch.autocast("cuda", dtype=torch.float16):
                return self.module(x)
        except RuntimeError as err:  # some TorchScript graphs reject autocast; full precision still works
            log.warning("%s: float16 autocast failed (%s); running in float32", self.name, err)
            self._autocast = False
            return self.module(x)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over classes, or a sigmoid for a single-output model (WSInfer's rule)."""
        import torch

        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)

    def _batches(self, images: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
        if batch_size < 1:
            raise ModelError(f"batch_size must be ≥ 1, got {batch_size}")
        for start in range(0, len(images), batch_size):
            yield self.preprocess(images[start : start + batch_size])

    def logits(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Raw model outputs (N, C) for uint8 NHWC tiles."""
        parts = [self.forward(b).numpy() for b in self._batches(images, batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.config.num_classes), np.float32)

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, C) for uint8 NHWC tiles."""
        parts = [self.probabilities(self.forward(b)).numpy() for b in self._batches(images, batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.config.num_classes), np.float32)

    def predict_batch(self, batch: torch.Tensor, passes: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities for one preprocessed batch; with ``passes`` > 0, MC-dropout mean and SD."""
        if passes <= 0:
            return self.probabilities(self.forward(batch)).numpy(), None
        with self.mc_dropout():
            runs = np.stack([self.probabilities(self.forward(batch)).numpy() for _ in range(passes)])
        return runs.mean(axis=0), runs.std(axis=0)

    def predict_uncertainty(self, images: np.ndarray, passes: int = 30,
                            batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """MC-dropout: ``passes`` forward passes with dropout active; returns (mean, SD) of probabilities."""
        if passes < 1:
            raise ModelError(f"MC-dropout needs at least one pass, got {passes}")
        means: list[np.ndarray] = []
        stds: list[np.ndarray] = []
        for b in self._batches(images, batch_size):
            m, s = self.predict_batch(b, passes)
            assert s is not None  # passes >= 1 always gives a spread
            means.append(m)
            stds.append(s)
        if not means:
            empty = np.zeros((0, self.config.num_classes), np.float32)
            return empty, empty.copy()
        return np.concatenate(means), np.concatenate(stds)

    @contextlib.contextmanager
    def mc_dropout(self) -> Iterator[int]:
        """Put only the dropout submodules in train mode (batch-norm stays frozen); yields their count."""
        drops = [m for m in self.module.modules() if _is_dropout(m)]
        if not drops:
            log.warning("%s: no dropout layers found; MC-dropout uncertainty will be zero", self.name)
        try:
            for m in drops:
                m.train(True)
            yield len(drops)
        finally:
            self.module.eval()


def _is_dropout(module: Any) -> bool:
    import torch

    if isinstance(module, torch.nn.modules.dropout._DropoutNd):
        return True
    # Scripted submodules are RecursiveScriptModule; their Python class name survives as original_name.
    original = getattr(module, "original_name", "")
    return isinstance(original, str) and "Dropout" in original


# --------------------------------------------------------------------------------------- load / save


def _resolve_paths(path: Path) -> tuple[Path, Path]:
    """(config, weights) for a model directory, a TorchScript file or a config file."""
    if path.is_dir():
        config, weights = path / CONFIG_NAME, path / MODEL_NAME
        if not config.is_file():
            raise ModelError(f"{path}: model directory has no {CONFIG_NAME}")
        if not weights.is_file():
            hint = " (model.safetensors needs its architecture; only TorchScript is supported)" if (
                path / "model.safetensors").exists() else ""
            raise ModelError(f"{path}: model directory has no {MODEL_NAME}{hint}")
        return config, weights
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    if path.suffix.lower() == ".json":
        cands = [path.with_name(MODEL_NAME)] if path.name == CONFIG_NAME else []
        cands += [path.with_suffix(s) for s in (".pt", ".pth", ".ts", ".torchscript")]
        for c in cands:
            if c.is_file():
                return path, c
        raise ModelError(f"{path}: no TorchScript file next to this config (looked for "
                         f"{', '.join(c.name for c in cands)})")
    for c in (path.with_suffix(".json"), path.with_name(path.name + ".json"), path.with_name(CONFIG_NAME)):
        if c.is_file():
            return c, path
    raise ModelError(
        f"{path}: no model config found; write a sidecar {path.with_suffix('.json').name} with "
        f"{', '.join(REQUIRED_KEYS)} (the WSInfer config schema)"
    )


def load_classifier(
    path: str | Path, device: str | None = None, *, name: str | None = None
) -> TileClassifier:
    """Load a WSInfer model directory, a TorchScript file with a JSON sidecar, or a histobridge model."""
    import torch

    path = Path(path)
    config_path, weights = _resolve_paths(path)
    config = ClassifierConfig.from_file(config_path)
    if not zipfile.is_zipfile(weights):
        raise ModelError(
            f"{weights}: not a TorchScript archive; export the model with torch.jit.script/trace and "
            "torch.jit.save (pickled state_dicts are not loaded because they need the model's code)"
        )
    dev = select_device(device)
    try:
        with _quiet_jit():
            module = torch.jit.load(str(weights), map_location=dev)  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError) as err:
        raise ModelError(f"{weights}: cannot load TorchScript model ({err})") from err
    default_name = path.name if path.is_dir() else weights.stem
    if default_name == MODEL_NAME.rsplit(".", 1)[0]:
        default_name = weights.parent.name
    name = name or config.name or default_name
    return TileClassifier(module, config, device=str(dev), source=path, name=name)


def save_classifier(module: Any, config: ClassifierConfig | Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``torchscript_model.pt`` + ``config.json`` (a WSInfer model directory); returns ``out_dir``.

    Each file is replaced atomically and the config is written last, so a reader never finds a config
    without its weights. A plain ``nn.Module`` is scripted (traced in eval mode if scripting fails,
    which freezes dropout off). The output width is checked against ``num_classes`` before writing.
    """
    import torch

    out_dir = Path(out_dir)
    cfg = config if isinstance(config, ClassifierConfig) else ClassifierConfig.from_dict(config, str(out_dir))
    scripted = _to_script(module, cfg)
    scripted.eval()
    probe = torch.zeros(1, 3, cfg.patch_size_pixels, cfg.patch_size_pixels)
    with torch.inference_mode():
        out = scripted.cpu()(probe)
    out = out[0] if isinstance(out, (tuple, list)) else out
    width = int(out.reshape(out.shape[0], -1).shape[1])
    if width != cfg.num_classes:
        raise ModelError(f"{out_dir}: model outputs {width} values but the config declares "
                         f"num_classes={cfg.num_classes}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / MODEL_NAME) as tmp, _quiet_jit():
        torch.jit.save(scripted, str(tmp))
    write_json(out_dir / CONFIG_NAME, cfg.to_dict())
    return out_dir


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """TorchScript is WSInfer's exchange format; silence torch's notice that it prefers torch.export."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        yield


def _to_script(module: Any, cfg: ClassifierConfig) -> Any:
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        return module
    if not isinstance(module, torch.nn.Module):
        kind = type(module).__name__
        raise ModelError(f"save_classifier needs a torch.nn.Module or ScriptModule, got {kind}")
    try:
        with _quiet_jit():
            return torch.jit.script(module)
    except Exception as err:  # scripting fails on dynamic Python; tracing is the documented fallback
        log.warning("torch.jit.script failed (%s); tracing in eval mode instead (dropout is frozen off)", err)
        was_training = module.training
        module.eval()
        try:
            example = torch.zeros(1, 3, cfg.patch_size_pixels, cfg.patch_size_pixels)
            return torch.jit.trace(module, example)  # type: ignore[no-untyped-call]
        finally:
            module.train(was_training)


def make_config(class_names: Sequence[str], patch_size_pixels: int, spacing_um_px: float, *,
                architecture: str = "custom", mean: Sequence[float] = (0.5, 0.5, 0.5),
                std: Sequence[float] = (0.5, 0.5, 0.5), resize: int | None = None,
                extras: Mapping[str, Any] | None = None) -> ClassifierConfig:
    """A valid config from the few facts a trainer knows (validated like any loaded one)."""
    transform: list[dict[str, Any]] = []
    if resize is not None:
        transform.append({"name": "Resize", "arguments": {"size": int(resize)}})
    transform += [{"name": "ToTensor"},
                  {"name": "Normalize",
                   "arguments": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}}]
    data: dict[str, Any] = {
        "spec_version": "1.0", "architecture": architecture, "num_classes": len(class_names),
        "class_names": list(class_names), "patch_size_pixels": int(patch_size_pixels),
        "spacing_um_px": float(spacing_um_px), "transform": transform,
    }
    data.update(dict(extras or {}))
    return ClassifierConfig.from_dict(data, "<make_config>")


__all__ = [
    "CONFIG_NAME",
    "MODEL_NAME",
    "ClassifierConfig",
    "TileClassifier",
    "TransformStep",
    "load_classifier",
    "make_config",
    "save_classifier",
    "select_device",
]
