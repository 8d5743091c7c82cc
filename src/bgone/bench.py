"""`bgone bench`: latency, throughput, peak memory and mask drift per configuration.

Each configuration runs in a fresh subprocess so its peak memory is its own. Every speed-up is against
float32 eager (the official numerics) for the same model, resolution and batch, measured in the same run.
"""

from __future__ import annotations

import json
import os
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

from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .runtime import dtype_name, resolve_device, resolve_dtype

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
        from .loader import load_model

        return load_model(config.model, device=device, dtype=dtype, progress=False)
    from .nn.birefnet import ArchConfig, BiRefNet
    from .zoo import REGISTRY

    variant = REGISTRY.get(config.model)
    torch.manual_seed(0)
    model = BiRefNet(ArchConfig(variant.backbone, variant.design, variant.patch_order))
    return model.eval().requires_grad_(False).to(device=device, dtype=dtype)


def flops_per_image(config: BenchConfig) -> float | None:
    """Multiply-adds ×2 of one forward pass (deformable sampling not counted), from the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from .nn.birefnet import ArchConfig, BiRefNet
    from .zoo import REGISTRY

    try:
        variant = REGISTRY.get(config.model)
        arch = ArchConfig(variant.backbone, variant.design)
    except Exception:
        return None
    with torch.device("meta"):
        model = BiRefNet(arch).eval()
        x = torch.empty(1, 3, config.resolution, config.resolution)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return float(counter.get_total_flops())


def run_one(config: BenchConfig, reference: Path | None) -> dict[str, Any]:
    """Run in the worker process: load, warm up, time, compare the mask with the float32 one."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    model = _load(config, device, dtype)
    x = synthetic_batch(config.batch, config.resolution).to(device=device, dtype=dtype)
    times = []
    with torch.inference_mode():
        for i in range(config.warmup + config.runs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            out = model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= config.warmup:
                times.append(time.perf_counter() - started)
    mask = torch.sigmoid(out.float()).cpu().numpy() * 255
    mad = None
    if reference is not None:
        if config.dtype == "float32":
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
        "images_per_s": config.batch / statistics.median(times),
        "peak_mem_mb": round(peak, 1),
        "mask_mad_vs_float32": mad,
        "threads": torch.get_num_threads(),
    }


def run_configs(configs: list[BenchConfig]) -> list[dict[str, Any]]:
    """Each configuration in its own process; float32 first so the others can be compared to it."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ordered = sorted(configs, key=lambda c: (c.model, c.resolution, c.batch, c.dtype != "float32"))
        for config in ordered:
            reference = Path(tmp) / f"{abs(hash((config.model, config.resolution, config.batch)))}.npy"
            command = [sys.executable, "-m", "bgone.bench", json.dumps(asdict(config)), str(reference)]
            proc = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
            if line is None:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                results.append({**asdict(config), "error": tail[0]})
                continue
            results.append(json.loads(line[len(RESULT_PREFIX) :]))
    baseline = {
        (r["model"], r["resolution"], r["batch"]): r["median_s"]
        for r in results
        if r.get("dtype") == "float32" and "median_s" in r
    }
    flops: dict[tuple[str, int], float | None] = {}
    for r in results:
        if "median_s" not in r:
            continue
        base = baseline.get((r["model"], r["resolution"], r["batch"]))
        r["speedup_vs_float32"] = base / r["median_s"] if base else None
        key = (r["model"], r["resolution"])
        if key not in flops:
            flops[key] = flops_per_image(BenchConfig(**{k: r[k] for k in BenchConfig.__dataclass_fields__}))
        r["tflops_per_s"] = flops[key] * r["batch"] / r["median_s"] / 1e12 if flops[key] else None
    return results


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(results: list[dict[str, Any]]) -> str:
    header = "| model | resolution | device | dtype | batch | median s | p90 s | img/s | TFLOP/s | peak MB | vs fp32 | mask MAD |"
    lines = [header, "|---" * 12 + "|"]
    for r in results:
        if "error" in r:
            row = f"| {r['model']} | {r['resolution']} | {r['device']} | {r['dtype']} | {r['batch']} | failed: {r['error']}"
            lines.append(row + " |" * 7)
            continue
        lines.append(
            f"| {r['model']} | {r['resolution']} | {r['device']} | {r['dtype']} | {r['batch']} | {r['median_s']:.3f} | "
            f"{r['p90_s']:.3f} | {r['images_per_s']:.3f} | {_fmt(r['tflops_per_s'], '.3f')} | {r['peak_mem_mb']:.0f} | "
            f"{_fmt(r['speedup_vs_float32'], '.2f')}x | {_fmt(r['mask_mad_vs_float32'], '.3f')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the worker side of run_configs
    cfg = BenchConfig(**json.loads(sys.argv[1]))
    print(RESULT_PREFIX + json.dumps(run_one(cfg, Path(sys.argv[2]))), flush=True)
