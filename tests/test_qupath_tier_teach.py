"""QuPath-checked tier: QuPath 0.5.1 and 0.6.0 open the synthetic-slide teaching project and read each
mosaic's objects (class, name, measurements) as histobridge wrote them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _qupath_tier import VERSIONS, run_each_version

from histobridge.teach.items import ItemPool, TeachingItem
from histobridge.teach.slide_project import OBJECT_NAME, write_slide_project

pytestmark = pytest.mark.qupath
PER_CLASS = {"Epidermis": 7, "Dermis": 5}


def _pool() -> ItemPool:
    rng = np.random.default_rng(0)
    items = [
        TeachingItem(f"s{cls}{k}", "synthetic", cls, rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                     (0.9, 0.1) if cls == "Epidermis" else (0.2, 0.8), cls, seed=100 * i + k)
        for i, (cls, n) in enumerate(PER_CLASS.items()) for k in range(n)
    ]  # fmt: skip
    return ItemPool(tuple(PER_CLASS), ("Epidermis", "Dermis"), tuple(items), (), 64, 80.0)


@pytest.fixture(scope="module", params=VERSIONS)
def session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    made: list[Path] = []

    def prepare(v: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        if not made:  # transitions need a generator; the class mosaics carry the same object kinds
            made.append(write_slide_project(tmp_path_factory.mktemp("teach-qp"), _pool(), None, None, {}))  # type: ignore[arg-type]
        return [{"op": "load_project", "path": str(made[0])}], {"qpproj": made[0]}

    run, extra = run_each_version("teach", request.param, prepare)
    return {"run": run, **extra}


def test_quPath_opens_the_teaching_project_with_every_tile(session: dict[str, Any]) -> None:
    value = session["run"].value(0)
    assert sorted(value["classes"]) >= ["Dermis", "Epidermis"]
    by_name = {img["name"]: img for img in value["images"]}
    assert set(by_name) == {"synthetic_Epidermis.tif", "synthetic_Dermis.tif"}
    for cls, n in PER_CLASS.items():
        img = by_name[f"synthetic_{cls}.tif"]
        tiles = [o for o in img["objects"] if o["type"] == "PathTileObject"]
        assert img["has_data"] and len(tiles) == n
        assert {t["class"] for t in tiles} == {cls} and {t["name"] for t in tiles} == {OBJECT_NAME}
        for t in tiles:
            x0, y0, x1, y1 = t["bounds"]
            assert (x1 - x0, y1 - y0) == (64.0, 64.0)
            assert t["measurements"]["synthetic"] == 1.0 and "P(Dermis)" in t["measurements"]
