"""fal's storage flow of the JavaScript client: ``POST /storage/upload/initiate`` and
``/storage/upload/initiate-multipart`` (with a key; JSON ``{content_type, file_name}``) answer
``{upload_url, file_url}``; the client then sends the bytes to ``upload_url`` itself, without a key:
``PUT /storage/upload/{id}`` in one go, or ``PUT /storage/upload/{id}/{n}`` per part (answering
``{partNumber, etag}``) and ``POST /storage/upload/{id}/complete`` with ``{"parts": [{partNumber, etag}]}``.

The upload URL carries its own signed, short-lived permission (:mod:`bgone.service.upload_urls`). Bytes are
read under the image byte limit, or the video limit for a video content type or file name, as
``/files/upload`` reads them; a multipart upload's parts are stored as they arrive, so memory holds one
part at a time until ``complete`` joins them (at most the limit). The finished file is stored under
``uploads/`` and served at ``file_url`` (``/files/uploads/{id}/{name}``), which requests then name as
``image_url`` or ``video_url``.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from bgone.errors import BadRequestError, ForbiddenError, ImageTooLargeError, InputError, VideoTooLargeError
from bgone.service.auth import require_key
from bgone.service.context import Service, get_service
from bgone.service.upload_urls import (
    MAX_PARTS,
    PARTS_PREFIX,
    PendingUploads,
    UploadTicket,
    part_name,
)
from bgone.service.uploads import read_limited
from bgone.service.urls import base_url, file_url

router = APIRouter(tags=["files"])

UPLOAD_PATH = "/storage/upload"
# The one-PUT upload URLs' path: its body is read here under the file's own limit, not the request-body limit.
SINGLE_PUT_PATH = re.compile(rf"{UPLOAD_PATH}/[0-9a-f]{{32}}")
_KEY_ID = re.compile(r"^[0-9a-f]{32}$")


class InitiateUpload(BaseModel):
    """The body of fal's ``initiate`` calls; unknown fields are ignored, as fal does."""

    model_config = ConfigDict(extra="ignore")

    content_type: str | None = Field(default=None, max_length=255)
    file_name: str | None = Field(default=None, max_length=1024)


class UploadPart(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    part_number: int = Field(alias="partNumber", ge=1, le=MAX_PARTS)
    etag: str = Field(max_length=600)


class CompleteUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    parts: list[UploadPart] = Field(min_length=1, max_length=MAX_PARTS)


def _pending(request: Request) -> PendingUploads:
    """This node's record of unfinished multipart uploads (one per app)."""
    state = request.app.state
    if getattr(state, "fal_pending_uploads", None) is None:
        state.fal_pending_uploads = PendingUploads()
    return state.fal_pending_uploads


async def _drop_expired(request: Request, service: Service) -> None:
    """Delete the parts of multipart uploads whose URLs expired without being completed."""
    keys = _pending(request).expired()
    if keys:
        await run_in_threadpool(service.storage.delete, keys)


def _too_large(ticket: UploadTicket, detail: str) -> ImageTooLargeError:
    return VideoTooLargeError(detail) if ticket.is_video else ImageTooLargeError(detail)


async def _read_body(request: Request, ticket: UploadTicket, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    try:
        return await read_limited(
            request.stream(), limit, declared=int(declared) if declared and declared.isdigit() else None
        )
    except ImageTooLargeError as exc:
        raise _too_large(ticket, str(exc)) from None
    except InputError:
        raise BadRequestError("empty upload: PUT the file's bytes to the upload URL") from None


async def _initiate(request: Request, body: InitiateUpload, *, multipart: bool) -> dict[str, str]:
    service = get_service(request)
    await _drop_expired(request, service)
    ticket = UploadTicket.new(body.content_type, body.file_name, multipart=multipart)
    base = base_url(request)
    return {
        "upload_url": f"{base}{UPLOAD_PATH}/{ticket.upload_id}?{ticket.query(service.signing)}",
        "file_url": file_url(base, ticket.key),
    }


@router.post(f"{UPLOAD_PATH}/initiate", dependencies=[Depends(require_key)])
async def initiate(request: Request, body: InitiateUpload) -> dict[str, str]:
    """An upload URL for one PUT of the file's bytes (``?storage_type=`` is accepted and ignored)."""
    return await _initiate(request, body, multipart=False)


@router.post(f"{UPLOAD_PATH}/initiate-multipart", dependencies=[Depends(require_key)])
async def initiate_multipart(request: Request, body: InitiateUpload) -> dict[str, str]:
    """An upload URL for a file sent in parts (``PUT {upload_url}/{n}``, then ``POST .../complete``)."""
    return await _initiate(request, body, multipart=True)


def _ticket(request: Request, upload_id: str, *, multipart: bool) -> UploadTicket:
    return UploadTicket.verify(upload_id, request.query_params, get_service(request).signing, multipart=multipart)


async def _refuse_if_done(service: Service, ticket: UploadTicket) -> None:
    if await run_in_threadpool(service.storage.exists, ticket.key):
        raise ForbiddenError("this upload URL was already used: initiate a new upload")


@router.put(f"{UPLOAD_PATH}/{{upload_id}}")
async def put_file(upload_id: str, request: Request) -> dict[str, str]:
    """The whole file in one PUT, under its signed upload URL (no key)."""
    service = get_service(request)
    ticket = _ticket(request, upload_id, multipart=False)
    await _refuse_if_done(service, ticket)
    data = await _read_body(request, ticket, ticket.limit(service.settings))
    try:
        stored = await run_in_threadpool(
            service.storage.put,
            data,
            file_name=ticket.file_name,
            content_type=ticket.content_type,
            prefix="uploads",
            key_id=ticket.upload_id,
        )
    except FileExistsError:
        raise ForbiddenError("this upload URL was already used: initiate a new upload") from None
    return {"file_url": file_url(base_url(request), stored.key)}


@router.put(f"{UPLOAD_PATH}/{{upload_id}}/{{part_number}}")
async def put_part(upload_id: str, part_number: str, request: Request) -> dict[str, Any]:
    """Part ``part_number`` (1 to 10000) of a multipart upload: answers its ``partNumber`` and ``etag``."""
    service = get_service(request)
    ticket = _ticket(request, upload_id, multipart=True)
    if not part_number.isdigit() or not 1 <= int(part_number) <= MAX_PARTS:
        raise BadRequestError(f"part numbers run from 1 to {MAX_PARTS}")
    number = int(part_number)
    await _drop_expired(request, service)
    await _refuse_if_done(service, ticket)
    limit = ticket.limit(service.settings)
    data = await _read_body(request, ticket, limit)
    stored = await run_in_threadpool(
        service.storage.put,
        data,
        file_name=part_name(ticket.upload_id, number),
        content_type="application/octet-stream",
        prefix=PARTS_PREFIX,
    )
    pending = _pending(request)
    replaced, received = pending.add(ticket, number, stored.key, stored.size)
    if replaced:
        await run_in_threadpool(service.storage.delete, [replaced])
    if received > limit:
        await run_in_threadpool(service.storage.delete, pending.forget(ticket.upload_id))
        raise _too_large(ticket, f"upload is over the {limit}-byte limit")
    return {"partNumber": number, "etag": stored.key}


def _part_key(ticket: UploadTicket, part: UploadPart) -> str:
    """The storage key a part's etag names, if it is a part of this upload with this number."""
    prefix, _, rest = part.etag.partition("/")
    key_id, _, name = rest.partition("/")
    if prefix != PARTS_PREFIX or not _KEY_ID.fullmatch(key_id) or name != part_name(ticket.upload_id, part.part_number):
        raise BadRequestError(f"part {part.part_number}: the etag is not one this upload's part PUT answered")
    return part.etag


def _assemble(service: Service, ticket: UploadTicket, keys: list[str], total: int) -> str:
    """Join the parts (in a thread: blocking storage I/O), store the file under its announced key and
    delete the parts; the stored key."""
    data = bytearray(total)
    offset = 0
    for key in keys:
        chunk = service.storage.get(key)
        if offset + len(chunk) > total:
            raise BadRequestError("a part changed while the upload was completed")
        data[offset : offset + len(chunk)] = chunk
        offset += len(chunk)
    stored = service.storage.put(
        data, file_name=ticket.file_name, content_type=ticket.content_type, prefix="uploads", key_id=ticket.upload_id
    )
    service.storage.delete(keys)
    return stored.key


@router.post(f"{UPLOAD_PATH}/{{upload_id}}/complete")
async def complete(upload_id: str, request: Request, body: CompleteUpload) -> dict[str, str]:
    """Join the listed parts, in part-number order, into the announced file."""
    service = get_service(request)
    ticket = _ticket(request, upload_id, multipart=True)
    if await run_in_threadpool(service.storage.exists, ticket.key):
        return {"file_url": file_url(base_url(request), ticket.key)}  # completed already (a retried call)
    parts = sorted(body.parts, key=lambda p: p.part_number)
    if len({p.part_number for p in parts}) != len(parts):
        raise BadRequestError("each part number may be listed once")
    keys = [_part_key(ticket, part) for part in parts]
    sizes = []
    for part, key in zip(parts, keys, strict=True):
        info = await run_in_threadpool(service.storage.stat, key)
        if info is None:
            raise BadRequestError(f"part {part.part_number} was not uploaded, or has expired")
        sizes.append(info.size)
    total, limit = sum(sizes), ticket.limit(service.settings)
    if total > limit:
        await run_in_threadpool(service.storage.delete, keys + _pending(request).forget(ticket.upload_id))
        raise _too_large(ticket, f"upload of {total} bytes is over the {limit}-byte limit")
    if total == 0:
        raise BadRequestError("empty upload: the parts hold no bytes")
    try:
        key = await run_in_threadpool(_assemble, service, ticket, keys, total)
    except FileExistsError:
        raise ForbiddenError("this upload URL was already used: initiate a new upload") from None
    await run_in_threadpool(service.storage.delete, _pending(request).forget(ticket.upload_id))
    return {"file_url": file_url(base_url(request), key)}
