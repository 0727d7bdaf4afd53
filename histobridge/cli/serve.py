"""``histobridge serve``: the live service QuPath scripts and the explorer page talk to.

FastAPI and uvicorn come with the ``serve`` extra and are imported inside the command only.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from histobridge.cli._common import DEVICE_HELP


def serve(
    project: list[Path] = typer.Option(
        [], "--project", "-p", help="QuPath project folder or .qpproj (repeatable)."
    ),
    models: list[Path] = typer.Option(
        [], "--models", "-m", help="Folder searched for classifiers and generators."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; anything but loopback needs a token."
    ),
    port: int = typer.Option(8321, "--port", help="TCP port."),
    workers: int = typer.Option(2, "--workers", help="Jobs run at once; more wait in a queue."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    no_sample_models: bool = typer.Option(
        False, "--no-sample-models", help="Do not offer the sample models."
    ),
) -> None:
    """Serve projects and models to QuPath (OpenAPI at /docs, explorer at /)."""
    from histobridge.errors import InputError
    from histobridge.server.settings import TOKEN_ENV, ServerSettings, is_loopback, new_token

    try:
        import uvicorn

        from histobridge.server.app import create_app
    except ModuleNotFoundError as err:
        raise InputError(
            f"histobridge serve needs FastAPI and uvicorn ({err.name} missing): "
            "pip install 'histobridge[serve]'"
        ) from err
    for folder in models:
        if not folder.is_dir():
            raise InputError(f"{folder}: --models must be a folder")
    token = os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        token = new_token()
        typer.echo(f"access token (send as 'Authorization: Bearer <token>'): {token}", err=True)
    from histobridge.cli._common import resolve_device

    settings = ServerSettings(
        projects=tuple(project),
        model_dirs=tuple(models),
        host=host,
        port=port,
        token=token,
        workers=workers,
        device=resolve_device(device),
        sample_models=not no_sample_models,
    )
    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"histobridge serving {len(project)} project(s) on http://{shown}:{port}/ (API docs at /docs)",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add the top-level ``serve`` command."""
    app.command("serve")(serve)
