"""``bgone remove``: background removal on files, folders, globs, URLs and stdin, with a progress bar."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bgone.cli.console import err_console
from bgone.settings import DEFAULT_LIMITS


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
    max_frames: Annotated[
        int, typer.Option("--max-frames", min=1, help="Frame limit for animated inputs.")
    ] = DEFAULT_LIMITS.max_frames,
    video_format: Annotated[
        str | None,
        typer.Option(
            "--video-format",
            help="Videos' output: webm (VP9 with alpha), mov (ProRes 4444 with alpha), mp4 (H.264 over the "
            "--background colour, black by default) or gif. Default: the -o file's extension, else webm.",
        ),
    ] = None,
    video_quality: Annotated[
        str, typer.Option("--video-quality", help="low, medium, high or maximum.")
    ] = "high",
    video_write_mode: Annotated[
        str, typer.Option("--video-write-mode", help="fast, balanced or small (encoding speed against file size).")
    ] = "balanced",
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar or summary.")] = False,
) -> None:
    """Remove the background of images and videos: files, whole folders, globs, URLs or stdin."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from bgone.imaging.colors import parse_color
    from bgone.imaging.decode import load_image
    from bgone.imaging.encode import extension_for
    from bgone.imaging.video_formats import QUALITIES, VIDEO_FORMATS, WRITE_MODES, VideoEncoding
    from bgone.pipeline.batch_files import expand_inputs, plan_jobs, run_jobs
    from bgone.pipeline.options import RemovalOptions
    from bgone.pipeline.remover import Remover

    extension_for(fmt)  # validates the formats before any model loads
    for value, allowed, flag in (
        (video_format, VIDEO_FORMATS, "--video-format"),
        (video_quality, QUALITIES, "--video-quality"),
        (video_write_mode, WRITE_MODES, "--video-write-mode"),
    ):
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"{value!r}: use one of {', '.join(allowed)}", param_hint=flag)
    bg: object = background
    if background is not None and Path(background).is_file():
        bg = load_image(background).frames[0]
    video_background = parse_color(background)[:3] if isinstance(bg, str) else (0, 0, 0)
    encoding = VideoEncoding(quality=video_quality, write_mode=video_write_mode, background=video_background)
    options = RemovalOptions(
        operating_resolution=resolution,
        refine_foreground=not no_refine,
        output_mask=mask,
        mask_only=mask_only,
        background=bg,
        crop=crop,
    )
    items = expand_inputs(inputs)
    if not items:
        raise typer.BadParameter("no input images or videos found")
    jobs = plan_jobs(items, output, fmt, write_mask=mask and not mask_only, video_format=video_format)
    to_stdout = any(job.output is None for job in jobs)
    quiet = quiet or to_stdout
    remover = Remover(
        model,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        limits=replace(DEFAULT_LIMITS, max_frames=max_frames),
        progress=not quiet,
        compile=compile_model,
        backend=backend,
    )
    if not quiet:
        videos = sum(job.is_video for job in jobs)
        what = f"{len(jobs) - videos} image(s)" + (f" and {videos} video(s)" if videos else "")
        err_console.print(f"bgone: {what} with {remover.describe()}", highlight=False)
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

        frames: dict[object, int] = {}  # a progress bar in frames for each video

        def on_progress(job: object, status: str) -> None:
            done = progress.tasks[0].completed + 1
            progress.update(task, advance=1, rate=f"{done / max(time.perf_counter() - started, 1e-9):.2f} files/s")

        def on_video_progress(job: object, step: object) -> None:
            if job not in frames:
                frames[job] = progress.add_task(escape(Path(job.item.source).name), total=step.total, rate="")  # type: ignore[attr-defined]
            progress.update(
                frames[job], completed=step.done, total=step.total, rate=f"{step.frames_per_second:.1f} fps"  # type: ignore[attr-defined]
            )

        summary = run_jobs(
            jobs,
            remover,
            options,
            fmt,
            workers=workers,
            skip_existing=skip_existing,
            on_progress=on_progress,
            video_encoding=encoding,
            on_video_progress=on_video_progress,
        )
    if not quiet:
        err_console.print(
            f"done: {len(summary.done)} written, {len(summary.skipped)} skipped, {len(summary.failed)} failed "
            f"in {summary.seconds:.1f}s ({summary.images_per_second:.2f} files/s)",
            highlight=False,
        )
    for source, reason in summary.failed:
        err_console.print(f"[red]failed[/] {escape(source)}: {escape(reason)}", highlight=False, soft_wrap=True)
    if summary.failed:
        raise typer.Exit(1)
