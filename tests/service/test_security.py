"""Security properties of the service as a client meets them: keys, files, uploads, CORS."""

from __future__ import annotations

import logging

import pytest
from service_helpers import png_data_uri

KEY = "s3cret-key-0123456789"


def test_api_keys_are_never_logged_or_echoed(make_client, caplog) -> None:
    client = make_client(open_access=False, api_keys=[KEY])
    caplog.set_level(logging.DEBUG)
    wrong = client.post(
        "/fal-ai/birefnet/v2", json={"image_url": png_data_uri()}, headers={"authorization": "Key nope"}
    )
    assert wrong.status_code == 401 and "nope" not in wrong.text
    right = client.post(
        "/fal-ai/birefnet/v2",
        json={"image_url": png_data_uri(), "sync_mode": True},
        headers={"authorization": f"Key {KEY}"},
    )
    assert right.status_code == 200 and KEY not in right.text
    metrics = client.get("/metrics", headers={"authorization": f"Key {KEY}"})
    assert KEY not in metrics.text
    assert KEY not in caplog.text and "nope" not in caplog.text


@pytest.mark.parametrize(
    "path",
    [
        "/files/../../etc/passwd",
        "/files/..%2f..%2fetc%2fpasswd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files//etc/passwd",
        "/files/uploads/..%2f..%2f..%2fjobs.sqlite3",
        "/files/%00",
        "/files/" + "a/" * 200 + "x",
    ],
)
def test_file_routes_cannot_leave_the_data_dir(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (400, 404), (path, response.status_code)
    assert "root:" not in response.text and "SQLite" not in response.text


def test_uploads_are_size_limited(make_client) -> None:
    client = make_client(max_image_bytes=10_000)
    token = client.post("/storage/auth/token", params={"storage_type": "fal-cdn-v3"}, json={}).json()["token"]
    headers = {"authorization": f"Bearer {token}", "content-type": "image/png", "x-fal-file-name": "big.png"}
    too_big = client.post("/files/upload", content=b"\x00" * 10_001, headers=headers)
    assert too_big.status_code == 413 and "10000-byte limit" in too_big.json()["detail"]
    empty = client.post("/files/upload", content=b"", headers=headers)
    assert empty.status_code == 400


def test_cors_is_off_unless_configured(make_client) -> None:
    preflight = {"origin": "https://studio.example", "access-control-request-method": "POST"}
    closed = make_client()
    assert "access-control-allow-origin" not in closed.options("/fal-ai/birefnet/v2", headers=preflight).headers
    opened = make_client(cors_origins=["https://studio.example"])
    allowed = opened.options("/fal-ai/birefnet/v2", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://studio.example"
    other = opened.options("/fal-ai/birefnet/v2", headers={**preflight, "origin": "https://evil.example"})
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"
