"""Operations: ``/health``, ``/ready`` (503 until the warm model is loaded), ``/metrics`` (Prometheus),
``/.well-known/jwks.json`` (the public keys that verify webhooks), ``/api/history`` (recent requests,
newest first), ``/api/models`` (what each public model name runs here)
and ``/api/limits`` (what the playground checks)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from bgone._version import __version__
from bgone.service.auth import require_key
from bgone.service.context import get_service
from bgone.service.submission import status_body
from bgone.service.urls import base_url
from bgone.weights.registry import REGISTRY

router = APIRouter(tags=["ops"])


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    return {"status": "ok", "version": __version__, "queue": get_service(request).store.counts()}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    worker = get_service(request).worker
    if worker is None:
        return JSONResponse({"status": "ready", "role": "api"})
    if worker.ready:
        return JSONResponse({"status": "ready"})
    state = "error" if worker.ready_error else "loading"
    return JSONResponse({"status": state, "detail": worker.ready_error}, status_code=503)


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    return Response(get_service(request).metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/api/history", dependencies=[Depends(require_key)])
async def history(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    store = get_service(request).store
    queue = base_url(request) + "/queue"
    return [
        {
            **status_body(job, queue, store, with_logs=False),
            "endpoint": job.endpoint,
            "created_at": job.created_at,
            "completed_at": job.completed_at,
            "input": job.payload.get("input"),
            "result": job.result_body if job.result_status == 200 else None,
        }
        for job in store.history(limit=limit, offset=offset)
    ]


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> JSONResponse:
    """The public keys whose signatures webhooks carry (every key during a rotation's overlap). Public,
    like fal's: a receiver needs nothing else to verify a webhook."""
    body = get_service(request).signing.jwks()
    return JSONResponse(body, headers={"cache-control": "public, max-age=300"})


@router.get("/api/models")
async def models(request: Request) -> dict[str, dict[str, dict[str, str | None]]]:
    """What each public model name runs on this server (fal's v1 and v2 names, rembg's): the registry name
    or checkpoint path from the model map, and the checkpoint's title when it is a registry model."""
    settings = get_service(request).settings
    answer: dict[str, dict[str, dict[str, str | None]]] = {}
    for version in ("v1", "v2", "rembg"):
        answer[version] = {}
        for name, target in settings.model_names(version).items():
            variant = REGISTRY.find(target)
            answer[version][name] = {
                "model": variant.name if variant else target,
                "title": variant.title if variant else None,
                "checkpoint": (variant.hf_repo or variant.release_filename) if variant else target,
            }
    return answer


@router.get("/api/limits")
async def limits(request: Request) -> dict[str, Any]:
    """What the playground checks before uploading."""
    settings = get_service(request).settings
    return {
        "max_image_bytes": settings.max_image_bytes,
        "max_image_pixels": settings.max_image_pixels,
        "max_video_bytes": settings.max_video_bytes,
        "max_video_seconds": settings.max_video_seconds,
        "max_video_frames": settings.max_video_frames,
        "max_video_pixels": settings.max_video_pixels,
        "auth_required": not settings.open_access,
    }
