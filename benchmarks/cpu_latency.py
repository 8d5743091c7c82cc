"""Model latency on this machine: official-style float32 eager against bgone's fast paths.

    .venv/bin/python benchmarks/cpu_latency.py                  # default grid, rewrites its RESULTS.md section
    .venv/bin/python benchmarks/cpu_latency.py --compile        # also torch.compile (minutes per configuration)
    .venv/bin/python benchmarks/cpu_latency.py --quick          # smoke run, prints only

A driver over ``bgone.bench`` (the code behind ``bgone bench``): every configuration runs in its own
subprocess so that its peak RSS is its own; the baseline (mode ``official``: float32, eager, NCHW,
``grid_sample`` deformable sampling, concatenated ASPP, untuned allocator) runs in the same session
and every speed-up is against it. Weights are seeded stand-ins: real checkpoints cannot be downloaded
here, and speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from bgone.tools.bench import BenchConfig, markdown, run_configs

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "benchmarks" / "RESULTS.md"
RESULTS_TITLE = "# Benchmark results"
SECTION_TITLE = "## Model latency (benchmarks/cpu_latency.py)"
COMPILED_TITLE = "## Model latency under torch.compile (benchmarks/cpu_latency.py --compile)"


def machine_info() -> dict[str, Any]:
    cpu: str | None = None
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu is None:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        # bf16 speed on CPU hinges on these: without native bf16 ISA, oneDNN emulates it.
        "bf16_isa": [f for f in ("avx512_bf16", "amx_bf16", "avx_vnni") if f in flags] or ["none"],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_1m": os.getloadavg()[0],
    }


def command_line(argv: list[str]) -> str:
    def rel(path: str) -> str:
        try:
            return str(Path(path).relative_to(REPO))
        except ValueError:
            return path

    return shlex.join([rel(sys.executable), rel(str(Path(sys.argv[0]).resolve())), *argv])


def results_section(title: str, notes: list[str], table: list[str], argv: list[str]) -> str:
    """The section layout the other benchmark scripts share: heading, machine, notes, command, table."""
    info = machine_info()
    machine = (
        f"- Date: {info['date']}; CPU: {info['cpu']}, {info['usable_cpus']} usable CPUs, "
        f"torch CPU capability {info['cpu_capability']}, bf16 ISA: {', '.join(info['bf16_isa'])}; "
        f"torch {info['torch']} ({info['torch_threads']} threads)"
    )
    return "\n".join(
        [title, "", machine, *(f"- {n}" for n in notes), "", "```", command_line(argv), "```", "", *table, ""]
    )


def update_results(path: Path, section: str) -> None:
    """Replace this script's section in ``path`` (or append it), leaving every other section untouched."""
    text = path.read_text() if path.is_file() else ""
    lines = text.splitlines()
    if not lines or lines[0].strip() != RESULTS_TITLE:
        lines = [RESULTS_TITLE, "", *lines]
    title = section.splitlines()[0].strip()  # each script owns the section under its own heading
    start = next((i for i, line in enumerate(lines) if line.strip() == title), None)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", *section.splitlines()]
    else:
        end, fenced = len(lines), False
        for i in range(start + 1, len(lines)):
            if lines[i].startswith("```"):
                fenced = not fenced  # a "## " inside a code block is not a heading
            elif not fenced and re.match(r"^#{1,2} ", lines[i]):
                end = i
                break
        # Keep one blank line before whatever heading follows.
        lines[start:end] = [*section.rstrip("\n").splitlines(), *([""] if end < len(lines) else [])]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="lite,general", help="comma list of registry names (lite,general)")
    p.add_argument("--resolutions", default="512,1024", help="comma list, multiples of 32")
    p.add_argument("--dtypes", default="float32,bfloat16", help="dtypes of the fast path (the baseline is float32)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.add_argument("--batch", default="1", help="comma list of batch sizes")
    p.add_argument("--runs", type=int, default=3, help="timed forward passes per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed forward passes first")
    p.add_argument("--compile", action="store_true", help="also time torch.compile for each dtype")
    p.add_argument("--output", type=Path, default=None, help=f"results file to update (default {DEFAULT_OUTPUT})")
    p.add_argument("--section", default=None, help="heading of the RESULTS.md section to write (a grid of its own)")
    p.add_argument("--quick", action="store_true", help="lite at 256px, 1 run, no warm-up; writes no file")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.resolutions, args.runs, args.warmup = "lite", "256", 1, 0
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    dtypes = [d for d in args.dtypes.split(",") if d]
    modes = [("official", "float32"), *(("fast", d) for d in dtypes)]
    if args.compile:
        modes += [("compiled", d) for d in dtypes]
    configs = [
        BenchConfig(model, int(size), args.device, dtype, int(batch), args.runs, args.warmup, True, mode)
        for model in args.models.split(",")
        for size in args.resolutions.split(",")
        for batch in args.batch.split(",")
        for mode, dtype in modes
    ]
    results = run_configs(configs)
    table = markdown(results)
    print(table)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None:
        notes = [
            f"Device {args.device}; {args.warmup} warm-up + {args.runs} timed passes per configuration, each in a "
            "fresh subprocess; seeded stand-in weights; a synthetic 'disc on a gradient' picture",
            "mode official = the baseline (float32 eager, NCHW, grid_sample sampling, concatenated ASPP); "
            "fast = what bgone runs by default; compiled = fast under torch.compile (first run s includes "
            "the compilation)",
            "TFLOP/s = the official network's FLOPs (convolutions and matmuls; deformable sampling not counted) "
            "per second; 'of peak' divides by the same machine's large-matmul TFLOP/s in that dtype, measured in "
            "the same process",
            "mask MAD = mean |sigmoid(logits)·255 − the official-style float32 mask| in 0..255 units",
        ]
        title = f"## {args.section}" if args.section else COMPILED_TITLE if args.compile else SECTION_TITLE
        update_results(output, results_section(title, notes, table.splitlines(), argv))
        print(f"wrote {output}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
