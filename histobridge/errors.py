"""One exception tree for the whole package.

Every error histobridge raises on purpose derives from :class:`HistobridgeError`, and most also
derive from the builtin a caller would expect (``FileNotFoundError``, ``ValueError``…), so
``except FileNotFoundError`` keeps working. The CLI maps the root class to a clean message and a
non-zero exit in one place.

HistobridgeError
├── InputError (ValueError)            a file we were given is malformed
│   ├── ProjectError                   project.qpproj / classes.json / server builders
│   ├── AnnotationError                GeoJSON we cannot use
│   ├── QPDataError                    .qpdata stream that is corrupt or unsupported
│   └── StoreError                     a Zarr tile store that is not what it claims
├── CalibrationError (ValueError)      pixel size missing or implausible
├── SlideError (OSError)               a slide that cannot be opened or read
│   └── SlideNotFoundError (FileNotFoundError)
├── ModelError (ValueError)            classifier / generator config or weights
│   └── CheckpointError
│       └── UnsafePickleError          a pickle asked for something outside the allow-list
└── DatasetError (OSError)             sample data that cannot be fetched or verified
"""

from __future__ import annotations


class HistobridgeError(Exception):
    """Root of every error histobridge raises deliberately."""


class InputError(HistobridgeError, ValueError):
    """An input file exists but its content cannot be used."""


class ProjectError(InputError):
    """A QuPath project file (qpproj, classes.json, server builder) is unusable."""


class AnnotationError(InputError):
    """Annotation data (GeoJSON, qpdata objects) is unusable."""


class QPDataError(InputError):
    """A ``.qpdata`` Java serialization stream is corrupt, truncated or unsupported."""


class StoreError(InputError):
    """A Zarr tile store is missing, incomplete or of an unexpected layout."""


class CalibrationError(HistobridgeError, ValueError):
    """The pixel size (µm/px) is missing or implausible and no override was given."""


class SlideError(HistobridgeError, OSError):
    """A slide file cannot be opened or a region cannot be read."""


class SlideNotFoundError(SlideError, FileNotFoundError):
    """The slide file does not exist (and could not be relocated)."""


class ModelError(HistobridgeError, ValueError):
    """A model directory, config or weight file is unusable."""


class CheckpointError(ModelError):
    """A generator checkpoint cannot be loaded."""


class UnsafePickleError(CheckpointError):
    """A pickle requested a global outside the allow-list; nothing from it was executed."""


class DatasetError(HistobridgeError, OSError):
    """Sample data cannot be fetched, verified or found in the cache."""


__all__ = [
    "AnnotationError",
    "CalibrationError",
    "CheckpointError",
    "DatasetError",
    "HistobridgeError",
    "InputError",
    "ModelError",
    "ProjectError",
    "QPDataError",
    "SlideError",
    "SlideNotFoundError",
    "StoreError",
    "UnsafePickleError",
]
