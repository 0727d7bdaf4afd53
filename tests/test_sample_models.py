"""The shipped sample models against their quality bars.

Recomputes, from a fresh tiling of the sample project, what ``scripts/evaluate_sample_models.py``
reports through the same functions (:mod:`histobridge.evaluation`): held-out accuracy on the
annotations the classifier never saw, and the share of generated tiles the classifier assigns to
their conditioning class.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from histobridge import evaluation

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "sample_projects" / "skin" / "models"


@pytest.fixture(scope="module")
def classifier():
    from histobridge.models.classifier import load_classifier

    return load_classifier(MODELS / "classifier", device="cpu")


def test_heldout_accuracy_recomputed_from_fresh_tiles(tmp_path, cmu_slide, classifier) -> None:
    from histobridge.qupath.project import Project
    from histobridge.qupath.sample import init_sample_project
    from histobridge.tiling import TilingOptions, tile_project

    project = Project.open(init_sample_project(tmp_path / "project"))
    store = tmp_path / "tiles.zarr"
    tile_project(
        project, store, evaluation.CLASSIFIER_TILES, TilingOptions(classes=evaluation.SAMPLE_CLASSES)
    )
    recorded = json.loads((MODELS / "classifier" / "metrics.json").read_text())
    result = evaluation.heldout_from_store(classifier, store, recorded["regions"]["heldout"])
    assert result["heldout_accuracy"] >= 0.90
    assert result["heldout_accuracy"] == pytest.approx(recorded["heldout_accuracy"], abs=0.02)


def test_generated_tiles_follow_their_class(classifier) -> None:
    from histobridge.models.checkpoints import load_generator

    G = load_generator(MODELS / "generator" / "generator.safetensors")
    result = evaluation.synthetic_agreement(G, classifier, seeds=200)
    assert result["agreement"] >= 0.85
    assert all(c["fraction"] >= 0.8 for c in result["per_class"].values())
