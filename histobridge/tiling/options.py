"""The settings of one tiling run besides the tile geometry: validated once, before any image is opened."""

from __future__ import annotations

import math
from dataclasses import dataclass

from histobridge.errors import CalibrationError, InputError
from histobridge.slides.slide import RESAMPLE_MODES
from histobridge.tiling._shards import COMPRESSIONS, DEFAULT_COMPRESSION
from histobridge.tiling.regions import RegionOptions

MPP_RANGE = (0.05, 20.0)  # µm/px a user may type: 0.05 is beyond any light microscope, 20 below a 0.5x scan
MAX_TILES_PER_IMAGE = 2_000_000  # ~400 GB of 256-px tiles: beyond that it is a typo, not a plan
MAX_UPSAMPLE = 2.0  # output px per slide px above which tiles hold made-up detail (warned)


@dataclass(frozen=True)
class TilingOptions:
    """What to tile and how: classes, tissue filtering, threads, pixel-size rules and safety limits.

    ``mpp`` fills in images whose file and project record no pixel size; ``mpp_override`` replaces
    every image's own value (the run reports each replacement). Values outside ``mpp_range`` are
    refused as typos (``--mpp 50``). ``max_tiles`` caps the grid positions planned per image.
    ``replace`` lets a run replace groups written with another tile size (refused otherwise);
    ``closed_lines_as_areas`` reads closed outlines (LineStrings) as areas. ``compression`` is the
    tiles' codec, ``"lz4"`` (Blosc) or ``"none"``; it changes bytes on disk, never pixels, so a rerun
    with another one finds the images up to date. ``resample`` is ``"exact"`` (every source pixel
    decoded, then the area filter) or ``"fast"``: JPEG-tiled levels shrunk 2x or more are decoded
    at 1/2, 1/4 or 1/8 by the JPEG decoder's scaled IDCT first (docs/tiling.md gives its cost and
    its difference from ``exact``).
    """

    classes: tuple[str, ...] | None = None
    tissue: bool = False
    whole_tissue: bool = False
    workers: int = 2
    mpp: float | None = None
    mpp_override: float | None = None
    mpp_range: tuple[float, float] = MPP_RANGE
    max_tiles: int = MAX_TILES_PER_IMAGE
    max_upsample: float = MAX_UPSAMPLE
    replace: bool = False
    closed_lines_as_areas: bool = False
    compression: str = DEFAULT_COMPRESSION
    resample: str = "exact"

    def __post_init__(self) -> None:
        lo, hi = self.mpp_range
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
            raise InputError(f"the pixel-size range must be two positive numbers, low < high, got {lo}, {hi}")
        for flag, value in (("--mpp", self.mpp), ("--mpp-override", self.mpp_override)):
            if value is None:
                continue
            if not (math.isfinite(value) and value > 0):
                raise CalibrationError(
                    f"{flag} {value}: a pixel size must be a positive number of µm per pixel"
                )
            if not lo <= value <= hi:
                raise CalibrationError(
                    f"{flag} {value:g} µm/px lies outside the plausible range {lo:g}-{hi:g} µm/px "
                    "(a typo? scanners give 0.1-1 µm/px); widen the range with --mpp-range if it is real"
                )
        if self.workers < 1:
            raise InputError(f"workers must be at least 1, got {self.workers}")
        if self.max_tiles < 1:
            raise InputError(f"the tile limit must be at least 1, got {self.max_tiles}")
        if self.compression not in COMPRESSIONS:
            choices = ", ".join(COMPRESSIONS)
            raise InputError(f"--compression must be one of {choices}, got {self.compression!r}")
        if self.resample not in RESAMPLE_MODES:
            raise InputError(f"--resample must be one of {', '.join(RESAMPLE_MODES)}, got {self.resample!r}")
        if self.classes is not None and not self.classes:
            raise InputError("an empty class list selects nothing; leave it out to tile every class")

    def region_options(self) -> RegionOptions:
        """What the one region planner is asked: only what was marked is tiled (a training store)."""
        return RegionOptions(classes=self.classes, tissue=self.tissue, whole_tissue=self.whole_tissue,
                             closed_lines_as_areas=self.closed_lines_as_areas)  # fmt: skip
