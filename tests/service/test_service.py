"""The fal wire protocol end to end through HTTP: sync, queue, files, errors, auth, webhooks, restarts."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from PIL import Image
from service_helpers import png_data_uri, settings_for, wait_completed


def fetch_image(client, url: str) -> Image.Image:
    response = client.get(urlparse(url).path)
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def test_sync_v2_returns_stored_image_files(client) -> None:
    response = client.post("/fal-ai/birefnet/v2", json={"image_url": png_data_uri(120, 80), "output_mask": True})
    assert response.status_code == 200, response.text
    assert response.headers["x-fal-request-id"]
    body = response.json()
    image = body["image"]
    assert image["content_type"] == "image/png" and image["width"] == 120 and image["height"] == 80
    assert image["url"].startswith("http://testserver/files/outputs/")
    picture = fetch_image(client, image["url"])
    assert picture.mode == "RGBA" and picture.size == (120, 80)
    assert image["file_size"] == len(client.get(urlparse(image["url"]).path).content)
    assert fetch_image(client, body["mask_image"]["url"]).mode in ("L", "LA", "RGBA")


def test_sync_v1_and_output_formats(client) -> None:
    for fmt, pil_format in (("webp", "WEBP"), ("gif", "GIF"), ("png", "PNG")):
        response = client.post("/fal-ai/birefnet", json={"image_url": png_data_uri(), "output_format": fmt})
        assert response.status_code == 200, response.text
        assert fetch_image(client, response.json()["image"]["url"]).format == pil_format
    mask = client.post("/fal-ai/birefnet/v2", json={"image_url": png_data_uri(), "mask_only": True}).json()
    assert fetch_image(client, mask["image"]["url"]).mode == "L"


def test_sync_mode_returns_data_uris_and_keeps_no_history(client) -> None:
    response = client.post("/fal-ai/birefnet/v2", json={"image_url": png_data_uri(), "sync_mode": True})
    url = response.json()["image"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (120, 80)
    assert client.get("/api/history").json() == []


def test_proxy_headers_shape_the_urls(client) -> None:
    headers = {"x-forwarded-proto": "https", "x-forwarded-host": "bg.example.com", "x-forwarded-prefix": "/api/bg"}
    body = client.post("/fal-ai/birefnet/v2", json={"image_url": png_data_uri()}, headers=headers).json()
    assert body["image"]["url"].startswith("https://bg.example.com/api/bg/files/outputs/")
    submitted = client.post("/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri()}, headers=headers).json()
    assert submitted["status_url"].startswith("https://bg.example.com/api/bg/queue/fal-ai/birefnet/requests/")


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({}, ["body", "image_url"]),
        ({"image_url": "x", "model": "Nope"}, ["body", "model"]),
        ({"image_url": "x", "operating_resolution": "4096x4096"}, ["body", "operating_resolution"]),
        ({"image_url": "x", "operating_resolution": "2304x2304"}, ["body"]),
        ({"image_url": "x", "output_format": "jpeg"}, ["body", "output_format"]),
    ],
)
def test_validation_errors_are_422_with_detail(client, payload: dict, loc: list) -> None:
    response = client.post("/fal-ai/birefnet/v2", json=payload)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


def test_v1_schema_has_no_mask_only_or_2304(client) -> None:
    response = client.post("/fal-ai/birefnet", json={"image_url": "x", "operating_resolution": "2304x2304"})
    assert response.status_code == 422
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "mask_only" not in schema["BirefnetInput"]["properties"]
    assert schema["BirefnetV2Input"]["x-fal-order-properties"] == [
        "model",
        "operating_resolution",
        "output_mask",
        "refine_foreground",
        "sync_mode",
        "image_url",
        "output_format",
        "mask_only",
    ]
    assert schema["BirefnetV2Input"]["properties"]["model"]["default"] == "General Use (Light)" or "$ref" in str(
        schema["BirefnetV2Input"]["properties"]["model"]
    )


def test_queue_flow_status_logs_result(client) -> None:
    submitted = client.post("/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri()})
    assert submitted.status_code == 200
    body = submitted.json()
    request_id = body["request_id"]
    assert body["status"] == "IN_QUEUE" and body["gateway_request_id"] == request_id
    assert body["status_url"] == f"http://testserver/queue/fal-ai/birefnet/requests/{request_id}/status"
    assert body["response_url"] == f"http://testserver/queue/fal-ai/birefnet/requests/{request_id}"
    assert body["cancel_url"].endswith(f"/requests/{request_id}/cancel")
    final = wait_completed(client, urlparse(body["status_url"]).path)
    assert final["metrics"]["inference_time"] > 0
    messages = [entry["message"] for entry in final["logs"]]
    assert any("Decoded PNG 120x80" in m for m in messages) and any(m.startswith("Completed") for m in messages)
    assert client.get(urlparse(body["status_url"]).path, params={"logs": "false"}).json()["logs"] is None
    result = client.get(urlparse(body["response_url"]).path)
    assert result.status_code == 200 and result.json()["image"]["width"] == 120
    history = client.get("/api/history").json()
    assert history[0]["request_id"] == request_id and history[0]["status"] == "COMPLETED"


def test_status_stream_ends_with_completed(client) -> None:
    body = client.post("/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri()}).json()
    statuses = []
    with client.stream("GET", urlparse(body["status_url"]).path + "/stream", params={"logs": "1"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                statuses.append(json.loads(line[6:])["status"])
    assert statuses[-1] == "COMPLETED" and len(statuses) >= 1


def test_queue_positions_priorities_and_cancel(make_client) -> None:
    client = make_client(start_worker=False)
    ids = [
        client.post("/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri()}).json()["request_id"]
        for _ in range(3)
    ]
    low = client.post(
        "/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri()}, headers={"x-fal-queue-priority": "low"}
    ).json()
    first = client.post("/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri()}).json()
    positions = [client.get(f"/queue/fal-ai/birefnet/requests/{i}/status").json()["queue_position"] for i in ids]
    assert positions == [0, 1, 2]
    assert client.get(f"/queue/fal-ai/birefnet/requests/{first['request_id']}/status").json()["queue_position"] == 3
    assert client.get(f"/queue/fal-ai/birefnet/requests/{low['request_id']}/status").json()["queue_position"] == 4

    cancel = client.put(f"/queue/fal-ai/birefnet/requests/{ids[0]}/cancel")
    assert cancel.status_code == 202 and cancel.json() == {"status": "CANCELLATION_REQUESTED"}
    status = client.get(f"/queue/fal-ai/birefnet/requests/{ids[0]}/status").json()
    assert status["status"] == "COMPLETED" and status["error_type"] == "client_cancelled"
    assert client.get(f"/queue/fal-ai/birefnet/requests/{ids[0]}").status_code == 499
    assert client.get(f"/queue/fal-ai/birefnet/requests/{ids[1]}/status").json()["queue_position"] == 0
    assert client.put(f"/queue/fal-ai/birefnet/requests/{ids[0]}/cancel").json() == {"status": "ALREADY_COMPLETED"}
    assert client.put("/queue/fal-ai/birefnet/requests/nope/cancel").status_code == 404
    assert client.get("/queue/fal-ai/birefnet/requests/nope/status").status_code == 404
    assert client.get(f"/queue/fal-ai/other/requests/{ids[1]}/status").status_code == 404


def test_start_timeout_gives_a_504_that_is_not_retried(make_client) -> None:
    client = make_client(start_worker=False)
    body = client.post(
        "/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri()}, headers={"x-fal-request-timeout": "0.05"}
    ).json()
    time.sleep(0.1)
    client.app.state.service.store.expire_start_deadlines()
    result = client.get(f"/queue/fal-ai/birefnet/requests/{body['request_id']}")
    assert result.status_code == 504
    assert result.headers["x-fal-request-timeout-type"] == "user"
    assert result.headers["x-fal-request-id"] == body["request_id"]


def test_bad_images_complete_with_an_error_that_replays(client) -> None:
    body = client.post("/queue/fal-ai/birefnet/v2", json={"image_url": "data:image/png;base64,bm90IGFuIGltYWdl"}).json()
    final = wait_completed(client, urlparse(body["status_url"]).path)
    assert final["error_type"] == "image_load_error" and final["error"]
    result = client.get(urlparse(body["response_url"]).path)
    assert result.status_code == 422
    assert result.json()["detail"][0]["loc"] == ["body", "image_url"]
    sync = client.post("/fal-ai/birefnet/v2", json={"image_url": "data:,not-base64-%%%"})
    assert sync.status_code == 422 and sync.headers["x-fal-error-type"]


@pytest.mark.parametrize(
    "target",
    ["http://127.0.0.1:9/x.png", "http://localhost:9/x.png", "http://10.0.0.1/x.png", "http://169.254.169.254/latest"],
)
def test_private_addresses_are_refused_by_default(make_client, target: str) -> None:
    client = make_client(allow_private_urls=False)
    response = client.post("/fal-ai/birefnet/v2", json={"image_url": target})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "file_download_error"
    assert "refusing" in response.json()["detail"][0]["msg"]


class Recorder(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []  # noqa: RUF012
    failures_left = 0

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["content-length"]))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(500)
            self.end_headers()
            return
        type(self).received.append(json.loads(data))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[str]:
    Recorder.received = []
    Recorder.failures_left = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_webhooks_deliver_and_retry(client, hook_server: str) -> None:
    Recorder.failures_left = 2
    body = client.post(
        "/queue/fal-ai/birefnet/v2", params={"fal_webhook": hook_server}, json={"image_url": png_data_uri()}
    ).json()
    wait_for(lambda: len(Recorder.received) == 1)
    delivered = Recorder.received[0]
    assert delivered["request_id"] == body["request_id"] and delivered["status"] == "OK"
    assert delivered["payload"]["image"]["width"] == 120 and delivered["error"] is None
    job = client.app.state.service.store.get(body["request_id"])
    assert job.webhook_delivered and job.webhook_attempts == 3

    bad = client.post(
        "/queue/fal-ai/birefnet/v2",
        params={"fal_webhook": hook_server},
        json={"image_url": "data:image/png;base64,AAAA"},
    ).json()
    wait_for(lambda: len(Recorder.received) == 2)
    assert Recorder.received[1]["status"] == "ERROR" and Recorder.received[1]["error"] == "Invalid status code: 422"
    assert client.get(f"/queue/fal-ai/birefnet/requests/{bad['request_id']}").status_code == 422


def test_a_webhook_that_never_answers_loses_nothing(client) -> None:
    body = client.post(
        "/queue/fal-ai/birefnet/v2",
        params={"fal_webhook": "http://127.0.0.1:9/closed"},
        json={"image_url": png_data_uri()},
    ).json()
    wait_completed(client, f"/queue/fal-ai/birefnet/requests/{body['request_id']}/status")
    wait_for(lambda: client.app.state.service.store.get(body["request_id"]).webhook_attempts >= 4)
    assert client.get(f"/queue/fal-ai/birefnet/requests/{body['request_id']}").status_code == 200


def test_api_keys(make_client) -> None:
    client = make_client(open_access=False, api_keys=["s3cret"])
    payload = {"image_url": png_data_uri(), "sync_mode": True}
    assert client.post("/fal-ai/birefnet/v2", json=payload).status_code == 401
    assert client.post("/fal-ai/birefnet/v2", json=payload, headers={"authorization": "Key wrong"}).status_code == 401
    assert client.post("/fal-ai/birefnet/v2", json=payload, headers={"authorization": "Key s3cret"}).status_code == 200
    assert (
        client.post("/fal-ai/birefnet/v2", json=payload, headers={"authorization": "Bearer s3cret"}).status_code == 200
    )
    assert client.get("/health").status_code == 200  # operations stay open


def test_no_keys_and_no_open_mode_refuses_to_start(tmp_path: Path, lite_checkpoint: Path) -> None:

    from bgone.service.app import create_app

    with pytest.raises(ValueError, match="--open"):
        create_app(settings_for(tmp_path, lite_checkpoint, open_access=False))


def test_restart_runs_queued_requests(make_client, tmp_path: Path) -> None:
    first = make_client(tmp_path / "shared", start_worker=False)
    ids = [
        first.post("/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri(seed=i)}).json()["request_id"]
        for i in range(2)
    ]
    first.__exit__(None, None, None)
    second = make_client(tmp_path / "shared")
    for request_id in ids:
        assert wait_completed(second, f"/queue/fal-ai/birefnet/requests/{request_id}/status")["metrics"]


def test_upload_flow_then_use_the_file(client) -> None:
    token = client.post("/storage/auth/token", params={"storage_type": "fal-cdn-v3"}, json={}).json()
    assert token["token_type"] == "Bearer"
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buf, "JPEG")
    uploaded = client.post(
        "/files/upload",
        content=buf.getvalue(),
        headers={
            "authorization": f"Bearer {token['token']}",
            "content-type": "image/jpeg",
            "x-fal-file-name": "red.jpg",
        },
    )
    assert uploaded.status_code == 200
    url = uploaded.json()["access_url"]
    assert url.startswith("http://testserver/files/uploads/") and url.endswith("/red.jpg")
    # The worker reads its own files from storage, not over HTTP (no SSRF exemption needed).
    body = client.post("/fal-ai/birefnet/v2", json={"image_url": url}).json()
    assert body["image"]["width"] == 64
    assert client.get("/files/../../etc/passwd").status_code == 404


def test_health_ready_metrics(make_client) -> None:
    client = make_client()
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").status_code == 200  # no warm model configured: ready at once
    client.post("/fal-ai/birefnet/v2", json={"image_url": png_data_uri(), "sync_mode": True})
    text = client.get("/metrics").text
    assert "bgone_queue_depth" in text and "bgone_inference_seconds_count" in text
    assert 'bgone_requests_total{endpoint="fal-ai/birefnet/v2",status="200"}' in text


def test_ready_reports_a_missing_warm_model(make_client) -> None:
    client = make_client(warm_model="lite", model_map={})
    wait_for(lambda: client.get("/ready").status_code == 503 and client.get("/ready").json()["status"] == "error")
    assert "model_not_available" in client.get("/ready").json()["detail"]


def test_cancel_a_running_request(client, monkeypatch) -> None:
    worker = client.app.state.service.worker
    real = worker.remover
    started = threading.Event()

    def slow_remover(source: str):
        remover = real(source)
        predict = remover.predict

        def slow_predict(*args, **kwargs):
            started.set()
            time.sleep(1.0)  # long enough to cancel while the network "runs"
            return predict(*args, **kwargs)

        remover.predict = slow_predict
        return remover

    monkeypatch.setattr(worker, "remover", slow_remover)
    body = client.post("/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri()}).json()
    assert started.wait(30)
    assert client.get(f"/queue/fal-ai/birefnet/requests/{body['request_id']}/status").json()["status"] == "IN_PROGRESS"
    assert client.put(f"/queue/fal-ai/birefnet/requests/{body['request_id']}/cancel").status_code == 202
    final = wait_completed(client, f"/queue/fal-ai/birefnet/requests/{body['request_id']}/status")
    assert final["error_type"] == "client_cancelled"
    assert client.get(f"/queue/fal-ai/birefnet/requests/{body['request_id']}").status_code == 499


def test_retention_removes_results_and_files(client) -> None:
    body = client.post("/fal-ai/birefnet/v2", json={"image_url": png_data_uri()}).json()
    file_path = urlparse(body["image"]["url"]).path
    assert client.get(file_path).status_code == 200
    worker = client.app.state.service.worker
    worker.settings.retention_seconds = -1  # everything completed is past retention
    worker._purge()
    assert client.get(file_path).status_code == 404
    assert client.get("/api/history").json() == []


def test_batched_requests_share_a_forward_pass(make_client) -> None:
    client = make_client(start_worker=False, batch_size=4)
    ids = [
        client.post("/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri(seed=i)}).json()["request_id"]
        for i in range(3)
    ]
    calls = []
    worker = client.app.state.service.worker
    real = worker.remover

    def counting(source: str):
        remover = real(source)
        predict = remover.predict

        def wrapped(decoded, *args, **kwargs):
            calls.append(len(decoded))
            return predict(decoded, *args, **kwargs)

        remover.predict = wrapped
        return remover

    worker.remover = counting
    worker.start()
    for request_id in ids:
        wait_completed(client, f"/queue/fal-ai/birefnet/requests/{request_id}/status")
    assert calls == [3]


class Redirector(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "http://localhost:9/internal.png")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_redirect_to_a_private_address_is_refused(make_client) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # The first host is explicitly allowed; the redirect target is not, and is checked again.
        client = make_client(allow_private_urls=False, allowed_hosts=["127.0.0.1"])
        url = f"http://127.0.0.1:{server.server_address[1]}/photo.png"
        response = client.post("/fal-ai/birefnet/v2", json={"image_url": url})
        assert response.status_code == 422
        message = response.json()["detail"][0]["msg"]
        assert "refusing" in message and "localhost" in message
    finally:
        server.shutdown()


def test_webhooks_to_private_addresses_are_refused_at_submit(make_client) -> None:
    client = make_client(allow_private_urls=False)
    response = client.post(
        "/queue/fal-ai/birefnet/v2",
        params={"fal_webhook": "http://127.0.0.1:9/hook"},
        json={"image_url": png_data_uri()},
    )
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["query", "fal_webhook"] and "refusing to send webhooks to" in detail["msg"]


def test_a_full_disk_fails_the_request_cleanly_and_the_next_one_succeeds(client, monkeypatch) -> None:
    """ENOSPC while storing the output: the request completes with a 503 storage_error (not lost, not
    stuck), the image already stored for it is removed, and once space is back requests succeed."""
    import errno

    storage = client.app.state.service.storage
    real_put = storage.put
    stored: list[str] = []

    def put_then_fill_the_disk(data, **kw):
        if stored:  # the mask, after the image was stored
            raise OSError(errno.ENOSPC, "No space left on device")
        result = real_put(data, **kw)
        stored.append(result.key)
        return result

    monkeypatch.setattr(storage, "put", put_then_fill_the_disk)
    body = client.post("/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri(), "output_mask": True}).json()
    final = wait_completed(client, urlparse(body["status_url"]).path)
    assert final["error_type"] == "storage_error"
    result = client.get(urlparse(body["response_url"]).path)
    assert result.status_code == 503 and "No space left on device" in result.json()["detail"]
    assert stored and storage.path(stored[0]) is None  # the orphaned image file was deleted
    monkeypatch.setattr(storage, "put", real_put)
    again = client.post("/fal-ai/birefnet/v2", json={"image_url": png_data_uri(), "output_mask": True})
    assert again.status_code == 200 and again.json()["mask_image"]["url"]


def test_the_model_map_is_published_as_fal_documents_it(make_client) -> None:
    client = make_client(model_map={"v2": {"General Use (Heavy)": "general"}})
    models = client.get("/api/models").json()
    v2 = models["v2"]
    assert v2["General Use (Light)"] == {
        "model": "general",
        "title": "General use (Swin-L)",
        "checkpoint": "ZhengPeng7/BiRefNet",
    }
    assert v2["General Use (Light 2K)"]["checkpoint"] == "ZhengPeng7/BiRefNet_lite-2K"
    assert v2["General Use (Heavy)"]["model"] == "general"  # remapped here; fal's own map says BiRefNet_lite
    assert models["v1"]["General Use (Light)"]["model"] == "dis-ep580"
    assert models["rembg"]["birefnet-general-lite"]["model"] == "lite"
