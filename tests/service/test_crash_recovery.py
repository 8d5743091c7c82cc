"""`bgone serve` killed with SIGKILL while requests are queued and running: after a restart on the
same data directory every accepted request completes, each with one visible result."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
from service_helpers import png_data_uri

from served import free_port, start_serve


def test_sigkill_with_queued_and_running_requests_loses_nothing(tmp_path: Path, lite_checkpoint: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    env = {"BGONE_MAX_OPERATING_SIDE": "64", "BGONE_BATCH_SIZE": "1"}
    port = free_port()  # the restart listens where the first server did: result URLs name it
    server, url = start_serve(data_dir, lite_checkpoint, log, port=port, env=env)
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

    server, url = start_serve(data_dir, lite_checkpoint, log, port=port, env=env)
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
