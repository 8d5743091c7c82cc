"""fetch_url against a local HTTP server (127.0.0.1, so allow_private / allowed_hosts), and the SSRF policy."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bgone.errors import FileDownloadError
from bgone.imaging import fetch
from bgone.imaging.fetch import fetch_url, is_public_address

BODY = b"\x89PNG fake image body " * 10


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        path = self.path
        if path == "/img.png":
            self._send(200, BODY, {"Content-Type": "image/png"})
        elif path == "/host":
            self._send(200, self.headers.get("Host", "").encode())
        elif path == "/404":
            self._send(404, b"nope")
        elif path == "/loop":
            self._send(302, headers={"Location": "/loop"})
        elif path.startswith("/hops/"):  # /hops/3 -> /hops/2 -> ... -> /img.png
            left = int(path.rsplit("/", 1)[1])
            self._send(302, headers={"Location": f"/hops/{left - 1}" if left > 1 else "/img.png"})
        elif path == "/to-localhost":
            self._send(302, headers={"Location": f"http://localhost:{port}/img.png"})
        elif path == "/to-metadata":
            self._send(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/to-file":
            self._send(302, headers={"Location": "file:///etc/passwd"})
        elif path == "/big":
            self._send(200, b"x" * 5000)
        elif path == "/declared-huge":
            self._send(200, b"x" * 10, {"Content-Length": str(10**9)})
        elif path == "/big-unsized":
            # HTTP/1.0 without Content-Length: the body ends when the connection closes.
            self.send_response(200)
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"y" * 1000)
        elif path == "/slow":
            # Sends a byte every 50 ms forever: no single read ever times out.
            self.send_response(200)
            self.end_headers()
            deadline = time.monotonic() + 10
            try:
                while time.monotonic() < deadline:
                    self.wfile.write(b"z")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
        elif path == "/hang":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.flush()
            time.sleep(5)
        else:
            self._send(500, b"unexpected path")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_ok_with_allow_private(server: str) -> None:
    assert fetch_url(f"{server}/img.png", allow_private=True) == BODY


def test_fetch_ok_with_allowed_hosts(server: str) -> None:
    assert fetch_url(f"{server}/img.png", allowed_hosts=["127.0.0.1"]) == BODY


def test_default_refuses_loopback(server: str) -> None:
    with pytest.raises(FileDownloadError, match=r"127\.0\.0\.1 is a loopback address \(set allow_private to allow\)"):
        fetch_url(f"{server}/img.png")


def test_refuses_localhost_name() -> None:
    with pytest.raises(FileDownloadError, match="loopback"):
        fetch_url("http://localhost:9/x.png")


def test_http_error_status(server: str) -> None:
    with pytest.raises(FileDownloadError, match="HTTP 404"):
        fetch_url(f"{server}/404", allow_private=True)


def test_redirects_followed_within_limit(server: str) -> None:
    assert fetch_url(f"{server}/hops/3", allow_private=True, max_redirects=3) == BODY
    with pytest.raises(FileDownloadError, match=r"too many redirects \(more than 2\)"):
        fetch_url(f"{server}/hops/3", allow_private=True, max_redirects=2)


def test_redirect_loop(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(FileDownloadError, match="too many redirects"):
        fetch_url(f"{server}/loop", allow_private=True)
    assert time.monotonic() - started < 2


def test_redirect_to_private_refused_even_if_first_host_allowed(server: str) -> None:
    with pytest.raises(FileDownloadError, match=r"localhost.*is a loopback address"):
        fetch_url(f"{server}/to-localhost", allowed_hosts=["127.0.0.1"])
    with pytest.raises(FileDownloadError, match=r"169\.254\.169\.254 is a link-local address"):
        fetch_url(f"{server}/to-metadata", allowed_hosts=["127.0.0.1"])


def test_redirect_to_other_scheme_refused(server: str) -> None:
    with pytest.raises(FileDownloadError, match="scheme 'file' is not http or https"):
        fetch_url(f"{server}/to-file", allow_private=True)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "javascript:alert(1)"])
def test_non_http_schemes_refused(url: str) -> None:
    with pytest.raises(FileDownloadError, match="not http or https"):
        fetch_url(url, allow_private=True)


def test_invalid_url() -> None:
    with pytest.raises(FileDownloadError):
        fetch_url("http://", allow_private=True)


def test_oversize_with_content_length(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(FileDownloadError, match=r"1,000,000,000 bytes, over the limit of 1,000 bytes"):
        fetch_url(f"{server}/declared-huge", allow_private=True, max_bytes=1000)
    assert time.monotonic() - started < 2
    with pytest.raises(FileDownloadError, match="over the limit of 1,000 bytes"):
        fetch_url(f"{server}/big", allow_private=True, max_bytes=1000)
    assert len(fetch_url(f"{server}/big", allow_private=True, max_bytes=5000)) == 5000


def test_oversize_without_content_length(server: str) -> None:
    with pytest.raises(FileDownloadError, match="over the limit of 10,000 bytes"):
        fetch_url(f"{server}/big-unsized", allow_private=True, max_bytes=10_000)
    assert len(fetch_url(f"{server}/big-unsized", allow_private=True)) == 50_000


def test_slow_endless_response_hits_total_deadline(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(FileDownloadError, match=r"timed out after 0\.8 s"):
        fetch_url(f"{server}/slow", allow_private=True, timeout=0.8)
    assert time.monotonic() - started < 2.5


def test_stalled_response_times_out(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(FileDownloadError, match="timed out"):
        fetch_url(f"{server}/hang", allow_private=True, timeout=0.5)
    assert time.monotonic() - started < 2


def test_private_dns_answer_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(FileDownloadError, match=r"images\.example \(10\.1\.2\.3\) is a private address"):
        fetch_url("https://images.example/cat.png")


def test_any_private_answer_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:127.0.0.1", port, 0, 0)),
        ]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(FileDownloadError, match="loopback"):
        fetch_url("http://mixed.example/cat.png")


def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(*args: object, **kwargs: object) -> list:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(FileDownloadError, match=r"cannot resolve host 'nowhere\.example'"):
        fetch_url("http://nowhere.example/x.png")


def test_connection_is_pinned_to_the_checked_address(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend 127.0.0.1 were public, and that "cdn.example" resolves to it: the request must go to the
    # checked IP while carrying the original Host header.
    port = int(server.rsplit(":", 1)[1])
    real_problem = fetch._address_problem
    monkeypatch.setattr(fetch, "_address_problem", lambda ip: None if str(ip) == "127.0.0.1" else real_problem(ip))
    calls: list[str] = []

    def fake_getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list:
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake_getaddrinfo)
    assert fetch_url(f"http://cdn.example:{port}/host") == f"cdn.example:{port}".encode()
    # Resolved once by name, for the check; httpx then connected to the IP literal.
    assert calls[0] == "cdn.example"
    assert set(calls[1:]) <= {"127.0.0.1"}


@pytest.mark.parametrize(
    ("ip", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("127.9.9.9", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::a00:1", False),
        ("2002:a00:1::", False),
        ("not an ip", False),
    ],
)
def test_is_public_address(ip: str, public: bool) -> None:
    assert is_public_address(ip) is public
