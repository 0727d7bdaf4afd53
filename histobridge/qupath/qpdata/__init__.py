"""QuPath ``.qpdata`` files (Java serialization) without a JVM: read them, write annotations and tiles."""

from histobridge.qupath.qpdata.convert import qpdata_annotations, read_qpdata_annotations, to_geojson_features
from histobridge.qupath.qpdata.reader import iter_objects, read_qpdata
from histobridge.qupath.qpdata.records import OBJECT_TYPES, PathObject, QPData, QPObject
from histobridge.qupath.qpdata.tiles import TileBatch, tiles_from_features
from histobridge.qupath.qpdata.writer import QPDataWriteReport, write_objects_qpdata, write_tiles_qpdata

__all__ = [
    "OBJECT_TYPES",
    "PathObject",
    "QPData",
    "QPDataWriteReport",
    "QPObject",
    "TileBatch",
    "iter_objects",
    "qpdata_annotations",
    "read_qpdata",
    "read_qpdata_annotations",
    "tiles_from_features",
    "to_geojson_features",
    "write_objects_qpdata",
    "write_tiles_qpdata",
]
