"""Run a tile classifier over a project's slides: grid planning, threaded reading and inference,
and the per-image outputs (QuPath tiles with measurements, NPZ grids, CSV, overlay PNGs).
Submodules import torch only when their functions run."""
