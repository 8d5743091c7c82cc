"""Who may call the service: API keys (``Authorization: Key KEY`` or ``Bearer KEY``, compared in constant
time) and the short-lived upload tokens of fal's CDN flow (``POST /storage/auth/token``). With
``--open`` every request is let through."""

from __future__ import annotations

import hmac
import secrets
import threading
import time

from fastapi import Request

from bgone.errors import UnauthorizedError

TOKEN_SECONDS = 3600


class UploadTokens:
    """Bearer tokens handed to upload clients, valid for ``TOKEN_SECONDS`` (kept in memory: a restart or
    another API node asks the client for a new one, which fal's clients do)."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> tuple[str, float]:
        """A new token and its expiry (epoch seconds); expired tokens are forgotten on the way."""
        token, now = secrets.token_urlsafe(24), time.time()
        with self._lock:
            self._expiry = {t: e for t, e in self._expiry.items() if e > now}
            self._expiry[token] = now + TOKEN_SECONDS
        return token, now + TOKEN_SECONDS

    def valid(self, token: str) -> bool:
        with self._lock:
            return self._expiry.get(token, 0.0) > time.time()


def api_key_of(request: Request) -> str | None:
    """The configured API key this request carries, if any (not an upload token)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() not in ("key", "bearer") or not token:
        return None
    keys = request.app.state.service.settings.api_keys
    return next((key for key in keys if hmac.compare_digest(token, key)), None)


def require_key(request: Request) -> None:
    """A route dependency: UnauthorizedError (401) unless the request carries an accepted key or token."""
    service = request.app.state.service
    if service.settings.open_access:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if scheme == "bearer" and service.upload_tokens.valid(token):
        return
    if scheme in ("key", "bearer") and any(hmac.compare_digest(token, key) for key in service.settings.api_keys):
        return
    raise UnauthorizedError("Missing or invalid API key: send `Authorization: Key <key>`.")
