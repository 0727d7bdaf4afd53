"""Errors as HTTP problem documents (RFC 9457 style): the one place a status is chosen.

Every deliberate error is a :class:`~histobridge.errors.HistobridgeError`; the server adds the
few kinds only HTTP has (not found, busy, too large, unauthorised) as subclasses of it, so one
table maps the whole tree. The ``detail`` is the same message the CLI prints after ``error:``.
"""

from __future__ import annotations

from typing import Any

from histobridge.errors import (
    AnnotationError,
    CalibrationError,
    DatasetError,
    HistobridgeError,
    InputError,
    ModelError,
    SlideError,
    SlideNotFoundError,
)

PROBLEM_TYPE = "https://histobridge.invalid/problems/"
MEDIA_TYPE = "application/problem+json"


class NotFoundError(HistobridgeError, LookupError):
    """An image, project, model or job the request names does not exist (here)."""


class ConflictError(HistobridgeError):
    """The request clashes with the state of a job (e.g. its result is not ready yet)."""


class TooLargeError(HistobridgeError):
    """A request body or the work it asks for is over the server's limits."""


class ForbiddenPathError(InputError):
    """A path outside the configured project and model folders (or a URL) was named."""


class UnauthorizedError(HistobridgeError):
    """No valid access token on a request to a server that requires one."""


class RoiError(AnnotationError):
    """The region of interest is not usable QuPath GeoJSON (or has no area)."""


# Most specific first: the first class an error is an instance of decides.
_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (UnauthorizedError, 401, "unauthorized"),
    (ForbiddenPathError, 400, "path not allowed"),
    (NotFoundError, 404, "not found"),
    (SlideNotFoundError, 404, "slide not found"),
    (ConflictError, 409, "conflict"),
    (TooLargeError, 413, "too large"),
    (AnnotationError, 422, "invalid region of interest"),
    (CalibrationError, 422, "pixel size unknown"),
    (ModelError, 400, "unusable model"),
    (InputError, 400, "bad input"),
    (SlideError, 500, "slide unreadable"),
    (DatasetError, 503, "sample data unavailable"),
    (HistobridgeError, 400, "bad request"),
)


def status_of(err: BaseException) -> tuple[int, str]:
    """(HTTP status, short title) for an error; anything unexpected is a 500."""
    for cls, status, title in _TABLE:
        if isinstance(err, cls):
            return status, title
    return 500, "internal error"


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    slug = title.replace(" ", "-")
    return {"type": PROBLEM_TYPE + slug, "title": title, "status": status, "detail": detail, **extra}


def problem_for(err: BaseException) -> dict[str, Any]:
    """The problem document of an error (a 500 names only the error class, never a traceback)."""
    status, title = status_of(err)
    detail = str(err) if status != 500 or isinstance(err, HistobridgeError) else type(err).__name__
    return problem(status, title, detail)


__all__ = [
    "MEDIA_TYPE",
    "ConflictError",
    "ForbiddenPathError",
    "NotFoundError",
    "RoiError",
    "TooLargeError",
    "UnauthorizedError",
    "problem",
    "problem_for",
    "status_of",
]
