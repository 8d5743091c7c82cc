"""fal's endpoints: ``POST /fal-ai/birefnet[/v2[/video]]`` (sync, also under ``/run``) and
``POST /queue/fal-ai/birefnet[/v2[/video]]`` (queue submit), one pair per fal adapter; and
``POST /fal-ai/birefnet[/v2[/video]]/stream`` (also under ``/run``), where fal's clients' ``stream`` calls go.

fal's birefnet apps do not stream (fal answers their ``/stream`` with a 404); here ``/stream`` runs the
request as the sync route does and answers the output as one server-sent event (``data: {output}``), so
``fal.stream`` and ``stream.done()`` of the JavaScript client (and ``fal_client.stream``) get the output.
A request that fails answers its error as the sync route does (status code and JSON body), before any
event, so the clients raise it as they raise a failed run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from bgone.errors import NotFoundError
from bgone.service.auth import require_key
from bgone.service.context import get_service
from bgone.service.protocols.fal import FalAdapter, FalV1Adapter, FalV2Adapter, FalV2VideoAdapter
from bgone.service.submission import replay, status_body, submit, wait_completed
from bgone.service.urls import queue_base

router = APIRouter(dependencies=[Depends(require_key)])


async def run_sync(request: Request, adapter: FalAdapter, body: BaseModel) -> JSONResponse:
    service = get_service(request)
    job = submit(service, request, adapter, body, sync=True)
    done = await wait_completed(service.store, job.request_id)
    if done is None:  # purged while waiting: only a retention shorter than a request does that
        raise NotFoundError(f"Request {job.request_id} not found")
    return replay(done)


async def run_stream(request: Request, adapter: FalAdapter, body: BaseModel) -> Response:
    """The sync route's answer; a success as one server-sent event carrying the output."""
    answer = await run_sync(request, adapter, body)
    if answer.status_code != 200:
        return answer
    headers = {name: value for name, value in answer.headers.items() if name.startswith("x-fal-")}
    headers["cache-control"] = "no-cache"
    return Response(b"data: " + bytes(answer.body) + b"\n\n", media_type="text/event-stream", headers=headers)


async def run_queue(request: Request, adapter: FalAdapter, body: BaseModel) -> JSONResponse:
    service = get_service(request)
    job = submit(service, request, adapter, body, sync=False)
    status = status_body(job, queue_base(request), service.store, with_logs=False)
    status.pop("logs")
    status["gateway_request_id"] = job.request_id
    return JSONResponse(status, headers={"x-fal-request-id": job.request_id})


def _route(handler: Any, adapter_type: type[FalAdapter]) -> Any:
    """A route function whose body is the adapter's input model, so FastAPI validates and documents it."""
    model = adapter_type.input_model

    async def route(request: Request, body: model) -> Response:  # type: ignore[valid-type]
        return await handler(request, get_service(request).adapters[adapter_type.endpoint], body)

    route.__name__ = f"{handler.__name__}_{adapter_type.endpoint.replace('/', '_').replace('-', '_')}"
    # Real types, not the postponed strings of this module, so FastAPI sees the body model.
    route.__annotations__ = {"request": Request, "body": model, "return": Response}
    return route


for _adapter in (FalV1Adapter, FalV2Adapter, FalV2VideoAdapter):
    for _prefix in ("", "/run"):
        router.post(
            f"{_prefix}/{_adapter.endpoint}",
            response_model=_adapter.output_model,
            tags=["sync"],
            include_in_schema=_prefix == "",
        )(_route(run_sync, _adapter))
        router.post(f"{_prefix}/{_adapter.endpoint}/stream", tags=["sync"], include_in_schema=_prefix == "")(
            _route(run_stream, _adapter)
        )
    router.post(f"/queue/{_adapter.endpoint}", tags=["queue"])(_route(run_queue, _adapter))
