"""``bgone serve`` (the fal-compatible service) and ``bgone worker`` (an inference worker on a shared queue).

Both take the same server settings: each option is declared once below (:data:`OPTIONS`), named as its
:class:`~bgone.settings.ServerSettings` field; each command lists the options it takes and forwards what it
was given in one call to :func:`settings_from_flags`. Settings come from the flags, then a ``--config`` file, then ``BGONE_*``
variables, then the defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bgone.cli.console import err_console

if TYPE_CHECKING:
    from bgone.settings import ServerSettings

Host = Annotated[str | None, typer.Option(help="Interface to listen on. [default: 127.0.0.1]")]
Port = Annotated[int | None, typer.Option(help="Port. [default: 8000]")]
SslCertfile = Annotated[
    Path | None,
    typer.Option("--ssl-certfile", help="TLS certificate (PEM): serve HTTPS, which the stock fal_client needs."),
]
SslKeyfile = Annotated[Path | None, typer.Option("--ssl-keyfile", help="TLS private key (PEM).")]
ApiKeys = Annotated[
    list[str] | None,
    typer.Option("--key", help="Accepted API key (repeatable); clients send `Authorization: Key KEY`."),
]
OpenAccess = Annotated[bool | None, typer.Option("--open", help="Accept requests without a key (local use only).")]
Queue = Annotated[str | None, typer.Option("--queue", help="redis://host:port/db (default: SQLite in --data-dir).")]
Storage = Annotated[
    str | None, typer.Option("--storage", help="s3://bucket/prefix[?presign=1] (default: files in --data-dir).")
]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="SQLite queue/history and stored files. [default: ./bgone-data]")
]
ModelMap = Annotated[
    Path | None, typer.Option("--model-map", help="JSON: fal model name -> registry name or checkpoint path.")
]
Device = Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps. [default: auto]")]
Dtype = Annotated[
    str | None,
    typer.Option(
        help="auto (bfloat16 where the device computes it natively, else float32), float32 (the official "
        "numerics, slower), bfloat16 or float16. [default: auto]"
    ),
]
Compile = Annotated[
    bool | None,
    typer.Option(
        "--compile",
        help="torch.compile loaded models: faster passes after a one-off compilation per operating size "
        "(minutes on a small CPU). [default: off]",
    ),
]
Backend = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="auto (onnx for .onnx files in the model map, torch otherwise), torch or onnx. [default: auto]",
    ),
]
BatchSize = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Queued requests batched per forward pass. [default: 4]")
]
MaxModels = Annotated[int | None, typer.Option("--max-models", min=1, help="Models kept loaded (LRU). [default: 2]")]
ModelMemory = Annotated[
    int | None, typer.Option("--model-memory-mb", min=1, help="Memory budget for loaded models (LRU eviction).")
]
WarmModel = Annotated[
    str | None, typer.Option("--warm-model", help="Model loaded at start-up (for /ready); 'none' to load lazily.")
]
AllowPrivate = Annotated[
    bool | None, typer.Option("--allow-private-urls", help="Let image URLs and webhooks reach private addresses.")
]
AllowedHosts = Annotated[
    list[str] | None, typer.Option("--allowed-host", help="A host that may be private (repeatable).")
]
MaxSide = Annotated[
    int | None,
    typer.Option("--max-operating-side", min=32, help="Cap every operating resolution's side (small CPU boxes)."),
]
RetentionHours = Annotated[
    float | None, typer.Option("--retention-hours", help="Keep results and files this long. [default: 168]")
]
CorsOrigins = Annotated[list[str] | None, typer.Option("--cors-origin", help="Allowed CORS origin (repeatable).")]
Role = Annotated[str | None, typer.Option("--role", help="all (API and worker) or api (no model loaded here).")]
Config = Annotated[Path | None, typer.Option("--config", help="A TOML or JSON file with any of these settings.")]


def settings_from_flags(
    *,
    config: Path | None = None,
    model_map: Path | None = None,
    retention_hours: float | None = None,
    **flags: Any,
) -> ServerSettings:
    """Server settings from the flags a command was given (named as settings fields; None: not given),
    over a ``--config`` file, over ``BGONE_*`` variables, over the defaults."""
    from bgone.settings import load_config_file, load_model_map, server_settings

    values: dict[str, Any] = load_config_file(config) if config else {}
    if model_map:
        flags["model_map"] = load_model_map(model_map)
    if retention_hours is not None:
        flags["retention_seconds"] = retention_hours * 3600
    values.update({k: v for k, v in flags.items() if v not in (None, [])})
    return server_settings(**values)


# Each option once, named as its ServerSettings field (model_map and retention_hours are turned into
# settings by settings_from_flags); each command lists the ones it takes, in --help order.
OPTIONS: dict[str, Any] = {
    "host": Host,
    "port": Port,
    "ssl_certfile": SslCertfile,
    "ssl_keyfile": SslKeyfile,
    "data_dir": DataDir,
    "api_keys": ApiKeys,
    "open_access": OpenAccess,
    "model_map": ModelMap,
    "device": Device,
    "dtype": Dtype,
    "backend": Backend,
    "batch_size": BatchSize,
    "compile": Compile,
    "max_models": MaxModels,
    "model_memory_mb": ModelMemory,
    "warm_model": WarmModel,
    "allow_private_urls": AllowPrivate,
    "allowed_hosts": AllowedHosts,
    "max_operating_side": MaxSide,
    "retention_hours": RetentionHours,
    "cors_origins": CorsOrigins,
    "queue": Queue,
    "storage": Storage,
    "role": Role,
    "config": Config,
}
WORKER_OPTIONS = [
    "queue", "storage", "data_dir", "model_map", "device", "dtype", "backend", "batch_size", "compile",
    "max_models", "model_memory_mb", "warm_model", "allow_private_urls", "allowed_hosts", "max_operating_side",
    "config",
]  # fmt: skip
SERVE_OPTIONS = [name for name in OPTIONS if name not in ("queue", "storage", "role", "config")] + [
    "queue", "storage", "role", "config",
]  # fmt: skip


def with_options(names: list[str]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a ``**flags`` command the typer options ``names`` (all optional, None when not given)."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        kind = inspect.Parameter.KEYWORD_ONLY
        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(name, kind, default=None, annotation=OPTIONS[name]) for name in names]
        )
        command.__annotations__ = {name: OPTIONS[name] for name in names}
        return command

    return decorate


@with_options(SERVE_OPTIONS)
def serve(**flags: Any) -> None:
    """Run the fal-compatible service (fal-ai/birefnet and /v2: sync, queue, files)."""
    import uvicorn

    from bgone._version import __version__
    from bgone.service.app import create_app

    settings = settings_from_flags(**flags)
    app = create_app(settings)
    scheme = "https" if settings.ssl_certfile else "http"
    err_console.print(
        f"bgone {__version__}: serving fal-ai/birefnet and /v2 on {scheme}://{settings.host}:{settings.port} "
        f"(queue under /queue, data in {settings.data_dir})",
        highlight=False,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )


@with_options(WORKER_OPTIONS)
def worker(**flags: Any) -> None:
    """Run an inference worker: pull queued requests, run them, store results. Stops cleanly on SIGTERM."""
    import signal

    from bgone.service.jobs import open_job_store
    from bgone.service.signing import unshared_keys_warning
    from bgone.service.storage import open_storage
    from bgone.service.worker import InferenceWorker

    settings = settings_from_flags(**flags, open_access=True)  # a worker serves no HTTP: keys do not apply
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_job_store(settings.queue, settings.data_dir)
    inference = InferenceWorker(settings, store, open_storage(settings.storage, settings.data_dir))
    if problem := unshared_keys_warning(settings):
        err_console.print(f"[yellow]warning[/] {problem}", highlight=False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: inference.request_stop())
    err_console.print(
        f"bgone worker {inference.worker_id}: queue {settings.queue or settings.database_path}, "
        f"storage {settings.storage or settings.data_dir / 'files'}",
        highlight=False,
    )
    inference.run()
    inference.webhooks.close()
    store.close()
    err_console.print(f"bgone worker {inference.worker_id}: stopped", highlight=False)
