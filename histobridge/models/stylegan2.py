"""Class-conditional StyleGAN2 generator in plain PyTorch (fp32 maths, no custom CUDA ops).

Parameter and buffer names follow the state dicts of published StyleGAN2 checkpoints so their
weights load one to one (see ``checkpoints.py``); the numerics follow the published semantics of
the generator (2nd-moment normalisation, equalised learning rate applied at run time, modulated
and demodulated convolutions, FIR up-sampling with the [1, 3, 3, 1] filter). A new ``Generator``
starts with the standard random initialisation and is trainable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from histobridge.errors import ModelError
from histobridge.models._equalized import EqualConv2d, FullyConnectedLayer
from histobridge.models._stylegan2_ops import (
    bias_act,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
)

NoiseMode = Literal["const", "random", "none"]
ARCHITECTURES = ("skip", "resnet", "orig")
_SQRT2 = math.sqrt(2.0)
_SQRT_HALF = math.sqrt(0.5)


_INT_LIMITS = {
    "z_dim": 1 << 16, "c_dim": 1 << 16, "w_dim": 1 << 16, "img_resolution": 1 << 13, "img_channels": 64,
    "mapping_layers": 64, "embed_features": 1 << 16, "layer_features": 1 << 16, "channel_base": 1 << 24,
    "channel_max": 1 << 16,
}
_OPTIONAL = frozenset({"embed_features", "layer_features", "conv_clamp", "w_avg_beta"})


def _check_types(cfg: GeneratorConfig) -> None:
    """Each field has its declared type and a sane size, so a bad file cannot ask for absurd models."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None and f.name in _OPTIONAL:
            continue
        if f.name in _INT_LIMITS:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _INT_LIMITS[f.name]:
                raise ModelError(
                    f"{f.name} must be an integer in [0, {_INT_LIMITS[f.name]}], got {value!r:.40}"
                )
        elif f.name in ("mapping_lr_mul", "w_avg_beta", "conv_clamp"):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (f.name != "w_avg_beta" and value <= 0):
                raise ModelError(f"{f.name} must be a finite positive number, got {value!r:.40}")
        elif f.name == "architecture":
            if not isinstance(value, str):
                raise ModelError(f"architecture must be text, got {value!r:.40}")
        elif not isinstance(value, bool):
            raise ModelError(f"{f.name} must be true or false, got {value!r:.40}")


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; saved as JSON next to the weights."""

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 256
    img_channels: int = 3
    mapping_layers: int = 8
    embed_features: int | None = None  # None: w_dim (0 without labels)
    layer_features: int | None = None  # None: w_dim
    mapping_lr_mul: float = 0.01
    w_avg_beta: float | None = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = None
    architecture: str = "skip"
    interp_embed: bool = False
    use_noise: bool = True

    def __post_init__(self) -> None:
        _check_types(self)
        res = self.img_resolution
        if res < 4 or res & (res - 1):
            raise ModelError(f"img_resolution must be a power of two >= 4, got {res!r}")
        if self.architecture not in ARCHITECTURES:
            raise ModelError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.interp_embed and self.c_dim != 1:
            raise ModelError(f"interp_embed needs c_dim == 1 (a scalar label), got c_dim={self.c_dim}")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "channel_base", "channel_max"):
            if int(getattr(self, name)) <= 0:
                raise ModelError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.c_dim < 0:
            raise ModelError(f"c_dim must be >= 0, got {self.c_dim!r}")

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis network consumes (2·log2(R) − 2)."""
        return 2 * int(math.log2(self.img_resolution)) - 2

    def channels(self, res: int) -> int:
        """Feature maps at resolution ``res``."""
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> GeneratorConfig:
        """Build from a dict, rejecting unknown keys so typos do not pass silently."""
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ModelError("the generator config is not an object of named values")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ModelError(f"unknown generator config keys: {unknown}")
        return cls(**data)


@dataclass(frozen=True)
class GanMeta:
    """What the images mean: class names and the physical size of one generated tile."""

    class_names: tuple[str, ...] = ()
    tile_px: int = 0
    tile_um: float | None = None
    source: str = ""
    variant: str = "histobridge"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, data: Any) -> GanMeta:
        """From saved JSON; every value is type-checked and a bad one is named."""
        if not isinstance(data, dict):
            raise ModelError("meta is not an object")
        names = data.get("class_names", ())
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise ModelError(f"meta.class_names must be a list of text, got {names!r:.60}")
        tile_px = data.get("tile_px", 0)
        if not isinstance(tile_px, int) or isinstance(tile_px, bool) or not 0 <= tile_px <= 1 << 16:
            raise ModelError(f"meta.tile_px must be an integer in [0, 65536], got {tile_px!r:.40}")
        tile_um = data.get("tile_um")
        if tile_um is not None and not (
            isinstance(tile_um, int | float) and not isinstance(tile_um, bool) and math.isfinite(tile_um)
            and tile_um > 0
        ):
            raise ModelError(f"meta.tile_um must be a positive number of µm, got {tile_um!r:.40}")
        for key in ("source", "variant"):
            if not isinstance(data.get(key, ""), str):
                raise ModelError(f"meta.{key} must be text, got {data.get(key)!r:.40}")
        return cls(
            class_names=tuple(names),
            tile_px=tile_px,
            tile_um=None if tile_um is None else float(tile_um),
            source=str(data.get("source", "")),
            variant=str(data.get("variant", "histobridge")),
        )


def default_class_names(c_dim: int, interp_embed: bool = False) -> tuple[str, ...]:
    """``class0``, ``class1``…; a continuous-label model has two ends."""
    n = 2 if interp_embed else c_dim
    return tuple(f"class{i}" for i in range(n))


# ----------------------------------------------------------------------------- layers


class MappingNetwork(nn.Module):
    """z (and label c) → w, broadcast to ``num_ws`` copies, with optional truncation."""

    w_avg: torch.Tensor

    def __init__(self, cfg: GeneratorConfig, num_ws: int) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.num_ws = num_ws
        self.num_layers = cfg.mapping_layers
        self.w_avg_beta = cfg.w_avg_beta
        self.interp_embed = cfg.interp_embed
        embed = 0 if cfg.c_dim == 0 else (cfg.w_dim if cfg.embed_features is None else cfg.embed_features)
        hidden = cfg.w_dim if cfg.layer_features is None else cfg.layer_features
        widths = [cfg.z_dim + embed] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        if cfg.c_dim > 0:
            self.embed = FullyConnectedLayer(2 if cfg.interp_embed else cfg.c_dim, embed)
        for idx in range(cfg.mapping_layers):
            layer = FullyConnectedLayer(
                widths[idx], widths[idx + 1], activation="lrelu", lr_mul=cfg.mapping_lr_mul
            )
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def embed_label(self, c: torch.Tensor) -> torch.Tensor:
        """Raw class embedding (before normalisation); slerp between two ends for scalar labels."""
        if not self.interp_embed:
            return cast(torch.Tensor, self.embed(c))
        ends = self.embed(torch.eye(2, dtype=c.dtype, device=c.device))
        lo, hi = ends[0], ends[1]
        cos = ((lo / lo.norm()) * (hi / hi.norm())).sum().clamp(-1.0, 1.0)
        omega = torch.arccos(cos)
        so = torch.sin(omega)
        t = c.reshape(-1, 1)
        safe = torch.where(so == 0, torch.ones_like(so), so)
        slerp = torch.sin((1 - t) * omega) / safe * lo + torch.sin(t * omega) / safe * hi
        lerp = (1 - t) * lo + t * hi
        return torch.where(so == 0, lerp, slerp)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        x = normalize_2nd_moment(z.to(torch.float32)) if self.z_dim > 0 else None
        if self.c_dim > 0:
            if c is None:
                raise ModelError(f"this generator is conditional (c_dim={self.c_dim}); pass a label c")
            y = normalize_2nd_moment(self.embed_label(c.to(torch.float32)))
            x = y if x is None else torch.cat([x, y], dim=1)
        if x is None:
            raise ModelError("a generator needs z_dim > 0 or c_dim > 0")
        for idx in range(self.num_layers):
            x = cast(torch.Tensor, getattr(self, f"fc{idx}")(x))
        if update_emas and self.w_avg_beta is not None:
            with torch.no_grad():
                # float32 whatever autocast made of x: the running mean is a float32 buffer
                self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            head = self.w_avg.to(x.dtype).lerp(x[:, :cut], float(truncation_psi))
            x = torch.cat([head, x[:, cut:]], dim=1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (optionally 2× up), noise, bias, lrelu, clamp."""

    resample_filter: torch.Tensor
    noise_const: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        up: int = 1,
        use_noise: bool = True,
        conv_clamp: float | None = None,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = "lrelu"
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = _SQRT2
        self.register_buffer("resample_filter", setup_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", gain: float = 1.0
    ) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, device=x.device, dtype=x.dtype) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const.to(x.dtype) * self.noise_strength
        x = modulated_conv2d(
            x, self.weight, styles, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, noise=noise, fused=x.shape[0] == 1,
        )
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, act="lrelu", gain=self.act_gain * gain, clamp=clamp, inplace=True)


class ToRGBLayer(nn.Module):
    """Modulated 1×1 conv to image channels, no demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=x.shape[0] == 1)
        return bias_act(x, self.bias, clamp=self.conv_clamp, inplace=True)


class Conv2dLayer(EqualConv2d):
    """Equalised 1×1 conv without bias, then 2× FIR up-sampling: the residual branch of 'resnet' blocks."""

    resample_filter: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1, bias=False)
        self.activation = "linear"
        self.up = 2
        self.conv_clamp = None
        self.act_gain = 1.0
        self.register_buffer("resample_filter", setup_filter())

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        x = upsample2d(super().forward(x), self.resample_filter)
        return bias_act(x, None, gain=self.act_gain * gain)


class SynthesisBlock(nn.Module):
    """One resolution: (const |) conv0 (up) → conv1, plus ToRGB / residual as the architecture says."""

    resample_filter: torch.Tensor

    def __init__(self, cfg: GeneratorConfig, in_channels: int, resolution: int) -> None:
        super().__init__()
        out_channels = cfg.channels(resolution)
        self.in_channels = in_channels
        self.w_dim = cfg.w_dim
        self.resolution = resolution
        self.img_channels = cfg.img_channels
        self.is_last = resolution == cfg.img_resolution
        self.architecture = cfg.architecture
        self.use_fp16 = False
        self.channels_last = False
        self.register_buffer("resample_filter", setup_filter())
        kw: dict[str, Any] = {"use_noise": cfg.use_noise, "conv_clamp": cfg.conv_clamp}
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, cfg.w_dim, resolution, up=2, **kw)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, cfg.w_dim, resolution, **kw)
        self.num_conv += 1
        if self.is_last or cfg.architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, cfg.img_channels, cfg.w_dim, cfg.conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and cfg.architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels)

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            # channels-last from the start: the CPU convolutions run faster on it (outputs are NCHW)
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = x.contiguous(memory_format=torch.channels_last)
            x = self.conv1(x, next(w_iter), noise_mode)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=_SQRT_HALF)
            x = self.conv0(x, next(w_iter), noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode, gain=_SQRT_HALF)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, next(w_iter)).to(torch.float32)
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """Stack of blocks 4 → R; each block takes num_conv + num_torgb consecutive ws."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.w_dim = cfg.w_dim
        self.img_resolution = cfg.img_resolution
        self.img_resolution_log2 = int(math.log2(cfg.img_resolution))
        self.img_channels = cfg.img_channels
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = cfg.channels(res // 2) if res > 4 else 0
            block = SynthesisBlock(cfg, in_channels, res)
            self.num_ws += block.num_conv
            if block.is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "const") -> torch.Tensor:
        if noise_mode not in ("const", "random", "none"):
            raise ModelError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ModelError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        x: torch.Tensor | None = None
        img: torch.Tensor | None = None
        w_idx = 0
        for res in self.block_resolutions:
            block = cast(SynthesisBlock, getattr(self, f"b{res}"))
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), noise_mode)
            w_idx += block.num_conv
        assert img is not None
        return img.contiguous()


class Generator(nn.Module):
    """Mapping + synthesis; ``G(z, c)`` returns float32 NCHW images in about [−1, 1]."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.img_resolution = config.img_resolution
        self.img_channels = config.img_channels
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(config, self.num_ws)
        self.meta = GanMeta(
            class_names=default_class_names(config.c_dim, config.interp_embed),
            tile_px=config.img_resolution,
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        noise_mode: NoiseMode = "const",
        update_emas: bool = False,
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return cast(torch.Tensor, self.synthesis(ws, noise_mode=noise_mode))

    def compile(self, **kwargs: Any) -> Generator:  # type: ignore[override]
        """Compile mapping and synthesis with ``torch.compile`` (in place) so both entry points gain."""
        self.mapping.compile(**kwargs)
        self.synthesis.compile(**kwargs)
        return self

    def extra_repr(self) -> str:
        c = self.config
        return f"{c.img_resolution}px, c_dim={c.c_dim}, num_ws={self.num_ws}, arch={c.architecture}"


# ----------------------------------------------------------------------------- helpers


def state_shapes(cfg: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of ``Generator(cfg).state_dict()``, computed without allocating anything.

    Loaders compare these with the tensors a file holds before building the model, so a small file
    that declares a huge configuration is refused before memory is spent on it.
    """
    shapes: dict[str, tuple[int, ...]] = {"mapping.w_avg": (cfg.w_dim,)}
    embed = 0 if cfg.c_dim == 0 else (cfg.w_dim if cfg.embed_features is None else cfg.embed_features)
    hidden = cfg.w_dim if cfg.layer_features is None else cfg.layer_features
    if cfg.c_dim > 0:
        shapes["mapping.embed.weight"] = (embed, 2 if cfg.interp_embed else cfg.c_dim)
        shapes["mapping.embed.bias"] = (embed,)
    widths = [cfg.z_dim + embed] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
    for i in range(cfg.mapping_layers):
        shapes[f"mapping.fc{i}.weight"] = (widths[i + 1], widths[i])
        shapes[f"mapping.fc{i}.bias"] = (widths[i + 1],)

    def layer(prefix: str, cin: int, cout: int, res: int, k: int = 3, noise: bool = True) -> None:
        shapes[f"{prefix}.weight"] = (cout, cin, k, k)
        shapes[f"{prefix}.bias"] = (cout,)
        if k == 3:
            shapes[f"{prefix}.resample_filter"] = (4, 4)
        if noise and cfg.use_noise:
            shapes[f"{prefix}.noise_const"] = (res, res)
            shapes[f"{prefix}.noise_strength"] = ()
        shapes[f"{prefix}.affine.weight"] = (cin, cfg.w_dim)
        shapes[f"{prefix}.affine.bias"] = (cin,)

    res = 4
    while res <= cfg.img_resolution:
        b = f"synthesis.b{res}"
        cout = cfg.channels(res)
        cin = cfg.channels(res // 2) if res > 4 else 0
        shapes[f"{b}.resample_filter"] = (4, 4)
        if cin == 0:
            shapes[f"{b}.const"] = (cout, res, res)
        else:
            layer(f"{b}.conv0", cin, cout, res)
        layer(f"{b}.conv1", cout, cout, res)
        if res == cfg.img_resolution or cfg.architecture == "skip":
            layer(f"{b}.torgb", cout, cfg.img_channels, res, k=1, noise=False)
        if cin and cfg.architecture == "resnet":
            shapes[f"{b}.skip.resample_filter"] = (4, 4)
            shapes[f"{b}.skip.weight"] = (cout, cin, 1, 1)
        res *= 2
    return shapes




def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """[1, z_dim] float32 latent from ``RandomState(seed).randn`` (float64 draws, cast once)."""
    return torch.from_numpy(np.random.RandomState(int(seed)).randn(1, z_dim)).to(torch.float32)


def z_from_seeds(seeds: Iterable[int], z_dim: int) -> torch.Tensor:
    """One RandomState per seed, stacked to [len(seeds), z_dim]."""
    zs = [z_from_seed(s, z_dim) for s in seeds]
    if not zs:
        return torch.zeros([0, z_dim])
    return torch.cat(zs, dim=0)


def onehot(class_idx: int, c_dim: int, n: int = 1) -> torch.Tensor:
    """[n, c_dim] float32 one-hot label."""
    if not 0 <= class_idx < c_dim:
        raise ModelError(f"class index {class_idx} out of range for c_dim={c_dim}")
    c = torch.zeros([n, c_dim])
    c[:, class_idx] = 1
    return c


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """NCHW floats in [−1, 1] → NHWC uint8 via ``x·127.5 + 128``, clamp, truncate."""
    x = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    return (x.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


__all__ = [
    "ARCHITECTURES",
    "GanMeta",
    "Generator",
    "GeneratorConfig",
    "MappingNetwork",
    "SynthesisNetwork",
    "default_class_names",
    "onehot",
    "state_shapes",
    "to_uint8",
    "z_from_seed",
    "z_from_seeds",
]
