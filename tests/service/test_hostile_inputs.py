"""What the internet sends, through the public HTTP API: every hostile or broken input ends in a
clear 4xx with a stable error type, in bounded time, and the service keeps serving afterwards."""

from __future__ import annotations

import base64
import http.server
import io
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import pytest

from conftest import synthetic_photo

SYNC = "/fal-ai/birefnet/v2"


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def encoded(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    image = synthetic_photo(*size)
    (image.convert("P") if fmt == "GIF" else image).save(buf, fmt)
    return buf.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming width x height 1-bit pixels (1.25 GB decoded) in a few hundred bytes."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + width // 8) * 64, 9)  # 64 zero rows; the rest never arrives
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def expect_refusal(response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["x-fal-error-type"] == error_type
    assert response.headers.get("x-fal-request-id")
    return response.json()


def still_serving(client) -> None:
    response = client.post(SYNC, json={"image_url": data_uri(encoded("PNG")), "sync_mode": True})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP"])
def test_truncated_files_of_every_format(client, fmt: str) -> None:
    whole = encoded(fmt)
    started = time.perf_counter()
    body = expect_refusal(
        client.post(SYNC, json={"image_url": data_uri(whole[: len(whole) // 2])}), 422, "image_load_error"
    )
    assert body["detail"][0]["loc"] == ["body", "image_url"] and body["detail"][0]["msg"]
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("png signature then garbage", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
        ("html", b"<!doctype html><title>not an image</title>"),
        ("zip", b"PK\x03\x04" + b"\x00" * 64),
        ("one byte", b"\xff"),
    ],
)
def test_corrupt_or_non_image_bytes(client, name: str, payload: bytes) -> None:
    expect_refusal(client.post(SYNC, json={"image_url": data_uri(payload)}), 422, "image_load_error")


def test_decompression_bomb_is_refused_from_its_header(client) -> None:
    bomb = png_bomb()
    assert len(bomb) < 20_000
    started = time.perf_counter()
    body = expect_refusal(client.post(SYNC, json={"image_url": data_uri(bomb)}), 422, "image_too_large")
    assert time.perf_counter() - started < 2  # refused before any pixel is decoded
    assert "100000" in body["detail"][0]["msg"]
    still_serving(client)


def test_images_over_the_pixel_limit(make_client) -> None:
    client = make_client(max_image_pixels=64 * 48 - 1)
    expect_refusal(client.post(SYNC, json={"image_url": data_uri(encoded("PNG"))}), 422, "image_too_large")
    small = client.post(SYNC, json={"image_url": data_uri(encoded("PNG", (32, 24))), "sync_mode": True})
    assert small.status_code == 200


def test_the_declared_content_type_is_not_trusted(client) -> None:
    jpeg_called_png = client.post(SYNC, json={"image_url": data_uri(encoded("JPEG"), "image/png"), "sync_mode": True})
    assert jpeg_called_png.status_code == 200  # the bytes decide, not the label
    text_called_png = client.post(SYNC, json={"image_url": data_uri(b"hello world", "image/png")})
    expect_refusal(text_called_png, 422, "image_load_error")


@pytest.mark.parametrize(
    "image_url",
    ["data:image/png;base64,", "data:image/png;base64,%%%not-base64%%%", "data:image/png;base64,YWJj$$", "data:,"],
)
def test_empty_and_malformed_data_uris(client, image_url: str) -> None:
    response = client.post(SYNC, json={"image_url": image_url})
    assert response.status_code == 422
    assert response.headers["x-fal-error-type"] in ("image_load_error", "invalid_input")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"image_url": 5}, "image_url"),
        ({}, "image_url"),
        ({"image_url": "x", "model": "Nope"}, "model"),
        ({"image_url": "x", "operating_resolution": "999x999"}, "operating_resolution"),
        ({"image_url": "x", "output_format": "exe"}, "output_format"),
        ({"image_url": "x", "refine_foreground": "maybe"}, "refine_foreground"),
    ],
)
def test_invalid_types_and_enums_name_the_field(client, payload: dict, field: str) -> None:
    response = client.post(SYNC, json=payload)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field


def test_bodies_that_are_not_json(client) -> None:
    for body, content_type in (
        (b"", "application/json"),
        (b"{not json", "application/json"),
        (b"\x00\xff", "text/plain"),
    ):
        response = client.post(SYNC, content=body, headers={"content-type": content_type})
        assert response.status_code == 422, (body, response.text)


def test_enormous_bodies_are_cut_off(make_client) -> None:
    client = make_client(max_request_bytes=1024 * 1024)
    big = {"image_url": "data:image/png;base64," + "A" * (2 * 1024 * 1024)}
    body = expect_refusal(client.post(SYNC, json=big), 413, "request_too_large")
    assert "1048576-byte limit" in body["detail"]

    def chunked() -> Iterator[bytes]:  # no content-length: counted as it streams
        yield b'{"image_url": "data:image/png;base64,'
        for _ in range(64):
            yield b"A" * 65536
        yield b'"}'

    expect_refusal(
        client.post(SYNC, content=chunked(), headers={"content-type": "application/json"}), 413, "request_too_large"
    )
    expect_refusal(client.post("/queue" + SYNC, json=big), 413, "request_too_large")
    still_serving(client)


class HostileServer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/page.html":
            body = b"<html><body>just a page</body></html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("location", "/loop")
            self.end_headers()
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"\x89")
                self.wfile.flush()
                time.sleep(0.25)
        elif self.path == "/endless":
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\x00" * 65536)
            except OSError:
                pass
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileServer)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("path", "error_type"),
    [
        ("/page.html", "image_load_error"),
        ("/loop", "file_download_error"),
        ("/slow", "file_download_error"),
        ("/endless", "file_download_error"),
        ("/missing.png", "file_download_error"),
    ],
)
def test_hostile_urls(make_client, hostile_server: str, path: str, error_type: str) -> None:
    client = make_client(fetch_timeout=2.0, max_image_bytes=1024 * 1024)
    started = time.perf_counter()
    body = expect_refusal(client.post(SYNC, json={"image_url": hostile_server + path}), 422, error_type)
    assert body["detail"][0]["msg"]
    assert time.perf_counter() - started < 8  # the fetch deadline, not the server, decides


def test_private_addresses_are_refused_without_any_connection(make_client) -> None:
    client = make_client(allow_private_urls=False)
    for url in ("http://127.0.0.1:1/x.png", "http://[::1]:1/x.png", "http://192.168.0.1/x.png", "http://0.0.0.0/x.png"):
        body = expect_refusal(client.post(SYNC, json={"image_url": url}), 422, "file_download_error")
        assert "refusing" in body["detail"][0]["msg"]


@pytest.mark.parametrize("value", ["abc", "-5", "0", "nan", "inf", "1e300"])
def test_bad_request_timeouts_are_refused(client, value: str) -> None:
    response = client.post(
        "/queue" + SYNC, json={"image_url": data_uri(encoded("PNG"))}, headers={"x-fal-request-timeout": value}
    )
    assert response.status_code == 400 and "X-Fal-Request-Timeout" in response.json()["detail"]


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "offset=-1", f"offset={10**30}", "limit=x"])
def test_history_paging_out_of_range_is_a_422(client, query: str) -> None:
    assert client.get(f"/api/history?{query}").status_code == 422
    assert client.get("/api/history?limit=500&offset=0").status_code == 200
