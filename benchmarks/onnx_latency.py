"""Latency of an exported ONNX graph on onnxruntime against the PyTorch network, same machine, same run.

    .venv/bin/python benchmarks/onnx_latency.py [--sizes 512,1024] [--runs 3] [--deform deformconv,gridsample]

Weights are seeded stand-ins for Swin-T (lite); speed does not depend on them. Rows: the official-style
PyTorch network (float32, fast paths off: the baseline every ratio is against), bgone's default PyTorch
path (``dtype=auto``), and one onnxruntime CPU session per exported graph (``bgone export onnx``, float32,
dynamic shapes). Each graph's export time and its largest logit difference from the baseline are listed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from cpu_latency import DEFAULT_OUTPUT, REPO, results_section, update_results

sys.path.insert(0, str(REPO / "tests"))
from bgone.pipeline.onnx_backend import open_session
from bgone.pipeline.runtime import tune_cpu_allocator
from bgone.tools.onnx_export import export_onnx
from bgone.weights.loader import load_model
from bgone.weights.placement import resolve_dtype
from seeded import seeded_state_dict

SECTION_TITLE = "## ONNX (benchmarks/onnx_latency.py)"


def timed(fn: Callable[[], np.ndarray], runs: int) -> tuple[float, float, np.ndarray]:
    """(first call, median of ``runs`` further calls) in seconds, and the last result."""
    started = time.perf_counter()
    result = fn()
    first = time.perf_counter() - started
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return first, statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deform", default="deformconv,gridsample")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    rows: list[tuple[str, int, float, float, float | None]] = []  # label, size, first, median, max diff
    exports: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "lite.safetensors"
        spec = __import__("json").loads((REPO / "tests/data/parity/keys/swin_v1_t.json").read_text())["keys"]
        save_file(seeded_state_dict(spec, 0), str(checkpoint))

        official = load_model(checkpoint, device="cpu", dtype="float32")
        official.set_fast_paths(False)
        official.to(memory_format=torch.contiguous_format)
        inputs = {size: torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(size)) for size in sizes}
        references = {}
        for size in sizes:
            with torch.inference_mode():
                first, median, references[size] = timed(lambda s=size: official(inputs[s]).numpy(), args.runs)
            rows.append(("PyTorch, official-style float32", size, first, median, 0.0))
            print(rows[-1], flush=True)

        tune_cpu_allocator()
        dtype = resolve_dtype("auto", torch.device("cpu"))
        fast = load_model(checkpoint, device="cpu", dtype=dtype)
        for size in sizes:
            x = inputs[size].to(dtype).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                first, median, y = timed(lambda x=x: fast(x).float().numpy(), args.runs)
            diff = float(np.abs(y - references[size]).max())
            rows.append((f"PyTorch, bgone default ({str(dtype).removeprefix('torch.')})", size, first, median, diff))
            print(rows[-1], flush=True)

        for deform in args.deform.split(","):
            path = Path(tmp) / f"lite-{deform}.onnx"
            report = export_onnx(checkpoint, path, deform=deform, validate=False)  # type: ignore[arg-type]
            exports.append(
                f"`--deform {deform}`: exported in {report.export_seconds:.0f} s, {report.file_bytes / 1e6:.0f} MB"
            )
            session = open_session(path, device="cpu")
            for size in sizes:
                feed = {"input_image": inputs[size].numpy()}
                first, median, y = timed(lambda f=feed, run=session.run: run(None, f)[0], args.runs)
                diff = float(np.abs(y - references[size]).max())
                rows.append((f"onnxruntime CPU, float32, {deform}", size, first, median, diff))
                print(rows[-1], flush=True)

    base = {size: median for label, size, _, median, _ in rows if label.startswith("PyTorch, official")}
    table = [
        "| runtime | size | first run (s) | median (s) | vs official | max logit diff vs official |",
        "|---|---|---|---|---|---|",
    ]
    for label, size, first, median, diff in sorted(rows, key=lambda r: (r[1], rows.index(r))):
        table.append(
            f"| {label} | {size}² | {first:.2f} | {median:.2f} | {base[size] / median:.2f}x | "
            f"{'baseline' if label.startswith('PyTorch, official') else f'{diff:.1e}'} |"
        )
    section = results_section(
        SECTION_TITLE,
        [
            "lite (Swin-T), seeded weights, batch 1, one random image per size; median of "
            f"{args.runs} runs after a first (warm-up) run",
            "Graphs from `bgone export onnx` (float32, dynamic batch/height/width, opset 19): " + "; ".join(exports),
            "onnxruntime: default CPU provider, all graph optimisations, intra-op threads = torch's thread count",
        ],
        table,
        sys.argv[1:],
    )
    print("\n".join(table))
    update_results(args.output, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
