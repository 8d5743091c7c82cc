"""`bgone serve` killed with SIGKILL while requests are queued and running: after a restart on the
same data directory every accepted request completes, each with one visible result."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from service_helpers import png_data_uri

from bgone.zoo import FAL_MODEL_MAP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(data_dir: Path, model_map: Path, log: Path, port: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "BGONE_MAX_OPERATING_SIDE": "64", "BGONE_BATCH_SIZE": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable, "-m", "bgone.cli", "serve", "--open", "--port", str(port), "--data-dir", str(data_dir),
        "--model-map", str(model_map), "--warm-model", "none", "--device", "cpu",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("a"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"server did not start: {log.read_text()[-2000:]}")


def test_sigkill_with_queued_and_running_requests_loses_nothing(tmp_path: Path, lite_checkpoint: Path) -> None:
    model_map = tmp_path / "models.json"
    model_map.write_text(
        json.dumps({version: dict.fromkeys(names, str(lite_checkpoint)) for version, names in FAL_MODEL_MAP.items()})
    )
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    port = free_port()  # the restart listens where the first server did: result URLs name it
    server, url = start(data_dir, model_map, log, port)
    ids: list[str] = []
    try:
        for i in range(12):
            submitted = httpx.post(
                f"{url}/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri(96, 64, seed=i)}, timeout=30
            )
            assert submitted.status_code == 200
            ids.append(submitted.json()["request_id"])

        def statuses() -> list[str]:
            return [
                httpx.get(f"{url}/queue/fal-ai/birefnet/requests/{i}/status", timeout=30).json()["status"] for i in ids
            ]

        deadline = time.time() + 120
        while "COMPLETED" not in (current := statuses()):
            assert time.time() < deadline, current
            time.sleep(0.1)
        assert current.count("COMPLETED") < len(ids), "all done before the kill: the test proves nothing"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)

    server, url = start(data_dir, model_map, log, port)
    try:
        deadline = time.time() + 180
        for request_id in ids:
            while True:
                status = httpx.get(f"{url}/queue/fal-ai/birefnet/requests/{request_id}/status", timeout=30).json()
                if status["status"] == "COMPLETED":
                    break
                assert time.time() < deadline, status
                time.sleep(0.1)
            result = httpx.get(f"{url}/queue/fal-ai/birefnet/requests/{request_id}", timeout=30)
            assert result.status_code == 200, result.text
            image = httpx.get(result.json()["image"]["url"], timeout=30)
            assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        assert "re-queued" in log.read_text()  # the request running at the kill was taken up again
    finally:
        server.terminate()
        server.wait(timeout=30)
