"""``bgone serve`` (the fal-compatible service) and ``bgone worker`` (an inference worker on a shared queue).

Both take the same server settings: each option is declared once below, named as its
:class:`~bgone.settings.ServerSettings` field, and every command forwards what it was given in one call to
:func:`settings_from_flags`. Settings come from the flags, then a ``--config`` file, then ``BGONE_*``
variables, then the defaults.
"""

from __future__ import annotations

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
    warm_model: str | None = None,
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
    if warm_model is not None:
        values["warm_model"] = None if warm_model.lower() == "none" else warm_model
    return server_settings(**values)


def serve(
    host: Host = None,
    port: Port = None,
    ssl_certfile: SslCertfile = None,
    ssl_keyfile: SslKeyfile = None,
    data_dir: DataDir = None,
    api_keys: ApiKeys = None,
    open_access: OpenAccess = None,
    model_map: ModelMap = None,
    device: Device = None,
    dtype: Dtype = None,
    backend: Backend = None,
    batch_size: BatchSize = None,
    compile: Compile = None,
    max_models: MaxModels = None,
    model_memory_mb: ModelMemory = None,
    warm_model: WarmModel = None,
    allow_private_urls: AllowPrivate = None,
    allowed_hosts: AllowedHosts = None,
    max_operating_side: MaxSide = None,
    retention_hours: RetentionHours = None,
    cors_origins: CorsOrigins = None,
    queue: Queue = None,
    storage: Storage = None,
    role: Role = None,
    config: Config = None,
) -> None:
    """Run the fal-compatible service (fal-ai/birefnet and /v2: sync, queue, files)."""
    flags = dict(locals())  # the options as given, taken before anything else is named here
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


def worker(
    queue: Queue = None,
    storage: Storage = None,
    data_dir: DataDir = None,
    model_map: ModelMap = None,
    device: Device = None,
    dtype: Dtype = None,
    backend: Backend = None,
    batch_size: BatchSize = None,
    compile: Compile = None,
    max_models: MaxModels = None,
    model_memory_mb: ModelMemory = None,
    warm_model: WarmModel = None,
    allow_private_urls: AllowPrivate = None,
    allowed_hosts: AllowedHosts = None,
    max_operating_side: MaxSide = None,
    config: Config = None,
) -> None:
    """Run an inference worker: pull queued requests, run them, store results. Stops cleanly on SIGTERM."""
    flags = dict(locals())  # the options as given, taken before anything else is named here
    import signal

    from bgone.service.jobs import open_job_store
    from bgone.service.storage import open_storage
    from bgone.service.worker import InferenceWorker

    settings = settings_from_flags(**flags, open_access=True)  # a worker serves no HTTP: keys do not apply
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_job_store(settings.queue, settings.data_dir)
    inference = InferenceWorker(settings, store, open_storage(settings.storage, settings.data_dir))
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
