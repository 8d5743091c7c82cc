"""The ``bgone`` command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import BgoneError
from .zoo import FAL_MODEL_MAP, REGISTRY, Variant, fetch_weights, find_local, register, verify_checksum

if TYPE_CHECKING:
    from .api.settings import ServerSettings

app = typer.Typer(help="bgone: self-hosted background removal on BiRefNet.", no_args_is_help=True)
models_app = typer.Typer(help="List, download, verify and describe BiRefNet checkpoints.", no_args_is_help=True)
app.add_typer(models_app, name="models")
export_app = typer.Typer(help="Export a model for other runtimes.", no_args_is_help=True)
app.add_typer(export_app, name="export")
console = Console()
err_console = Console(stderr=True)


def _fal_names(variant: Variant) -> list[str]:
    return [
        f"{version}:{fal}"
        for version, table in FAL_MODEL_MAP.items()
        for fal, name in table.items()
        if name == variant.name
    ]


@app.command()
def version() -> None:
    """Print bgone's and PyTorch's versions."""
    console.print(f"bgone {__version__} (torch {torch.__version__})")


@app.command(no_args_is_help=True)
def remove(
    inputs: Annotated[
        list[str], typer.Argument(help="Files, folders (recursive), globs, URLs, or - for stdin.", show_default=False)
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "-o", "--output", help="Output file (one input), folder, or - for stdout. Default: ./bgone-output/"
        ),
    ] = None,
    model: Annotated[str, typer.Option("-m", "--model", help="Registry name, fal name or checkpoint path.")] = "lite",
    resolution: Annotated[
        str | None,
        typer.Option(
            "-r",
            "--resolution",
            help="Operating resolution WxH or N (multiples of 32), or 'dynamic'. Default: the model's own.",
        ),
    ] = None,
    mask: Annotated[bool, typer.Option("--mask", help="Also write the mask as NAME.mask.png.")] = False,
    mask_only: Annotated[bool, typer.Option("--mask-only", help="Write only the mask.")] = False,
    no_refine: Annotated[bool, typer.Option("--no-refine", help="Skip foreground colour refinement.")] = False,
    fmt: Annotated[
        str,
        typer.Option("-f", "--format", help="png, webp, gif, or jpeg (jpeg: composited on white or on --background)."),
    ] = "png",
    background: Annotated[
        str | None, typer.Option("-b", "--background", help="Background colour (#rrggbb, name) or image file.")
    ] = None,
    crop: Annotated[bool, typer.Option("--crop", help="Crop to the subject's bounding box.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[
        str,
        typer.Option(
            help="auto (bfloat16 where the CPU/GPU computes it natively, else float32), float32 (the official "
            "numerics, slower), bfloat16 or float16."
        ),
    ] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 1,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the model: faster passes after a one-off compilation per operating size "
            "(minutes on a small CPU); worth it for large folders.",
        ),
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            help="auto (onnx for .onnx files, else torch), torch, or onnx: run a graph from `bgone export onnx` "
            "(or another BiRefNet ONNX file) with onnxruntime; --device picks its CPU or CUDA provider."
        ),
    ] = "auto",
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Threads decoding and encoding beside inference.")
    ] = 2,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Skip inputs whose output exists (resume a run).")
    ] = False,
    max_frames: Annotated[int, typer.Option("--max-frames", min=1, help="Frame limit for animated inputs.")] = 300,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar or summary.")] = False,
) -> None:
    """Remove the background of images: files, whole folders, globs, URLs or stdin."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .batch import expand_inputs, plan_jobs, run_jobs
    from .imaging import extension_for, load_image
    from .pipeline import RemovalOptions, Remover

    extension_for(fmt)  # validates the format before any model loads
    bg: object = background
    if background is not None and Path(background).is_file():
        bg = load_image(background).frames[0]
    options = RemovalOptions.build(
        operating_resolution=resolution,
        refine_foreground=not no_refine,
        output_mask=mask,
        mask_only=mask_only,
        background=bg,
        crop=crop,
    )
    items = expand_inputs(inputs)
    if not items:
        raise typer.BadParameter("no input images found")
    jobs = plan_jobs(items, output, fmt, write_mask=mask and not mask_only)
    to_stdout = any(job.output is None for job in jobs)
    quiet = quiet or to_stdout
    remover = Remover(
        model,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        max_frames=max_frames,
        progress=not quiet,
        compile=compile_model,
        backend=backend,
    )
    if not quiet:
        err_console.print(f"bgone: {len(jobs)} image(s) with {remover.describe()}", highlight=False)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet,
    )
    with progress:
        task = progress.add_task("removing", total=len(jobs), rate="")
        started = time.perf_counter()

        def on_progress(job: object, status: str) -> None:
            done = progress.tasks[0].completed + 1
            progress.update(task, advance=1, rate=f"{done / max(time.perf_counter() - started, 1e-9):.2f} img/s")

        summary = run_jobs(
            jobs, remover, options, fmt, workers=workers, skip_existing=skip_existing, on_progress=on_progress
        )
    if not quiet:
        err_console.print(
            f"done: {len(summary.done)} written, {len(summary.skipped)} skipped, {len(summary.failed)} failed "
            f"in {summary.seconds:.1f}s ({summary.images_per_second:.2f} img/s)",
            highlight=False,
        )
    for source, reason in summary.failed:
        err_console.print(f"[red]failed[/] {escape(source)}: {escape(reason)}", highlight=False, soft_wrap=True)
    if summary.failed:
        raise typer.Exit(1)


# Options that `serve` and `worker` share: declared once, so both commands speak the same language.
QueueOpt = Annotated[str | None, typer.Option("--queue", help="redis://host:port/db (default: SQLite in --data-dir).")]
StorageOpt = Annotated[
    str | None, typer.Option("--storage", help="s3://bucket/prefix[?presign=1] (default: files in --data-dir).")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="SQLite queue/history and stored files. [default: ./bgone-data]")
]
ModelMapOpt = Annotated[
    Path | None, typer.Option("--model-map", help="JSON: fal model name -> registry name or checkpoint path.")
]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps. [default: auto]")]
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        help="auto (bfloat16 where the device computes it natively, else float32), float32 (the official "
        "numerics, slower), bfloat16 or float16. [default: auto]"
    ),
]
CompileOpt = Annotated[
    bool | None,
    typer.Option(
        "--compile",
        help="torch.compile loaded models: faster passes after a one-off compilation per operating size "
        "(minutes on a small CPU). [default: off]",
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="auto (onnx for .onnx files in the model map, torch otherwise), torch or onnx. [default: auto]",
    ),
]
BatchSizeOpt = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Queued requests batched per forward pass. [default: 4]")
]
MaxModelsOpt = Annotated[int | None, typer.Option("--max-models", min=1, help="Models kept loaded (LRU). [default: 2]")]
ModelMemoryOpt = Annotated[
    int | None, typer.Option("--model-memory-mb", min=1, help="Memory budget for loaded models (LRU eviction).")
]
WarmModelOpt = Annotated[
    str | None, typer.Option("--warm-model", help="Model loaded at start-up (for /ready); 'none' to load lazily.")
]
AllowPrivateOpt = Annotated[
    bool | None, typer.Option("--allow-private-urls", help="Let image URLs and webhooks reach private addresses.")
]
AllowedHostOpt = Annotated[
    list[str] | None, typer.Option("--allowed-host", help="A host that may be private (repeatable).")
]
MaxSideOpt = Annotated[
    int | None,
    typer.Option("--max-operating-side", min=32, help="Cap every operating resolution's side (small CPU boxes)."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="A TOML or JSON file with any of these settings.")]


def _settings(config: Path | None, model_map: Path | None, warm_model: str | None, **flags: object) -> ServerSettings:
    """Config file, then environment (pydantic-settings), then the flags that were given."""
    from .api.settings import ServerSettings, load_config_file, load_model_map

    values: dict[str, object] = load_config_file(config) if config else {}
    if model_map:
        flags["model_map"] = load_model_map(model_map)
    values.update({k: v for k, v in flags.items() if v not in (None, [])})
    if warm_model is not None:
        values["warm_model"] = None if warm_model.lower() == "none" else warm_model
    return ServerSettings(**values)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on. [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port. [default: 8000]")] = None,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option("--ssl-certfile", help="TLS certificate (PEM): serve HTTPS, which the stock fal_client needs."),
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option("--ssl-keyfile", help="TLS private key (PEM).")] = None,
    data_dir: DataDirOpt = None,
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="Accepted API key (repeatable); clients send `Authorization: Key KEY`."),
    ] = None,
    open_access: Annotated[
        bool | None, typer.Option("--open", help="Accept requests without a key (local use only).")
    ] = None,
    model_map: ModelMapOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    backend: BackendOpt = None,
    batch_size: BatchSizeOpt = None,
    compile_models: CompileOpt = None,
    max_models: MaxModelsOpt = None,
    model_memory_mb: ModelMemoryOpt = None,
    warm_model: WarmModelOpt = None,
    allow_private_urls: AllowPrivateOpt = None,
    allowed_host: AllowedHostOpt = None,
    max_operating_side: MaxSideOpt = None,
    retention_hours: Annotated[
        float | None, typer.Option("--retention-hours", help="Keep results and files this long. [default: 168]")
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="Allowed CORS origin (repeatable).")
    ] = None,
    queue: QueueOpt = None,
    storage: StorageOpt = None,
    role: Annotated[
        str | None, typer.Option("--role", help="all (API and worker) or api (no model loaded here).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the fal-compatible service (fal-ai/birefnet and /v2: sync, queue, files)."""
    import uvicorn

    from .api.app import create_app

    settings = _settings(
        config,
        model_map,
        warm_model,
        host=host,
        port=port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        data_dir=data_dir,
        api_keys=key,
        open_access=open_access,
        device=device,
        dtype=dtype,
        backend=backend,
        batch_size=batch_size,
        compile=compile_models,
        max_models=max_models,
        model_memory_mb=model_memory_mb,
        allow_private_urls=allow_private_urls,
        allowed_hosts=allowed_host,
        max_operating_side=max_operating_side,
        cors_origins=cors_origin,
        retention_seconds=retention_hours * 3600 if retention_hours is not None else None,
        queue=queue,
        storage=storage,
        role=role,
    )
    app_instance = create_app(settings)
    scheme = "https" if settings.ssl_certfile else "http"
    err_console.print(
        f"bgone {__version__}: serving fal-ai/birefnet and /v2 on {scheme}://{settings.host}:{settings.port} "
        f"(queue under /queue, data in {settings.data_dir})",
        highlight=False,
    )
    uvicorn.run(
        app_instance,
        host=settings.host,
        port=settings.port,
        log_level="info",
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )


@app.command()
def worker(
    queue: QueueOpt = None,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    model_map: ModelMapOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    backend: BackendOpt = None,
    batch_size: BatchSizeOpt = None,
    compile_models: CompileOpt = None,
    max_models: MaxModelsOpt = None,
    model_memory_mb: ModelMemoryOpt = None,
    warm_model: WarmModelOpt = None,
    allow_private_urls: AllowPrivateOpt = None,
    allowed_host: AllowedHostOpt = None,
    max_operating_side: MaxSideOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run an inference worker: pull queued requests, run them, store results. Stops cleanly on SIGTERM."""
    import signal

    from .jobs import open_job_store
    from .storage import open_storage
    from .worker import InferenceWorker

    settings = _settings(
        config,
        model_map,
        warm_model,
        open_access=True,  # a worker serves no HTTP: keys do not apply
        queue=queue,
        storage=storage,
        data_dir=data_dir,
        device=device,
        dtype=dtype,
        backend=backend,
        batch_size=batch_size,
        compile=compile_models,
        max_models=max_models,
        model_memory_mb=model_memory_mb,
        allow_private_urls=allow_private_urls,
        allowed_hosts=allowed_host,
        max_operating_side=max_operating_side,
    )
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


@app.command()
def bench(
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Registry names or checkpoint paths (repeatable).")
    ] = None,
    resolution: Annotated[
        str, typer.Option("--resolution", "-r", help="Square sides, comma-separated (multiples of 32).")
    ] = "1024",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[
        str,
        typer.Option("--dtype", help="Comma-separated dtypes of the fast path: auto, float32, bfloat16, float16."),
    ] = "float32,bfloat16",
    batch: Annotated[str, typer.Option("--batch", help="Batch sizes, comma-separated.")] = "1",
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed forward passes per configuration.")] = 3,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed passes first.")] = 1,
    seeded: Annotated[
        bool, typer.Option("--seeded", help="Random stand-in weights of the model's architecture (no download).")
    ] = False,
    compile_too: Annotated[
        bool,
        typer.Option(
            "--compile", help="Also time each dtype under torch.compile (minutes of compilation on a small CPU)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per configuration.")] = False,
) -> None:
    """Latency, throughput, FLOP/s against the device's peak, peak memory and mask drift per
    model x resolution x dtype x batch, each against the official-style float32 eager path measured
    in the same run (its row has mode "official")."""
    from .bench import BenchConfig, markdown, run_configs
    from .preprocess import parse_resolution
    from .runtime import resolve_dtype

    sizes = [int(v) for v in resolution.split(",") if v.strip()]
    for size in sizes:
        parse_resolution(size)  # multiples of 32, or a clear error
    dtypes = [d.strip() for d in dtype.split(",") if d.strip()]
    for name in dtypes:
        resolve_dtype(name)  # a clear error for a typo before anything runs (ValueError: exit 2)
    modes = [("official", "float32")] + [("fast", d) for d in dtypes]
    if compile_too:
        modes += [("compiled", d) for d in dtypes]
    configs = [
        BenchConfig(m, size, device, d, int(b), runs, warmup, seeded, mode)
        for m in (model or ["lite"])
        for size in sizes
        for mode, d in modes
        for b in batch.split(",")
        if b.strip()
    ]
    results = run_configs(configs)
    if as_json:
        for row in results:
            print(json.dumps(row))
    else:
        console.print(markdown(results), highlight=False, soft_wrap=True)
    if any("error" in row for row in results):
        raise typer.Exit(1)


@app.command("eval")
def evaluate_models(
    images: Annotated[
        Path, typer.Option("--images", help="Folder of photos (searched recursively).", show_default=False)
    ],
    masks: Annotated[
        Path,
        typer.Option(
            "--masks",
            help="Folder of ground-truth masks with the images' relative paths and names (photo.jpg -> photo.png); "
            "foreground is > 128.",
            show_default=False,
        ),
    ],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Registry name, fal name or checkpoint path (repeatable; default: lite)."),
    ] = None,
    resolution: Annotated[
        list[str] | None,
        typer.Option(
            "--resolution",
            "-r",
            help="Operating resolution N, WxH, dynamic or native (repeatable; default: native, the model's own).",
        ),
    ] = None,
    dtype: Annotated[
        list[str] | None,
        typer.Option("--dtype", help="auto, float32, bfloat16 or float16 (repeatable; default: auto)."),
    ] = None,
    patch_order: Annotated[
        list[str] | None,
        typer.Option("--patch-order", help="legacy or einops (repeatable; default: the checkpoint's own)."),
    ] = None,
    predictions: Annotated[
        list[Path] | None,
        typer.Option(
            "--predictions",
            help="A folder of ready-made masks to score too, named like the images (repeatable; no model runs).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 1,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N pairs (path order).")] = None,
    per_image: Annotated[bool, typer.Option("--per-image", help="Also print every image's scores.")] = False,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write the report (per image and averaged) to PATH, or - for stdout.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail when an image has no mask (default: skip it).")
    ] = False,
    no_hce: Annotated[bool, typer.Option("--no-hce", help="Skip HCE, the slowest metric.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Score models and settings on your labelled photos: S-measure, F-measures, E-measure, MAE, HCE.

    Every combination of --model, --resolution, --dtype and --patch-order runs over the images, plus each
    --predictions folder; the table shows dataset averages and img/s, --json everything per image."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .evaluate import build_configs, evaluate_dataset, find_pairs, per_image_table, summary_table
    from .metrics import backend

    backend()  # one clear line when the optional package is missing
    configs = build_configs(model or [], resolution or [], dtype or [], patch_order or [], predictions or [])
    dataset = find_pairs(images, masks, strict=strict, limit=limit)
    if dataset.unmatched:
        shown = ", ".join(dataset.unmatched[:5]) + (" ..." if len(dataset.unmatched) > 5 else "")
        err_console.print(
            f"[yellow]warning[/] {len(dataset.unmatched)} image(s) without a mask skipped: {escape(shown)}",
            highlight=False,
            soft_wrap=True,
        )
    to_stdout = json_path == "-"
    out = err_console if to_stdout else console
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
    )
    with progress:
        task = progress.add_task("evaluating", total=len(dataset.pairs) * len(configs))

        def on_progress(label: str, advance: int) -> None:
            progress.update(task, advance=advance, description=escape(label))

        report = evaluate_dataset(
            dataset, configs, device=device, batch_size=batch_size, hce=not no_hce, progress=on_progress
        )
    # Piped or captured output gets the tables' natural width rather than 80 folded columns.
    printer = out if out.is_terminal else Console(file=out.file, width=400)
    printer.print(summary_table(report))
    if per_image:
        printer.print(per_image_table(report))
    if json_path:
        text = json.dumps(report.to_dict(), indent=2)
        if to_stdout:
            print(text)
        else:
            Path(json_path).write_text(text + "\n")
            err_console.print(f"report written to {escape(json_path)}", highlight=False)
    failed = [(r.label, f) for r in report.results for f in r.failed]
    for label, failure in failed:
        err_console.print(
            f"[red]failed[/] {escape(failure['image'])} ({escape(label)}): {escape(failure['error'])}",
            highlight=False,
            soft_wrap=True,
        )
    if failed:
        raise typer.Exit(1)


@models_app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model.")] = False) -> None:
    """Every registered model with its backbone, resolution, patch order and whether it is on disk."""
    if as_json:
        for variant in REGISTRY:
            local = find_local(variant)
            print(
                json.dumps(
                    {**variant.to_dict(), "local_path": str(local) if local else None, "fal_names": _fal_names(variant)}
                )
            )
        return
    table = Table(title="bgone model zoo")
    for column in ("name", "backbone", "design", "resolution", "patch order", "fal names", "on disk"):
        table.add_column(column)
    for variant in REGISTRY:
        table.add_row(
            variant.name,
            variant.backbone,
            variant.design,
            variant.resolution_label,
            variant.patch_order,
            ", ".join(_fal_names(variant)),
            "yes" if find_local(variant) else "no",
        )
    console.print(table)


def _parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    counts = {"total": sum(p.numel() for p in model.parameters())}
    for name in ("bb", "squeeze_module", "decoder"):
        counts[name] = sum(p.numel() for p in getattr(model, name).parameters())
    return counts


@models_app.command("info")
def info(
    model: Annotated[str, typer.Argument(help="Registry name, fal model name or checkpoint path.")],
    load: Annotated[
        bool, typer.Option("--load", help="Load the weights (downloading them if needed) and run them once.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Describe a model: where it comes from, its architecture, and (with --load) the loaded network."""
    from .checkpoints import build_model, read_state_dict
    from .loader import load_model, resolve_source
    from .nn.birefnet import ArchConfig, BiRefNet

    report: dict[str, object] = {}
    variant = REGISTRY.find(model)
    if variant is None and not Path(model).expanduser().exists():
        variant = REGISTRY.get(model)  # raises a helpful UnknownModelError for a bad name
    if variant is not None:
        local = find_local(variant)
        report.update(variant.to_dict())
        report["fal_names"] = _fal_names(variant)
        report["local_path"] = str(local) if local else None
    if load:
        started = time.perf_counter()
        net = load_model(model, device=device, dtype=dtype)
        load_s = time.perf_counter() - started
        x = torch.zeros(1, 3, 64, 64, device=next(net.parameters()).device, dtype=next(net.parameters()).dtype)
        started = time.perf_counter()
        with torch.inference_mode():
            out = net(x)
        report.update(
            checkpoint=str(net.checkpoint_path),
            checkpoint_bytes=Path(str(net.checkpoint_path)).stat().st_size,
            load_seconds=round(load_s, 2),
            smoke_test=f"64x64 forward -> {tuple(out.shape)} logits in {time.perf_counter() - started:.2f}s",
            device=str(x.device),
            dtype=str(x.dtype).removeprefix("torch."),
        )
        arch = net.arch
    elif variant is not None and variant.backbone != "auto":
        arch = ArchConfig(variant.backbone, variant.design, variant.patch_order)
        with torch.device("meta"):
            net = BiRefNet(arch)
    else:
        path, found = resolve_source(model)
        state = read_state_dict(path)
        net = build_model(state, patch_order=found.patch_order if found else "einops", source=str(path))
        arch = net.arch
        report.setdefault("local_path", str(path))
    report["architecture"] = {
        "backbone": arch.backbone,
        "design": arch.design,
        "patch_order": arch.patch_order,
        "batch_norm": arch.batch_norm,
        "decoder_channels": list(arch.channels),
        "parameters": _parameter_counts(net),
        "state_dict_entries": len(net.state_dict()),
    }
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    table = Table(show_header=False, title=f"model {variant.name if variant else model}")
    table.add_column(style="bold")
    table.add_column()
    for key, value in report.items():
        if key == "architecture":
            for sub, subvalue in value.items():  # type: ignore[union-attr]
                text = (
                    ", ".join(f"{k} {v:,}" for k, v in subvalue.items())
                    if isinstance(subvalue, dict)
                    else str(subvalue)
                )
                table.add_row(sub, text)
        elif value not in (None, "", (), []):
            table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value))
    console.print(table)
    if not load and variant is not None and not report.get("local_path"):
        console.print(
            f"Weights not on disk yet: `bgone models pull {variant.name}` or `bgone models info {variant.name} --load`."
        )


@models_app.command("pull")
def pull(
    names: Annotated[list[str] | None, typer.Argument(help="Models to download.")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model in the registry.")] = False,
) -> None:
    """Download checkpoints into the Hugging Face cache (or BGONE_MODEL_DIR) and verify them."""
    variants = list(REGISTRY) if all_models else [REGISTRY.get(n) for n in names or []]
    if not variants:
        raise typer.BadParameter("name at least one model, or --all")
    for variant in variants:
        path = fetch_weights(variant, progress=True, verify=True)
        console.print(f"[green]ok[/] {variant.name}: {path}")


@models_app.command("verify")
def verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models or checkpoint paths (default: every model on disk).")
    ] = None,
) -> None:
    """Check published SHA-256 sums and that each file loads strictly into its architecture."""
    from .checkpoints import build_model, read_state_dict
    from .loader import resolve_source

    targets: list[tuple[str, Path, Variant | None]] = []
    if names:
        for name in names:
            path, variant = resolve_source(name, verify=False)
            targets.append((name, path, variant))
    else:
        targets = [(v.name, p, v) for v in REGISTRY if (p := find_local(v)) is not None]
        if not targets:
            console.print("No checkpoints on disk yet (`bgone models pull NAME`).")
            return
    failed = 0
    for label, path, variant in targets:
        try:
            checksum = verify_checksum(variant, path, force=True) if variant else None
            model = build_model(read_state_dict(path), source=str(path))
            how = "sha256 ok" if checksum else "no published sha256"
            console.print(
                f"[green]ok[/] {label}: {path} ({how}; loads strictly as {model.arch.backbone} {model.arch.design})"
            )
        except BgoneError as exc:
            failed += 1
            err_console.print(f"[red]FAILED[/] {escape(label)}: {escape(str(exc))}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@export_app.command("onnx", no_args_is_help=True)
def export_onnx_command(
    model: Annotated[str, typer.Argument(help="Registry name, fal name or checkpoint path.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .onnx file to write.", show_default=False)],
    dtype: Annotated[
        str, typer.Option(help="float32, or float16 (half the size; for GPUs; inputs/outputs stay float32).")
    ] = "float32",
    opset: Annotated[int | None, typer.Option(help="ONNX opset. [default: 19]")] = None,
    deform: Annotated[
        str,
        typer.Option(
            help="deformconv: ONNX DeformConv nodes (opset 19+, onnxruntime runs them natively); "
            "gridsample: GridSample nodes, for runtimes without DeformConv (opset 16+)."
        ),
    ] = "deformconv",
    sigmoid: Annotated[
        bool, typer.Option("--sigmoid/--logits", help="Output probabilities (`mask`) or logits (`logits`).")
    ] = False,
    patch_order: Annotated[
        str | None, typer.Option(help="einops or legacy. [default: the checkpoint's own]")
    ] = None,
    max_side: Annotated[int, typer.Option("--max-side", help="Largest height/width the graph accepts.")] = 4096,
    validate: Annotated[
        bool, typer.Option("--validate/--no-validate", help="Compare onnxruntime with PyTorch after export.")
    ] = True,
    validate_size: Annotated[
        list[str] | None,
        typer.Option(
            "--validate-size", help="WxH checked after export (repeatable; the first runs as a batch of 2)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Export a BiRefNet to ONNX with dynamic batch, height and width (multiples of 32), then check it."""
    from .onnx_export import DEFAULT_VALIDATION_SIZES, export_onnx

    def say(message: str) -> None:
        if not as_json:
            err_console.print(message, highlight=False)

    report = export_onnx(
        model,
        output,
        dtype=dtype,
        opset=opset,
        deform=deform,  # type: ignore[arg-type]
        sigmoid=sigmoid,
        patch_order=patch_order,
        max_side=max_side,
        validate=validate,
        validation_sizes=validate_size or DEFAULT_VALIDATION_SIZES,
        progress=say,
    )
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    elif report.validation:
        verdict = "[green]OK[/]" if report.passed else "[red]FAILED[/]"
        console.print(
            f"{verdict} max |onnxruntime - PyTorch| = {report.max_abs_diff:.2e} "
            f"(tolerance {report.tolerance:.0e}) over {len(report.validation)} sizes",
            highlight=False,
        )
    if report.passed is False:
        raise typer.Exit(1)


@models_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Name to register the checkpoint under.")],
    path: Annotated[Path, typer.Argument(help="A .pth or .safetensors file.")],
    patch_order: Annotated[str, typer.Option(help="einops (trained after 2024-11-05) or legacy.")] = "einops",
    resolution: Annotated[str, typer.Option(help="Native resolution WxH, or 'dynamic'.")] = "1024x1024",
) -> None:
    """Register a custom checkpoint (fine-tune) by name, persistently."""
    from .checkpoints import build_model, read_state_dict

    if patch_order not in ("einops", "legacy"):
        raise typer.BadParameter("patch order must be einops or legacy")
    size = None if resolution == "dynamic" else tuple(int(v) for v in resolution.lower().split("x"))
    model = build_model(read_state_dict(path), source=str(path))  # refuse files that do not load
    register(name, path, patch_order=patch_order, resolution=size, persist=True)
    console.print(f"[green]registered[/] {name}: {path} ({model.arch.backbone}, design {model.arch.design})")


def main() -> None:
    try:
        app()
    except BgoneError as exc:
        err_console.print(f"[red]error[/] {escape(f'[{exc.error_type}] {exc}')}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (ValueError, FileNotFoundError) as exc:
        err_console.print(f"[red]error[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
