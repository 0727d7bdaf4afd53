"""Read QuPath ``.qpdata`` files (Java serialization) without a JVM."""

from histobridge.qupath.qpdata.convert import qpdata_annotations, read_qpdata_annotations, to_geojson_features
from histobridge.qupath.qpdata.reader import iter_objects, read_qpdata
from histobridge.qupath.qpdata.records import OBJECT_TYPES, PathObject, QPData, QPObject

__all__ = [
    "OBJECT_TYPES",
    "PathObject",
    "QPData",
    "QPObject",
    "iter_objects",
    "qpdata_annotations",
    "read_qpdata",
    "read_qpdata_annotations",
    "to_geojson_features",
]
