"""Webhook delivery: POST the fal payload on completion, signed as fal signs its webhooks, retried with
back-off, recorded in the store.

Each POST carries ``X-Fal-Webhook-Request-Id``, ``-User-Id``, ``-Timestamp`` (Unix seconds, fresh for
each try) and ``-Signature``: the hex Ed25519 signature of :func:`~bgone.service.signing.webhook_message`
by the server's current key, whose public half is at ``/.well-known/jwks.json``. The bytes signed are
the bytes sent.

A failing webhook never loses the result: the result stays in the store whatever happens here, and
undelivered webhooks are retried after a restart, from the try they had reached.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bgone.errors import FileDownloadError
from bgone.imaging.fetch import check_destination  # the same address policy as image downloads
from bgone.service.jobs import Job
from bgone.service.signing import SigningKeys, user_id_for_key, webhook_message

logger = logging.getLogger("bgone.webhooks")

ANONYMOUS_USER = "anonymous"  # the user id of requests sent without a key to an --open server


def webhook_payload(request_id: str, status_code: int, body: Any) -> dict[str, Any]:
    ok = 200 <= status_code < 300
    return {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK" if ok else "ERROR",
        "payload": body,
        "error": None if ok else f"Invalid status code: {status_code}",
    }


def user_id_of(api_key: str | None, configured: str | None) -> str:
    """The ``X-Fal-Webhook-User-Id`` of a request: the configured id, else one stable id per API key."""
    if configured:
        return configured
    return user_id_for_key(api_key) if api_key else ANONYMOUS_USER


def signed_headers(signing: SigningKeys, request_id: str, user_id: str, body: bytes) -> dict[str, str]:
    """The headers that let a receiver verify ``body`` with nothing but the JWKS document."""
    timestamp = str(int(time.time()))
    return {
        "content-type": "application/json",
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": user_id,
        "x-fal-webhook-timestamp": timestamp,
        "x-fal-webhook-signature": signing.sign(webhook_message(request_id, user_id, timestamp, body)),
    }


class WebhookSender:
    def __init__(
        self,
        store: Any,
        signing: SigningKeys,
        *,
        attempts: int = 10,
        backoff: float = 15.0,
        max_backoff: float = 3600.0,
        timeout: float = 15.0,
        allow_private: bool = False,
        allowed_hosts: list[str] | None = None,
    ) -> None:
        self.store = store
        self.signing = signing
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.allow_private = allow_private
        self.allowed_hosts = {h.lower() for h in allowed_hosts or []}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bgone-webhook")
        self._stopping = threading.Event()

    @classmethod
    def from_settings(cls, store: Any, settings: Any, signing: SigningKeys | None = None) -> WebhookSender:
        """The sender a server's settings describe (keys, retries, timeout, address policy)."""
        return cls(
            store,
            signing or SigningKeys.from_settings(settings),
            attempts=settings.webhook_attempts,
            backoff=settings.webhook_backoff,
            max_backoff=settings.webhook_max_backoff,
            timeout=settings.webhook_timeout,
            allow_private=settings.allow_private_urls,
            allowed_hosts=settings.allowed_hosts,
        )

    def check_url(self, url: str) -> str | None:
        """Why ``url`` may not receive webhooks, or None when it may."""
        try:
            check_destination(url, allow_private=self.allow_private, allowed_hosts=self.allowed_hosts)
        except FileDownloadError as exc:
            return str(exc).replace("refusing to fetch", "refusing to send webhooks to", 1)
        return None

    def delay(self, tries_made: int) -> float:
        """Seconds to wait after ``tries_made`` failed tries: ``backoff`` doubling, at most ``max_backoff``."""
        return min(self.backoff * 2 ** max(tries_made - 1, 0), self.max_backoff)

    def send(self, job: Job, *, default_status: int = 500) -> None:
        """Deliver ``job``'s webhook in the background, from the try its record has reached."""
        if not job.webhook_url:
            return
        payload = webhook_payload(job.request_id, job.result_status or default_status, job.result_body)
        user_id = job.user_id or ANONYMOUS_USER
        self._pool.submit(self._deliver, job.request_id, user_id, job.webhook_url, payload, job.webhook_attempts)

    def _deliver(self, request_id: str, user_id: str, url: str, payload: dict[str, Any], tries_made: int) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        for attempt in range(tries_made, self.attempts):
            if self._stopping.is_set():
                return
            error = self.check_url(url)
            if error is None:
                try:
                    headers = signed_headers(self.signing, request_id, user_id, body)
                    response = httpx.post(
                        url, content=body, headers=headers, timeout=self.timeout, follow_redirects=False
                    )
                    if 200 <= response.status_code < 300:
                        self.store.record_webhook(request_id, delivered=True)
                        return
                    error = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
            self.store.record_webhook(request_id, delivered=False, error=error)
            logger.warning("webhook for %s failed (try %d of %d): %s", request_id, attempt + 1, self.attempts, error)
            if attempt + 1 < self.attempts and self._stopping.wait(self.delay(attempt + 1)):
                return

    def resume_pending(self) -> None:
        """After a restart: continue every undelivered webhook from the try it had reached."""
        for job in self.store.pending_webhooks(max_attempts=self.attempts):
            self.send(job)

    def close(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
