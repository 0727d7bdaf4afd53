"""Load StyleGAN2 generators from network snapshots (NVLabs, StyleGAN3-repo, Slideflow) or our format.

Snapshots are read with the restricted unpickler in ``_unpickle`` (no code from the file runs);
the model is rebuilt from the per-module attributes stored in the pickle, never from the
constructor kwargs, whose layout differs between repositories. ``training_options.json`` beside a
snapshot supplies the tile size in µm and class names when present.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from histobridge.errors import CheckpointError, ModelError
from histobridge.models._gan_build import build_checked
from histobridge.models._unpickle import PersistentStub, check_tree, iter_state_tensors, load_pickle
from histobridge.models.gan_format import load_safetensors_generator, save_generator
from histobridge.models.stylegan2 import GanMeta, Generator, GeneratorConfig, default_class_names
from histobridge.models.training_options import read_training_options

log = logging.getLogger(__name__)

GENERATOR_CLASSES = frozenset(
    {
        "Generator", "MappingNetwork", "InterpolatedMappingNetwork", "SynthesisNetwork", "SynthesisBlock",
        "SynthesisLayer", "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer",
    }
)
_STYLEGAN3_MSG = (
    "{path}: this is a StyleGAN3 (config T or R) generator ({why}); only StyleGAN2-architecture generators"
    " are supported (StyleGAN3-repo snapshots trained with --cfg=stylegan2 load fine)"
)


def _check_classes(g: PersistentStub, path: Path) -> None:
    """Refuse StyleGAN3-T/R and anything that is not a known generator building block."""
    for where, stub in check_tree(g):
        if stub.class_name == "SynthesisInput" or where.endswith(".input"):
            raise CheckpointError(_STYLEGAN3_MSG.format(path=path, why=f"{where} is a {stub.class_name}"))
        if stub.class_name not in GENERATOR_CLASSES:
            raise CheckpointError(f"{path}: unexpected network class {stub.class_name!r:.60} at {where}")
        name = where.rsplit(".", 1)[-1]
        if name.startswith("L") and "_" in name and stub.attr("magnitude_ema") is not None:
            raise CheckpointError(_STYLEGAN3_MSG.format(path=path, why=f"layer {name}"))


def _find_generator(obj: Any, path: Path) -> PersistentStub:
    if isinstance(obj, dict):
        for key in ("G_ema", "G"):
            if isinstance(obj.get(key), PersistentStub):
                if key == "G":
                    log.warning("%s: no G_ema in the snapshot; using G", path)
                found: PersistentStub = obj[key]
                return found
        keys = sorted(repr(k)[:40] for k in obj if isinstance(k, str))[:10]
        raise CheckpointError(f"{path}: the snapshot has no G_ema network (keys: {keys})")
    if isinstance(obj, PersistentStub) and obj.class_name == "Generator":
        return obj
    if isinstance(obj, tuple):
        raise CheckpointError(f"{path}: a tuple pickle looks like a TensorFlow-era (G, D, Gs) snapshot")
    raise CheckpointError(f"{path}: not a StyleGAN network snapshot (top level is {type(obj).__name__})")


def _num(x: Any, what: str = "value") -> float:
    """A finite number from the file (Python or numpy scalar)."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, int | float | np.integer | np.floating):
        raise CheckpointError(f"{what} must be a number, got a {type(x).__name__}")
    value = float(x)
    if not math.isfinite(value):
        raise CheckpointError(f"{what} must be finite, got {value}")
    return value


def _int(stub: PersistentStub, name: str, hi: int = 1 << 24) -> int:
    """An integer attribute of a network object, within [0, hi]."""
    x = stub.attr(name)
    if isinstance(x, bool | np.bool_) or not isinstance(x, int | np.integer) or not 0 <= int(x) <= hi:
        raise CheckpointError(f"{stub.class_name}.{name} must be an integer in [0, {hi}], got {x!r:.40}")
    return int(x)


def _mapping_config(mapping: PersistentStub, sd: dict[str, Any], path: Path) -> dict[str, Any]:
    num_layers = _int(mapping, "num_layers", 64)
    c_dim = _int(mapping, "c_dim", 1 << 16)
    interp = mapping.class_name == "InterpolatedMappingNetwork"
    embed = sd.get("mapping.embed.weight")
    beta = mapping.attr("w_avg_beta")
    fc0 = mapping.modules.get("fc0")
    if fc0 is None:
        raise CheckpointError(f"{path}: mapping network has no fc0 layer")
    if fc0.attr("activation") != "lrelu":
        raise CheckpointError(f"{path}: mapping activation {fc0.attr('activation')!r} is not supported")
    if interp and (c_dim != 1 or embed is None or embed.shape[1] != 2):
        raise CheckpointError(f"{path}: interpolated-embedding mapping needs c_dim=1 and a [F, 2] embedding")
    hidden = sd["mapping.fc0.weight"].shape[0] if num_layers > 1 else None
    return {
        "mapping_layers": num_layers,
        "embed_features": None if embed is None else int(embed.shape[0]),
        "layer_features": hidden,
        "mapping_lr_mul": _num(fc0.attr("bias_gain", 0.01), "mapping.fc0.bias_gain"),
        "w_avg_beta": None if beta is None else _num(beta, "w_avg_beta"),
        "interp_embed": interp,
    }


def _synthesis_config(synth: PersistentStub, sd: dict[str, Any], path: Path) -> dict[str, Any]:
    res_list = synth.attr("block_resolutions")
    if not isinstance(res_list, list | tuple) or not 0 < len(res_list) <= 12:
        raise CheckpointError(f"{path}: synthesis.block_resolutions is not a short list of resolutions")
    blocks = [synth.modules[f"b{r}"] for r in res_list]
    archs = {str(b.attr("architecture", "skip")) for b in blocks}
    layers = [m for b in blocks for n, m in b.modules.items() if n in ("conv0", "conv1", "torgb")]
    clamps = {layer.attr("conv_clamp") for layer in layers}
    noise = {bool(layer.attr("use_noise")) for layer in layers if layer.class_name == "SynthesisLayer"}
    if len(archs) != 1 or len(clamps) != 1 or len(noise) != 1:
        raise CheckpointError(f"{path}: mixed block settings (architecture {archs}, conv_clamp {clamps})")
    for b in blocks:
        skip = b.modules.get("skip")
        if skip is not None and skip.attr("conv_clamp") is not None:
            raise CheckpointError(f"{path}: a clamped resnet skip branch is not supported")
    chans = {int(b.attr("resolution")): int(sd[f"synthesis.b{b.attr('resolution')}.conv1.weight"].shape[0])
             for b in blocks}
    base, cmax = _channel_params(chans, synth.attr("_init_kwargs") or {}, path)
    clamp = clamps.pop()
    return {
        "channel_base": base,
        "channel_max": cmax,
        "conv_clamp": None if clamp is None else _num(clamp, "conv_clamp"),
        "architecture": archs.pop(),
        "use_noise": noise.pop(),
    }


def _channel_params(chans: dict[int, int], kwargs: dict[str, Any], path: Path) -> tuple[int, int]:
    """channel_base/channel_max reproducing every block's width (kwargs first, else derived)."""

    def fits(base: int, cmax: int) -> bool:
        return all(min(base // r, cmax) == c for r, c in chans.items())

    hint = kwargs.get("synthesis_kwargs", kwargs) if hasattr(kwargs, "get") else {}
    cands = []
    if hasattr(hint, "get") and hint.get("channel_base") is not None:
        cands.append((int(hint["channel_base"]), int(hint.get("channel_max", 512))))
    cmax = max(chans.values())
    below = [(r, c) for r, c in chans.items() if c < cmax]
    cands.append((below[-1][0] * below[-1][1] if below else cmax * max(chans), cmax))
    cands += [(r * c, cmax) for r, c in below]
    for base, top in cands:
        if fits(base, top):
            return base, top
    raise CheckpointError(f"{path}: block widths {chans} do not follow min(channel_base // r, channel_max)")


def _check_gains(g: PersistentStub, path: Path) -> None:
    """Our gains are recomputed from the config; refuse files whose stored gains disagree."""
    for where, stub in check_tree(g):
        gain = stub.attr("weight_gain")
        w = (stub.attr("_parameters") or {}).get("weight")
        if gain is not None and w is not None:
            fan_in = w[0].numel()
            gain = _num(gain, f"weight_gain at {where}")
            lr = 1.0
            if stub.class_name == "FullyConnectedLayer":
                lr = _num(stub.attr("bias_gain", 1.0), f"bias_gain at {where}")
            if fan_in == 0 or not math.isclose(gain, lr / math.sqrt(fan_in), rel_tol=1e-6):
                raise CheckpointError(f"{path}: unexpected weight_gain {gain} at {where}")


def _variant(g: PersistentStub, mapping: PersistentStub, synth: PersistentStub) -> str:
    """sgsf (Slideflow fork), sg3-stylegan2 (flat kwargs, num_fp16_res) or sg2ada (nested kwargs)."""
    kwargs = g.attr("_init_kwargs") or {}
    prefix = g.module.rsplit("torch_utils.persistence", 1)[0]
    if prefix.startswith("slideflow.") or mapping.class_name == "InterpolatedMappingNetwork":
        return "sgsf"
    if "interp_embed" in kwargs:
        return "sgsf"
    if synth.attr("num_fp16_res") is not None or "channel_base" in kwargs:
        return "sg3-stylegan2"
    return "sg2ada"


def generator_from_stub(g: PersistentStub, path: Path) -> Generator:
    """Build and fill a :class:`Generator` from an unpickled G_ema stub tree."""
    try:
        return _generator_from_stub(g, path)
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from err
    except ModelError as err:
        raise CheckpointError(f"{path}: {err}") from err
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError,
            ZeroDivisionError) as err:
        why = f"{type(err).__name__}: {err!s:.160}"
        raise CheckpointError(f"{path}: malformed network attributes ({why})") from err


def _generator_from_stub(g: PersistentStub, path: Path) -> Generator:
    _check_classes(g, path)
    mapping, synth = g.modules.get("mapping"), g.modules.get("synthesis")
    if mapping is None or synth is None:
        raise CheckpointError(f"{path}: the generator lacks a mapping or synthesis network")
    sd = dict(iter_state_tensors(g))
    _check_gains(g, path)
    cfg = GeneratorConfig(
        z_dim=_int(g, "z_dim", 1 << 16), c_dim=_int(g, "c_dim", 1 << 16), w_dim=_int(g, "w_dim", 1 << 16),
        img_resolution=_int(g, "img_resolution", 1 << 13), img_channels=_int(g, "img_channels", 64),
        **_mapping_config(mapping, sd, path), **_synthesis_config(synth, sd, path),
    )
    G = build_checked(cfg, sd, str(path))
    G.meta = GanMeta(
        class_names=default_class_names(cfg.c_dim, cfg.interp_embed), tile_px=cfg.img_resolution,
        source=str(path), variant=_variant(g, mapping, synth),
    )
    return G


def require_tile_um(G: Generator, gan_um: float | None = None) -> float:
    """The µm width of one generated tile: ``gan_um`` if given, else the checkpoint's metadata."""
    if gan_um is not None:
        if gan_um <= 0:
            raise CheckpointError(f"--gan-um must be positive, got {gan_um}")
        return float(gan_um)
    if G.meta.tile_um is None:
        raise CheckpointError(
            f"{G.meta.source or 'generator'}: the tile size in µm is unknown (no training_options.json"
            " with slideflow_kwargs.tile_um beside the checkpoint); pass --gan-um"
        )
    return G.meta.tile_um


def _with_overrides(G: Generator, gan_um: float | None, class_names: tuple[str, ...] | None) -> None:
    meta = G.meta
    if gan_um is not None:
        um = require_tile_um(G, gan_um)
        if meta.tile_um is not None and not math.isclose(meta.tile_um, um):
            log.warning("using --gan-um %.4g instead of the checkpoint's %.4g µm", um, meta.tile_um)
        meta = GanMeta(meta.class_names, meta.tile_px, um, meta.source, meta.variant)
    if class_names is not None:
        n = 2 if G.config.interp_embed else G.c_dim
        if len(class_names) != n:
            raise CheckpointError(f"{len(class_names)} class names given for a generator with {n} classes")
        meta = GanMeta(tuple(class_names), meta.tile_px, meta.tile_um, meta.source, meta.variant)
    G.meta = meta


def load_generator(
    path: str | os.PathLike[str],
    *,
    gan_um: float | None = None,
    device: str = "cpu",
    class_names: tuple[str, ...] | None = None,
) -> Generator:
    """Load a generator (snapshot ``.pkl`` or histobridge ``.safetensors``/``.json``) in eval mode."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        G = load_safetensors_generator(p, device="cpu")
    elif p.suffix == ".pkl" or p.is_file():
        if not p.is_file():
            raise CheckpointError(f"{p}: checkpoint not found")
        G = generator_from_stub(_find_generator(load_pickle(p), p), p)
        G.meta = read_training_options(p, G)
    else:
        raise CheckpointError(f"{p}: not found (expected a .pkl snapshot or a .safetensors generator)")
    _with_overrides(G, gan_um, class_names)
    return G.eval().requires_grad_(False).to(device)


__all__ = [
    "generator_from_stub",
    "load_generator",
    "read_training_options",
    "require_tile_um",
    "save_generator",
]
