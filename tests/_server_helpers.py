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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn in a thread on a free loopback port (for a real browser or real sockets)."""

    def __init__(self, project: Path, **settings: Any) -> None:
        import uvicorn

        from histobridge.server.app import create_app
        from histobridge.server.settings import ServerSettings

        self.port = free_port()
        opts: dict[str, Any] = {"projects": (project,), "workers": 2, "port": self.port}
        opts.update(settings)
        self.app = create_app(ServerSettings(**opts))
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
