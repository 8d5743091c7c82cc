"""``bgone keys``: the webhook signing keys of a server (``show``, ``rotate``, ``export``), read from the
same settings as ``bgone serve`` (``--data-dir``, ``--config``, ``BGONE_*``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bgone.cli.console import console, err_console
from bgone.cli.serve import Config, DataDir, settings_from_flags

app = typer.Typer(help="The keys that sign webhooks (published at /.well-known/jwks.json).", no_args_is_help=True)


def _keys(data_dir: Path | None, config: Path | None) -> Any:
    from bgone.service.signing import SigningKeys

    return SigningKeys.from_settings(settings_from_flags(data_dir=data_dir, config=config))


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(epoch))


@app.command("show")
def show(data_dir: DataDir = None, config: Config = None) -> None:
    """List the keys: which one signs, which are published, until when."""
    keys = _keys(data_dir, config)
    current = keys.current.kid
    table = Table("kid", "role", "signs from", "published until")
    for column in table.columns:
        column.no_wrap = True
    for key in keys.published:
        role = "signs" if key.kid == current else ("next" if key.signs_from > time.time() else "published")
        table.add_row(key.kid[:12] + "…", role, _when(key.signs_from or None), _when(key.retire_at))
    console.print(table)


@app.command("jwks")
def jwks(data_dir: DataDir = None, config: Config = None) -> None:
    """Print the JWKS document the server publishes (public keys only)."""
    console.print_json(json.dumps(_keys(data_dir, config).jwks()))


@app.command("rotate")
def rotate(
    publish_first: Annotated[
        float, typer.Option("--publish-first", help="Hours the new key is published before it signs.")
    ] = 24.0,
    overlap: Annotated[
        float, typer.Option("--overlap", help="Hours the old key stays published after it stops signing.")
    ] = 24.0,
    now: Annotated[
        bool, typer.Option("--now", help="Sign with the new key at once (a leaked key): --publish-first 0.")
    ] = False,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Add a new signing key (a running server picks it up by itself).

    The new key is published at once and signs after --publish-first hours, since receivers cache the
    JWKS; the old key stays published for --overlap hours after that, so its webhooks still verify."""
    keys = _keys(data_dir, config)
    new = keys.rotate(publish_first_s=0.0 if now else publish_first * 3600, overlap_s=overlap * 3600)
    err_console.print(f"new key {new.kid}: published now, signs from {_when(new.signs_from)}")


@app.command("export")
def export(data_dir: DataDir = None, config: Config = None) -> None:
    """Print the keys as a BGONE_WEBHOOK_SIGNING_KEYS value (secret), for every node of a deployment.

    The key that signs now comes first. Store the value as you store API keys."""
    err_console.print("[yellow]secret[/]: anyone with this value can sign webhooks as this server")
    print(_keys(data_dir, config).export())  # plain stdout, for `$(bgone keys export)`
