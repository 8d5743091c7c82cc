"""Speed of foreground refinement (blur fusion, ``bgone.refine``) on the CPU.

    .venv/bin/python benchmarks/refine_speed.py                 # 1024² and 2048², 3 timed runs each
    .venv/bin/python benchmarks/refine_speed.py --sizes 1024 --runs 5

Times the NumPy fast path (``refine_foreground_array``, cv2 semantics) and the torch path on the CPU
(``refine_foreground_tensor``, official GPU semantics) on a random image with a soft mask (a blurred
disc: a solid core, a wide soft edge, and a transparent surround). Float arrays/tensors in and out;
PNG decoding and uint8 conversion are not included. Prints a Markdown table; writes no file.
For reference, the official OpenCV CPU version takes ~3 s per image (BiRefNet issue #226).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from bgone.pipeline.refine import refine_foreground_array, refine_foreground_tensor
from cpu_latency import DEFAULT_OUTPUT, results_section, update_results

SECTION_TITLE = "## Foreground refinement (benchmarks/refine_speed.py)"


def soft_mask(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    return np.clip((0.8 - d) / 0.3, 0.0, 1.0).astype(np.float32)  # 1 inside r=0.5, 0 beyond r=0.8


def time_runs(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,2048", help="comma-separated square sides")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--radius", type=int, default=90)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()

    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(0)
        image = rng.random((size, size, 3), dtype=np.float32)
        alpha = soft_mask(size)
        image_t = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).contiguous()
        alpha_t = torch.from_numpy(alpha)[None, None]
        paths: dict[str, Callable[[], object]] = {
            "numpy (cv2 semantics)": partial(refine_foreground_array, image, alpha, args.radius),
            "torch on CPU (GPU semantics)": partial(refine_foreground_tensor, image_t, alpha_t, args.radius),
        }
        for name, fn in paths.items():
            times = time_runs(fn, args.runs, args.warmup)
            rows.append(
                (f"{size}x{size}", name, statistics.median(times), min(times), size * size / statistics.median(times))
            )

    table = [
        "| size | path | median s | min s | Mpx/s |",
        "|------|------|---------:|------:|------:|",
        *(
            f"| {size} | {name} | {median:.3f} | {best:.3f} | {pps / 1e6:.2f} |"
            for size, name, median, best, pps in rows
        ),
    ]
    section = results_section(
        SECTION_TITLE,
        [
            f"numpy {np.__version__}; refine_foreground (blur fusion r={args.radius} then r=6) on a random image "
            f"with a soft mask; {args.runs} runs after {args.warmup} warm-up. The official OpenCV CPU version takes "
            "about 3 s at 1024²"
        ],
        table,
        sys.argv[1:],
    )
    print(section)
    if not args.no_write:
        update_results(DEFAULT_OUTPUT, section)


if __name__ == "__main__":
    main()
