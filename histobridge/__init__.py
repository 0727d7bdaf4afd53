"""histobridge: QuPath projects to deep learning and back.

Read a QuPath project and its annotations, tile the annotated regions into Zarr, run tile
classifiers and write heatmaps back into QuPath, and generate class-conditional synthetic histology
for explanation and teaching. Heavy modules (torch) are imported only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from histobridge._lazy import lazy_getattr
from histobridge.errors import HistobridgeError

# The one place the version is written: pyproject.toml reads it from here (setuptools dynamic).
__version__ = "0.1.0"

if TYPE_CHECKING:
    from histobridge.models.checkpoints import load_generator
    from histobridge.models.classifier import load_classifier
    from histobridge.qupath.project import Project
    from histobridge.slides import open_slide

__getattr__ = lazy_getattr(
    __name__,
    {
        "load_generator": "histobridge.models.checkpoints",
        "load_classifier": "histobridge.models.classifier",
        "Project": "histobridge.qupath.project",
        "open_slide": "histobridge.slides",
    },
)

__all__ = ["HistobridgeError", "Project", "__version__", "load_classifier", "load_generator", "open_slide"]
