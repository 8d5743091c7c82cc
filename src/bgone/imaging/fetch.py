"""Download a URL safely: http(s) only, public addresses only, bounded size, bounded time. Images come back
as bytes (:func:`fetch_url`); videos are streamed to a file (:func:`fetch_to_file`), never held in memory.

The service fetches URLs that its callers choose, so every hop (the first URL and each redirect target) is
resolved and checked against loopback/private/link-local/... ranges before anything is sent to it (SSRF).
The connection is pinned to the address that was checked (the request goes to the IP, with the original
``Host`` header and TLS server name), so a DNS answer that changes between the check and the connection
(DNS rebinding) cannot redirect it. An HTTP proxy configured in the environment (``HTTP(S)_PROXY``) still
resolves names itself; deployments that rely on one should make the proxy enforce the same policy.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

import httpx

from bgone.errors import FileDownloadError, StorageError
from bgone.settings import DEFAULT_LIMITS

__all__ = ["check_destination", "fetch_to_file", "fetch_url", "is_public_address"]
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "bgone (+https://github.com/ZhengPeng7/BiRefNet)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")
_IMAGE_ACCEPT = "image/*,*/*;q=0.8"
_VIDEO_ACCEPT = "video/*,*/*;q=0.8"

# NAT64 (RFC 6052) embeds an IPv4 address in the low 32 bits; the embedded one is what gets reached.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _address_problem(ip: str | IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address ("a loopback address", ...), or None if it is."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0] if isinstance(ip, str) else ip)
    except ValueError:
        return "not an IP address"
    if isinstance(addr, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one reaches that IPv4 host: judge the embedded address.
        embedded = addr.ipv4_mapped or addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
        if embedded is None and addr in _NAT64:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None:
            return _address_problem(embedded)
    checks = (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    )
    for attribute, description in checks:
        if getattr(addr, attribute):
            return description
    if not addr.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT), which is neither private nor global
        return "not a globally routable address"
    return None


def is_public_address(ip: str | IPAddress) -> bool:
    """True for a globally routable unicast address (IPv4-mapped, 6to4, Teredo and NAT64 IPv6 judged by
    the IPv4 address inside); False for loopback, private, link-local, multicast, reserved, unspecified,
    shared (CGNAT) addresses and for strings that are not IP addresses."""
    return _address_problem(ip) is None


def _display(url: httpx.URL | str) -> str:
    """The URL for messages: no credentials, not absurdly long."""
    try:
        text = str(httpx.URL(str(url)).copy_with(username=None, password=None))
    except Exception:
        text = str(url)
    return text if len(text) <= 200 else text[:197] + "..."


def _resolve(host: str, port: int, url: httpx.URL) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise FileDownloadError(f"cannot resolve host {host!r} of {_display(url)}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise FileDownloadError(f"cannot resolve host {host!r} of {_display(url)}: no addresses")
    return addresses


def _check_target(url: httpx.URL, *, allow_private: bool, allowed_hosts: frozenset[str]) -> str | None:
    """Validate one hop; return the IP to connect to (pinned), or None to connect by name."""
    if url.scheme not in ("http", "https"):
        scheme = url.scheme or "(none)"
        raise FileDownloadError(f"refusing to fetch {_display(url)}: scheme {scheme!r} is not http or https")
    host = url.host
    if not host:
        raise FileDownloadError(f"refusing to fetch {_display(url)}: no host in the URL")
    if allow_private or host.lower().rstrip(".") in allowed_hosts:
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = _resolve(host, port, url)
    # Every address must pass: the client could otherwise be steered to whichever one is private.
    for address in addresses:
        problem = _address_problem(address)
        if problem is not None:
            shown = host if address == host else f"{host} ({address})"
            raise FileDownloadError(
                f"refusing to fetch {_display(url)}: {shown} is {problem} (set allow_private to allow)"
            )
    return addresses[0]


def check_destination(url: str, *, allow_private: bool = False, allowed_hosts: Collection[str] = ()) -> None:
    """Raise :class:`FileDownloadError` if ``url`` may not be contacted under the address policy
    (used for webhook targets, which are POSTed to rather than fetched)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FileDownloadError(f"invalid URL {url!r}: {exc}") from None
    hosts = frozenset(h.lower().rstrip(".") for h in allowed_hosts)
    _check_target(parsed, allow_private=allow_private, allowed_hosts=hosts)


def _build_request(
    client: httpx.Client, url: httpx.URL, ip: str | None, timeout: float, accept: str = _IMAGE_ACCEPT
) -> httpx.Request:
    headers = {"User-Agent": _USER_AGENT, "Accept": accept}
    extensions: dict[str, object] = {}
    target = url
    if ip is not None:
        # Connect to the checked address; keep the name for the Host header, SNI and certificate checks.
        target = url.copy_with(host=ip)
        headers["Host"] = url.netloc.decode("ascii")
        if url.scheme == "https":
            extensions["sni_hostname"] = url.host
    return client.build_request("GET", target, headers=headers, timeout=timeout, extensions=extensions)


def fetch_url(
    url: str,
    *,
    max_bytes: int = DEFAULT_LIMITS.max_bytes,
    timeout: float = 20.0,
    max_redirects: int = 5,
    allow_private: bool = False,
    allowed_hosts: Collection[str] = (),
) -> bytes:
    """GET ``url`` and return the body.

    * Only ``http``/``https``, for the URL and every redirect target.
    * Every hop's host is resolved and must be public (see :func:`is_public_address`) unless
      ``allow_private`` is set or the hop's host name is in ``allowed_hosts`` (exact, case-insensitive;
      the allowance applies to that host only, not to where it redirects).
    * Redirects are followed here, not by httpx, so that each target is checked; more than
      ``max_redirects`` of them is an error.
    * ``timeout`` is the deadline for the whole download, redirects included. Each network operation
      gets the time left at the start of its request and the deadline is checked after every chunk, so
      a response that trickles forever stops shortly after the deadline.
    * A ``Content-Length`` over ``max_bytes`` fails before the body is read; otherwise the body is
      streamed and the download stops as soon as it exceeds ``max_bytes`` (decoded bytes).

    Every failure is a :class:`~bgone.errors.FileDownloadError` with a one-line message.
    """

    def read(response: httpx.Response, deadline: float, shown: str) -> bytes:
        return _read_body(response, max_bytes=max_bytes, deadline=deadline, timeout=timeout, shown=shown)

    return _fetch(
        url,
        read,
        timeout=timeout,
        max_redirects=max_redirects,
        allow_private=allow_private,
        allowed_hosts=allowed_hosts,
        accept=_IMAGE_ACCEPT,
    )


def fetch_to_file(
    url: str,
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    timeout: float = 300.0,
    max_redirects: int = 5,
    allow_private: bool = False,
    allowed_hosts: Collection[str] = (),
) -> Path:
    """GET ``url`` into the file ``path`` (a video: too large to hold in memory) and return the path.

    The same rules as :func:`fetch_url` (schemes, address checks on every hop, redirects, one deadline for
    the whole download, ``Content-Length`` checked first, the body stopped as soon as it passes
    ``max_bytes``), but the body is written chunk by chunk. It goes to a ``.part`` file beside ``path``
    that replaces ``path`` only when the download is complete: a failed, interrupted or oversized download
    leaves no file behind (and leaves an existing ``path`` as it was). ``timeout`` defaults to 5 minutes.

    Download failures are :class:`~bgone.errors.FileDownloadError`; a file that cannot be written here (disk
    full, no such folder) is a :class:`~bgone.errors.StorageError`.
    """
    target = Path(path)
    partial = target.with_name(target.name + ".part")

    def read(response: httpx.Response, deadline: float, shown: str) -> Path:
        try:
            with partial.open("wb") as sink:
                _read_body(
                    response, max_bytes=max_bytes, deadline=deadline, timeout=timeout, shown=shown, sink=sink.write
                )
            os.replace(partial, target)
        except OSError as exc:  # the disk, not the download: a server-side failure that a retry can fix
            raise StorageError(f"cannot save {shown} to {target}: {exc.strerror or exc}") from None
        return target

    try:
        return _fetch(
            url,
            read,
            timeout=timeout,
            max_redirects=max_redirects,
            allow_private=allow_private,
            allowed_hosts=allowed_hosts,
            accept=_VIDEO_ACCEPT,
        )
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


def _fetch(
    url: str,
    read: Callable[[httpx.Response, float, str], T],
    *,
    timeout: float,
    max_redirects: int,
    allow_private: bool,
    allowed_hosts: Collection[str],
    accept: str,
) -> T:
    """Follow ``url`` through checked redirects to a 2xx response and return ``read(response, deadline,
    shown)``, the deadline being the monotonic time the whole download must end by."""
    deadline = time.monotonic() + timeout
    allowed = frozenset(h.lower().rstrip(".") for h in allowed_hosts)
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FileDownloadError(f"invalid URL {url!r}: {exc}") from None
    shown = _display(url)

    redirects = 0
    with httpx.Client(follow_redirects=False) as client:
        while True:
            ip = _check_target(current, allow_private=allow_private, allowed_hosts=allowed)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FileDownloadError(f"timed out after {timeout:g} s fetching {shown}")
            request = _build_request(client, current, ip, remaining, accept)
            try:
                response = client.send(request, stream=True)
                try:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        redirects += 1
                        if redirects > max_redirects:
                            raise FileDownloadError(f"too many redirects (more than {max_redirects}) fetching {shown}")
                        try:
                            current = current.join(response.headers["location"])
                        except (httpx.InvalidURL, ValueError) as exc:
                            raise FileDownloadError(f"invalid redirect from {_display(current)}: {exc}") from None
                        continue
                    if not 200 <= response.status_code < 300:
                        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
                        raise FileDownloadError(f"HTTP {response.status_code}{reason} fetching {_display(current)}")
                    return read(response, deadline, shown)
                finally:
                    response.close()
            except httpx.TimeoutException:
                raise FileDownloadError(f"timed out after {timeout:g} s fetching {shown}") from None
            except httpx.TooManyRedirects:  # pragma: no cover - redirects are followed by hand
                raise FileDownloadError(f"too many redirects fetching {shown}") from None
            except httpx.HTTPError as exc:
                detail = str(exc) or type(exc).__name__
                raise FileDownloadError(f"could not fetch {_display(current)}: {detail}") from None


def _read_body(
    response: httpx.Response,
    *,
    max_bytes: int,
    deadline: float,
    timeout: float,
    shown: str,
    sink: Callable[[bytes], object] | None = None,
) -> bytes:
    """The body (``sink=None``), or b"" after handing every chunk to ``sink``; the limits checked as it
    streams."""
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise FileDownloadError(f"{shown} is {int(length):,} bytes, over the limit of {max_bytes:,} bytes")
    body = bytearray()
    received = 0
    # No chunk_size: httpx would otherwise buffer until it has that many bytes, hiding a slow trickle.
    for chunk in response.iter_bytes():
        received += len(chunk)
        if received > max_bytes:
            raise FileDownloadError(f"{shown} is over the limit of {max_bytes:,} bytes")
        if sink is None:
            body += chunk
        else:
            sink(chunk)
        if time.monotonic() > deadline:
            raise FileDownloadError(f"timed out after {timeout:g} s fetching {shown}")
    return bytes(body)
