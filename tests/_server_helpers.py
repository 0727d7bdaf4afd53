"""A served copy of the sample skin project (real slide, sample models) for the server tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server needs the 'serve' extra (FastAPI)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")


def sample_project(dest: Path) -> Path:
    """The sample project folder (the ``cmu_slide`` fixture must have filled the cache)."""
    from histobridge.qupath.sample import init_sample_project

    return init_sample_project(dest, "skin", offline=True).parent


def make_client(project: Path, **settings: Any) -> Any:
    from fastapi.testclient import TestClient

    from histobridge.server.app import create_app
    from histobridge.server.settings import ServerSettings

    opts: dict[str, Any] = {"projects": (project,), "workers": 2}
    opts.update(settings)
    return TestClient(create_app(ServerSettings(**opts)))


def annotations(client: Any, project: str = "skin", image: str = "1") -> dict[str, Any]:
    doc: dict[str, Any] = client.get(f"/api/projects/{project}/images/{image}/annotations").json()
    return doc


def square(x: float, y: float, size: float, cls: str | None = "Epidermis") -> dict[str, Any]:
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    props: dict[str, Any] = {"objectType": "annotation"}
    if cls:
        props["classification"] = {"name": cls}
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props}
