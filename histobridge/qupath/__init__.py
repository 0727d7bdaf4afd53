"""QuPath side: projects, classes, annotations (GeoJSON, .qpdata, paquo) and result write-back."""

from histobridge.qupath.annotations import Annotation, AnnotationSet, PathClass

__all__ = ["Annotation", "AnnotationSet", "PathClass"]
