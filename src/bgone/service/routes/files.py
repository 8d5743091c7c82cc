"""Files: fal's upload flow (``POST /storage/auth/token`` for a short-lived token, ``POST /files/upload``
with the bytes, answering an ``access_url``) and ``GET /files/{key}`` for stored inputs and outputs.

Uploads are read under the image byte limit, or the video limit for ``video/*`` content (or a video file
name); they are held in memory until stored, so the video limit also bounds an upload's memory."""

from __future__ import annotations

import time
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from bgone.errors import NotFoundError
from bgone.imaging.video_formats import is_video_name
from bgone.service.auth import require_key
from bgone.service.context import get_service
from bgone.service.uploads import read_limited
from bgone.service.urls import base_url, file_url

router = APIRouter(tags=["files"])


@router.post("/storage/auth/token", dependencies=[Depends(require_key)])
async def storage_token(request: Request) -> dict[str, str]:
    token, expires = get_service(request).upload_tokens.issue()
    expires_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(expires))
    return {"token": token, "token_type": "Bearer", "base_url": "", "expires_at": expires_at}


@router.post("/files/upload", dependencies=[Depends(require_key)])
async def upload(request: Request) -> dict[str, str]:
    service = get_service(request)
    declared = request.headers.get("content-length")
    content_type = request.headers.get("content-type", "application/octet-stream")
    # Videos may be far larger than images: each kind under its own byte limit.
    video = content_type.startswith("video/") or is_video_name(request.headers.get("x-fal-file-name") or "")
    limit = service.settings.max_video_bytes if video else service.settings.max_image_bytes
    data = await read_limited(request.stream(), limit, declared=int(declared) if declared and declared.isdigit() else None)
    # Browsers can only send ASCII headers, so the playground percent-encodes names.
    name = unquote(request.headers.get("x-fal-file-name") or "") or "upload.bin"
    stored = service.storage.put(data, file_name=name, content_type=content_type, prefix="uploads")
    return {"access_url": file_url(base_url(request), stored.key)}


@router.get("/files/{key:path}")
async def get_file(key: str, request: Request) -> Response:
    storage = get_service(request).storage
    try:
        info = storage.stat(key)
    except ValueError:
        info = None
    if info is None:
        raise NotFoundError("File not found")
    headers = {"cache-control": "public, max-age=3600"}
    path = storage.path(key)
    if path is not None:
        return FileResponse(
            path, media_type=info.content_type, headers=headers, filename=info.file_name, content_disposition_type="inline"
        )
    return Response(storage.get(key), media_type=info.content_type, headers=headers)
