"""rembg's HTTP API (``rembg s``) on bgone's queue: ``GET /api/remove?url=…`` and ``POST /api/remove``.

The routes take rembg's parameters (``model``, ``a``, ``af``, ``ab``, ``ae``, ``om``, ``ppm``, ``bgc``,
``extras``) and answer ``image/png``, so tools written for ``rembg s`` work against ``bgone serve``.
Behind them is the same machinery as the fal routes: each request becomes a job on the internal
endpoint :data:`REMBG_ENDPOINT` (never a fal route), with :class:`RembgInput` as its payload, so the
queue, batching, URL rules, limits, metrics and crash recovery apply unchanged; a worker anywhere
(``role=api`` with Redis) runs it and stores the PNG, which the route reads back and returns.

An upload is stored like ``/files/upload`` stores files and handed to the worker by its own
``/files/`` URL (read from storage, never over HTTP); it is deleted with the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ..jobs import Job, JobStatus, JobStore
from ..preprocess import DEFAULT_NATIVE, parse_resolution
from ..storage import Storage
from ..zoo import REGISTRY
from .settings import ServerSettings

logger = logging.getLogger("bgone.api")

REMBG_ENDPOINT = "bgone/rembg"  # internal: the job endpoint of both routes; no fal route answers it
REMBG_APP = "bgone/rembg"

# rembg's BiRefNet session names → bgone registry names (the same upstream checkpoints; rembg runs
# ONNX exports of them). Overridable per server: {"rembg": {"birefnet-general": "hr"}} in --model-map.
REMBG_MODEL_MAP: dict[str, str] = {
    "birefnet-general": "general",
    "birefnet-general-lite": "lite",
    "birefnet-portrait": "portrait",
    "birefnet-dis": "dis",
    "birefnet-hrsod": "hrsod",
    "birefnet-cod": "cod",
    "birefnet-massive": "massive",
}
DEFAULT_FAL_MODEL = "General Use (Light)"  # without `model`, the rembg routes use what this maps to on /v2
MAX_EXTRAS_SIDE = 2560  # an operating side asked for in `extras`: the zoo's largest native side (Light 2K)
ERROR_STATUS = {  # a failed job's error type → the status the rembg routes answer with
    "file_download_error": 400,  # rembg answers 400 for URLs it refuses or cannot fetch
    "invalid_input": 400,
    "image_too_large": 413,
    "image_load_error": 422,
}


class RembgInput(BaseModel):
    """The job payload behind the rembg routes (internal: built by the routes, never sent by clients)."""

    model_config = ConfigDict(extra="ignore", title="RembgInput")

    image_url: str = Field(description="http(s) URL, this server's own /files/ URL of an upload, or a data URI")
    model: str = Field(description="registry name or checkpoint path, resolved by the API from the rembg name")
    rembg_model: str | None = Field(default=None, description="the model name the client asked for")
    operating_resolution: str | None = Field(default=None, description="WxH, dynamic[:N], or None (native)")
    alpha_matting: bool = False
    alpha_matting_foreground_threshold: int = Field(default=240, ge=0, le=255)
    alpha_matting_background_threshold: int = Field(default=10, ge=0, le=255)
    alpha_matting_erode_size: int = Field(default=10, ge=0, le=255)
    only_mask: bool = False
    post_process_mask: bool = False
    bgcolor: tuple[int, int, int, int] | None = None
    refine_foreground: bool = True
    input_key: str | None = Field(default=None, description="storage key of the uploaded input, deleted with the job")

    def options(self) -> Any:
        from ..postprocess import RembgOptions

        return RembgOptions(
            alpha_matting=self.alpha_matting,
            foreground_threshold=self.alpha_matting_foreground_threshold,
            background_threshold=self.alpha_matting_background_threshold,
            erode_size=self.alpha_matting_erode_size,
            only_mask=self.only_mask,
            post_process_mask=self.post_process_mask,
            bgcolor=self.bgcolor,
            refine_foreground=self.refine_foreground,
        )


class RembgError(Exception):
    """A request the rembg routes refuse before queueing it: ``{"detail": ..., "error_type": ...}``."""

    def __init__(self, status_code: int, detail: str, error_type: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.error_type = error_type

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"detail": self.detail, "error_type": self.error_type},
            status_code=self.status_code,
            headers={"x-fal-error-type": self.error_type},
        )


def _invalid(loc: list[str], message: str) -> RequestValidationError:
    """A 422 in FastAPI's shape (what rembg answers for bad parameters), naming the field."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error", "input": None}])


# -- parameters ---------------------------------------------------------------------------------------
def supported_models(settings: ServerSettings) -> list[str]:
    return sorted(settings.rembg_model_map())


def resolve_rembg_model(settings: ServerSettings, name: str | None) -> str:
    """A rembg model name → what the worker loads (registry name, or checkpoint path from the server's
    model map). Also accepted: a fal /v2 name and a bgone registry name or alias; never a file path.
    Without a name: what ``General Use (Light)`` maps to in the server's model map."""
    if name is None or not name.strip():
        return settings.fal_model_map("v2")[DEFAULT_FAL_MODEL]
    text = name.strip()
    rembg_names = {k.lower(): v for k, v in settings.rembg_model_map().items()}
    if text.lower() in rembg_names:
        return rembg_names[text.lower()]
    fal_names = settings.fal_model_map("v2")
    if text in fal_names:
        return fal_names[text]
    variant = REGISTRY.find(text)
    if variant is not None:
        return variant.name
    raise RembgError(
        400,
        f"model {text!r} is not available in bgone, which serves BiRefNet models only (rembg's u2net, isnet, "
        f"silueta, sam and other sessions are not provided). Use one of: {', '.join(supported_models(settings))}; "
        "or a bgone model name (`bgone models list`), or leave `model` out for the server's default.",
        "unknown_model",
    )


def parse_bgcolor(value: str | None, loc: list[str]) -> tuple[int, int, int, int] | None:
    """rembg's ``bgc``: ``R,G,B`` or ``R,G,B,A``, integers 0..255 (alpha 255 when left out)."""
    if value is None or not value.strip():
        return None
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (3, 4) or not all(0 <= n <= 255 for n in numbers):
        raise _invalid(loc, f"bgc must be R,G,B or R,G,B,A with integers 0..255, got {value[:60]!r}")
    return (numbers[0], numbers[1], numbers[2], numbers[3] if len(numbers) == 4 else 255)


def parse_extras(value: str | None, loc: list[str]) -> dict[str, Any]:
    """rembg's ``extras`` JSON. Invalid JSON, or JSON that is not an object, is ignored as rembg ignores
    it; of the keys, bgone honours ``operating_resolution`` and ``refine_foreground`` and ignores the rest."""
    if value is None or not value.strip():
        return {}
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):  # JSONDecodeError, and ints beyond Python's digit limit
        logger.info("rembg extras ignored: not valid JSON")
        return {}
    if not isinstance(data, dict):
        logger.info("rembg extras ignored: not a JSON object")
        return {}
    honoured: dict[str, Any] = {}
    if data.get("operating_resolution") is not None:
        resolution = data["operating_resolution"]
        try:
            if not isinstance(resolution, str | int) or isinstance(resolution, bool):
                raise ValueError("expected a string such as '2048x2048', a number, or 'dynamic'")
            parsed = parse_resolution(resolution)
            if isinstance(parsed, tuple) and max(parsed) > MAX_EXTRAS_SIDE:
                raise ValueError(f"each side can be at most {MAX_EXTRAS_SIDE}")
        except ValueError as exc:
            raise _invalid(loc, f"extras.operating_resolution: {exc}") from None
        honoured["operating_resolution"] = _resolution_text(parsed)
    if "refine_foreground" in data:
        if not isinstance(data["refine_foreground"], bool):
            raise _invalid(loc, "extras.refine_foreground must be true or false")
        honoured["refine_foreground"] = data["refine_foreground"]
    return honoured


def _resolution_text(parsed: tuple[int, int] | str | None) -> str | None:
    if parsed is None or isinstance(parsed, str):
        return parsed
    return f"{parsed[0]}x{parsed[1]}"


def rembg_resolution(source: str, requested: str | None, max_side: int | None) -> str | None:
    """The operating resolution of a rembg job: the one asked for in ``extras`` (None: the model's
    native one), with every side capped by the server's ``max_operating_side``. The same string goes
    into the batch key and to the pipeline, so jobs batched together run alike (fal jobs included)."""
    parsed = parse_resolution(requested)
    if not max_side:
        return _resolution_text(parsed)
    cap = max(32, max_side // 32 * 32)
    if parsed is None:
        variant = REGISTRY.find(source)
        if variant is None:
            parsed = DEFAULT_NATIVE
        elif variant.resolution is None:
            parsed = "dynamic"
        else:
            parsed = variant.resolution
    if parsed == "dynamic":
        return f"dynamic:{cap}"
    if isinstance(parsed, str):  # dynamic:N
        return f"dynamic:{min(int(parsed.partition(':')[2]), cap)}"
    return f"{min(parsed[0], cap)}x{min(parsed[1], cap)}"


def rembg_batch_key(settings: ServerSettings, payload: dict[str, Any]) -> str:
    request = RembgInput.model_validate(payload)
    resolution = rembg_resolution(request.model, request.operating_resolution, settings.max_operating_side)
    return f"{request.model}|{resolution}"


def build_input(
    settings: ServerSettings,
    *,
    image_url: str,
    model: str | None,
    a: bool,
    af: int,
    ab: int,
    ae: int,
    om: bool,
    ppm: bool,
    bgc: str | None,
    bgc_loc: list[str],
    extras: str | None,
    extras_loc: list[str],
) -> RembgInput:
    bgcolor = parse_bgcolor(bgc, bgc_loc)
    honoured = parse_extras(extras, extras_loc)
    source = resolve_rembg_model(settings, model)
    return RembgInput(
        image_url=image_url,
        model=source,
        rembg_model=model.strip() if model and model.strip() else None,
        operating_resolution=rembg_resolution(
            source, honoured.get("operating_resolution"), settings.max_operating_side
        ),
        alpha_matting=a,
        alpha_matting_foreground_threshold=af,
        alpha_matting_background_threshold=ab,
        alpha_matting_erode_size=ae,
        only_mask=om,
        post_process_mask=ppm,
        bgcolor=bgcolor,
        refine_foreground=honoured.get("refine_foreground", True),
    )


# -- the routes ---------------------------------------------------------------------------------------
DESCRIPTIONS = {
    "model": "rembg model name: birefnet-general, birefnet-general-lite, birefnet-portrait, birefnet-dis, "
    "birefnet-hrsod, birefnet-cod, birefnet-massive (or a bgone model name). Default: the server's "
    "'General Use (Light)' model.",
    "a": "Alpha matting: sure foreground (mask > af) and sure background (mask < ab), eroded by ae, become "
    "opaque and transparent; the model's soft alpha is kept between them, and colours are re-estimated.",
    "af": "Trimap foreground threshold (0-255).",
    "ab": "Trimap background threshold (0-255).",
    "ae": "Erosion size of the trimap's sure regions (0-255).",
    "om": "Return only the mask (greyscale PNG).",
    "ppm": "Post-process the mask: opening, Gaussian blur (sigma 2), threshold at 127 (a hard 0/255 mask).",
    "bgc": "Background colour R,G,B or R,G,B,A (0-255) under the cut-out.",
    "extras": 'JSON; bgone reads {"operating_resolution": "2048x2048", "refine_foreground": false}; other keys '
    "and invalid JSON are ignored.",
}
PNG_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "The cut-out (or the mask) as PNG."},
    400: {"description": "Unknown model, or a URL that is refused or cannot be fetched."},
    413: {"description": "An image over the size or pixel limits."},
    422: {"description": "Invalid parameters, or bytes that are not a readable image."},
}


def add_rembg_routes(
    app: FastAPI,
    *,
    settings: ServerSettings,
    store: JobStore,
    storage: Storage,
    submit: Callable[..., Job],
    base_url: Callable[[Request], str],
    dependencies: list[Any],
) -> None:
    """Register ``GET`` and ``POST /api/remove`` on ``app``; ``submit`` is the app's own job submission."""

    async def run(request: Request, body: RembgInput) -> Response:
        job = submit(request, REMBG_ENDPOINT, body, sync=True, app_id=REMBG_APP, webhooks=False)
        headers = {"x-fal-request-id": job.request_id}
        try:
            try:
                current = await _wait(store, job.request_id, request)
            except (asyncio.CancelledError, _ClientGone):  # nobody will read the result: free the worker
                store.cancel(job.request_id)
                raise
            if current.result_status != 200:
                return _error_response(current)
            key = (current.result_body or {}).get("storage_key")
            try:
                data = await asyncio.to_thread(storage.get, key)
            except (KeyError, FileNotFoundError, ValueError, TypeError):
                logger.error("rembg request %s: stored output %r is missing", job.request_id, key)
                return RembgError(503, "the output could not be read back", "storage_error").response()
            await asyncio.to_thread(storage.delete, [key])  # the purge would only find it gone
            return Response(data, media_type="image/png", headers=headers)
        except _ClientGone:
            return Response(status_code=499, headers=headers)  # never read: the client is gone
        finally:
            if body.input_key:  # not awaited: this also runs while the request is being cancelled
                storage.delete([body.input_key])

    @app.get("/api/remove", dependencies=dependencies, tags=["rembg"], responses=PNG_RESPONSES)
    async def rembg_remove_url(
        request: Request,
        url: Annotated[str, Query(description="http(s) URL of the image")],
        model: Annotated[str | None, Query(description=DESCRIPTIONS["model"])] = None,
        a: Annotated[bool, Query(description=DESCRIPTIONS["a"])] = False,
        af: Annotated[int, Query(ge=0, le=255, description=DESCRIPTIONS["af"])] = 240,
        ab: Annotated[int, Query(ge=0, le=255, description=DESCRIPTIONS["ab"])] = 10,
        ae: Annotated[int, Query(ge=0, le=255, description=DESCRIPTIONS["ae"])] = 10,
        om: Annotated[bool, Query(description=DESCRIPTIONS["om"])] = False,
        ppm: Annotated[bool, Query(description=DESCRIPTIONS["ppm"])] = False,
        bgc: Annotated[str | None, Query(description=DESCRIPTIONS["bgc"])] = None,
        extras: Annotated[str | None, Query(description=DESCRIPTIONS["extras"])] = None,
    ) -> Response:
        """rembg's ``GET /api/remove``: fetch the image at ``url`` (same URL rules as the fal routes) and
        answer the cut-out as PNG."""
        try:
            parts = urlsplit(url.strip())
            valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            return RembgError(400, f"url must be an http(s) URL, got {url[:100]!r}", "file_download_error").response()
        try:
            body = build_input(
                settings,
                image_url=url.strip(),
                model=model,
                a=a,
                af=af,
                ab=ab,
                ae=ae,
                om=om,
                ppm=ppm,
                bgc=bgc,
                bgc_loc=["query", "bgc"],
                extras=extras,
                extras_loc=["query", "extras"],
            )
        except RembgError as exc:
            return exc.response()
        return await run(request, body)

    @app.post("/api/remove", dependencies=dependencies, tags=["rembg"], responses=PNG_RESPONSES)
    async def rembg_remove_file(
        request: Request,
        file: Annotated[UploadFile, File(description="The image (multipart form field `file`)")],
        model: Annotated[str | None, Form(description=DESCRIPTIONS["model"])] = None,
        a: Annotated[bool, Form(description=DESCRIPTIONS["a"])] = False,
        af: Annotated[int, Form(ge=0, le=255, description=DESCRIPTIONS["af"])] = 240,
        ab: Annotated[int, Form(ge=0, le=255, description=DESCRIPTIONS["ab"])] = 10,
        ae: Annotated[int, Form(ge=0, le=255, description=DESCRIPTIONS["ae"])] = 10,
        om: Annotated[bool, Form(description=DESCRIPTIONS["om"])] = False,
        ppm: Annotated[bool, Form(description=DESCRIPTIONS["ppm"])] = False,
        bgc: Annotated[str | None, Form(description=DESCRIPTIONS["bgc"] + " Form field or query parameter.")] = None,
        extras: Annotated[
            str | None, Form(description=DESCRIPTIONS["extras"] + " Form field or query parameter.")
        ] = None,
        bgc_query: Annotated[
            str | None, Query(alias="bgc", description="bgc as a query parameter (as rembg declares it)")
        ] = None,
        extras_query: Annotated[
            str | None, Query(alias="extras", description="extras as a query parameter (as rembg declares it)")
        ] = None,
    ) -> Response:
        """rembg's ``POST /api/remove``: the image in the multipart field ``file``, parameters as form
        fields (``bgc`` and ``extras`` as form fields or, as rembg declares them, query parameters)."""
        use_form_bgc, use_form_extras = bgc is not None, extras is not None
        try:
            body = build_input(
                settings,
                image_url="",
                model=model,
                a=a,
                af=af,
                ab=ab,
                ae=ae,
                om=om,
                ppm=ppm,
                bgc=bgc if use_form_bgc else bgc_query,
                bgc_loc=["body" if use_form_bgc else "query", "bgc"],
                extras=extras if use_form_extras else extras_query,
                extras_loc=["body" if use_form_extras else "query", "extras"],
            )
            data = await _read_upload(file, settings.max_image_bytes)
        except RembgError as exc:
            return exc.response()
        stored = await asyncio.to_thread(
            storage.put,
            data,
            file_name=file.filename or "upload.bin",
            content_type=file.content_type or "application/octet-stream",
            prefix="uploads",
        )
        body = body.model_copy(update={"image_url": f"{base_url(request)}/files/{stored.key}", "input_key": stored.key})
        try:
            return await run(request, body)
        except BaseException:
            storage.delete([stored.key])  # e.g. the queue was unavailable
            raise


async def _read_upload(file: UploadFile, limit: int) -> bytes:
    if file.size is not None and file.size > limit:
        raise RembgError(413, f"upload of {file.size} bytes is over the {limit}-byte limit", "image_too_large")
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise RembgError(413, f"upload is over the {limit}-byte limit", "image_too_large")
    if not data:
        raise RembgError(400, "empty upload: send the image in the multipart field `file`", "invalid_input")
    return data


class _ClientGone(Exception):
    pass


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects. (``request.is_disconnected()`` never sees it behind the
    app's HTTP middleware, which cancels the read it polls with; this read blocks instead.)"""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _wait(store: JobStore, request_id: str, request: Request) -> Job:
    """The job once COMPLETED; _ClientGone if the client disconnects first."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        while True:
            current = store.get(request_id)
            if current is not None and current.status == JobStatus.COMPLETED:
                return current
            if gone.done():
                raise _ClientGone()
            since = current.version if current is not None else None
            await asyncio.to_thread(store.wait, request_id, timeout=1.0, since=since)
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await gone


def _error_response(job: Job) -> JSONResponse:
    """A failed job as rembg-style JSON: ``{"detail": "...", "error_type": "..."}``."""
    error_type = job.error_type or "internal_error"
    status = ERROR_STATUS.get(error_type, job.result_status or 500)
    headers = {"x-fal-request-id": job.request_id, "x-fal-error-type": error_type}
    return JSONResponse(
        {"detail": job.error or error_type, "error_type": error_type}, status_code=status, headers=headers
    )
