"""``bgone bench``: speed, memory and mask drift of the fast paths against the official-style path."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bgone.cli.console import console


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
    from bgone.pipeline.resolution import Resolution
    from bgone.tools.bench import BenchConfig, markdown, run_configs
    from bgone.weights.placement import resolve_dtype

    sizes = [int(v) for v in resolution.split(",") if v.strip()]
    for size in sizes:
        Resolution.parse(size)  # multiples of 32, or a clear error
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
