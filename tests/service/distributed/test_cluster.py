"""Two API nodes and two workers on Redis and an S3-compatible store (moto's server: no MinIO is
installable here), all real processes on loopback: the queue semantics hold across nodes and nothing
is lost when a worker or an API node dies."""

from __future__ import annotations

import base64
import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import synthetic_photo

pytest.importorskip("redis")
pytest.importorskip("boto3")
pytest.importorskip("moto")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed", allow_module_level=True)

from cluster import Cluster


def data_uri(seed: int = 0, frames: int = 1) -> str:
    buf = io.BytesIO()
    images = [synthetic_photo(96, 64, seed + i) for i in range(frames)]
    if frames == 1:
        images[0].save(buf, "PNG")
        mime = "image/png"
    else:
        images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=40)
        mime = "image/gif"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def cluster(tmp_path: Path, lite_checkpoint: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, lite_checkpoint)
    try:
        c.start_services()
        yield c
    finally:
        c.stop()


def submit(base: str, payload: dict) -> dict:
    response = httpx.post(f"{base}/queue/fal-ai/birefnet/v2", json=payload, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_done(base: str, request_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = httpx.get(f"{base}/queue/fal-ai/birefnet/requests/{request_id}/status", timeout=30).json()
        if body["status"] == "COMPLETED":
            return body
        time.sleep(0.2)
    raise AssertionError(f"{request_id} not completed: {body}")


def test_submit_on_one_node_poll_on_the_other(cluster: Cluster) -> None:
    a, b = cluster.start_api("api-a"), cluster.start_api("api-b")
    cluster.start_worker("worker-1")
    job = submit(a, {"image_url": data_uri(), "output_mask": True})
    done = wait_done(b, job["request_id"])
    assert done["metrics"]["inference_time"] > 0
    result = httpx.get(f"{b}/queue/fal-ai/birefnet/requests/{job['request_id']}", timeout=30).json()
    image = httpx.get(result["image"]["url"], timeout=30)  # stored in S3, served by the API node
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    # SSE on the node that did not take the request sees the completion too.
    with httpx.stream("GET", f"{b}/queue/fal-ai/birefnet/requests/{job['request_id']}/status/stream", timeout=30) as s:
        assert any('"COMPLETED"' in line for line in s.iter_lines())
    # Cancel across nodes: queued on A (no worker free for it yet), cancelled on B.
    cluster.kill("worker-1")
    queued = submit(a, {"image_url": data_uri(1)})
    assert httpx.put(f"{b}/queue/fal-ai/birefnet/requests/{queued['request_id']}/cancel", timeout=30).status_code == 202
    assert httpx.get(f"{a}/queue/fal-ai/birefnet/requests/{queued['request_id']}", timeout=30).status_code == 499


def test_a_killed_worker_loses_nothing(cluster: Cluster) -> None:
    api = cluster.start_api("api-a")
    victim = cluster.start_worker("worker-1")
    # A long animated job, so that the worker is surely mid-job when killed.
    job = submit(api, {"image_url": data_uri(0, frames=60)})
    deadline = time.time() + 60
    while (
        httpx.get(f"{api}/queue/fal-ai/birefnet/requests/{job['request_id']}/status", timeout=30).json()["status"]
        != "IN_PROGRESS"
    ):
        assert time.time() < deadline, "never started"
        time.sleep(0.05)
    cluster.kill("worker-1")
    assert victim.returncode is not None
    cluster.start_worker("worker-2")
    done = wait_done(api, job["request_id"], timeout=180)
    assert "error" not in done, done
    result = httpx.get(f"{api}/queue/fal-ai/birefnet/requests/{job['request_id']}", timeout=30)
    assert result.status_code == 200


def test_api_restart_and_200_jobs_exactly_once(cluster: Cluster) -> None:
    a, b = cluster.start_api("api-a"), cluster.start_api("api-b")
    cluster.start_worker("worker-1")
    cluster.start_worker("worker-2")
    ids = [
        submit(a if i % 2 else b, {"image_url": data_uri(i % 7), "sync_mode": True})["request_id"] for i in range(100)
    ]
    cluster.kill("api-a", sig=15)  # restart an API node in the middle of the run
    a = cluster.start_api("api-a")
    ids += [
        submit(a if i % 2 else b, {"image_url": data_uri(i % 7), "sync_mode": True})["request_id"] for i in range(100)
    ]
    assert len(set(ids)) == 200
    results = {}
    for request_id in ids:
        wait_done(a if len(results) % 2 else b, request_id, timeout=300)
        response = httpx.get(f"{a}/queue/fal-ai/birefnet/requests/{request_id}", timeout=30)
        assert response.status_code == 200, response.text
        results[request_id] = response.json()
    assert len(results) == 200
    assert all(r["image"]["url"].startswith("data:image/png") for r in results.values())


def test_a_redis_restart_under_load_loses_no_accepted_request(cluster: Cluster) -> None:
    """Requests keep arriving while Redis restarts: every one the API accepted completes with a
    result; the ones sent while Redis was down are refused with an error, never left hanging."""
    import threading

    api = cluster.start_api("api-a")
    cluster.start_worker("worker-1")
    accepted: list[str] = []
    refused: list[int] = []
    stop = threading.Event()

    def load() -> None:
        seed = 0
        while not stop.is_set():
            try:
                response = httpx.post(
                    f"{api}/queue/fal-ai/birefnet/v2", json={"image_url": data_uri(seed % 4)}, timeout=30
                )
            except httpx.HTTPError:
                refused.append(-1)
            else:
                if response.status_code == 200:
                    accepted.append(response.json()["request_id"])
                else:
                    refused.append(response.status_code)
            seed += 1
            time.sleep(0.05)

    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    deadline = time.time() + 120
    while len(accepted) < 10 or wait_done(api, accepted[0], timeout=120) is None:
        assert time.time() < deadline, "no load"
        time.sleep(0.05)
    # The worker is running jobs and requests keep arriving: now restart Redis under them.
    cluster.restart_redis(down_seconds=1.5)
    time.sleep(2)
    stop.set()
    sender.join(30)
    assert len(accepted) > 10
    assert all(code in (-1, 503) for code in refused), refused  # 503 queue_unavailable, retryable
    for request_id in accepted:
        done = wait_done(api, request_id, timeout=240)
        assert "error" not in done, done
        result = httpx.get(f"{api}/queue/fal-ai/birefnet/requests/{request_id}", timeout=30)
        assert result.status_code == 200, result.text


def test_a_video_through_an_api_node_a_redis_worker_and_s3(cluster: Cluster, tmp_path: Path) -> None:
    """An API-only node queues it (and never loads PyTorch or FFmpeg for it); a worker on Redis runs it
    with progress in the logs; the outputs live in S3 and come back through the other API node."""
    from video_clips import write_clip

    clip = write_clip(tmp_path / "clip.mp4", size=(64, 48), frames=6, audio="aac")
    a, b = cluster.start_api("api-a"), cluster.start_api("api-b")
    cluster.start_worker("worker-1")
    payload = {
        "video_url": "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode(),
        "video_output_type": "VP9 (.webm)",
        "output_mask": True,
    }
    response = httpx.post(f"{a}/queue/fal-ai/birefnet/v2/video", json=payload, timeout=30)
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    wait_done(b, request_id)
    status = httpx.get(f"{b}/queue/fal-ai/birefnet/requests/{request_id}/status", params={"logs": 1}, timeout=30)
    assert any(entry["message"].startswith("Processed 6/6 frames") for entry in status.json()["logs"])
    result = httpx.get(f"{b}/queue/fal-ai/birefnet/requests/{request_id}", timeout=30).json()
    for key in ("video", "mask_video"):
        video = httpx.get(result[key]["url"], timeout=30)
        assert video.status_code == 200 and video.headers["content-type"] == "video/webm"
        assert video.content[:4] == b"\x1a\x45\xdf\xa3"  # an EBML (WebM) file


def test_nodes_sharing_configured_keys_accept_each_others_upload_urls_and_webhooks(cluster: Cluster) -> None:
    """With BGONE_WEBHOOK_SIGNING_KEYS on every node (docs/deployment.md): an upload URL issued by one API
    node takes the bytes on another (S3 behind them), and a webhook a worker signs verifies against the JWKS
    of any API node."""
    import hashlib
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from bgone.service.signing import SigningKey, b64url_decode

    cluster.env["BGONE_WEBHOOK_SIGNING_KEYS"] = SigningKey.generate().seed
    a, b = cluster.start_api("api-a"), cluster.start_api("api-b")
    cluster.start_worker("worker-1")
    jwks = httpx.get(f"{a}/.well-known/jwks.json", timeout=10).json()
    assert jwks == httpx.get(f"{b}/.well-known/jwks.json", timeout=10).json() and len(jwks["keys"]) == 1

    def on(base: str, url: str) -> str:  # the same URL, sent to another node
        parts = urlsplit(url)
        return f"{base}{parts.path}?{parts.query}" if parts.query else f"{base}{parts.path}"

    def proxied(base: str, target: str, body: dict) -> httpx.Response:
        return httpx.post(f"{base}/api/fal/proxy", headers={"x-fal-target-url": target}, json=body, timeout=60)

    photo = io.BytesIO()
    synthetic_photo(48, 32).save(photo, "PNG")
    data = photo.getvalue()
    # One PUT: initiated on A, the bytes sent to B.
    single = proxied(
        a, "https://rest.fal.ai/storage/upload/initiate", {"content_type": "image/png", "file_name": "a.png"}
    )
    assert httpx.put(on(b, single.json()["upload_url"]), content=data, timeout=30).status_code == 200
    # Parts on both nodes, completed on A.
    multi = proxied(b, "https://rest.fal.ai/storage/upload/initiate-multipart", {"content_type": "image/png"}).json()
    half = len(data) // 2
    upload_url = urlsplit(multi["upload_url"])
    parts = [
        httpx.put(f"{base}{upload_url.path}/{n}?{upload_url.query}", content=chunk, timeout=30).json()
        for n, base, chunk in ((1, a, data[:half]), (2, b, data[half:]))
    ]
    done = httpx.post(f"{a}{upload_url.path}/complete?{upload_url.query}", json={"parts": parts}, timeout=30)
    assert done.status_code == 200, done.text

    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        for uploaded in (single.json()["file_url"], done.json()["file_url"]):
            job = httpx.post(
                f"{b}/queue/fal-ai/birefnet/v2", params={"fal_webhook": hook}, json={"image_url": uploaded}, timeout=30
            ).json()
            result = wait_done(a, job["request_id"])
            assert "error" not in result or not result["error"], result
        deadline = time.time() + 60
        while len(received) < 2 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        receiver.shutdown()
    assert len(received) == 2
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(jwks["keys"][0]["x"]))
    for headers, body in received:
        assert json.loads(body)["status"] == "OK" and json.loads(body)["payload"]["image"]["width"] == 48
        message = "\n".join(
            [
                headers["x-fal-webhook-request-id"],
                headers["x-fal-webhook-user-id"],
                headers["x-fal-webhook-timestamp"],
                hashlib.sha256(body).hexdigest(),
            ]
        ).encode()
        public.verify(bytes.fromhex(headers["x-fal-webhook-signature"]), message)  # raises if forged
