"""The queue's per-request routes, for any protocol's requests: ``GET …/requests/{id}/status``
(``?logs=1``), ``…/status/stream`` (server-sent events until COMPLETED), ``GET …/requests/{id}`` (the
result) and ``PUT …/requests/{id}/cancel``, all under ``/queue/{owner}/{alias}`` as fal has them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse

from bgone.errors import NotFoundError
from bgone.service.auth import require_key
from bgone.service.context import Service, get_service
from bgone.service.jobs import CancelOutcome, Job, JobStatus
from bgone.service.submission import replay, status_body
from bgone.service.urls import queue_base

router = APIRouter(prefix="/queue/{owner}/{alias}/requests/{request_id}", dependencies=[Depends(require_key)])


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def _find(service: Service, owner: str, alias: str, request_id: str) -> Job:
    job = service.store.get(request_id)
    if job is None or job.app != f"{owner}/{alias}":
        raise NotFoundError(f"Request {request_id} not found")
    return job


@router.get("/status", tags=["queue"])
async def status(owner: str, alias: str, request_id: str, request: Request, logs: str | None = None) -> JSONResponse:
    service = get_service(request)
    job = _find(service, owner, alias, request_id)
    body = status_body(job, queue_base(request), service.store, with_logs=_truthy(logs))
    code = 200 if job.status == JobStatus.COMPLETED else 202
    return JSONResponse(body, status_code=code, headers={"x-fal-request-id": job.request_id})


@router.get("/status/stream", tags=["queue"])
async def status_stream(
    owner: str, alias: str, request_id: str, request: Request, logs: str | None = None
) -> StreamingResponse:
    service = get_service(request)
    _find(service, owner, alias, request_id)
    queue = queue_base(request)

    async def events() -> AsyncIterator[bytes]:
        last = None
        while True:
            job = service.store.get(request_id)
            if job is None:
                return
            text = json.dumps(jsonable_encoder(status_body(job, queue, service.store, with_logs=_truthy(logs))))
            if text != last:
                last = text
                yield f"data: {text}\n\n".encode()
            if job.status == JobStatus.COMPLETED or await request.is_disconnected():
                return
            await asyncio.to_thread(service.store.wait, request_id, timeout=5.0, since=job.version)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"x-fal-request-id": request_id, "cache-control": "no-cache"}
    )


@router.get("", tags=["queue"])
async def result(owner: str, alias: str, request_id: str, request: Request) -> JSONResponse:
    job = _find(get_service(request), owner, alias, request_id)
    if job.status != JobStatus.COMPLETED:
        return JSONResponse(
            {"detail": "Request is still in progress", "status": str(job.status)},
            status_code=400,
            headers={"x-fal-request-id": job.request_id},
        )
    return replay(job)


@router.put("/cancel", tags=["queue"])
async def cancel(owner: str, alias: str, request_id: str, request: Request) -> JSONResponse:
    """fal's cancel: 202 ``CANCELLATION_REQUESTED``, 400 ``ALREADY_COMPLETED`` or 404 ``NOT_FOUND``."""
    service = get_service(request)
    job = service.store.get(request_id)
    if job is None or job.app != f"{owner}/{alias}":
        return JSONResponse({"status": str(CancelOutcome.NOT_FOUND)}, status_code=404)
    outcome = service.store.cancel(request_id)
    service.notify()
    if outcome == CancelOutcome.CANCELLATION_REQUESTED:
        done = service.store.get(request_id)
        if done is not None and done.status == JobStatus.COMPLETED and done.webhook_url:
            service.webhooks.send(done, default_status=499)
        return JSONResponse({"status": str(outcome)}, status_code=202)
    code = 400 if outcome == CancelOutcome.ALREADY_COMPLETED else 404
    return JSONResponse({"status": str(outcome)}, status_code=code)
