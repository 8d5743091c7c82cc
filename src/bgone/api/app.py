"""The fal-compatible HTTP service: sync run, queue, files, health, metrics.

Layout (one process serves everything, so the stock ``fal_client`` works with
``FAL_RUN_HOST=host:port`` and ``FAL_QUEUE_RUN_HOST=host:port/queue``):

- ``POST /fal-ai/birefnet[/v2]`` (also under ``/run``): synchronous, answers with the output.
- ``POST /queue/fal-ai/birefnet[/v2]``: submit; status, stream, result and cancel live under
  ``/queue/fal-ai/birefnet/requests/{id}`` (no ``/v2``, as on fal).
- ``POST /storage/auth/token`` + ``POST /files/upload``: fal's CDN upload flow; ``GET /files/{key}``.
- ``GET /api/remove?url=…`` and ``POST /api/remove`` (multipart ``file``): rembg's ``rembg s`` API
  (``api/rembg.py``), answering ``image/png``, on the same queue.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..jobs import CancelOutcome, Job, JobStatus, JobStore, Priority, open_job_store
from ..storage import Storage, open_storage
from .limits import BodySizeLimit
from .metrics import Metrics
from .rembg import add_rembg_routes
from .schemas import APP_ID, BirefnetInput, BirefnetOutput, BirefnetV2Input, field_order
from .settings import ServerSettings

logger = logging.getLogger("bgone.api")
TERMINAL = JobStatus.COMPLETED


def _base_url(request: Request) -> str:
    """Scheme, host and prefix as the client sees them (proxy headers honoured)."""
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
    host = headers.get("x-forwarded-host", headers.get("host", request.url.netloc)).split(",")[0].strip()
    prefix = headers.get("x-forwarded-prefix", request.scope.get("root_path", "")).rstrip("/")
    return f"{scheme}://{host}{prefix}"


def _queue_base(request: Request) -> str:
    """Everything before ``/fal-ai/`` in the submit URL: the queue's own prefix, kept in the URLs we hand out."""
    path = request.url.path
    return _base_url(request) + path[: path.index("/fal-ai/")] if "/fal-ai/" in path else _base_url(request)


def _status_body(job: Job, queue_base: str, store: JobStore, *, with_logs: bool) -> dict[str, Any]:
    base = f"{queue_base}/{job.app}/requests/{job.request_id}"
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


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def create_app(
    settings: ServerSettings | None = None,
    *,
    store: JobStore | None = None,
    storage: Storage | None = None,
) -> FastAPI:
    settings = settings or ServerSettings()
    if not settings.api_keys and not settings.open_access:
        raise ValueError(
            "no API keys configured: pass --key KEY (or BGONE_API_KEYS) to require `Authorization: Key KEY`, "
            "or --open to accept requests without a key (local use only)"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = store or open_job_store(settings.queue, settings.data_dir)
    storage = storage or open_storage(settings.storage, settings.data_dir)
    metrics = Metrics(store)
    from ..worker import InferenceWorker, batch_key_for

    worker = InferenceWorker(settings, store, storage, metrics)
    upload_tokens: dict[str, float] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        recovered = store.recover() if settings.queue is None else []  # shared queues reclaim by lease
        if recovered:
            logger.warning("re-queued %d request(s) that were running when the server stopped", len(recovered))
        if settings.open_access:
            logger.warning("!" * 72)
            logger.warning("bgone is running in OPEN mode: no API key is required. Use this on trusted networks only.")
            logger.warning("!" * 72)
        if settings.runs_worker:
            worker.start()
        yield
        worker.stop()

    app = FastAPI(
        title="bgone: fal-ai/birefnet",
        version=__version__,
        lifespan=lifespan,
        description="Self-hosted, wire-compatible fal-ai/birefnet and fal-ai/birefnet/v2.",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.storage = storage
    app.state.worker = worker
    app.state.metrics = metrics
    app.add_middleware(BodySizeLimit, limit=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-fal-request-id"],
        )

    @app.middleware("http")
    async def request_id_and_metrics(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        # fal_client treats a 502-504 without this header as an ingress error and retries it.
        response.headers.setdefault("x-fal-request-id", secrets.token_hex(16))
        metrics.observe_http(request, response.status_code, time.perf_counter() - started)
        return response

    def check_key(request: Request) -> None:
        if settings.open_access:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token in upload_tokens and upload_tokens[token] > time.time():
            return
        if scheme.lower() in ("key", "bearer") and any(hmac.compare_digest(token, k) for k in settings.api_keys):
            return
        raise _HTTPError(401, {"detail": "Missing or invalid API key: send `Authorization: Key <key>`."})

    def submit(
        request: Request, endpoint: str, body: Any, *, sync: bool, app_id: str = APP_ID, webhooks: bool = True
    ) -> Job:
        payload = body.model_dump(mode="json")
        timeout_header = request.headers.get("x-fal-request-timeout")
        deadline = None
        if timeout_header:
            try:
                seconds = float(timeout_header)
            except ValueError:
                seconds = float("nan")
            if not 0 < seconds < 10**9:  # also refuses nan and inf
                raise _HTTPError(400, {"detail": "X-Fal-Request-Timeout must be a positive number of seconds"})
            deadline = time.time() + seconds
        priority = request.headers.get("x-fal-queue-priority", "normal").lower()
        if priority not in ("normal", "low"):
            raise _HTTPError(
                422,
                {
                    "detail": [
                        {
                            "loc": ["header", "x-fal-queue-priority"],
                            "msg": "must be normal or low",
                            "type": "value_error",
                        }
                    ]
                },
            )
        webhook = request.query_params.get("fal_webhook") if webhooks else None
        if webhook and (problem := worker.webhooks.check_url(webhook)):
            raise _HTTPError(
                422, {"detail": [{"loc": ["query", "fal_webhook"], "msg": problem, "type": "value_error"}]}
            )
        job = store.submit(
            endpoint=endpoint,
            app=app_id,
            payload={"input": payload, "base_url": _base_url(request)},
            priority=Priority.LOW if priority == "low" else Priority.NORMAL,
            batch_key=batch_key_for(settings, endpoint, payload),
            start_deadline=deadline,
            webhook_url=webhook,
            keep_history=not (sync or getattr(body, "sync_mode", False)),
        )
        worker.notify()
        return job

    def replay(job: Job) -> JSONResponse:
        headers = {"x-fal-request-id": job.request_id}
        if job.error_type:
            headers["x-fal-error-type"] = job.error_type
        if job.result_status == 504 and job.error_type == "request_timeout":
            headers["X-Fal-Request-Timeout-Type"] = "user"
        return JSONResponse(job.result_body, status_code=job.result_status or 500, headers=headers)

    async def run_sync(request: Request, endpoint: str, body: Any) -> JSONResponse:
        job = submit(request, endpoint, body, sync=True)
        while True:
            current = store.get(job.request_id)
            if current is not None and current.status == TERMINAL:
                return replay(current)
            since = current.version if current is not None else None
            await asyncio.to_thread(store.wait, job.request_id, timeout=5.0, since=since)

    async def run_queue(request: Request, endpoint: str, body: Any) -> JSONResponse:
        job = submit(request, endpoint, body, sync=False)
        status = _status_body(job, _queue_base(request), store, with_logs=False)
        status.pop("logs")
        status["gateway_request_id"] = job.request_id
        return JSONResponse(status, headers={"x-fal-request-id": job.request_id})

    auth = [Depends(check_key)]
    for prefix in ("", "/run"):
        app.post(
            f"{prefix}/fal-ai/birefnet",
            dependencies=auth,
            response_model=BirefnetOutput,
            tags=["sync"],
            include_in_schema=prefix == "",
        )(_bind_sync(run_sync, "fal-ai/birefnet", BirefnetInput))
        app.post(
            f"{prefix}/fal-ai/birefnet/v2",
            dependencies=auth,
            response_model=BirefnetOutput,
            tags=["sync"],
            include_in_schema=prefix == "",
        )(_bind_sync(run_sync, "fal-ai/birefnet/v2", BirefnetV2Input))
    app.post("/queue/fal-ai/birefnet", dependencies=auth, tags=["queue"])(
        _bind_sync(run_queue, "fal-ai/birefnet", BirefnetInput)
    )
    app.post("/queue/fal-ai/birefnet/v2", dependencies=auth, tags=["queue"])(
        _bind_sync(run_queue, "fal-ai/birefnet/v2", BirefnetV2Input)
    )

    # rembg's `rembg s` API on the same queue (internal job endpoint, never a fal route)
    add_rembg_routes(
        app, settings=settings, store=store, storage=storage, submit=submit, base_url=_base_url, dependencies=auth
    )

    def find(owner: str, alias: str, request_id: str) -> Job:
        job = store.get(request_id)
        if job is None or job.app != f"{owner}/{alias}":
            raise _HTTPError(404, {"detail": f"Request {request_id} not found"})
        return job

    @app.get("/queue/{owner}/{alias}/requests/{request_id}/status", dependencies=auth, tags=["queue"])
    async def status(
        owner: str, alias: str, request_id: str, request: Request, logs: str | None = None
    ) -> JSONResponse:
        job = find(owner, alias, request_id)
        body = _status_body(job, _queue_base(request), store, with_logs=_truthy(logs))
        return JSONResponse(
            body, status_code=200 if job.status == TERMINAL else 202, headers={"x-fal-request-id": job.request_id}
        )

    @app.get("/queue/{owner}/{alias}/requests/{request_id}/status/stream", dependencies=auth, tags=["queue"])
    async def status_stream(
        owner: str, alias: str, request_id: str, request: Request, logs: str | None = None
    ) -> StreamingResponse:
        find(owner, alias, request_id)
        queue_base = _queue_base(request)

        async def events() -> AsyncIterator[bytes]:
            last = None
            while True:
                job = store.get(request_id)
                if job is None:
                    return
                body = _status_body(job, queue_base, store, with_logs=_truthy(logs))
                text = json.dumps(jsonable_encoder(body))
                if text != last:
                    last = text
                    yield f"data: {text}\n\n".encode()
                if job.status == TERMINAL or await request.is_disconnected():
                    return
                await asyncio.to_thread(store.wait, request_id, timeout=5.0, since=job.version)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"x-fal-request-id": request_id, "cache-control": "no-cache"},
        )

    @app.get("/queue/{owner}/{alias}/requests/{request_id}", dependencies=auth, tags=["queue"])
    async def result(owner: str, alias: str, request_id: str) -> JSONResponse:
        job = find(owner, alias, request_id)
        if job.status != TERMINAL:
            return JSONResponse(
                {"detail": "Request is still in progress", "status": str(job.status)},
                status_code=400,
                headers={"x-fal-request-id": job.request_id},
            )
        return replay(job)

    @app.put("/queue/{owner}/{alias}/requests/{request_id}/cancel", dependencies=auth, tags=["queue"])
    async def cancel(owner: str, alias: str, request_id: str) -> JSONResponse:
        job = store.get(request_id)
        if job is None or job.app != f"{owner}/{alias}":
            return JSONResponse({"status": str(CancelOutcome.NOT_FOUND)}, status_code=404)
        outcome = store.cancel(request_id)
        worker.notify()
        if outcome == CancelOutcome.CANCELLATION_REQUESTED:
            done = store.get(request_id)
            if done is not None and done.status == TERMINAL and done.webhook_url:
                worker.webhooks.send(done.request_id, done.webhook_url, done.result_status or 499, done.result_body)
            return JSONResponse({"status": str(outcome)}, status_code=202)
        return JSONResponse(
            {"status": str(outcome)}, status_code=400 if outcome == CancelOutcome.ALREADY_COMPLETED else 404
        )

    # -- files ------------------------------------------------------------------------------------
    @app.post("/storage/auth/token", dependencies=auth, tags=["files"])
    async def storage_token() -> dict[str, str]:
        token = secrets.token_urlsafe(24)
        upload_tokens[token] = time.time() + 3600
        for stale in [t for t, exp in upload_tokens.items() if exp < time.time()]:
            upload_tokens.pop(stale, None)
        expires = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(upload_tokens[token]))
        return {"token": token, "token_type": "Bearer", "base_url": "", "expires_at": expires}

    @app.post("/files/upload", dependencies=auth, tags=["files"])
    async def upload(request: Request) -> dict[str, str]:
        data = await _read_limited(request, settings.max_image_bytes)
        # Browsers can only send ASCII headers, so the playground percent-encodes names.
        name = unquote(request.headers.get("x-fal-file-name") or "") or "upload.bin"
        content_type = request.headers.get("content-type", "application/octet-stream")
        stored = storage.put(data, file_name=name, content_type=content_type, prefix="uploads")
        return {"access_url": f"{_base_url(request)}/files/{stored.key}"}

    @app.get("/files/{key:path}", tags=["files"])
    async def get_file(key: str) -> Response:
        try:
            info = storage.stat(key)
        except ValueError:
            info = None
        if info is None:
            return JSONResponse({"detail": "File not found"}, status_code=404)
        path = storage.path(key)
        headers = {"cache-control": "public, max-age=3600"}
        if path is not None:
            return FileResponse(
                path,
                media_type=info.content_type,
                headers=headers,
                filename=info.file_name,
                content_disposition_type="inline",
            )
        return Response(storage.get(key), media_type=info.content_type, headers=headers)

    # -- operations -------------------------------------------------------------------------------
    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "queue": store.counts()}

    @app.get("/ready", tags=["ops"])
    async def ready() -> JSONResponse:
        if settings.role == "api":
            return JSONResponse({"status": "ready", "role": "api"})
        if worker.ready:
            return JSONResponse({"status": "ready"})
        state = "error" if worker.ready_error else "loading"
        return JSONResponse({"status": state, "detail": worker.ready_error}, status_code=503)

    @app.get("/metrics", tags=["ops"])
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/api/history", dependencies=auth, tags=["ops"])
    async def history(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    ) -> list[dict[str, Any]]:
        queue_base = _base_url(request) + "/queue"
        return [
            {
                **_status_body(job, queue_base, store, with_logs=False),
                "endpoint": job.endpoint,
                "created_at": job.created_at,
                "completed_at": job.completed_at,
                "input": job.payload.get("input"),
                "result": job.result_body if job.result_status == 200 else None,
            }
            for job in store.history(limit=limit, offset=offset)
        ]

    # -- the playground: static files shipped in the package, no CDN ------------------------------
    web_root = Path(__file__).resolve().parent.parent / "web"
    app.mount("/ui", StaticFiles(directory=web_root), name="ui")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(web_root / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})

    @app.get("/api/limits", tags=["ops"])
    async def limits() -> dict[str, Any]:
        """What the playground checks before uploading."""
        return {
            "max_image_bytes": settings.max_image_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "auth_required": not settings.open_access,
        }

    @app.exception_handler(_HTTPError)
    async def http_error(request: Request, exc: _HTTPError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status_code)

    if settings.queue is not None:
        import redis as redis_lib

        @app.exception_handler(redis_lib.ConnectionError)
        @app.exception_handler(redis_lib.TimeoutError)
        async def queue_unavailable(request: Request, exc: Exception) -> JSONResponse:
            """Redis is restarting or unreachable: a retryable 503, not a 500, and nothing was accepted."""
            logger.error("queue unavailable: %s", exc)
            return JSONResponse(
                {"detail": "The request queue is unavailable; retry shortly.", "error_type": "queue_unavailable"},
                status_code=503,
                headers={"retry-after": "1", "x-fal-error-type": "queue_unavailable"},
            )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's own handler echoes each error's ``input``, which fails on bodies that are not
        UTF-8 (a 500 for a client's mistake); this one echoes what can be shown and drops the rest."""
        return JSONResponse({"detail": [_printable_error(error) for error in exc.errors()]}, status_code=422)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.get("components", {}).get("schemas", {})
        for model in (BirefnetInput, BirefnetV2Input, BirefnetOutput):
            title = model.__name__
            if title in components:
                components[title]["x-fal-order-properties"] = field_order(model)
        schema["x-fal-order-paths"] = list(schema.get("paths", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _bind_sync(handler: Any, endpoint: str, model: type) -> Any:
    """A route function with a typed body, so FastAPI validates it and documents the schema."""

    async def route(request: Request, body: model) -> JSONResponse:  # type: ignore[valid-type]
        return await handler(request, endpoint, body)

    route.__name__ = f"{handler.__name__}_{endpoint.replace('/', '_').replace('-', '_')}"
    # Real types, not the postponed strings of this module, so FastAPI sees the body model.
    route.__annotations__ = {"request": Request, "body": model, "return": JSONResponse}
    return route


def _printable_error(error: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in error.items() if k not in ("input", "ctx", "url")}
    value = error.get("input")
    if isinstance(value, bytes):
        value = value[:200].decode("utf-8", errors="replace")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)[:200]
    if isinstance(value, str) and len(value) > 200:
        value = value[:200] + "…"  # never echo a whole data URI back
    shown["input"] = value
    if "ctx" in error:
        shown["ctx"] = {
            k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in error["ctx"].items()
        }
    return shown


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _HTTPError(413, {"detail": f"upload of {declared} bytes is over the {limit}-byte limit"})
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _HTTPError(413, {"detail": f"upload is over the {limit}-byte limit"})
        chunks.append(chunk)
    if size == 0:
        raise _HTTPError(400, {"detail": "empty upload"})
    return b"".join(chunks)


class _HTTPError(Exception):
    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.body = body
