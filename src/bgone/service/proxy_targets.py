"""Which fal URLs the server proxy answers, and with which of this service's routes.

A fal client configured with ``proxyUrl`` sends every call to ``/api/fal/proxy`` and names the URL it
meant in ``x-fal-target-url``. :func:`resolve_target` turns that URL and the request's method into the
bgone route that answers it (a :class:`ProxyTarget`), or raises :class:`~bgone.errors.ProxyTargetError`.
It is a pure function: no I/O, no name resolution, and nothing it returns is ever fetched; the proxy
dispatches the route inside this process.

Accepted, and nothing else:

- ``https`` only, on fal's hosts: ``fal.run`` (synchronous runs), ``queue.fal.run`` (the queue), any other
  single-label ``*.fal.run`` host (recognised as fal's, but it serves nothing here), ``rest.fal.ai`` and
  ``rest.alpha.fal.ai`` (storage); no user info, no port, no fragment, no percent-encoding in the path, no
  empty or dot segments (one trailing ``/`` is dropped: the client adds it to an endpoint given as a URL);
- on those hosts, only the endpoints this service serves, each mapped to the route that answers it:

  - ``POST https://fal.run/fal-ai/birefnet[/v2[/video]][/stream]`` → ``POST /fal-ai/birefnet[/v2[/video]][/stream]``
    (``run``, and ``stream``: the client posts to the endpoint's ``/stream``);
  - ``POST https://queue.fal.run/fal-ai/birefnet[/v2[/video]]`` → ``POST /queue/fal-ai/birefnet[/v2[/video]]``;
  - ``GET https://queue.fal.run/fal-ai/birefnet/requests/{id}/status``, ``…/status/stream`` and
    ``…/requests/{id}``, and ``PUT …/requests/{id}/cancel`` → the same under ``/queue``;
  - ``POST https://rest.fal.ai/storage/upload/initiate`` and ``…/initiate-multipart`` (also on
    ``rest.alpha.fal.ai``) → ``POST /storage/upload/initiate[-multipart]``.

The query string is handed on as sent (``?fal_webhook=``, ``?logs=1``, ``?storage_type=``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from bgone.errors import ProxyTargetError
from bgone.service.protocols.fal import FalV1Adapter, FalV2Adapter, FalV2VideoAdapter

__all__ = ["FAL_ENDPOINTS", "MAX_TARGET_LENGTH", "ProxyTarget", "resolve_target"]

FAL_ENDPOINTS: tuple[str, ...] = tuple(a.endpoint for a in (FalV1Adapter, FalV2Adapter, FalV2VideoAdapter))
QUEUE_APP = FalV1Adapter.app_id  # status, result and cancel live under the app root: fal-ai/birefnet
RUN_HOST = "fal.run"
QUEUE_HOST = "queue.fal.run"
REST_HOSTS = ("rest.fal.ai", "rest.alpha.fal.ai")
UPLOAD_ACTIONS = ("initiate", "initiate-multipart")
MAX_TARGET_LENGTH = 4096

_FAL_RUN_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)?fal\.run$")
_URL_CHARS = re.compile(r"^[!-~]+$")  # printable ASCII, no spaces or control characters
_PATH = re.compile(r"^(?:/[A-Za-z0-9._~-]+)+$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SERVED = f"this server answers fal's {', '.join(FAL_ENDPOINTS)} (run, stream and queue) and the storage upload flow"


@dataclass(frozen=True)
class ProxyTarget:
    """The route of this service that answers a proxied request: method, path and the query as sent."""

    method: str
    path: str
    query: str = ""


def _refuse(why: str) -> ProxyTargetError:
    return ProxyTargetError(f"x-fal-target-url refused: {why}")


def resolve_target(url: str | None, method: str) -> ProxyTarget:
    """The route answering ``method`` on ``url`` (the ``x-fal-target-url`` header), or ProxyTargetError
    (400) naming why the target is refused."""
    if not url:
        raise ProxyTargetError("the x-fal-target-url header is required: the fal URL this request is meant for")
    if len(url) > MAX_TARGET_LENGTH:
        raise _refuse(f"longer than {MAX_TARGET_LENGTH} characters")
    if not _URL_CHARS.fullmatch(url) or "\\" in url:
        raise _refuse("not a URL (spaces, control characters, backslashes or non-ASCII characters)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse("not a valid URL") from None
    if parts.scheme.lower() != "https":
        raise _refuse("only https URLs on fal's hosts are accepted")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise _refuse("URLs with user info are not accepted")
    if port is not None or parts.netloc.endswith(":"):
        raise _refuse("URLs with a port are not accepted")
    if parts.fragment or url.endswith("#"):
        raise _refuse("URLs with a fragment are not accepted")
    host = parts.netloc.lower()
    if not (_FAL_RUN_HOST.fullmatch(host) or host in REST_HOSTS):
        raise _refuse(f"{host or 'an empty host'} is not one of fal's hosts (fal.run, *.fal.run, rest.fal.ai)")
    path = parts.path
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    if not _PATH.fullmatch(path) or any(segment in (".", "..") for segment in path.split("/")):
        raise _refuse(f"{path or '/'} is not a path this server answers; {_SERVED}")
    query = parts.query
    method = method.upper()
    segments = path.strip("/").split("/")
    target = None
    if host == RUN_HOST:
        target = _run(method, segments, query)
    elif host == QUEUE_HOST:
        target = _queue(method, segments, query)
    elif host in REST_HOSTS:
        target = _storage(method, segments, query)
    if target is None:
        raise _refuse(f"{method} https://{host}{path} is not served here; {_SERVED}")
    return target


def _run(method: str, segments: list[str], query: str) -> ProxyTarget | None:
    stream = segments[-1] == "stream"
    endpoint = "/".join(segments[:-1] if stream else segments)
    if method == "POST" and endpoint in FAL_ENDPOINTS:
        return ProxyTarget("POST", f"/{endpoint}/stream" if stream else f"/{endpoint}", query)
    return None


def _queue(method: str, segments: list[str], query: str) -> ProxyTarget | None:
    endpoint = "/".join(segments)
    if endpoint in FAL_ENDPOINTS:
        return ProxyTarget("POST", f"/queue/{endpoint}", query) if method == "POST" else None
    app = "/".join(segments[:2])
    if app != QUEUE_APP or len(segments) < 4 or segments[2] != "requests" or not _REQUEST_ID.fullmatch(segments[3]):
        return None
    rest = segments[4:]
    allowed = {(): "GET", ("status",): "GET", ("status", "stream"): "GET", ("cancel",): "PUT"}
    if allowed.get(tuple(rest)) != method:
        return None
    return ProxyTarget(method, "/queue/" + "/".join(segments), query)


def _storage(method: str, segments: list[str], query: str) -> ProxyTarget | None:
    action = segments[2] if len(segments) == 3 and segments[:2] == ["storage", "upload"] else None
    if method == "POST" and action in UPLOAD_ACTIONS:
        return ProxyTarget("POST", "/" + "/".join(segments), query)
    return None
