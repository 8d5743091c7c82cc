"""URLs as the client sees them: the request's base (proxy headers honoured), the queue's prefix, a stored
file's URL and the way back from such a URL to its storage key. One place, used by every route and the worker."""

from __future__ import annotations

from urllib.parse import urlparse

from fastapi import Request

from bgone.service.storage import Storage

FILES_PREFIX = "/files/"


def base_url(request: Request) -> str:
    """Scheme, host and prefix as the client sees them (``X-Forwarded-Proto/-Host/-Prefix`` honoured)."""
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
    host = headers.get("x-forwarded-host", headers.get("host", request.url.netloc)).split(",")[0].strip()
    prefix = headers.get("x-forwarded-prefix", request.scope.get("root_path", "")).rstrip("/")
    return f"{scheme}://{host}{prefix}"


def queue_base(request: Request) -> str:
    """Everything before ``/fal-ai/`` in the submit URL: the queue's own prefix, kept in the URLs handed out."""
    path = request.url.path
    return base_url(request) + path[: path.index("/fal-ai/")] if "/fal-ai/" in path else base_url(request)


def file_url(base: str, key: str, storage: Storage | None = None) -> str:
    """Where a client fetches the stored file ``key``: the storage's own URL when it offers one (a presigned
    S3 URL, when ``storage`` is given), else this service's ``/files/{key}`` under ``base``."""
    direct = storage.url_for(key) if storage is not None else None
    return direct or f"{base}{FILES_PREFIX}{key}"


def own_file_key(url: str, base: str) -> str | None:
    """The storage key when ``url`` is this service's own ``/files/`` URL under ``base``; None otherwise
    (then it is fetched like any other URL)."""
    if not base or not url.startswith(("http://", "https://")):
        return None
    target, home = urlparse(url), urlparse(base)
    prefix = home.path.rstrip("/") + FILES_PREFIX
    if target.netloc != home.netloc or not target.path.startswith(prefix):
        return None
    return target.path[len(prefix) :]
