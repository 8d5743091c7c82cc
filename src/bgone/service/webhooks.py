"""Webhook delivery: POST the fal payload on completion, retried with back-off, recorded in the store.

A failing webhook never loses the result: the result stays in the store whatever happens here, and
undelivered webhooks are retried after a restart.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bgone.errors import FileDownloadError
from bgone.imaging.fetch import check_destination  # the same address policy as image downloads

logger = logging.getLogger("bgone.webhooks")


def webhook_payload(request_id: str, status_code: int, body: Any) -> dict[str, Any]:
    ok = 200 <= status_code < 300
    return {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK" if ok else "ERROR",
        "payload": body,
        "error": None if ok else f"Invalid status code: {status_code}",
    }


class WebhookSender:
    def __init__(
        self,
        store: Any,
        *,
        attempts: int = 10,
        backoff: float = 1.0,
        timeout: float = 15.0,
        allow_private: bool = False,
        allowed_hosts: list[str] | None = None,
    ) -> None:
        self.store = store
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.allow_private = allow_private
        self.allowed_hosts = {h.lower() for h in allowed_hosts or []}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bgone-webhook")
        self._stopping = threading.Event()

    @classmethod
    def from_settings(cls, store: Any, settings: Any) -> WebhookSender:
        """The sender a server's settings describe (attempts, back-off, timeout, address policy)."""
        return cls(
            store,
            attempts=settings.webhook_attempts,
            backoff=settings.webhook_backoff,
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

    def send(self, request_id: str, url: str, status_code: int, body: Any) -> None:
        self._pool.submit(self._deliver, request_id, url, webhook_payload(request_id, status_code, body))

    def _deliver(self, request_id: str, url: str, payload: dict[str, Any]) -> None:
        for attempt in range(self.attempts):
            if self._stopping.is_set():
                return
            error = self.check_url(url)
            if error is None:
                try:
                    response = httpx.post(url, json=payload, timeout=self.timeout, follow_redirects=False)
                    if 200 <= response.status_code < 300:
                        self.store.record_webhook(request_id, delivered=True)
                        return
                    error = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
            self.store.record_webhook(request_id, delivered=False, error=error)
            logger.warning("webhook for %s failed (attempt %d/%d): %s", request_id, attempt + 1, self.attempts, error)
            if self._stopping.wait(min(self.backoff * 2**attempt, 300.0)):
                return

    def resume_pending(self) -> None:
        for job in self.store.pending_webhooks():
            if job.webhook_attempts < self.attempts:
                self.send(job.request_id, job.webhook_url, job.result_status or 500, job.result_body)

    def close(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
