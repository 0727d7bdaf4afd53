"""Load StyleGAN2 generators from network snapshots (NVLabs, StyleGAN3-repo, Slideflow) or our format.

Snapshots are read with the restricted unpickler in ``_unpickle`` (no code from the file runs);
the model is rebuilt from the per-module attributes stored in the pickle, never from the
constructor kwargs, whose layout differs between repositories. ``training_options.json`` beside a
snapshot supplies the tile size in µm and class names when present.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from histobridge.errors import CheckpointError
from histobridge.models._unpickle import PersistentStub, iter_state_tensors, load_pickle
from histobridge.models.gan_format import load_safetensors_generator, save_generator
from histobridge.models.stylegan2 import GanMeta, Generator, GeneratorConfig, default_class_names

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


def _check_classes(stub: PersistentStub, path: Path, where: str = "G_ema") -> None:
    """Refuse StyleGAN3-T/R and anything that is not a known generator building block."""
    if stub.class_name == "SynthesisInput" or where.endswith(".input"):
        raise CheckpointError(_STYLEGAN3_MSG.format(path=path, why=f"{where} is a {stub.class_name}"))
    if stub.class_name not in GENERATOR_CLASSES:
        raise CheckpointError(f"{path}: unexpected network class {stub.class_name!r} at {where}")
    for name, child in stub.modules.items():
        if isinstance(child, PersistentStub):
            if name.startswith("L") and "_" in name and child.attr("magnitude_ema") is not None:
                raise CheckpointError(_STYLEGAN3_MSG.format(path=path, why=f"layer {name}"))
            _check_classes(child, path, f"{where}.{name}")


def _find_generator(obj: Any, path: Path) -> PersistentStub:
    if isinstance(obj, dict):
        for key in ("G_ema", "G"):
            if isinstance(obj.get(key), PersistentStub):
                if key == "G":
                    log.warning("%s: no G_ema in the snapshot; using G", path)
                return obj[key]
        raise CheckpointError(f"{path}: the snapshot has no G_ema network (keys: {sorted(map(str, obj))})")
    if isinstance(obj, PersistentStub) and obj.class_name == "Generator":
        return obj
    if isinstance(obj, tuple):
        raise CheckpointError(f"{path}: a tuple pickle looks like a TensorFlow-era (G, D, Gs) snapshot")
    raise CheckpointError(f"{path}: not a StyleGAN network snapshot (top level is {type(obj).__name__})")


def _num(x: Any) -> float:
    return float(x)


def _mapping_config(mapping: PersistentStub, sd: dict[str, Any], path: Path) -> dict[str, Any]:
    num_layers = int(mapping.attr("num_layers"))
    c_dim = int(mapping.attr("c_dim"))
    interp = mapping.class_name == "InterpolatedMappingNetwork"
    embed = sd.get("mapping.embed.weight")
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
        "mapping_lr_mul": _num(fc0.attr("bias_gain", 0.01)),
        "w_avg_beta": None if mapping.attr("w_avg_beta") is None else _num(mapping.attr("w_avg_beta")),
        "interp_embed": interp,
    }


def _synthesis_config(synth: PersistentStub, sd: dict[str, Any], path: Path) -> dict[str, Any]:
    blocks = [synth.modules[f"b{r}"] for r in synth.attr("block_resolutions")]
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
        "conv_clamp": None if clamp is None else _num(clamp),
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


def _check_gains(stub: PersistentStub, path: Path, where: str = "G_ema") -> None:
    """Our gains are recomputed from the config; refuse files whose stored gains disagree."""
    gain = stub.attr("weight_gain")
    w = stub.attr("_parameters", {}).get("weight")
    if gain is not None and w is not None:
        fan_in = w[0].numel()
        lr = float(stub.attr("bias_gain", 1.0)) if stub.class_name == "FullyConnectedLayer" else 1.0
        if not math.isclose(float(gain), lr / math.sqrt(fan_in), rel_tol=1e-6):
            raise CheckpointError(f"{path}: unexpected weight_gain {float(gain)} at {where}")
    for name, child in stub.modules.items():
        if isinstance(child, PersistentStub):
            _check_gains(child, path, f"{where}.{name}")


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
    _check_classes(g, path)
    mapping, synth = g.modules.get("mapping"), g.modules.get("synthesis")
    if mapping is None or synth is None:
        raise CheckpointError(f"{path}: the generator lacks a mapping or synthesis network")
    sd = dict(iter_state_tensors(g))
    _check_gains(g, path)
    cfg = GeneratorConfig(
        z_dim=int(g.attr("z_dim")), c_dim=int(g.attr("c_dim")), w_dim=int(g.attr("w_dim")),
        img_resolution=int(g.attr("img_resolution")), img_channels=int(g.attr("img_channels")),
        **_mapping_config(mapping, sd, path), **_synthesis_config(synth, sd, path),
    )
    G = Generator(cfg)
    missing, unexpected = G.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: state dict does not match the rebuilt generator"
            f" (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    G.meta = GanMeta(
        class_names=default_class_names(cfg.c_dim, cfg.interp_embed), tile_px=cfg.img_resolution,
        source=str(path), variant=_variant(g, mapping, synth),
    )
    return G


# ----------------------------------------------------------------------------- metadata


def _class_names_from(opts: dict[str, Any], n: int) -> tuple[str, ...] | None:
    sf = opts.get("slideflow_kwargs") or {}
    for src in (sf, opts):
        for key in ("outcome_labels", "class_names", "outcome_names"):
            val = src.get(key)
            if isinstance(val, dict) and val:
                items = sorted(val.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else str(kv[0]))
                names = tuple(str(v) for _, v in items)
            elif isinstance(val, list | tuple) and val:
                names = tuple(str(v) for v in val)
            else:
                continue
            if len(names) == n:
                return names
            log.warning("training options list %d class names for %d classes; ignoring them", len(names), n)
    return None


def read_training_options(path: Path, G: Generator) -> GanMeta:
    """Fill tile px/µm and class names from ``training_options.json`` beside the snapshot."""
    opts_path = path.parent / "training_options.json"
    meta = G.meta
    if not opts_path.is_file():
        return meta
    try:
        opts = json.loads(opts_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{opts_path}: unreadable training options: {err}") from err
    if not isinstance(opts, dict):
        raise CheckpointError(f"{opts_path}: training options are not a JSON object")
    sf = opts.get("slideflow_kwargs") or {}
    tile_um = sf.get("tile_um", opts.get("tile_um"))
    resize = sf.get("resize") or opts.get("resize")
    tile_px = resize or sf.get("tile_px") or opts.get("tile_px") or G.img_resolution
    if int(tile_px) != G.img_resolution:
        log.warning("%s: tile_px %s differs from the generator's %d px output", opts_path, tile_px,
                    G.img_resolution)
    n = 2 if G.config.interp_embed else G.c_dim
    names = _class_names_from(opts, n) or meta.class_names
    um = None
    if isinstance(tile_um, int | float) and not isinstance(tile_um, bool) and tile_um > 0:
        um = float(tile_um)
    elif tile_um is not None:
        log.warning("%s: tile_um %r is not a number of µm; ignoring it", opts_path, tile_um)
    return GanMeta(
        class_names=names, tile_px=int(tile_px), tile_um=um, source=meta.source, variant=meta.variant
    )


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
