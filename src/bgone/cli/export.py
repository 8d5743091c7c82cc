"""``bgone export``: models for other runtimes (``export onnx``: dynamic shapes, validated against PyTorch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bgone.cli.console import console, err_console

app = typer.Typer(help="Export a model for other runtimes.", no_args_is_help=True)


@app.command("onnx", no_args_is_help=True)
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
    from bgone.tools.onnx_export import DEFAULT_VALIDATION_SIZES, export_onnx

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
