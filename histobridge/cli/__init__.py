"""Command-line entry point: a thin typer layer over the library.

Subcommand modules import nothing heavy at import time, so ``histobridge --help`` answers fast.
Every :class:`~histobridge.errors.HistobridgeError` becomes one ``error:`` line on stderr and exit
code 1 here, and nowhere else.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

import histobridge

app = typer.Typer(
    name="histobridge",
    help="QuPath projects to deep learning and back: tiles, heatmaps, synthetic histology.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (module, sub-command name or None for top-level commands registered by the module itself)
_SUBCOMMANDS: tuple[tuple[str, str | None], ...] = (
    ("histobridge.cli.project", "project"),
    ("histobridge.cli.sample", "sample"),
    ("histobridge.cli.tile", None),
    ("histobridge.cli.heatmap", None),
    ("histobridge.cli.gan", "gan"),
    ("histobridge.cli.synth", None),
    ("histobridge.cli.qpdata", "qpdata"),
    ("histobridge.cli.train", "train"),
    ("histobridge.cli.demo", None),
    ("histobridge.cli.teach", "teach"),
    ("histobridge.cli.serve", None),
)


def _register() -> None:
    for module_name, group in _SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue
            raise
        if group is not None:
            app.add_typer(module.app, name=group)
        else:
            module.register(app)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"histobridge {histobridge.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


_register()


def shadowing_folder() -> str | None:
    """The folder that hides the installed package, when ``histobridge`` was imported as a namespace.

    A folder named ``histobridge`` without ``__init__.py`` (typically a source checkout, seen from its
    parent folder) earlier on ``sys.path`` than an editable install becomes an empty namespace package;
    the submodules still load, but nothing defined in ``histobridge/__init__.py`` exists.
    """
    package = sys.modules.get("histobridge")
    if package is None or getattr(package, "__file__", None) is not None:
        return None
    return ", ".join(str(p) for p in getattr(package, "__path__", [])) or "an unknown place"


def main() -> None:
    """Console-script entry: usage errors are typer's (exit 2); library errors are one line (exit 1)."""
    from histobridge.errors import HistobridgeError

    shadow = shadowing_folder()
    if shadow is not None:
        typer.echo(
            f"error: 'histobridge' was imported from {shadow}, a folder without __init__.py that hides the "
            "installed package (run from another folder, or rename that folder)",
            err=True,
        )
        sys.exit(1)
    try:
        app(prog_name="histobridge")
    except HistobridgeError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(1)
