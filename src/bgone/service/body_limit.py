"""A request-body size limit enforced while the body streams in, before anything buffers it.

FastAPI reads a JSON body whole before validating it, so without this a client could make the server
hold any amount of memory with one request. A declared ``content-length`` over the limit is refused at
once (the HTTP server holds the client to what it declared). A body without one (chunked) is read here,
up to the limit, and refused as soon as it passes it; otherwise it is handed on unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bgone.errors import RequestTooLargeError, error_body

Scope = dict[str, Any]
Message = dict[str, Any]


class BodySizeLimit:
    """ASGI middleware: :class:`RequestTooLargeError` (413) over ``limit`` bytes, answered here because
    it happens before any route (and its exception handler) runs."""

    def __init__(
        self, app: Any, limit: int, *, own_limits: tuple[str, ...] = (), own_limit_paths: re.Pattern[str] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        # Paths that read their bodies under limits of their own (uploads): exact, or matching the pattern.
        self.own_limits = own_limits
        self.own_limit_paths = own_limit_paths

    def _own_limit(self, path: str) -> bool:
        return path in self.own_limits or bool(self.own_limit_paths and self.own_limit_paths.fullmatch(path))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self._own_limit(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, f"request body of {int(declared)} bytes is over the {self.limit}-byte limit")
            return
        if declared or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: let the app see it
            received += len(message.get("body", b""))
            if received > self.limit:
                await self._refuse(send, f"request body is over the {self.limit}-byte limit")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Any, detail: str) -> None:
        error = RequestTooLargeError(detail)
        body = json.dumps(error_body(error)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.http_status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-fal-error-type", error.error_type.encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
