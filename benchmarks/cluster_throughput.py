"""Throughput of the distributed deployment with 1 and 2 workers: an API node, Redis, moto's S3 server
and `bgone worker` processes on this machine, lite (Swin-T) with seeded weights.

    .venv/bin/python benchmarks/cluster_throughput.py [--jobs 24] [--side 256]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
from safetensors.torch import save_file

from cpu_latency import DEFAULT_OUTPUT, REPO, results_section, update_results

sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "distributed")]
from cluster import Cluster  # noqa: E402

from conftest import synthetic_photo  # noqa: E402
from seeded import seeded_state_dict  # noqa: E402

SECTION_TITLE = "## Distributed throughput (benchmarks/cluster_throughput.py)"


def image_uri(seed: int) -> str:
    buf = io.BytesIO()
    synthetic_photo(640, 480, seed).save(buf, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def run(root: Path, checkpoint: Path, workers: int, jobs: int, side: int) -> float:
    cluster = Cluster(root, checkpoint)
    try:
        cluster.start_services()
        api = cluster.start_api("api")
        # Each worker gets its share of the cores so that two do not fight over the same threads.
        for i in range(workers):
            cluster.start_worker(f"worker-{i}", operating_side=side, threads=max(1, 2 // workers))
        warm = httpx.post(f"{api}/fal-ai/birefnet/v2", json={"image_url": image_uri(0), "sync_mode": True}, timeout=300)
        assert warm.status_code == 200, warm.text
        time.sleep(2)  # let every worker load its model before the clock starts
        payloads = [{"image_url": image_uri(i), "sync_mode": True} for i in range(jobs)]
        started = time.perf_counter()
        ids = [httpx.post(f"{api}/queue/fal-ai/birefnet/v2", json=p, timeout=60).json()["request_id"] for p in payloads]
        for request_id in ids:
            while (
                httpx.get(f"{api}/queue/fal-ai/birefnet/requests/{request_id}/status", timeout=60).json()["status"]
                != "COMPLETED"
            ):
                time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--side", type=int, default=256, help="operating resolution side")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = root / "lite.safetensors"
        spec = json.loads((REPO / "tests/data/parity/keys/swin_v1_t.json").read_text())["keys"]
        save_file(seeded_state_dict(spec, 0), str(checkpoint))
        for workers in (1, 2):
            (root / f"w{workers}").mkdir()
            seconds = run(root / f"w{workers}", checkpoint, workers, args.jobs, args.side)
            rows.append((workers, seconds))
            print(f"{workers} worker(s): {args.jobs} jobs in {seconds:.1f}s", flush=True)
    base = args.jobs / rows[0][1]
    table = ["| workers | jobs | seconds | jobs/s | vs 1 worker |", "|---|---|---|---|---|"]
    table += [f"| {w} | {args.jobs} | {s:.1f} | {args.jobs / s:.2f} | {(args.jobs / s) / base:.2f}x |" for w, s in rows]
    section = results_section(
        SECTION_TITLE,
        [
            "One API node (`--role api`), Redis, moto's S3 server and 1 or 2 `bgone worker` processes on this machine; "
            f"lite (Swin-T, seeded weights) at {args.side}² on 640x480 JPEGs, batch up to 4, `sync_mode` outputs; "
            "each worker limited to its share of the 2 cores"
        ],
        table,
        sys.argv[1:],
    )
    print("\n".join(table))
    update_results(args.output, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
