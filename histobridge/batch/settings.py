"""What a batch does: the steps, their models and the tile geometry, checked before anything runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from histobridge.errors import InputError
from histobridge.heatmap.pipeline import HeatmapOptions
from histobridge.teach.build import TeachSettings
from histobridge.tiling.options import TilingOptions

STEPS = ("tile", "heatmap", "synth", "teach")
GPU_STEPS = frozenset({"heatmap", "synth", "teach"})  # they run a network; tiling is I/O and CPU


@dataclass(frozen=True)
class BatchSettings:
    """Steps and what they need. ``tile_px``/``tile_um`` default to the generator's own tile (what
    synth needs); ``model`` is the heatmap (and teaching) classifier; ``classify_synthetic`` also
    classifies synthetic tiles with it. Library options keep one thread per task by default: the
    cluster's worker processes are the parallelism."""

    steps: tuple[str, ...]
    out: Path
    model: Path | None = None
    generator: Path | None = None
    tile_px: int | None = None
    tile_um: float | None = None
    gan_um: float | None = None
    n: int | None = None
    class_map: tuple[tuple[str, str], ...] = ()
    seed0: int = 0
    classify_synthetic: bool = False
    device: str = "cpu"
    tiling: TilingOptions = field(default_factory=lambda: TilingOptions(workers=1))
    heatmap: HeatmapOptions = field(default_factory=lambda: HeatmapOptions(workers=1))
    teach: TeachSettings = field(default_factory=TeachSettings)

    def __post_init__(self) -> None:
        steps = tuple(dict.fromkeys(s.strip() for s in self.steps if s.strip()))
        unknown = [s for s in steps if s not in STEPS]
        if unknown or not steps:
            got = ", ".join(self.steps) or "none"
            raise InputError(f"steps must be some of {', '.join(STEPS)}, got {got}")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "out", Path(self.out))
        needs = {"model": ("heatmap", "teach"), "generator": ("synth", "teach")}
        for what, users in needs.items():
            used = [s for s in steps if s in users]
            if used and getattr(self, what) is None:
                raise InputError(f"step {used[0]} needs --{what}")
        if self.classify_synthetic and self.model is None:
            raise InputError("classifying synthetic tiles needs --model")
        if "synth" in steps and "tile" not in steps:
            raise InputError("step synth needs step tile (synthetic tiles are matched to the real ones)")
        if (self.tile_px is None) != (self.tile_um is None):
            raise InputError("give both --tile-px and --tile-um, or neither (the generator's tile is used)")
        if "tile" in steps and self.tile_px is None and self.generator is None:
            raise InputError("step tile needs --tile-px and --tile-um, or --generator to take them from")
        if self.tile_px is not None and (self.tile_px < 1 or not (self.tile_um or 0) > 0):
            raise InputError(f"tile size must be positive, got {self.tile_px} px over {self.tile_um} µm")
        if self.heatmap.write_back == "paquo":
            raise InputError("a batch writes predictions back as GeoJSON; paquo edits the one project file")
        if self.n is not None and self.n < 1:
            raise InputError(f"n must be positive, got {self.n}")

    def record(self, step: str) -> dict[str, Any]:
        """The settings that decide what ``step`` writes (part of the resume key)."""
        common = {"device": self.device}
        if step == "tile":
            return {"tile_px": self.tile_px, "tile_um": self.tile_um, "tiling": _plain(asdict(self.tiling))}
        if step == "heatmap":
            return {**common, "model": _file_key(self.model), "heatmap": _plain(asdict(self.heatmap))}
        if step == "synth":
            return {
                **common, "generator": _file_key(self.generator), "gan_um": self.gan_um, "n": self.n,
                "class_map": [list(p) for p in self.class_map], "seed0": self.seed0,
                "classifier": _file_key(self.model) if self.classify_synthetic else None,
            }  # fmt: skip
        return {**common, "model": _file_key(self.model), "generator": _file_key(self.generator),
                "teach": _plain(asdict(self.teach))}  # fmt: skip


def _file_key(path: Path | None) -> list[Any] | None:
    """A model file or folder as (path, size, mtime): a replaced model means the work is redone."""
    if path is None:
        return None
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return [str(p.resolve()), [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.exists()]]


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
