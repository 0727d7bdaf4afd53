"""histobridge as a live service for QuPath: a thin HTTP layer over the library.

Modules, in import order: ``settings`` (what the server may touch), ``problems`` (the one mapping
from :class:`~histobridge.errors.HistobridgeError` to HTTP problem documents), ``paths`` (which
files may be named), ``resources`` (projects, model catalogue, warm model and slide caches),
``jobs`` (bounded worker pool with a visible queue, progress, cancel, TTL), ``operations`` (what a
job does, by calling the library), ``app`` (FastAPI routes, token check, body limit, explorer page).
FastAPI and uvicorn are the optional ``serve`` extra; nothing below the CLI imports this package.
"""

from __future__ import annotations

from histobridge.server.settings import ServerSettings

__all__ = ["ServerSettings"]
