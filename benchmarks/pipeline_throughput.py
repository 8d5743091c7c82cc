"""Images per second for a folder of 1024² photos through `bgone remove`'s batch runner on CPU,
with and without foreground refinement. Weights are seeded stand-ins (speed does not depend on them).

    .venv/bin/python benchmarks/pipeline_throughput.py [--images 4] [--dtypes float32,bfloat16]

The first row is the official-style network (float32, fast paths off, NCHW, untuned allocator) in the
same pipeline; every ratio is against it. The other rows are what `bgone remove --dtype D` runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from cpu_latency import DEFAULT_OUTPUT, REPO, results_section, update_results

sys.path.insert(0, str(REPO / "tests"))
from bgone.pipeline.batch_files import expand_inputs, plan_jobs, run_jobs
from bgone.pipeline.remover import RemovalOptions, Remover
from bgone.pipeline.runtime import ModelCache
from seeded import seeded_state_dict

SECTION_TITLE = "## Pipeline throughput (benchmarks/pipeline_throughput.py)"


def make_folder(root: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(count):
        subject = ((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.1
        picture = np.stack([x * 200, y * 180, np.full_like(x, 80)], -1)
        picture[subject] = (220, 50 + 10 * i, 40)
        picture += rng.normal(0, 5, picture.shape)
        Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(root / f"photo{i}.jpg", quality=92)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        make_folder(root / "in", args.images, args.size)
        checkpoint = root / "lite.safetensors"
        spec = __import__("json").loads((REPO / "tests/data/parity/keys/swin_v1_t.json").read_text())["keys"]
        save_file(seeded_state_dict(spec, 0), str(checkpoint))
        for label in ["official float32", *args.dtypes.split(",")]:
            official = label.startswith("official")
            # The allocator is tuned once per process, by the first fast Remover: the baseline goes first.
            os.environ["BGONE_MALLOC_TUNING"] = "0" if official else "1"
            dtype = "float32" if official else label
            remover = Remover(checkpoint, device="cpu", dtype=dtype, progress=False, cache=ModelCache())
            if official:
                remover.net.set_fast_paths(False)
                remover.net.to(memory_format=torch.contiguous_format)
                remover.memory_format = torch.contiguous_format
            remover.remove(Image.new("RGB", (64, 64)), operating_resolution=64)  # warm-up
            for refine in (True, False):
                options = RemovalOptions(operating_resolution=args.size, refine_foreground=refine)
                out_dir = root / f"out-{label.replace(' ', '-')}-{refine}"
                jobs = plan_jobs(expand_inputs([str(root / "in")]), str(out_dir), "png")
                started = time.perf_counter()
                summary = run_jobs(jobs, remover, options, "png", workers=args.workers)
                seconds = time.perf_counter() - started
                assert not summary.failed, summary.failed
                rows.append((label, refine, len(summary.done), seconds))
                print(f"{label} refine={refine}: {len(summary.done)} images in {seconds:.1f}s", flush=True)
    base = {refine: n / s for label, refine, n, s in rows if label.startswith("official")}
    table = [
        "| model | image size | network | refine_foreground | images | seconds | images/s | vs official |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dtype, refine, n, s in rows:
        ratio = f"{(n / s) / base[refine]:.2f}x" if refine in base else "n/a"
        table.append(f"| lite (Swin-T) | {args.size}² | {dtype} | {refine} | {n} | {s:.1f} | {n / s:.3f} | {ratio} |")
    section = results_section(
        SECTION_TITLE,
        [
            f"A folder of {args.images} JPEG photos of {args.size}², decoded and encoded (PNG) on {args.workers} "
            f"worker threads beside inference, operating resolution {args.size}², batch 1, seeded weights"
        ],
        table,
        sys.argv[1:],
    )
    print("\n".join(table))
    update_results(args.output, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
