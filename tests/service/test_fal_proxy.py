"""fal's server-proxy protocol (``/api/fal/proxy`` with ``x-fal-target-url``) and fal's storage upload flow
(``/storage/upload/...``), over real HTTP against a uvicorn-served bgone with an API key, CORS and small
byte limits: which targets are answered and which refused (and that a refused one is never fetched), the
key, CORS preflights, every route the JavaScript client reaches through the proxy, and the upload URLs
(one PUT, and parts as the client cuts them: ``PUT {upload_url path}/{n}{upload_url query}`` then
``POST .../complete``), forged, altered, expired and reused URLs, limits and bad ``complete`` bodies.
The stock client itself runs in test_fal_js_client.py."""

from __future__ import annotations

import ast
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from service_helpers import live_server, png_data_uri, settings_for

from bgone.errors import ProxyTargetError
from bgone.service.app import create_app
from bgone.service.proxy_targets import ProxyTarget, resolve_target
from bgone.service.upload_urls import UPLOAD_URL_SECONDS, PendingUploads, UploadTicket
from conftest import synthetic_photo

KEY = "proxy-test-key"
ORIGIN = "https://app.example"
MAX_IMAGE = 200_000
MAX_VIDEO = 400_000
MAX_REQUEST = 250_000
PROXY = "/api/fal/proxy"
INITIATE = "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3"
INITIATE_MULTIPART = "https://rest.fal.ai/storage/upload/initiate-multipart?storage_type=fal-cdn-v3"
SRC = Path(__file__).resolve().parents[2] / "src" / "bgone" / "service"


# -- the target table (the pure function) -------------------------------------------------------------

ACCEPTED = [
    ("https://fal.run/fal-ai/birefnet", "POST", ProxyTarget("POST", "/fal-ai/birefnet")),
    ("https://fal.run/fal-ai/birefnet/v2", "post", ProxyTarget("POST", "/fal-ai/birefnet/v2")),
    ("https://fal.run/fal-ai/birefnet/v2/video", "POST", ProxyTarget("POST", "/fal-ai/birefnet/v2/video")),
    ("https://fal.run/fal-ai/birefnet/v2/stream", "POST", ProxyTarget("POST", "/fal-ai/birefnet/v2/stream")),
    ("https://fal.run/fal-ai/birefnet/v2/", "POST", ProxyTarget("POST", "/fal-ai/birefnet/v2")),  # id given as a URL
    ("HTTPS://FAL.RUN/fal-ai/birefnet/v2", "POST", ProxyTarget("POST", "/fal-ai/birefnet/v2")),
    (
        "https://queue.fal.run/fal-ai/birefnet/v2/video?fal_webhook=https%3A%2F%2Fx.example%2Fhook",
        "POST",
        ProxyTarget("POST", "/queue/fal-ai/birefnet/v2/video", "fal_webhook=https%3A%2F%2Fx.example%2Fhook"),
    ),
    (
        "https://queue.fal.run/fal-ai/birefnet/requests/abc-123/status?logs=1",
        "GET",
        ProxyTarget("GET", "/queue/fal-ai/birefnet/requests/abc-123/status", "logs=1"),
    ),
    (
        "https://queue.fal.run/fal-ai/birefnet/requests/abc-123/status/stream?logs=0",
        "GET",
        ProxyTarget("GET", "/queue/fal-ai/birefnet/requests/abc-123/status/stream", "logs=0"),
    ),
    (
        "https://queue.fal.run/fal-ai/birefnet/requests/abc-123",
        "GET",
        ProxyTarget("GET", "/queue/fal-ai/birefnet/requests/abc-123"),
    ),
    (
        "https://queue.fal.run/fal-ai/birefnet/requests/abc-123/cancel",
        "PUT",
        ProxyTarget("PUT", "/queue/fal-ai/birefnet/requests/abc-123/cancel"),
    ),
    (INITIATE, "POST", ProxyTarget("POST", "/storage/upload/initiate", "storage_type=fal-cdn-v3")),
    (
        "https://rest.alpha.fal.ai/storage/upload/initiate-multipart?storage_type=fal-cdn-v3",
        "POST",
        ProxyTarget("POST", "/storage/upload/initiate-multipart", "storage_type=fal-cdn-v3"),
    ),
]

V2 = "/fal-ai/birefnet/v2"
NOT_SERVED = "is not served here"
NOT_FAL = "is not one of fal's hosts"
REFUSED = [
    # (target, method, what the error says)
    (None, "POST", "header is required"),
    ("", "POST", "header is required"),
    (f"http://fal.run{V2}", "POST", "only https"),
    (f"ftp://fal.run{V2}", "POST", "only https"),
    (f"//fal.run{V2}", "POST", "only https"),
    (f"https://evil.com{V2}", "POST", f"evil.com {NOT_FAL}"),
    (f"https://fal.run.evil.com{V2}", "POST", f"fal.run.evil.com {NOT_FAL}"),
    (f"https://evilfal.run{V2}", "POST", NOT_FAL),
    (f"https://a.b.fal.run{V2}", "POST", NOT_FAL),
    (f"https://fal.run.{V2}", "POST", NOT_FAL),
    (f"https://127.0.0.1{V2}", "POST", f"127.0.0.1 {NOT_FAL}"),
    (f"https://[::1]{V2}", "POST", NOT_FAL),
    (f"https://localhost{V2}", "POST", NOT_FAL),
    (f"https://fal.ai{V2}", "POST", NOT_FAL),
    ("https://v3.fal.media/files/x/y.png", "GET", NOT_FAL),
    (f"https://xn--fl-via.run{V2}", "POST", NOT_FAL),
    (f"https://fal.run@evil.com{V2}", "POST", "user info"),
    (f"https://user:secret@fal.run{V2}", "POST", "user info"),
    (f"https://fal.run:443{V2}", "POST", "port"),
    (f"https://fal.run:8443{V2}", "POST", "port"),
    (f"https://fal.run:{V2}", "POST", "port"),
    (f"https://fal.run:x{V2}", "POST", "not a valid URL"),
    (f"https://fal.run{V2}#frag", "POST", "fragment"),
    (f"https://fal.run{V2}#", "POST", "fragment"),
    ("https://fal.run/fal-ai/birefnet/../birefnet/v2", "POST", "is not a path this server answers"),
    ("https://fal.run/fal-ai/birefnet/./v2", "POST", "is not a path this server answers"),
    ("https://fal.run/fal-ai/birefnet/v2/..", "POST", "is not a path this server answers"),
    ("https://fal.run//fal-ai/birefnet/v2", "POST", "is not a path this server answers"),
    ("https://fal.run/fal-ai/birefnet/v2//", "POST", "is not a path this server answers"),
    ("https://fal.run/fal-ai%2Fbirefnet/v2", "POST", "is not a path this server answers"),
    ("https://fal.run/fal-ai/birefnet/%76%32", "POST", "is not a path this server answers"),
    ("https://fal.run/fal-ai/birefnet/v2 x", "POST", "not a URL"),
    ("https://fal.run\\@evil.com/fal-ai/birefnet/v2", "POST", "not a URL"),
    ("https://fal.run/fal-ai/birefnet/v2\n", "POST", "not a URL"),
    ("https://fäl.run/fal-ai/birefnet/v2", "POST", "not a URL"),
    ("https://fal.run/" + "a" * 5000, "POST", "longer than"),
    ("https://fal.run", "POST", "is not a path this server answers"),
    # fal's hosts, but not an endpoint or a method served here
    ("https://fal.run/fal-ai/flux/dev", "POST", NOT_SERVED),
    ("https://fal.run/fal-ai/birefnet/v3", "POST", NOT_SERVED),
    ("https://fal.run/fal-ai/birefnet/v2/video/extra", "POST", NOT_SERVED),
    ("https://gateway.fal.run/fal-ai/birefnet/v2", "POST", NOT_SERVED),
    ("https://fal.run/queue/fal-ai/birefnet/v2", "POST", NOT_SERVED),
    ("https://queue.fal.run/fal-ai/flux/dev", "POST", NOT_SERVED),
    ("https://queue.fal.run/fal-ai/flux/requests/abc/status", "GET", NOT_SERVED),
    ("https://queue.fal.run/fal-ai/birefnet/v2/requests/abc/status", "GET", NOT_SERVED),
    ("https://queue.fal.run/fal-ai/birefnet/requests/-abc/status", "GET", NOT_SERVED),
    ("https://queue.fal.run/fal-ai/birefnet/requests/abc/logs", "GET", NOT_SERVED),
    ("https://rest.fal.ai/storage/auth/token", "POST", NOT_SERVED),
    ("https://rest.fal.ai/storage/upload/abc", "PUT", NOT_SERVED),
    ("https://fal.run/storage/upload/initiate", "POST", NOT_SERVED),
    (f"https://fal.run{V2}", "GET", NOT_SERVED),
    (f"https://fal.run{V2}", "PUT", NOT_SERVED),
    (f"https://queue.fal.run{V2}", "GET", NOT_SERVED),
    ("https://queue.fal.run/fal-ai/birefnet/requests/abc/status", "POST", NOT_SERVED),
    ("https://queue.fal.run/fal-ai/birefnet/requests/abc", "DELETE", NOT_SERVED),
    ("https://queue.fal.run/fal-ai/birefnet/requests/abc/cancel", "GET", NOT_SERVED),
    ("https://queue.fal.run/fal-ai/birefnet/requests/abc/cancel", "DELETE", NOT_SERVED),
    (INITIATE, "GET", NOT_SERVED),
    (INITIATE, "PUT", NOT_SERVED),
]


@pytest.mark.parametrize(("url", "method", "expected"), ACCEPTED, ids=[f"{m} {u[:70]}" for u, m, _ in ACCEPTED])
def test_accepted_targets(url: str, method: str, expected: ProxyTarget) -> None:
    assert resolve_target(url, method) == expected


@pytest.mark.parametrize(("url", "method", "why"), REFUSED, ids=[f"{m} {str(u)[:70]!r}" for u, m, _ in REFUSED])
def test_refused_targets(url: str | None, method: str, why: str) -> None:
    with pytest.raises(ProxyTargetError) as raised:
        resolve_target(url, method)
    assert why in str(raised.value)
    assert raised.value.http_status == 400 and raised.value.error_type == "invalid_proxy_target"


def test_the_proxy_cannot_fetch() -> None:
    """The proxy and its target rules import no HTTP client or socket: a target can only name a route."""
    network = {"httpx", "requests", "aiohttp", "urllib.request", "http.client", "socket", "urllib3", "botocore"}
    for path in (SRC / "routes" / "proxy.py", SRC / "proxy_targets.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        assert not imported & network, (path.name, imported & network)


# -- a live server ----------------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """A web server that records every request: refused targets pointing here must never arrive."""

    hits: list[str] = []  # noqa: RUF012

    def _record(self) -> None:
        type(self).hits.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def recorder() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, lite_checkpoint: Path) -> Iterator[tuple[str, object]]:
    """(base URL, app): one key, CORS for one origin, small byte limits."""
    settings = settings_for(
        tmp_path_factory.mktemp("proxy") / "data",
        lite_checkpoint,
        open_access=False,
        api_keys=[KEY],
        cors_origins=[ORIGIN],
        max_image_bytes=MAX_IMAGE,
        max_video_bytes=MAX_VIDEO,
        max_request_bytes=MAX_REQUEST,
    )
    app = create_app(settings)
    with live_server(app) as base:
        yield base, app


@pytest.fixture(scope="module")
def base(served: tuple[str, object]) -> str:
    return served[0]


@pytest.fixture(scope="module")
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=60) as client:
        yield client


def proxied(
    http: httpx.Client, method: str, target: str, *, key: str | None = KEY, headers: dict | None = None, **kwargs
) -> httpx.Response:
    """A request as the JS client's proxy middleware sends it: to the proxy, the target in a header."""
    sent = {"x-fal-target-url": target, "accept": "application/json", **(headers or {})}
    if key is not None:
        sent["authorization"] = f"Key {key}"
    return http.request(method, PROXY, headers=sent, **kwargs)


def refused(response: httpx.Response, status: int, error_type: str, why: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_type"] == error_type and why in body["detail"], body
    assert response.headers["x-fal-error-type"] == error_type


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]


def png_bytes(width: int = 48, height: int = 32, seed: int = 0) -> bytes:
    import io

    buf = io.BytesIO()
    synthetic_photo(width, height, seed).save(buf, "PNG")
    return buf.getvalue()


# -- the proxy over HTTP ------------------------------------------------------------------------------


def test_refused_targets_over_http_fetch_nothing(http: httpx.Client, recorder: str) -> None:
    Recorder.hits = []
    for url, method, why in REFUSED:
        if url is None or not url.isascii() or "\n" in url:
            continue  # no header at all (below), or one no HTTP client sends
        response = proxied(http, method, url, json={"image_url": png_data_uri(8, 8)} if method != "GET" else None)
        refused(response, 400, "invalid_proxy_target", why)
    # Targets that name a web server that really listens here: refused, and never reached.
    for url in (
        f"http://{recorder}{V2}",
        f"https://{recorder}{V2}",
        f"https://fal.run@{recorder}{V2}",
        f"https://{recorder}#@fal.run{V2}",
        f"http://{recorder}/storage/upload/initiate",
    ):
        refused(proxied(http, "POST", url, json={"image_url": "x"}), 400, "invalid_proxy_target")
    time.sleep(0.2)
    assert Recorder.hits == []


def test_missing_or_several_target_headers(http: httpx.Client) -> None:
    response = http.post(PROXY, headers={"authorization": f"Key {KEY}"}, json={})
    refused(response, 400, "invalid_proxy_target", "the x-fal-target-url header is required")
    headers = [("authorization", f"Key {KEY}"), ("x-fal-target-url", f"https://fal.run{V2}")]
    headers.append(("x-fal-target-url", f"https://fal.run{V2}"))
    response = http.post(PROXY, headers=headers, json={"image_url": png_data_uri(8, 8)})
    refused(response, 400, "invalid_proxy_target", "send one x-fal-target-url header, not several")


def test_the_key_is_checked_first_and_forwarded(http: httpx.Client) -> None:
    for key in (None, "wrong-key"):
        for target in (f"https://fal.run{V2}", "https://evil.com/"):
            response = proxied(http, "POST", target, key=key, json={"image_url": png_data_uri(8, 8)})
            refused(response, 401, "unauthorized", "Missing or invalid API key")
    assert http.post("/storage/upload/initiate", json={"content_type": "image/png"}).status_code == 401
    # With the key: the route that answers checks it too, so it was handed on.
    response = proxied(http, "POST", INITIATE, json={"content_type": "image/png", "file_name": "a.png"})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"upload_url", "file_url"}


def test_cors_preflight_and_headers(http: httpx.Client, base: str) -> None:
    asked = "authorization,content-type,x-fal-target-url,x-fal-queue-priority,x-fal-object-lifecycle-preference"
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": asked}
    response = http.options(PROXY, headers=preflight)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert set(asked.split(",")) <= allowed
    assert {"GET", "POST", "PUT"} <= {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    # Another origin is refused, and gets no allow-origin.
    response = http.options(PROXY, headers={**preflight, "origin": "https://evil.example"})
    assert response.status_code == 400 and "access-control-allow-origin" not in response.headers
    # The browser PUTs the bytes to the upload URL itself, with a content type: a preflight there too.
    upload = proxied(http, "POST", INITIATE, json={"content_type": "image/png", "file_name": "a.png"}).json()
    put = {"origin": ORIGIN, "access-control-request-method": "PUT", "access-control-request-headers": "content-type"}
    response = http.options(upload["upload_url"], headers=put)
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == ORIGIN
    # A proxied answer carries the CORS headers once, and exposes the headers the client reads.
    response = proxied(
        http, "GET", "https://queue.fal.run/fal-ai/birefnet/requests/nope/status", headers={"origin": ORIGIN}
    )
    assert response.status_code == 404
    assert response.headers.get_list("access-control-allow-origin") == [ORIGIN]
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"x-fal-request-id", "x-fal-request-timeout-type", "x-fal-error-type"} <= exposed
    assert len(response.headers.get_list("x-fal-request-id")) == 1


def test_run_stream_and_validation_through_the_proxy(http: httpx.Client) -> None:
    response = proxied(http, "POST", f"https://fal.run{V2}", json={"image_url": png_data_uri(40, 30)})
    assert response.status_code == 200, response.text
    assert (response.json()["image"]["width"], response.json()["image"]["height"]) == (40, 30)
    assert len(response.headers["x-fal-request-id"]) >= 16
    response = proxied(
        http,
        "POST",
        f"https://fal.run{V2}/stream",
        headers={"accept": "text/event-stream"},
        json={"image_url": png_data_uri(40, 30), "output_mask": True},
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    (event,) = sse_events(response.text)
    assert event["image"]["width"] == 40 and event["mask_image"]["height"] == 30
    # Errors are the route's own: a 422 with fal's field errors (the client's ValidationError), for the
    # body and for the query handed on.
    response = proxied(http, "POST", f"https://fal.run{V2}", json={"image_url": png_data_uri(8, 8), "model": "Nope"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "model"]
    # fal_client (Python) posts to the run host's {app}/stream too: the same route, without the proxy.
    response = http.post(
        "/run/fal-ai/birefnet/stream", headers={"authorization": f"Key {KEY}"}, json={"image_url": png_data_uri(20, 10)}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert sse_events(response.text)[0]["image"]["width"] == 20
    response = proxied(http, "POST", f"https://fal.run{V2}/stream", json={"model": "Nope"})
    assert response.status_code == 422 and response.headers["content-type"] == "application/json"
    response = proxied(
        http, "POST", f"https://queue.fal.run{V2}?fal_webhook=ftp%3A%2F%2Fx", json={"image_url": png_data_uri(8, 8)}
    )
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "fal_webhook"]


def test_queue_through_the_proxy(http: httpx.Client) -> None:
    response = proxied(
        http,
        "POST",
        f"https://queue.fal.run{V2}",
        headers={"x-fal-queue-priority": "normal"},
        json={"image_url": png_data_uri(40, 30)},
    )
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    assert response.headers["x-fal-request-id"] == request_id
    requests = f"https://queue.fal.run/fal-ai/birefnet/requests/{request_id}"
    deadline = time.time() + 60
    while True:
        status = proxied(http, "GET", f"{requests}/status?logs=1")
        if status.json()["status"] == "COMPLETED":
            break
        assert status.status_code == 202 and time.time() < deadline
        time.sleep(0.1)
    assert status.status_code == 200 and any(entry["message"] for entry in status.json()["logs"])
    assert proxied(http, "GET", f"{requests}/status?logs=0").json()["logs"] is None
    stream = proxied(http, "GET", f"{requests}/status/stream?logs=1", headers={"accept": "text/event-stream"})
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert sse_events(stream.text)[-1]["status"] == "COMPLETED"
    result = proxied(http, "GET", requests)
    assert result.status_code == 200 and result.json()["image"]["width"] == 40
    assert result.headers["x-fal-request-id"] == request_id
    cancel = proxied(http, "PUT", f"{requests}/cancel")
    assert cancel.status_code == 400 and cancel.json() == {"status": "ALREADY_COMPLETED"}


# -- uploads ------------------------------------------------------------------------------------------


def initiate(http: httpx.Client, *, multipart: bool = False, **body: str) -> dict[str, str]:
    response = proxied(http, "POST", INITIATE_MULTIPART if multipart else INITIATE, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def part_url(upload_url: str, suffix: str | int) -> str:
    """What the client builds: ``{origin}{pathname}/{n}{search}`` (and ``/complete``)."""
    parts = urlsplit(upload_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}/{suffix}?{parts.query}"


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    params.update(changes)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(params)}"


def run_on(http: httpx.Client, file_url: str) -> dict:
    response = proxied(http, "POST", f"https://fal.run{V2}", json={"image_url": file_url})
    assert response.status_code == 200, response.text
    return response.json()


def test_single_upload_then_a_request_using_it(http: httpx.Client, base: str) -> None:
    data = png_bytes(48, 32)
    upload = initiate(http, content_type="image/png", file_name="my photo.png", extra="ignored")
    assert upload["upload_url"].startswith(f"{base}/storage/upload/")
    assert upload["file_url"].startswith(f"{base}/files/uploads/") and upload["file_url"].endswith("/my_photo.png")
    assert httpx.get(upload["file_url"]).status_code == 404  # announced, not there yet
    response = httpx.put(upload["upload_url"], content=data, headers={"content-type": "image/png"})  # no key
    assert response.status_code == 200 and response.json() == {"file_url": upload["file_url"]}
    stored = httpx.get(upload["file_url"])
    assert stored.content == data and stored.headers["content-type"] == "image/png"
    output = run_on(http, upload["file_url"])
    assert (output["image"]["width"], output["image"]["height"]) == (48, 32)
    # The URL is used once.
    again = httpx.put(upload["upload_url"], content=b"other bytes")
    refused(again, 403, "forbidden", "already used")
    assert httpx.get(upload["file_url"]).content == data


def test_multipart_upload_as_the_client_sends_it(http: httpx.Client) -> None:
    data = png_bytes(64, 40, seed=3)
    upload = initiate(http, multipart=True, content_type="image/png", file_name="big.png")
    size = len(data) // 3 + 1
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    parts = []
    for number, chunk in enumerate(chunks, 1):
        response = httpx.put(part_url(upload["upload_url"], number), content=chunk)  # no key, no content type
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"partNumber", "etag"} and response.json()["partNumber"] == number
        parts.append(response.json())
    # A part sent again (the client retries a part that failed) replaces the first copy.
    response = httpx.put(part_url(upload["upload_url"], 2), content=chunks[1])
    parts[1] = response.json()
    complete = part_url(upload["upload_url"], "complete")
    response = httpx.post(complete, json={"parts": list(reversed(parts))})  # joined in part-number order
    assert response.status_code == 200, response.text
    assert response.json() == {"file_url": upload["file_url"]}
    assert httpx.get(upload["file_url"]).content == data
    assert run_on(http, upload["file_url"])["image"]["width"] == 64
    # A retried complete answers the same file; parts after it are refused.
    assert httpx.post(complete, json={"parts": parts}).json() == {"file_url": upload["file_url"]}
    refused(httpx.put(part_url(upload["upload_url"], 4), content=b"x"), 403, "forbidden", "already used")


def test_forged_altered_expired_and_misused_upload_urls(http: httpx.Client, served: tuple[str, object]) -> None:
    base, app = served
    upload = initiate(http, content_type="image/png", file_name="a.png")
    url = upload["upload_url"]
    signature = dict(parse_qsl(urlsplit(url).query))["signature"]
    forged = [
        with_query(url, signature=("A" if signature[0] != "A" else "B") + signature[1:]),
        with_query(url, signature=""),
        with_query(url, signature="é"),
        with_query(url, content_type="video/mp4"),  # to get the video limit
        with_query(url, file_name="other.png"),
        with_query(url, expires=str(int(time.time()) + 10 * UPLOAD_URL_SECONDS)),
        with_query(url, expires="soon"),
        f"{base}/storage/upload/{uuid.uuid4().hex}?{urlsplit(url).query}",  # another upload's id
        f"{base}/storage/upload/{'0' * 31}?{urlsplit(url).query}",
        url.split("?")[0],
    ]
    for bad in forged:
        refused(httpx.put(bad, content=b"x"), 403, "forbidden", "invalid upload URL")
    # A single-upload URL takes no parts, and a multipart URL no single PUT.
    refused(httpx.put(part_url(url, 1), content=b"x"), 403, "forbidden", "invalid multipart upload URL")
    multi = initiate(http, multipart=True, content_type="image/png", file_name="m.png")
    refused(httpx.put(multi["upload_url"], content=b"x"), 403, "forbidden", "invalid upload URL")
    # Expired: a URL signed by the server's own keys an hour and more ago.
    old = UploadTicket.new("image/png", "old.png", multipart=False, now=time.time() - UPLOAD_URL_SECONDS - 5)
    expired = f"{base}/storage/upload/{old.upload_id}?{old.query(app.state.service.signing)}"
    refused(httpx.put(expired, content=b"x"), 403, "forbidden", "expired")
    # Nothing above stored anything: the real URL still works once.
    assert httpx.put(url, content=png_bytes(8, 8)).status_code == 200


def test_upload_limits(http: httpx.Client) -> None:
    # Images: over the image limit, declared or streamed without a length.
    upload = initiate(http, content_type="image/png", file_name="huge.png")
    refused(httpx.put(upload["upload_url"], content=b"\0" * (MAX_IMAGE + 1)), 413, "image_too_large")

    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b"\0" * (MAX_IMAGE // 4)

    refused(httpx.put(upload["upload_url"], content=chunks()), 413, "image_too_large")
    refused(httpx.put(upload["upload_url"], content=b""), 400, "bad_request", "empty upload")
    # Videos (content type or name): the video limit, which may be above the request-body limit.
    video = initiate(http, content_type="application/octet-stream", file_name="clip.mp4")
    assert MAX_REQUEST < MAX_REQUEST + 50_000 < MAX_VIDEO
    assert httpx.put(video["upload_url"], content=b"\1" * (MAX_REQUEST + 50_000)).status_code == 200
    video = initiate(http, content_type="video/mp4", file_name="clip")
    refused(httpx.put(video["upload_url"], content=b"\1" * (MAX_VIDEO + 1)), 413, "video_too_large")
    # Multipart: the whole file is held to the limit as parts arrive; each part is a request body.
    multi = initiate(http, multipart=True, content_type="image/png", file_name="parts.png")
    first = httpx.put(part_url(multi["upload_url"], 1), content=b"\2" * (MAX_IMAGE // 2)).json()
    assert httpx.put(part_url(multi["upload_url"], 2), content=b"\2" * (MAX_IMAGE // 2)).status_code == 200
    refused(httpx.put(part_url(multi["upload_url"], 3), content=b"\2" * 10), 413, "image_too_large")
    # The upload's parts were dropped with it.
    response = httpx.post(part_url(multi["upload_url"], "complete"), json={"parts": [first]})
    refused(response, 400, "bad_request", "was not uploaded")
    video = initiate(http, multipart=True, content_type="video/mp4", file_name="v.mp4")
    refused(httpx.put(part_url(video["upload_url"], 1), content=b"\3" * (MAX_REQUEST + 1)), 413, "request_too_large")


def test_bad_complete_bodies(http: httpx.Client) -> None:
    multi = initiate(http, multipart=True, content_type="image/png", file_name="c.png")
    other = initiate(http, multipart=True, content_type="image/png", file_name="d.png")
    url = multi["upload_url"]
    part1 = httpx.put(part_url(url, 1), content=b"\4" * 100).json()
    other1 = httpx.put(part_url(other["upload_url"], 1), content=b"\4" * 100).json()
    complete = part_url(url, "complete")
    for body, why in (
        ({"parts": [part1, part1]}, "each part number may be listed once"),
        ({"parts": [other1]}, "part 1: the etag is not one this upload's part PUT answered"),
        ({"parts": [{"partNumber": 2, "etag": part1["etag"]}]}, "part 2: the etag is not one"),
        ({"parts": [{"partNumber": 1, "etag": "uploadparts/../x"}]}, "the etag is not one"),
        ({"parts": [{"partNumber": 1, "etag": part1["etag"] + "\n"}]}, "the etag is not one"),
        ({"parts": [part1, {"partNumber": 2, "etag": part1["etag"].replace(".1.part", ".2.part")}]}, "part 2 was not"),
    ):
        refused(httpx.post(complete, json=body), 400, "bad_request", why)
    # Bodies that are not fal's shape at all are FastAPI's 422 field errors, as on every JSON route.
    for body in ({}, {"parts": []}, {"parts": [{"partNumber": 0, "etag": "x"}]}, {"parts": [{"etag": "x"}]}):
        response = httpx.post(complete, json=body)
        assert response.status_code == 422 and isinstance(response.json()["detail"], list), body
    assert httpx.post(complete, content=b"not json", headers={"content-type": "application/json"}).status_code == 422
    refused(httpx.put(part_url(url, 0), content=b"x"), 400, "bad_request", "part numbers run from 1 to 10000")
    refused(httpx.put(part_url(url, 10001), content=b"x"), 400, "bad_request", "part numbers run from 1 to 10000")
    # The parts are still there: the upload completes.
    assert httpx.post(complete, json={"parts": [part1]}).status_code == 200
    assert httpx.get(multi["file_url"]).content == b"\4" * 100


def test_parts_of_expired_uploads_are_forgotten() -> None:
    pending = PendingUploads()
    now = time.time()
    old = UploadTicket.new("image/png", "a.png", multipart=True, now=now - 2 * UPLOAD_URL_SECONDS)
    fresh = UploadTicket.new("image/png", "b.png", multipart=True, now=now)
    assert pending.add(old, 1, "uploadparts/a/1", 10) == (None, 10)
    assert pending.add(old, 1, "uploadparts/a/1b", 12) == ("uploadparts/a/1", 12)  # a retried part
    assert pending.add(old, 2, "uploadparts/a/2", 5) == (None, 17)
    pending.add(fresh, 1, "uploadparts/b/1", 3)
    assert sorted(pending.expired(now)) == ["uploadparts/a/1b", "uploadparts/a/2"]
    assert len(pending) == 1 and pending.forget(fresh.upload_id) == ["uploadparts/b/1"] and len(pending) == 0


def test_the_retention_sweep_deletes_old_uploads_and_abandoned_parts(tmp_path: Path, lite_checkpoint: Path) -> None:
    """Across restarts too: the sweep works from storage alone, not from a node's memory."""
    from bgone.service.storage import LocalStorage
    from bgone.service.worker import InferenceWorker

    settings = settings_for(tmp_path / "data", lite_checkpoint, retention_seconds=3600)
    app = create_app(settings)
    storage = app.state.service.storage
    assert isinstance(storage, LocalStorage)
    with live_server(app) as base, httpx.Client(base_url=base, timeout=60) as http:
        old_file = initiate(http, content_type="image/png", file_name="old.png")
        new_file = initiate(http, content_type="image/png", file_name="new.png")
        abandoned = initiate(http, multipart=True, content_type="image/png", file_name="big.png")
        for upload in (old_file, new_file):
            assert httpx.put(upload["upload_url"], content=b"png bytes").status_code == 200
        part = httpx.put(part_url(abandoned["upload_url"], 1), content=b"part").json()["etag"]
    now = time.time()
    keys = {name: urlsplit(u["file_url"]).path.removeprefix("/files/") for name, u in
            (("old", old_file), ("new", new_file))}  # fmt: skip
    backdate = {keys["old"]: now - 2 * 3600, part: now - UPLOAD_URL_SECONDS - 600}
    for key, when in backdate.items():
        path = storage.path(key)
        assert path is not None
        os.utime(path, (when, when))
    worker = InferenceWorker(settings, app.state.service.store, storage)
    assert worker.sweep_uploads(now) == 2
    assert not storage.exists(keys["old"]) and not storage.exists(part) and storage.exists(keys["new"])
    assert worker.sweep_uploads(now) == 0


def test_metrics_count_a_proxied_request_once_as_the_route_that_answered(http: httpx.Client) -> None:
    def counts() -> dict[tuple[str, str], float]:
        text = http.get("/metrics", headers={"authorization": f"Key {KEY}"}).text
        found: dict[tuple[str, str], float] = {}
        for line in text.splitlines():
            if line.startswith("bgone_http_request_seconds_count{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                key = (labels["route"], labels["status"])
                found[key] = found.get(key, 0) + float(line.rsplit(" ", 1)[1])
        return found

    before = counts()
    assert proxied(http, "POST", f"https://fal.run{V2}", json={"image_url": png_data_uri(20, 10)}).status_code == 200
    assert proxied(http, "POST", "https://evil.example/x", json={}).status_code == 400
    after = counts()
    grown = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
    assert grown.get((V2, "200")) == 1 and grown.get((PROXY, "400")) == 1
    assert (PROXY, "200") not in grown


def test_under_a_path_prefix_the_proxy_and_its_urls_keep_the_prefix(tmp_path: Path, lite_checkpoint: Path) -> None:
    """Behind a reverse proxy at ``/bg`` (``root_path``): routes dispatched under the prefix, URLs naming it."""
    from fastapi.testclient import TestClient

    app = create_app(settings_for(tmp_path / "data", lite_checkpoint))
    with TestClient(app, root_path="/bg") as client:
        run = client.post(
            f"/bg{PROXY}", headers={"x-fal-target-url": f"https://fal.run{V2}"}, json={"image_url": png_data_uri(20, 10)}
        )
        assert run.status_code == 200, run.text
        assert run.json()["image"]["url"].startswith("http://testserver/bg/files/outputs/")
        upload = client.post(
            f"/bg{PROXY}",
            headers={"x-fal-target-url": "https://rest.fal.ai/storage/upload/initiate"},
            json={"content_type": "image/png", "file_name": "a.png"},
        ).json()
        assert upload["upload_url"].startswith("http://testserver/bg/storage/upload/")
        put = client.put(upload["upload_url"].removeprefix("http://testserver"), content=png_bytes(20, 10))
        assert put.status_code == 200 and put.json() == {"file_url": upload["file_url"]}
        assert client.get(upload["file_url"].removeprefix("http://testserver")).content == png_bytes(20, 10)
