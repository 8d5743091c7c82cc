"""`bgone bench`: latency, throughput, peak memory and mask drift per configuration.

Each configuration runs in a fresh subprocess so its peak memory is its own. Every speed-up is against
the official-style path (float32, eager, NCHW, the step-by-step formulation: ``set_fast_paths(False)``,
no allocator tuning) for the same model, resolution and batch, measured in the same run. Modes:

- ``official``: that baseline;
- ``fast``: what ``bgone remove`` and the server run: fast formulations, channels-last, tuned allocator;
- ``compiled``: ``fast`` under ``torch.compile`` (the first pass, which compiles, is reported separately).
"""

from __future__ import annotations

import json
import resource
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

from bgone.nn.birefnet import ArchConfig, BiRefNet
from bgone.pipeline.runtime import compile_model, tune_cpu_allocator
from bgone.pipeline.transforms import IMAGENET_MEAN, IMAGENET_STD
from bgone.weights.loader import load_model
from bgone.weights.placement import dtype_name, resolve_device, resolve_dtype, use_channels_last
from bgone.weights.registry import REGISTRY

RESULT_PREFIX = "BGONE_BENCH "


@dataclass(frozen=True)
class BenchConfig:
    model: str
    resolution: int
    device: str
    dtype: str
    batch: int
    runs: int
    warmup: int
    seeded: bool  # random stand-in weights of the model's architecture: speed does not depend on values
    mode: str = "fast"


MODES: tuple[str, ...] = ("official", "fast", "compiled")


def synthetic_batch(batch: int, size: int) -> torch.Tensor:
    """A deterministic picture (soft disc on a gradient), ImageNet-normalised."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    disc = (((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.08).astype(np.float32)
    rgb = np.stack([0.2 + 0.6 * x, 0.3 + 0.5 * y, 0.4 + 0.5 * disc], axis=0)
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    return torch.from_numpy((rgb - mean) / std).unsqueeze(0).repeat(batch, 1, 1, 1)


def _load(config: BenchConfig, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    if not config.seeded:
        model = load_model(config.model, device=device, dtype=dtype, progress=False)
    else:
        variant = REGISTRY.get(config.model)
        torch.manual_seed(0)
        # Built directly in the target dtype, so a bf16 run's peak memory never holds an fp32 copy.
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            model = BiRefNet(ArchConfig(variant.backbone, variant.design, variant.patch_order))
        finally:
            torch.set_default_dtype(previous)
        model = model.eval().requires_grad_(False).to(device=device, dtype=dtype)
    if config.mode == "official":
        model.set_fast_paths(False)
        return model.to(memory_format=torch.contiguous_format)
    if use_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    if config.mode == "compiled":
        return compile_model(model, device)
    return model


def gemm_peak_tflops(device: torch.device, dtype: torch.dtype, side: int = 2048, repeats: int = 5) -> float:
    """The device's practical peak: TFLOP/s of a large square matmul in this dtype."""
    a = torch.randn(side, side, device=device).to(dtype)
    b = torch.randn(side, side, device=device).to(dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * side**3 / best / 1e12


def flops_per_image(backbone: str, design: str, resolution: int) -> float:
    """The official network's multiply-adds ×2 per image (deformable sampling not counted), from the meta
    device: model FLOPs, the same count for every mode, so TFLOP/s compares like with like (the fast
    path skips about 5% of them by folding the output head)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = BiRefNet(ArchConfig(backbone, design)).eval()  # type: ignore[arg-type]
        model.set_fast_paths(False)
        x = torch.empty(1, 3, resolution, resolution)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return float(counter.get_total_flops())


def run_one(config: BenchConfig, reference: Path | None) -> dict[str, Any]:
    """Run in the worker process: load, warm up, time, compare the mask with the baseline's."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    if config.mode != "official" and device.type == "cpu":
        tune_cpu_allocator()
    model = _load(config, device, dtype)
    arch = model.arch  # torch.compile's wrapper forwards attribute access
    memory_format = torch.channels_last if config.mode != "official" and use_channels_last(device) else None
    x = synthetic_batch(config.batch, config.resolution).to(device=device, dtype=dtype)
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)
    times = []
    # Compiled graphs with frozen weights need no_grad (inference-mode tensors cannot be frozen).
    grad_mode = torch.no_grad() if config.mode == "compiled" else torch.inference_mode()
    with grad_mode:
        for _ in range(config.warmup + config.runs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            out = model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    first = times[0]
    times = times[config.warmup :]
    mask = torch.sigmoid(out.float()).cpu().numpy() * 255
    mad = None
    if reference is not None:
        if config.mode == "official":
            np.save(reference, mask)
            mad = 0.0
        elif reference.exists():
            mad = float(np.abs(mask - np.load(reference)).mean())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    ordered = sorted(times)
    return {
        **asdict(config),
        "device": str(device),
        "dtype": dtype_name(dtype),
        "median_s": statistics.median(times),
        "p90_s": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        "first_run_s": first,
        "images_per_s": config.batch / statistics.median(times),
        "peak_mem_mb": round(peak, 1),
        "mask_mad_vs_float32": mad,
        "threads": torch.get_num_threads(),
        "backbone": arch.backbone,
        "design": arch.design,
        "device_peak_tflops": gemm_peak_tflops(device, dtype),
    }


def run_configs(configs: list[BenchConfig]) -> list[dict[str, Any]]:
    """Each configuration in its own process; float32 first so the others can be compared to it."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ordered = sorted(configs, key=lambda c: (c.model, c.resolution, c.batch, c.mode != "official"))
        for config in ordered:
            reference = Path(tmp) / f"{abs(hash((config.model, config.resolution, config.batch)))}.npy"
            command = [sys.executable, "-m", "bgone.tools.bench", json.dumps(asdict(config)), str(reference)]
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
            if line is None:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                results.append({**asdict(config), "error": tail[0]})
                continue
            results.append(json.loads(line[len(RESULT_PREFIX) :]))
    baseline = {
        (r["model"], r["resolution"], r["batch"]): r["median_s"]
        for r in results
        if r.get("mode") == "official" and "median_s" in r
    }
    flops: dict[tuple[str, str, int], float] = {}
    for r in results:
        if "median_s" not in r:
            continue
        base = baseline.get((r["model"], r["resolution"], r["batch"]))
        r["speedup_vs_official"] = base / r["median_s"] if base else None
        key = (r["backbone"], r["design"], r["resolution"])
        if key not in flops:
            flops[key] = flops_per_image(*key)
        r["tflops_per_s"] = flops[key] * r["batch"] / r["median_s"] / 1e12
        r["peak_fraction"] = r["tflops_per_s"] / r["device_peak_tflops"] if r["tflops_per_s"] else None
    return results


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(results: list[dict[str, Any]]) -> str:
    header = (
        "| model | resolution | device | mode | dtype | batch | median s | p90 s | first run s | img/s | TFLOP/s "
        "| of peak | peak MB | vs official | mask MAD |"
    )
    lines = [header, "|---" * 15 + "|"]
    for r in results:
        lead = f"| {r['model']} | {r['resolution']} | {r['device']} | {r['mode']} | {r['dtype']} | {r['batch']} |"
        if "error" in r:
            lines.append(f"{lead} failed: {r['error']}" + " |" * 9)
            continue
        lines.append(
            f"{lead} {r['median_s']:.3f} | {r['p90_s']:.3f} | {r['first_run_s']:.1f} | {r['images_per_s']:.3f} | "
            f"{_fmt(r['tflops_per_s'], '.3f')} | {_fmt(r['peak_fraction'], '.0%')} | {r['peak_mem_mb']:.0f} | "
            f"{_fmt(r['speedup_vs_official'], '.2f')}x | {_fmt(r['mask_mad_vs_float32'], '.3f')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the worker side of run_configs
    cfg = BenchConfig(**json.loads(sys.argv[1]))
    print(RESULT_PREFIX + json.dumps(run_one(cfg, Path(sys.argv[2]))), flush=True)
