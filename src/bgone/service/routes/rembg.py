"""rembg's server API on bgone's queue: ``GET /api/remove?url=…`` and ``POST /api/remove`` (the image in
the multipart field ``file``), answering ``image/png`` (see :mod:`bgone.service.protocols.rembg`).

rembg's clients wait for the picture on the open connection, so these routes submit a sync job and wait
for it; a client that goes away cancels its job, freeing the worker. An upload is stored first and handed
to the worker by its own ``/files/`` URL (read from storage, never over HTTP); it is deleted with the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from bgone.errors import FileDownloadError, StorageError
from bgone.service.auth import require_key
from bgone.service.context import Service, get_service
from bgone.service.jobs import Job, JobStatus
from bgone.service.protocols.rembg import RembgAdapter, RembgInput, RembgParams, build_input
from bgone.service.submission import replay, submit
from bgone.service.uploads import read_limited
from bgone.service.urls import base_url, file_url

logger = logging.getLogger("bgone.api")

router = APIRouter(prefix="/api/remove", dependencies=[Depends(require_key)], tags=["rembg"])
PNG_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "The cut-out (or the mask) as PNG."},
    400: {"description": "Unknown model, or a URL that is refused or cannot be fetched."},
    413: {"description": "An image over the size or pixel limits."},
    422: {"description": "Invalid parameters, or bytes that are not a readable image."},
}


@router.get("", responses=PNG_RESPONSES)
async def rembg_remove_url(
    request: Request,
    url: Annotated[str, Query(description="http(s) URL of the image")],
    params: Annotated[RembgParams, Query()],
) -> Response:
    """rembg's ``GET /api/remove``: fetch the image at ``url`` (same URL rules as the fal routes) and
    answer the cut-out as PNG."""
    try:
        parts = urlsplit(url.strip())
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise FileDownloadError(f"url must be an http(s) URL, got {url[:100]!r}")
    service = get_service(request)
    body = build_input(
        service.settings, params, image_url=url.strip(), bgc_loc=["query", "bgc"], extras_loc=["query", "extras"]
    )
    return await _run(service, request, body)


@router.post("", responses=PNG_RESPONSES)
async def rembg_remove_file(
    request: Request,
    file: Annotated[UploadFile, File(description="The image (multipart form field `file`)")],
    params: Annotated[RembgParams, Form()],
    bgc_query: Annotated[
        str | None, Query(alias="bgc", description="bgc as a query parameter (as rembg declares it)")
    ] = None,
    extras_query: Annotated[
        str | None, Query(alias="extras", description="extras as a query parameter (as rembg declares it)")
    ] = None,
) -> Response:
    """rembg's ``POST /api/remove``: the image in the multipart field ``file``, parameters as form fields
    (``bgc`` and ``extras`` as form fields or, as rembg declares them, query parameters)."""
    service = get_service(request)
    form_bgc, form_extras = params.bgc is not None, params.extras is not None
    params = params.model_copy(
        update={"bgc": params.bgc if form_bgc else bgc_query, "extras": params.extras if form_extras else extras_query}
    )
    body = build_input(
        service.settings,
        params,
        image_url="",
        bgc_loc=["body" if form_bgc else "query", "bgc"],
        extras_loc=["body" if form_extras else "query", "extras"],
    )

    async def chunks() -> Any:
        while chunk := await file.read(1 << 20):
            yield chunk

    data = await read_limited(chunks(), service.settings.max_image_bytes, declared=file.size)
    stored = await asyncio.to_thread(
        service.storage.put,
        data,
        file_name=file.filename or "upload.bin",
        content_type=file.content_type or "application/octet-stream",
        prefix="uploads",
    )
    body = body.model_copy(update={"image_url": file_url(base_url(request), stored.key), "input_key": stored.key})
    try:
        return await _run(service, request, body)
    except BaseException:
        service.storage.delete([stored.key])  # e.g. the queue was unavailable
        raise


async def _run(service: Service, request: Request, body: RembgInput) -> Response:
    job = submit(service, request, service.adapters[RembgAdapter.endpoint], body, sync=True)
    headers = {"x-fal-request-id": job.request_id}
    try:
        try:
            current = await _wait(service, job.request_id, request)
        except (asyncio.CancelledError, _ClientGone):  # nobody will read the result: free the worker
            service.store.cancel(job.request_id)
            raise
        if current.result_status != 200:
            return replay(current)
        key = (current.result_body or {}).get("storage_key")
        try:
            data = await asyncio.to_thread(service.storage.get, key)
        except (KeyError, FileNotFoundError, ValueError, TypeError):
            logger.error("rembg request %s: stored output %r is missing", job.request_id, key)
            raise StorageError("the output could not be read back") from None
        await asyncio.to_thread(service.storage.delete, [key])  # the purge would only find it gone
        return Response(data, media_type="image/png", headers=headers)
    except _ClientGone:
        return Response(status_code=499, headers=headers)  # never read: the client is gone
    finally:
        if body.input_key:  # not awaited: this also runs while the request is being cancelled
            service.storage.delete([body.input_key])


class _ClientGone(Exception):
    pass


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects. (``request.is_disconnected()`` never sees it behind the
    app's HTTP middleware, which cancels the read it polls with; this read blocks instead.)"""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _wait(service: Service, request_id: str, request: Request) -> Job:
    """The job once COMPLETED; _ClientGone if the client disconnects first."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        while True:
            current = service.store.get(request_id)
            if current is not None and current.status == JobStatus.COMPLETED:
                return current
            if gone.done():
                raise _ClientGone()
            since = current.version if current is not None else None
            await asyncio.to_thread(service.store.wait, request_id, timeout=1.0, since=since)
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await gone
