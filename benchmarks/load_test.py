"""Load test of `bgone serve` on loopback: throughput, p50/p99 latency, error rate and the server's
memory over time, at several concurrency levels, with the small model (seeded Swin-T weights).

    .venv/bin/python benchmarks/load_test.py                          # 1, 4, 16 clients; 1,000-request leak run
    .venv/bin/python benchmarks/load_test.py --quick                  # smoke run, prints only

The server is a real `bgone serve` subprocess (SQLite queue, local files, one inference worker) at a
64² operating side, so the test stresses the service, not the network. Requests use the sync route
with small JPEG data URIs; `sync_mode` keeps stored files out of the picture, the queue is exercised
by a share of queue submissions. Memory is the server process's RSS, sampled every 0.25 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from safetensors.torch import save_file

from cpu_latency import DEFAULT_OUTPUT, REPO, results_section, update_results

sys.path.insert(0, str(REPO / "tests"))
from conftest import synthetic_photo
from seeded import seeded_state_dict
from served import start_serve

SECTION_TITLE = "## Load test (benchmarks/load_test.py)"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MemorySampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self.stopped.is_set():
            self.samples.append((time.perf_counter() - start, rss_mb(self.pid)))
            time.sleep(self.every)


def start_server(root: Path, checkpoint: Path, side: int) -> tuple[subprocess.Popen, str]:
    env = {"BGONE_MAX_OPERATING_SIDE": str(side)}
    log = root / "server.log"
    return start_serve(root / "data", checkpoint, log, env=env, warm_model="General Use (Light)", ready_path="/ready")


def payloads(count: int) -> list[dict]:
    out = []
    for i in range(8):
        buf = io.BytesIO()
        synthetic_photo(160, 120, seed=i).save(buf, "JPEG", quality=85)
        out.append(
            {"image_url": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), "sync_mode": True}
        )
    return [out[i % len(out)] for i in range(count)]


async def drive(url: str, requests: int, concurrency: int, queue_share: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    bodies = payloads(requests)
    pending = iter(enumerate(bodies))

    async def client(http: httpx.AsyncClient) -> None:
        for i, body in pending:
            started = time.perf_counter()
            try:
                if queue_share and i % round(1 / queue_share) == 0:
                    submitted = (await http.post(f"{url}/queue/fal-ai/birefnet/v2", json=body)).json()
                    while True:
                        status = (await http.get(submitted["status_url"])).json()["status"]
                        if status == "COMPLETED":
                            break
                        await asyncio.sleep(0.02)
                    response = await http.get(submitted["response_url"])
                else:
                    response = await http.post(f"{url}/fal-ai/birefnet/v2", json=body)
                if response.status_code != 200:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "concurrency": concurrency,
        "requests": requests,
        "seconds": elapsed,
        "throughput": requests / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--leak-requests", type=int, default=1000, help="requests of the memory run (0: skip)")
    parser.add_argument("--side", type=int, default=64, help="operating side (the small model, kept tiny)")
    parser.add_argument("--queue-share", type=float, default=0.25, help="share of requests sent through the queue")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quick", action="store_true", help="20 requests at 1 and 4 clients, no leak run, no file")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.requests, args.leak_requests = "1,4", 20, 0

    rows, memory_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = root / "lite.safetensors"
        spec = json.loads((REPO / "tests/data/parity/keys/swin_v1_t.json").read_text())["keys"]
        save_file(seeded_state_dict(spec, 0), str(checkpoint))
        server, url = start_server(root, checkpoint, args.side)
        sampler = MemorySampler(server.pid)
        sampler.start()
        try:
            asyncio.run(drive(url, 16, 4, 0))  # warm-up: every code path once
            for level in (int(v) for v in args.levels.split(",")):
                result = asyncio.run(drive(url, args.requests, level, args.queue_share))
                result["rss_after_mb"] = rss_mb(server.pid)
                rows.append(result)
                print(json.dumps(result), flush=True)
            if args.leak_requests:
                before = rss_mb(server.pid)
                step = max(1, args.leak_requests // 10)
                for done in range(step, args.leak_requests + 1, step):
                    asyncio.run(drive(url, step, 8, args.queue_share))
                    memory_rows.append((done, rss_mb(server.pid)))
                    print(f"after {done} requests: RSS {memory_rows[-1][1]:.0f} MB", flush=True)
                memory_rows.insert(0, (0, before))
        finally:
            sampler.stopped.set()
            server.terminate()
            server.wait(timeout=30)

    table = [
        "| clients | requests | seconds | requests/s | p50 ms | p99 ms | errors | server RSS after MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['concurrency']} | {r['requests']} | {r['seconds']:.1f} | {r['throughput']:.2f} | {r['p50_ms']:.0f} | "
            f"{r['p99_ms']:.0f} | {r['errors']} | {r['rss_after_mb']:.0f} |"
        )
    if memory_rows:
        table += ["", "| requests served (memory run, 8 clients) | server RSS MB |", "|---|---|"]
        table += [f"| {done} | {mb:.0f} |" for done, mb in memory_rows]
        growth = memory_rows[-1][1] - memory_rows[1][1]
        table += ["", f"RSS growth from the first {memory_rows[1][0]} requests to the last: {growth:+.0f} MB"]
    print("\n".join(table))
    if not args.quick:
        notes = [
            f"`bgone serve` subprocess on loopback, seeded Swin-T at a {args.side}² operating side, SQLite queue, "
            f"one inference worker (batching up to 4); small JPEG data URIs; {args.queue_share:.0%} of requests "
            "through the queue (submit, poll, result), the rest sync; latency measured by the client",
        ]
        update_results(args.output, results_section(SECTION_TITLE, notes, table, sys.argv[1:]))
    total_errors = sum(r["errors"] for r in rows)
    return 1 if total_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
