"""The service, assembled: one FastAPI app that answers fal's API (so the stock ``fal_client`` works with
``FAL_RUN_HOST=host:port`` and ``FAL_QUEUE_RUN_HOST=host:port/queue``), rembg's ``/api/remove``, the
files, the operations endpoints and the playground.

:func:`create_app` builds the :class:`~bgone.service.context.Service` (store, storage, adapters, webhooks,
metrics and, unless the node is API-only, the inference worker), adds the middleware and the one set of
error handlers, and includes one router per resource (:mod:`bgone.service.routes`). An API-only node
(``role="api"``) never imports the worker, and so never PyTorch.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from bgone._version import __version__
from bgone.errors import SettingsError
from bgone.service.auth import UploadTokens
from bgone.service.body_limit import BodySizeLimit
from bgone.service.context import Service
from bgone.service.error_handlers import install_error_handlers
from bgone.service.jobs import JobStore, open_job_store
from bgone.service.prometheus import Metrics
from bgone.service.protocols import adapters_for
from bgone.service.protocols.fal_schemas import (
    BirefnetInput,
    BirefnetOutput,
    BirefnetV2Input,
    BirefnetV2VideoInput,
    BirefnetVideoOutput,
    field_order,
)
from bgone.service.routes import fal, fal_uploads, files, ops, playground, proxy, rembg, requests
from bgone.service.signing import SigningKeys, unshared_keys_warning
from bgone.service.storage import Storage, open_storage
from bgone.service.webhooks import WebhookSender
from bgone.settings import ServerSettings, server_settings

logger = logging.getLogger("bgone.api")


def create_app(
    settings: ServerSettings | None = None, *, store: JobStore | None = None, storage: Storage | None = None
) -> FastAPI:
    settings = settings or server_settings()
    if not settings.api_keys and not settings.open_access:
        raise SettingsError(
            "no API keys configured: pass --key KEY (or BGONE_API_KEYS) to require `Authorization: Key KEY`, "
            "or --open to accept requests without a key (local use only)"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = store or open_job_store(settings.queue, settings.data_dir)
    storage = storage or open_storage(settings.storage, settings.data_dir)
    metrics = Metrics(store)
    adapters = adapters_for(settings)
    signing = SigningKeys.from_settings(settings)
    webhooks = WebhookSender.from_settings(store, settings, signing)
    service = Service(settings, store, storage, adapters, webhooks, metrics, UploadTokens(), signing)
    if settings.role == "all":
        from bgone.service.worker import InferenceWorker  # only nodes that run models load PyTorch

        service.worker = InferenceWorker(settings, store, storage, metrics, webhooks=webhooks, adapters=adapters)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        recovered = store.recover() if settings.queue is None else []  # shared queues reclaim by lease
        if recovered:
            logger.warning("re-queued %d request(s) that were running when the server stopped", len(recovered))
        if settings.open_access:
            logger.warning("!" * 72)
            logger.warning("bgone is running in OPEN mode: no API key is required. Use this on trusted networks only.")
            logger.warning("!" * 72)
        if problem := unshared_keys_warning(settings):
            logger.warning(problem)
        if service.worker is not None and settings.runs_worker:
            service.worker.start()
        yield
        if service.worker is not None:
            service.worker.stop()
        webhooks.close()

    app = FastAPI(
        title="bgone: fal-ai/birefnet",
        version=__version__,
        lifespan=lifespan,
        description="Self-hosted, wire-compatible fal-ai/birefnet, fal-ai/birefnet/v2 and fal-ai/birefnet/v2/video.",
    )
    app.state.service = service
    # /files/upload and fal's one-PUT upload URLs stream their bodies under the image or video limit
    # themselves (a video may be far larger); a multipart upload's parts are bodies like any other.
    app.add_middleware(
        BodySizeLimit,
        limit=settings.max_request_bytes,
        own_limits=("/files/upload",),
        own_limit_paths=fal_uploads.SINGLE_PUT_PATH,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            # What fal's clients read from answers (the JS client: request id, timeout type, error type).
            expose_headers=["x-fal-request-id", "x-fal-request-timeout-type", "x-fal-error-type"],
        )

    @app.middleware("http")
    async def request_id_and_metrics(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        # fal_client treats a 502-504 without this header as an ingress error and retries it.
        response.headers.setdefault("x-fal-request-id", secrets.token_hex(16))
        if not request.scope.get(proxy.DISPATCHED):  # counted once, as the route that answered
            metrics.observe_http(request, response.status_code, time.perf_counter() - started)
        return response

    install_error_handlers(app, store.transient_errors)
    routers = (fal.router, requests.router, rembg.router, files.router, ops.router, playground.router)
    for router in (*routers, fal_uploads.router, proxy.router):
        app.include_router(router)
    playground.mount_static(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.get("components", {}).get("schemas", {})
        for model in (BirefnetInput, BirefnetV2Input, BirefnetV2VideoInput, BirefnetOutput, BirefnetVideoOutput):
            if model.__name__ in components:
                components[model.__name__]["x-fal-order-properties"] = field_order(model)
        schema["x-fal-order-paths"] = list(schema.get("paths", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
