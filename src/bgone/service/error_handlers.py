"""The one place errors become HTTP responses.

* :class:`~bgone.errors.BgoneError`: its own ``http_status`` and ``{"detail", "error_type"}`` (plus the
  ``x-fal-error-type`` header), whatever the route.
* FastAPI's validation errors: 422 ``{"detail": [...]}`` as FastAPI shapes them, but never echoing input
  that cannot be shown (bytes that are not UTF-8, whole data URIs).
* The job store's transient errors (Redis restarting): 503 ``queue_unavailable`` with ``retry-after``;
  nothing was accepted.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bgone.errors import BgoneError, QueueUnavailableError, error_body

logger = logging.getLogger("bgone.api")


def error_response(exc: BgoneError) -> JSONResponse:
    headers = {"x-fal-error-type": exc.error_type}
    if isinstance(exc, QueueUnavailableError):
        headers["retry-after"] = "1"
    return JSONResponse(error_body(exc), status_code=exc.http_status, headers=headers)


def install_error_handlers(app: FastAPI, transient_errors: tuple[type[Exception], ...] = ()) -> None:
    @app.exception_handler(BgoneError)
    async def bgone_error(request: Request, exc: BgoneError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each error's ``input``, which fails on bodies that are not UTF-8
        # (a 500 for a client's mistake); this one echoes what can be shown and drops the rest.
        return JSONResponse({"detail": [printable_error(error) for error in exc.errors()]}, status_code=422)

    async def queue_unavailable(request: Request, exc: Exception) -> JSONResponse:
        logger.error("queue unavailable: %s", exc)
        return error_response(QueueUnavailableError("The request queue is unavailable; retry shortly."))

    for exc_type in transient_errors:
        app.add_exception_handler(exc_type, queue_unavailable)


def printable_error(error: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in error.items() if k not in ("input", "ctx", "url")}
    value = error.get("input")
    if isinstance(value, bytes):
        value = value[:200].decode("utf-8", errors="replace")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)[:200]
    if isinstance(value, str) and len(value) > 200:
        value = value[:200] + "…"  # never echo a whole data URI back
    shown["input"] = value
    if "ctx" in error:
        shown["ctx"] = {
            k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in error["ctx"].items()
        }
    return shown
