"""``bgone eval``: score models and settings on labelled photos (S-measure, F-measures, E-measure, MAE, HCE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from bgone.cli.console import console, err_console


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

    from bgone.tools.evaluate import build_configs, evaluate_dataset, find_pairs, per_image_table, summary_table
    from bgone.tools.segmentation_metrics import backend

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
