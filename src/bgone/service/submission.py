"""Putting a request on the queue and answering from it, the same way for every protocol's routes.

:func:`submit` takes a request the route validated and its protocol adapter; it reads fal's queue headers
(``X-Fal-Request-Timeout``, ``X-Fal-Queue-Priority``) and webhook, plans the work item (its batch key)
and queues it. :func:`wait_completed` follows a request until it is done; :func:`replay` answers with the
status and body its result stored; :func:`status_body` is the queue's status document.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from bgone.errors import BadRequestError
from bgone.service.auth import api_key_of
from bgone.service.context import Service
from bgone.service.jobs import Job, JobStatus, JobStore, Priority
from bgone.service.protocols import ProtocolAdapter
from bgone.service.urls import base_url
from bgone.service.webhooks import user_id_of


def _invalid(loc: list[str], message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error", "input": None}])


def submit(service: Service, request: Request, adapter: ProtocolAdapter, body: BaseModel, *, sync: bool) -> Job:
    """Queue ``body`` (validated by the route) for ``adapter``'s protocol; the job as queued."""
    item = adapter.plan(body)
    deadline = None
    if (timeout := request.headers.get("x-fal-request-timeout")) is not None:
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = float("nan")
        if not 0 < seconds < 10**9:  # also refuses nan and inf
            raise BadRequestError("X-Fal-Request-Timeout must be a positive number of seconds")
        deadline = time.time() + seconds
    try:
        priority = Priority.from_header(request.headers.get("x-fal-queue-priority"))
    except ValueError:
        raise _invalid(["header", "x-fal-queue-priority"], "must be normal or low") from None
    webhook = request.query_params.get("fal_webhook") if adapter.accepts_webhooks else None
    if webhook and (problem := service.webhooks.check_url(webhook)):
        raise _invalid(["query", "fal_webhook"], problem)
    job = service.store.submit(
        Job.new(
            endpoint=adapter.endpoint,
            app=adapter.app_id,
            payload={"input": body.model_dump(mode="json"), "base_url": base_url(request)},
            priority=priority,
            batch_key=item.batch_key,
            start_deadline=deadline,
            webhook_url=webhook,
            user_id=user_id_of(api_key_of(request), service.settings.webhook_user_id) if webhook else None,
            keep_history=not sync and adapter.keeps_history(body),
        )
    )
    service.notify()
    return job


async def wait_completed(store: JobStore, request_id: str, *, poll: float = 5.0) -> Job | None:
    """The job once COMPLETED (None if it disappears); blocks in a thread, never the event loop."""
    while True:
        current = store.get(request_id)
        if current is None or current.status == JobStatus.COMPLETED:
            return current
        await asyncio.to_thread(store.wait, request_id, timeout=poll, since=current.version)


def replay(job: Job) -> JSONResponse:
    """The stored result: its status code and body, errors included, as fal's result endpoint does."""
    headers = {"x-fal-request-id": job.request_id}
    if job.error_type:
        headers["x-fal-error-type"] = job.error_type
    if job.result_status == 504 and job.error_type == "request_timeout":
        headers["X-Fal-Request-Timeout-Type"] = "user"
    return JSONResponse(job.result_body, status_code=job.result_status or 500, headers=headers)


def status_body(job: Job, queue: str, store: JobStore, *, with_logs: bool) -> dict[str, Any]:
    """fal's status document; ``queue`` is the queue's base URL (the request URLs are built under it)."""
    base = f"{queue}/{job.app}/requests/{job.request_id}"
    body: dict[str, Any] = {
        "status": str(job.status),
        "request_id": job.request_id,
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
        "logs": [entry.to_dict() for entry in job.logs] if with_logs else None,
    }
    if job.status == JobStatus.IN_QUEUE:
        body["queue_position"] = store.queue_position(job.request_id) or 0
    if job.status == JobStatus.COMPLETED:
        body["metrics"] = job.metrics or {}
        if job.error:
            body["error"] = job.error
            body["error_type"] = job.error_type
    return body
