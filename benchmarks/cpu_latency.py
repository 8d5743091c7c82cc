"""CPU latency, peak memory and bfloat16 drift of BiRefNet (Swin-T "lite" and Swin-L "general").

    .venv/bin/python benchmarks/cpu_latency.py            # full grid, rewrites its section of RESULTS.md
    .venv/bin/python benchmarks/cpu_latency.py --quick    # smoke run, prints only

Every configuration runs in its own subprocess (this script re-invoked with ``--worker``) so that
peak RSS belongs to that configuration alone and no allocator state leaks between runs. Weights are
seeded stand-ins (``tests/seeded.py``): real checkpoints cannot be downloaded here, and speed does
not depend on the values.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "benchmarks" / "RESULTS.md"
KEYS_DIR = REPO / "tests" / "data" / "parity" / "keys"
RESULTS_TITLE = "# Benchmark results"
SECTION_TITLE = "## CPU latency (benchmarks/cpu_latency.py)"
RESULT_PREFIX = "BENCH_RESULT "  # marks the worker's JSON line among anything else on stdout
SEED = 0

MODELS: dict[str, str] = {"lite": "swin_v1_t", "general": "swin_v1_l"}
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Config:
    model: str
    resolution: int
    dtype: str
    batch: int = 1

    @property
    def backbone(self) -> str:
        return MODELS[self.model]

    def label(self) -> str:
        return f"{self.model} ({self.backbone}) {self.resolution}px {self.dtype} batch {self.batch}"


# --------------------------------------------------------------------------------------------- worker


def _current_rss_mb() -> float:
    # VmRSS is the resident set *now*; ru_maxrss only ever gives the high-water mark.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _peak_rss_mb()


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes, but this benchmark targets Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_image(resolution: int, batch: int = 1) -> torch.Tensor:
    """A smooth, deterministic picture (soft-edged ellipse on a textured gradient), ImageNet-normalised.

    A picture-like input, rather than white noise, keeps the bf16-vs-fp32 mask difference meaningful.
    """
    lin = torch.linspace(0.0, 1.0, resolution, dtype=torch.float64)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    texture = 0.05 * torch.sin(40 * xx) * torch.cos(30 * yy)
    background = torch.stack((0.3 + 0.4 * xx, 0.5 + 0.2 * yy, 0.6 - 0.3 * xx * yy)) + texture
    dist = ((xx - 0.5) / 0.25) ** 2 + ((yy - 0.55) / 0.35) ** 2
    alpha = torch.sigmoid((1.0 - dist) * 25.0)
    shade = 0.15 * (1.0 - yy)
    foreground = torch.stack((0.8 + shade, 0.3 + shade, 0.2 + shade))
    picture = (alpha * foreground + (1 - alpha) * background).clamp(0, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    normalised = ((picture - mean) / std).float()
    return normalised.unsqueeze(0).expand(batch, -1, -1, -1).contiguous()


def _build_model(backbone: str, dtype: torch.dtype) -> torch.nn.Module:
    sys.path.insert(0, str(REPO / "tests"))
    from bgone.checkpoints import build_model
    from seeded import seeded_tensor  # the per-key half of seeded_state_dict(spec, seed)

    spec = json.loads((KEYS_DIR / f"{backbone}.json").read_text())["keys"]
    state: dict[str, torch.Tensor] = {}
    for key, shape, stored in spec:
        tensor = seeded_tensor(SEED, key, shape, stored)
        # Cast tensor by tensor so a bf16 worker never holds a full fp32 copy: that would
        # inflate its peak RSS with memory inference itself never needs.
        state[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    model = build_model(state)  # strict load, assign=True: the tensors above become the parameters
    return model.to(dtype).eval()  # .to() is a no-op here; kept so nothing stays in another dtype


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config(args.model, args.resolution, args.dtype, args.batch)
    dtype = DTYPES[cfg.dtype]
    load_avg = os.getloadavg()[0]

    start = time.perf_counter()
    model = _build_model(cfg.backbone, dtype)
    load_s = time.perf_counter() - start
    rss_after_load = _current_rss_mb()
    load_peak = _peak_rss_mb()

    x = synthetic_image(cfg.resolution, cfg.batch).to(dtype)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(args.warmup):
            logits = model(x)
        for i in range(args.runs):
            t0 = time.perf_counter()
            logits = model(x)
            times.append(time.perf_counter() - t0)
            print(f"  {cfg.label()}: run {i + 1}/{args.runs} {times[-1]:.3f}s", file=sys.stderr, flush=True)
    peak = _peak_rss_mb()

    # Compare masks, not logits: what a user sees is sigmoid(logits) in 0..255.
    mask = (torch.sigmoid(logits.float()) * 255.0).numpy()
    mad: float | None = None
    max_ad: float | None = None
    if args.save_ref:
        np.save(args.save_ref, mask)
    if cfg.dtype == "float32":
        mad, max_ad = 0.0, 0.0
    elif args.compare_ref and Path(args.compare_ref).is_file():
        diff = np.abs(mask - np.load(args.compare_ref))
        mad, max_ad = float(diff.mean()), float(diff.max())

    ordered = sorted(times)
    return {
        "model": cfg.model,
        "backbone": cfg.backbone,
        "resolution": cfg.resolution,
        "dtype": cfg.dtype,
        "batch": cfg.batch,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "runs": args.runs,
        "warmup": args.warmup,
        "times_s": times,
        "median_s": statistics.median(ordered),
        "p90_s": float(np.percentile(ordered, 90)),
        "min_s": ordered[0],
        "images_per_s": cfg.batch / statistics.median(ordered),
        "load_s": load_s,
        "rss_after_load_mb": rss_after_load,
        "load_peak_rss_mb": load_peak,
        "peak_rss_mb": peak,
        "mask_mad_vs_float32": mad,
        "mask_max_abs_diff_vs_float32": max_ad,
        "loadavg_1m_at_start": load_avg,
    }


# --------------------------------------------------------------------------------------------- parent


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


def run_config(cfg: Config, args: argparse.Namespace, ref: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--model", cfg.model,
        "--resolution", str(cfg.resolution),
        "--dtype", cfg.dtype,
        "--batch", str(cfg.batch),
        "--runs", str(args.runs),
        "--warmup", str(args.warmup),
    ]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    cmd += ["--save-ref", str(ref)] if cfg.dtype == "float32" else ["--compare-ref", str(ref)]
    print(f"[{cfg.label()}] starting", file=sys.stderr, flush=True)
    # stderr passes straight through so progress shows in the parent's log.
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    # A crashed or OOM-killed worker must not sink the whole grid: record it and go on.
    return {**asdict(cfg), "backbone": cfg.backbone, "error": f"worker exited with code {proc.returncode}"}


def add_speedups(results: list[dict[str, Any]]) -> None:
    baseline = {
        (r["model"], r["resolution"], r["batch"]): r["median_s"]
        for r in results
        if r["dtype"] == "float32" and "error" not in r
    }
    for r in results:
        base = baseline.get((r["model"], r["resolution"], r["batch"]))
        r["speedup_vs_fp32_eager"] = base / r["median_s"] if base and "error" not in r else None


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def markdown_table(results: list[dict[str, Any]]) -> str:
    header = [
        "model", "backbone", "resolution", "dtype", "batch", "threads", "median s", "p90 s", "min s",
        "images/s", "speed-up vs fp32 eager", "RSS after load MB", "peak RSS MB", "mask_mad_vs_float32",
    ]  # fmt: skip
    rows = [header]
    for r in results:
        base = [r["model"], r["backbone"], str(r["resolution"]), r["dtype"], str(r["batch"])]
        if "error" in r:
            rows.append([*base, "", r["error"], *[""] * (len(header) - len(base) - 2)])
            continue
        rows.append(
            [
                *base,
                str(r["threads"]),
                _fmt(r["median_s"], ".3f"),
                _fmt(r["p90_s"], ".3f"),
                _fmt(r["min_s"], ".3f"),
                _fmt(r["images_per_s"], ".3f"),
                _fmt(r["speedup_vs_fp32_eager"], ".2f", "x"),
                _fmt(r["rss_after_load_mb"], ".0f"),
                _fmt(r["peak_rss_mb"], ".0f"),
                _fmt(r["mask_mad_vs_float32"], ".3f"),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def render_section(info: dict[str, Any], command: str, args: argparse.Namespace, table: str) -> str:
    return "\n".join(
        [
            SECTION_TITLE,
            "",
            f"- Date: {info['date']}",
            f"- CPU: {info['cpu']}, {info['logical_cpus']} logical CPUs ({info['usable_cpus']} usable), "
            f"torch CPU capability {info['cpu_capability']}, bf16 ISA: {', '.join(info['bf16_isa'])}",
            f"- torch {info['torch']}, Python {info['python']}, torch.get_num_threads() = {info['torch_threads']}",
            f"- 1-min load average at start: {info['loadavg_1m']:.2f}",
            f"- Device cpu, batch 1, {args.warmup} warm-up + {args.runs} timed forward passes per configuration, "
            "each configuration in a fresh subprocess, `torch.inference_mode()`, eager (no compile)",
            "- Weights: seeded stand-ins (`tests/seeded.py`, seed 0), not the released checkpoints",
            "- Input: deterministic synthetic picture, ImageNet-normalised; "
            "`mask_mad_vs_float32` = mean |sigmoid(logits)·255 − float32's| in 0..255 units",
            "",
            "Command:",
            "",
            "```",
            command,
            "```",
            "",
            table,
            "",
        ]
    )


def results_section(title: str, notes: list[str], table: list[str], argv: list[str]) -> str:
    """The section layout the other benchmark scripts share: heading, machine, notes, command, table."""
    info = machine_info()
    machine = (
        f"- Date: {info['date']}; CPU: {info['cpu']}, {info['usable_cpus']} usable CPUs; "
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


def _csv(kind: type, allowed: dict[str, Any] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        items = [kind(part.strip()) for part in text.split(",") if part.strip()]
        if allowed is not None and (bad := [i for i in items if i not in allowed]):
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
        return items

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=_csv(str, MODELS), default=None, help="comma list of lite,general")
    p.add_argument("--resolutions", type=_csv(int), default=None, help="comma list, multiples of 32 (512,1024)")
    p.add_argument("--dtypes", type=_csv(str, DTYPES), default=None, help="comma list of float32,bfloat16")
    p.add_argument("--runs", type=int, default=None, help="timed forward passes per configuration (3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed forward passes first (1)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each worker (torch default)")
    p.add_argument("--json", action="store_true", help="print one JSON object per configuration, not the table")
    p.add_argument("--output", type=Path, default=None, help=f"results file to update (default {DEFAULT_OUTPUT})")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: lite, 512px, 1 run, no warm-up, unless given explicitly; writes no file unless --output",
    )
    # Worker-only flags: the parent re-invokes this script with them, one configuration each.
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    p.add_argument("--resolution", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dtype", choices=DTYPES, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--save-ref", help=argparse.SUPPRESS)
    p.add_argument("--compare-ref", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    quick = args.quick
    args.models = args.models or (["lite"] if quick else list(MODELS))
    args.resolutions = args.resolutions or ([512] if quick else [512, 1024])
    args.dtypes = args.dtypes or list(DTYPES)
    args.runs = args.runs if args.runs is not None else (1 if quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0 if quick else 1)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if bad := [r for r in args.resolutions if r <= 0 or r % 32]:
        p.error(f"resolutions must be positive multiples of 32, got {bad}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(run_worker(args)), flush=True)
        return 0

    info = machine_info()
    # float32 first within each model/resolution: the bf16 worker compares against its saved mask.
    dtypes = sorted(args.dtypes, key=lambda d: d != "float32")
    configs = [Config(m, r, d) for m in args.models for r in args.resolutions for d in dtypes]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bgone-bench-") as tmp:
        for cfg in configs:
            ref = Path(tmp) / f"{cfg.model}-{cfg.resolution}-b{cfg.batch}.npy"
            result = run_config(cfg, args, ref)
            results.append(result)
    add_speedups(results)  # needs every float32 row first, so JSON is printed after the grid
    if args.json:
        for result in results:
            print(json.dumps(result), flush=True)

    table = markdown_table(results)
    if not args.json:
        print(table)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None:
        update_results(output, render_section(info, command_line(argv), args, table))
        print(f"wrote {output}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
