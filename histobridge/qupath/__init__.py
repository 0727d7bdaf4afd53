"""QuPath side: projects, classes, annotations (GeoJSON, .qpdata, paquo) and result write-back.

``Project`` and ``ImageEntry`` are imported lazily so that ``import histobridge.qupath`` stays cheap.
"""

from __future__ import annotations

from histobridge._lazy import lazy_getattr
from histobridge.qupath.annotations import OBJECT_TYPES, Annotation, AnnotationSet, PathClass, PathObject
from histobridge.qupath.classes import argb_to_rgb, argb_to_rgb_or_none, read_classes, rgb_to_argb

_LAZY = {
    "Project": "histobridge.qupath.project",
    "ImageEntry": "histobridge.qupath.project",
    "read_features": "histobridge.qupath.geojson",
    "write_features": "histobridge.qupath.geojson",
    "FeatureReadResult": "histobridge.qupath.geojson",
    "path_object_feature": "histobridge.qupath.geojson",
    "StoredSummary": "histobridge.qupath.sources",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "OBJECT_TYPES",
    "Annotation",
    "AnnotationSet",
    "FeatureReadResult",
    "ImageEntry",
    "PathClass",
    "PathObject",
    "Project",
    "StoredSummary",
    "argb_to_rgb",
    "argb_to_rgb_or_none",
    "path_object_feature",
    "read_classes",
    "read_features",
    "rgb_to_argb",
    "write_features",
]
