"""histobridge: QuPath projects to deep learning and back.

Read a QuPath project and its annotations, tile the annotated regions into Zarr, run tile
classifiers and write heatmaps back into QuPath, and generate class-conditional synthetic histology
for explanation and teaching. Heavy modules (torch) are imported only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from histobridge.errors import HistobridgeError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from histobridge.models.checkpoints import load_generator
    from histobridge.models.classifier import load_classifier
    from histobridge.qupath.project import Project
    from histobridge.slides import open_slide

_LAZY = {
    "load_generator": ("histobridge.models.checkpoints", "load_generator"),
    "load_classifier": ("histobridge.models.classifier", "load_classifier"),
    "Project": ("histobridge.qupath.project", "Project"),
    "open_slide": ("histobridge.slides", "open_slide"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'histobridge' has no attribute {name!r}")


__all__ = ["HistobridgeError", "Project", "__version__", "load_classifier", "load_generator", "open_slide"]
