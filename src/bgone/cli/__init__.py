"""The ``bgone`` command: one module per command group (``remove``, ``serve`` (also ``worker``), ``models``,
``export``, ``keys``, ``evaluate`` (``eval``), ``bench``). Importing this package loads only typer and rich, so
``bgone --help`` and ``bgone --version`` answer at once; each command imports what it runs."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from bgone._version import __version__
from bgone.cli import bench, evaluate, export, keys, models, remove, serve
from bgone.cli.console import console, err_console
from bgone.errors import BgoneError, SettingsError

app = typer.Typer(help="bgone: self-hosted background removal on BiRefNet.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"bgone {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print bgone's version and exit."),
    ] = None,
) -> None:
    """bgone: self-hosted background removal on BiRefNet."""


@app.command("version")
def version_command() -> None:
    """Print bgone's and PyTorch's versions."""
    import torch

    console.print(f"bgone {__version__} (torch {torch.__version__})")


app.command(no_args_is_help=True)(remove.remove)
app.command()(serve.serve)
app.command()(serve.worker)
app.command()(bench.bench)
app.command("eval")(evaluate.evaluate_models)
app.add_typer(models.app, name="models")
app.add_typer(export.app, name="export")
app.add_typer(keys.app, name="keys")


def main() -> None:
    """The console script: one line per error, no traceback; exit 1 for a failed job, 2 for bad usage."""
    try:
        app()
    except SettingsError as exc:
        err_console.print(f"[red]error[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except BgoneError as exc:
        err_console.print(f"[red]error[/] {escape(f'[{exc.error_type}] {exc}')}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (ValueError, FileNotFoundError) as exc:
        err_console.print(f"[red]error[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
