"""Test-only writer of format-faithful StyleGAN network snapshots (no third-party code inside).

Stand-in modules are registered under the module names real snapshots reference
(``torch_utils.persistence``, ``dnnlib.util`` or the Slideflow paths) only while pickling, so
the file carries the same GLOBALs and per-module state layout as a real snapshot, with a
placeholder line in place of any embedded source text. The weights come from our own randomly
initialised :class:`Generator`.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from histobridge.models.stylegan2 import Generator

PLACEHOLDER_SRC = "# placeholder: module source text is not reproduced here\n"
SLIDEFLOW_PREFIX = "slideflow.gan.stylegan2.stylegan2."

_ATTRS: dict[str, tuple[str, ...]] = {
    "Generator": ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "num_ws"),
    "MappingNetwork": ("z_dim", "c_dim", "w_dim", "num_ws", "num_layers", "w_avg_beta"),
    "FullyConnectedLayer": ("activation", "weight_gain", "bias_gain"),
    "SynthesisNetwork": (
        "w_dim", "img_resolution", "img_resolution_log2", "img_channels", "block_resolutions", "num_ws",
    ),
    "SynthesisBlock": (
        "in_channels", "w_dim", "resolution", "img_channels", "is_last", "architecture", "use_fp16",
        "channels_last", "num_conv", "num_torgb",
    ),
    "SynthesisLayer": ("resolution", "up", "use_noise", "activation", "conv_clamp", "padding", "act_gain"),
    "ToRGBLayer": ("conv_clamp", "weight_gain"),
    "Conv2dLayer": ("activation", "up", "down", "conv_clamp", "padding", "weight_gain", "act_gain"),
}
_NUMPY_ATTRS = {"weight_gain", "act_gain"}
_HOOKS = (
    "_backward_pre_hooks", "_backward_hooks", "_forward_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
    "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def _reconstruct_placeholder(meta: Any) -> Any:  # pragma: no cover - never called by the loader
    raise RuntimeError("stand-in reconstructor must not run")


class _Persisted:
    """Pickles as ``<prefix>torch_utils.persistence._reconstruct_persistent_obj(meta)``."""

    def __init__(self, fn: Any, class_name: str, state: dict[str, Any], src: str = PLACEHOLDER_SRC) -> None:
        self.fn, self.meta = fn, {
            "type": "class", "version": 6, "module_src": src, "class_name": class_name, "state": state,
        }

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.fn, (self.meta,)


class StandIns:
    """The stand-in reconstructor and EasyDict registered under a module prefix."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.reconstruct = types.FunctionType(
            _reconstruct_placeholder.__code__, {}, "_reconstruct_persistent_obj"
        )
        self.reconstruct.__module__ = prefix + "torch_utils.persistence"
        self.reconstruct.__qualname__ = "_reconstruct_persistent_obj"
        self.easydict = type("EasyDict", (dict,), {"__module__": prefix + "dnnlib.util"})

    @contextlib.contextmanager
    def registered(self) -> Iterator[StandIns]:
        names = {
            self.prefix + "torch_utils.persistence": {"_reconstruct_persistent_obj": self.reconstruct},
            self.prefix + "dnnlib.util": {"EasyDict": self.easydict},
        }
        with fake_modules(names):
            yield self

    def persisted(self, class_name: str, state: dict[str, Any], src: str = PLACEHOLDER_SRC) -> _Persisted:
        return _Persisted(self.reconstruct, class_name, state, src)

    def edict(self, **kw: Any) -> dict[str, Any]:
        return self.easydict(**kw)


@contextlib.contextmanager
def fake_modules(members: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Temporarily register modules (and their parents) with the given members."""
    saved: dict[str, Any] = {}
    for full, attrs in members.items():
        parts = full.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in saved:
                saved[name] = sys.modules.get(name)
                sys.modules[name] = types.ModuleType(name)
        for key, val in attrs.items():
            setattr(sys.modules[full], key, val)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def module_state(si: StandIns, module: nn.Module, *, layout: str = "sg2ada") -> _Persisted:
    """One network object in the snapshot layout: torch internals + plain attributes + kwargs."""
    cls = type(module).__name__
    if cls == "MappingNetwork" and getattr(module, "interp_embed", False):
        cls = "InterpolatedMappingNetwork"
    attr_cls = "MappingNetwork" if cls == "InterpolatedMappingNetwork" else cls
    params = collections.OrderedDict(
        (k, None if v is None else nn.Parameter(v.detach().clone(), requires_grad=False))
        for k, v in module._parameters.items()
    )
    if cls == "Conv2dLayer":
        params["bias"] = None  # real files keep a None entry for a layer without bias
    state: dict[str, Any] = {
        "training": False,
        "_parameters": params,
        "_buffers": collections.OrderedDict((k, v.detach().clone()) for k, v in module._buffers.items()),
        "_non_persistent_buffers_set": set(),
        **{h: collections.OrderedDict() for h in _HOOKS},
        "_modules": collections.OrderedDict(
            (k, module_state(si, v, layout=layout)) for k, v in module._modules.items()
        ),
    }
    for name in _ATTRS[attr_cls]:
        val = getattr(module, name)
        state[name] = np.float64(val) if name in _NUMPY_ATTRS else copy.deepcopy(val)
    if layout == "sg3" and cls == "FullyConnectedLayer":
        state["in_features"], state["out_features"] = module.in_features, module.out_features
    state["_init_args"] = ()
    state["_init_kwargs"] = si.edict()
    return si.persisted(cls, state)


def generator_state(si: StandIns, G: Generator, layout: str) -> _Persisted:
    """The G_ema object with the constructor kwargs layout of the given repository."""
    cfg = G.config
    obj = module_state(si, G, layout=layout)
    state = obj.meta["state"]
    top = {"z_dim": cfg.z_dim, "c_dim": cfg.c_dim, "w_dim": cfg.w_dim,
           "img_resolution": cfg.img_resolution, "img_channels": cfg.img_channels}
    synth = {"channel_base": cfg.channel_base, "channel_max": cfg.channel_max, "num_fp16_res": 4,
             "conv_clamp": cfg.conv_clamp, "architecture": cfg.architecture}
    mapping = si.edict(num_layers=cfg.mapping_layers)
    if layout == "sg3":
        state["_init_kwargs"] = si.edict(**top, mapping_kwargs=mapping, **synth)
        state["_modules"]["synthesis"].meta["state"]["num_fp16_res"] = 4
    else:
        state["_init_kwargs"] = si.edict(**top, mapping_kwargs=mapping, synthesis_kwargs=si.edict(**synth))
        if layout == "sgsf":
            state["_init_kwargs"]["interp_embed"] = cfg.interp_embed
    return obj


def stub_state(obj: _Persisted, dotted: str = "") -> dict[str, Any]:
    """The pickled ``state`` dict of a network object or of its sub-module at ``dotted`` ("mapping.fc0")."""
    state: dict[str, Any] = obj.meta["state"]
    for name in filter(None, dotted.split(".")):
        state = state["_modules"][name].meta["state"]
    return state


def perturbed(G: Generator) -> Generator:
    """A copy with different weights, standing in for the non-averaged training generator."""
    other = copy.deepcopy(G)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    return other


def write_snapshot(
    G: Generator,
    path: str | Path,
    *,
    layout: str = "sg2ada",
    protocol: int = 4,
    training_set_kwargs: Any = None,
    prefix: str | None = None,
    edit: Any = None,
) -> Path:
    """Write ``{training_set_kwargs, G, D, G_ema, augment_pipe}`` as the training loop does.

    ``edit(data)`` may change the snapshot dict (e.g. through :func:`stub_state`) before it is written.
    """
    if prefix is None:
        prefix = SLIDEFLOW_PREFIX if layout == "sgsf" else ""
    si = StandIns(prefix)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with si.registered():
        data = {
            "training_set_kwargs": training_set_kwargs,
            "G": generator_state(si, perturbed(G), layout),
            "D": si.persisted("Discriminator", {"_modules": {}, "_parameters": {}, "_buffers": {}}),
            "G_ema": generator_state(si, G, layout),
            "augment_pipe": None,
        }
        if layout == "sg3":
            data = {k: data[k] for k in ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs")}
        if edit is not None:
            edit(data)
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


def write_stylegan3_tr(path: str | Path) -> Path:
    """A minimal StyleGAN3-T/R-shaped snapshot: SynthesisInput + L-layers with magnitude_ema."""
    si = StandIns()
    with si.registered():
        layer = si.persisted("SynthesisLayer", {
            "_parameters": {}, "_buffers": {"magnitude_ema": torch.ones([])}, "_modules": {},
            "magnitude_ema": True, "up_filter": np.ones(4, dtype=np.float32),
        })
        synth = si.persisted("SynthesisNetwork", {"_parameters": {}, "_buffers": {}, "_modules": {
            "input": si.persisted("SynthesisInput", {"_parameters": {}, "_buffers": {}, "_modules": {},
                                                      "bandwidth": np.float64(2.0)}),
            "L0_36_512": layer,
        }, "num_ws": 16})
        g = si.persisted("Generator", {
            "_parameters": {}, "_buffers": {}, "_modules": {"synthesis": synth, "mapping": si.persisted(
                "MappingNetwork", {"_parameters": {}, "_buffers": {}, "_modules": {}})},
            "z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 256, "img_channels": 3, "num_ws": 16,
        })
        path = Path(path)
        path.write_bytes(pickle.dumps({"G": g, "D": None, "G_ema": g, "augment_pipe": None}, protocol=4))
    return path


def write_tf_era(path: str | Path) -> Path:
    """A ``(G, D, Gs)`` tuple of ``dnnlib.tflib.network.Network`` objects, as TF-era files hold."""
    network = type("Network", (), {"__module__": "dnnlib.tflib.network"})
    with fake_modules({"dnnlib.tflib.network": {"Network": network}}):
        nets = []
        for name in ("G", "D", "Gs"):
            net = network()
            net.__dict__.update({"name": name, "version": 4, "build_module_src": PLACEHOLDER_SRC})
            nets.append(net)
        path = Path(path)
        path.write_bytes(pickle.dumps(tuple(nets), protocol=2))
    return path


class _CallsGlobal:
    """Pickles as a call of an arbitrary global: what a malicious snapshot would do."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.fn, self.args


def write_malicious(path: str | Path, fn: Any, *args: Any, inside_snapshot: bool = True) -> Path:
    """A snapshot-shaped pickle whose ``training_set_kwargs`` would call ``fn(*args)`` when loaded."""
    payload = _CallsGlobal(fn, *args)
    si = StandIns()
    with si.registered():
        obj: Any = payload
        if inside_snapshot:
            obj = {"training_set_kwargs": {"labels": payload}, "G_ema": si.persisted("Generator", {})}
        Path(path).write_bytes(pickle.dumps(obj, protocol=4))
    return Path(path)


class ForgedDType:
    """Pickles as ``numpy.dtype(code, False, True)`` followed by BUILD with an arbitrary state."""

    def __init__(self, code: str, state: tuple[Any, ...]) -> None:
        self.code, self.state = code, state

    def __reduce__(self) -> tuple[Any, ...]:
        return np.dtype, (self.code, False, True), self.state


class ForgedArray:
    """Pickles as ``numpy…_reconstruct(ndarray, (0,), b'b')`` + BUILD ``(1, shape, dtype, fortran, raw)``."""

    def __init__(self, shape: tuple[int, ...], dtype: Any, raw: Any, fortran: bool = False) -> None:
        self.shape, self.dtype, self.raw, self.fortran = shape, dtype, raw, fortran

    def __reduce__(self) -> tuple[Any, ...]:
        core = getattr(np, "_core", None) or np.core
        return (core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                (1, self.shape, self.dtype, self.fortran, self.raw))


def object_pointer_array(address: int = 0x4141414141414141) -> ForgedArray:
    """An object-dtype array whose "has references" flags were reset: its bytes would be read as a pointer."""
    dt = ForgedDType("O8", (3, "|", None, None, None, -1, -1, 0))
    return ForgedArray((1,), dt, address.to_bytes(8, "little"))


def huge_offset_struct_array() -> ForgedArray:
    """A structured array whose one field claims to sit 2**40 bytes into an 8-byte element."""
    dt = ForgedDType("V8", (3, "|", None, ("a",), {"a": (np.dtype("f8"), 2**40)}, 8, 1, 16))
    return ForgedArray((1,), dt, b"\0" * 8)


def wrong_size_array() -> ForgedArray:
    """A float64 array of 1000 elements backed by 8 bytes."""
    return ForgedArray((1000,), ForgedDType("f8", (3, "<", None, None, None, -1, -1, 0)), b"\0" * 8)


_RUNNER = r"""
import json, resource, sys
limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from histobridge.errors import HistobridgeError
from histobridge.models.checkpoints import load_generator
for path in sys.argv[2:]:
    try:
        load_generator(path)
        print(json.dumps([path, "loaded", ""]), flush=True)
    except HistobridgeError as err:
        print(json.dumps([path, type(err).__name__, str(err)]), flush=True)
"""


def load_in_subprocess(
    paths: list[Path], *, address_space: int = 0, timeout: float = 120
) -> dict[str, tuple[str, str]]:
    """``load_generator`` on each path in a child process: {path: (error class or "loaded", message)}.

    A crash (segfault, uncaught exception, memory limit hit) fails the calling test instead of
    taking pytest down; ``address_space`` caps the child's virtual memory (RLIMIT_AS) in bytes.
    """
    import json
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(address_space), *map(str, paths)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    assert proc.returncode == 0, f"loader process failed (rc {proc.returncode}): {proc.stderr[-3000:]}"
    out = {}
    for line in proc.stdout.splitlines():
        path, kind, msg = json.loads(line)
        out[path] = (kind, msg)
    assert len(out) == len(paths), proc.stdout
    return out
