"""The inference worker: owns the models, pulls jobs from the queue, batches them, stores results.

One worker runs one stream of work (one device). Jobs that share model and resolution are claimed
together and go through the network in one batch; everything else about a job (its options, its
outputs, its errors) stays its own. Every job ends COMPLETED, with a result or with an error.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from .api.rembg import REMBG_ENDPOINT, RembgInput, rembg_batch_key, rembg_resolution
from .api.schemas import ENDPOINTS, BirefnetV2Input, ImageFile, version_of
from .api.settings import ServerSettings
from .errors import BgoneError, InputError, ModelError, StorageError
from .fetch import fetch_url
from .imaging import DecodedImage, encode_image, load_image, mime_for, to_data_uri
from .jobs import Job, JobStore
from .pipeline import RemovalOptions, Remover
from .postprocess import rembg_cutout
from .runtime import ModelCache
from .storage import Storage
from .webhooks import WebhookSender

logger = logging.getLogger("bgone.worker")
FILES_PREFIX = "/files/"


@dataclass
class Prepared:
    job: Job
    request: Any  # BirefnetInput | BirefnetV2Input | RembgInput
    decoded: DecodedImage
    options: RemovalOptions
    source: str  # the model to run: registry name or checkpoint path


def resolve_model(settings: ServerSettings, endpoint: str, fal_name: str) -> str:
    return settings.fal_model_map(version_of(endpoint))[fal_name]


def operating_resolution(request: Any, max_side: int | None = None) -> str | None:
    """fal's resolution enum for the model: Dynamic runs at the image's own size, the longer side capped
    by the chosen resolution; Light 2K at its native 2560x1440 (turned for portraits); every other model
    at the chosen square. ``max_side`` (a server limit) caps all of them."""
    side = int(str(request.operating_resolution).partition("x")[0])
    if max_side:
        side = min(side, max_side)
    fal_model = str(request.model)
    if fal_model == "General Use (Dynamic)":
        return f"dynamic:{side}"
    if fal_model == "General Use (Light 2K)" and not max_side:
        return None
    return f"{side}x{side}"


def batch_key_for(settings: ServerSettings, endpoint: str, payload: dict[str, Any]) -> str:
    if endpoint == REMBG_ENDPOINT:  # same form: model source | operating resolution
        return rembg_batch_key(settings, payload)
    request = ENDPOINTS[endpoint].model_validate(payload)
    source = resolve_model(settings, endpoint, str(request.model))
    return f"{source}|{operating_resolution(request, settings.max_operating_side)}"


class InferenceWorker:
    def __init__(self, settings: ServerSettings, store: JobStore, storage: Storage, metrics: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.metrics = metrics
        budget = settings.model_memory_mb * 1024 * 1024 if settings.model_memory_mb else None
        self.cache = ModelCache(max_models=settings.max_models, max_bytes=budget)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.webhooks = WebhookSender(
            store,
            attempts=settings.webhook_attempts,
            backoff=settings.webhook_backoff,
            timeout=settings.webhook_timeout,
            allow_private=settings.allow_private_urls,
            allowed_hosts=settings.allowed_hosts,
        )
        self.ready = settings.warm_model is None
        self.ready_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_forever, name="bgone-worker", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Run in the calling thread until :meth:`stop` (``bgone worker``)."""
        self._run_forever()

    def request_stop(self) -> None:
        """Finish the batch in hand, then leave the loop (SIGTERM)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self.webhooks.close()

    def notify(self) -> None:
        """A job was submitted: wake up now rather than at the next poll."""
        self._wake.set()

    def _run_forever(self) -> None:
        self.webhooks.resume_pending()
        self._warm_up()
        last_purge = 0.0
        while not self._stop.is_set():
            try:
                if hasattr(self.store, "reclaim_expired"):
                    self.store.reclaim_expired()
                for job in self.store.expire_start_deadlines():
                    self._after_complete(job)
                if time.time() - last_purge > 60:
                    last_purge = time.time()
                    self._purge()
                jobs = self.store.claim(self.worker_id, limit=1)
                if not jobs:
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                if self.settings.batch_size > 1 and jobs[0].batch_key:
                    jobs += self.store.claim(
                        self.worker_id, limit=self.settings.batch_size - 1, batch_key=jobs[0].batch_key
                    )
                self.run_batch(jobs)
            except Exception:
                logger.exception("worker loop error")
                time.sleep(0.5)

    def _warm_up(self) -> None:
        if self.settings.warm_model is None:
            return
        try:
            source = self.settings.fal_model_map("v2").get(self.settings.warm_model, self.settings.warm_model)
            self.remover(source)
            self.ready = True
        except BgoneError as exc:
            self.ready_error = f"[{exc.error_type}] {exc}"
            logger.error("warm model %s could not be loaded: %s", self.settings.warm_model, exc)

    def _purge(self) -> None:
        for job in self.store.purge(completed_before=time.time() - self.settings.retention_seconds):
            self.storage.delete(job.output_keys)

    def remover(self, source: str) -> Remover:
        remover = Remover(
            source,
            device=self.settings.device,
            dtype=self.settings.dtype,
            batch_size=self.settings.batch_size,
            compile=self.settings.compile,
            backend=self.settings.backend,
            max_pixels=self.settings.max_image_pixels,
            max_frames=self.settings.max_frames,
            cache=self.cache,
            progress=False,
        )
        self.ready = True
        return remover

    # -- one batch -------------------------------------------------------------------------------
    def run_batch(self, jobs: list[Job]) -> None:
        # Shared queues (Redis) lease claimed jobs: keep the lease alive while this batch runs.
        beating = threading.Event()
        if hasattr(self.store, "heartbeat"):
            ids = [job.request_id for job in jobs]

            def beat() -> None:
                while not beating.wait(max(1.0, getattr(self.store, "lease_seconds", 30.0) / 3)):
                    self.store.heartbeat(self.worker_id, ids)

            threading.Thread(target=beat, name="bgone-heartbeat", daemon=True).start()
        try:
            self._run_batch(jobs)
        except Exception:
            # Something beyond one job failed, typically the queue itself (Redis restarting), so nothing
            # is decided for these jobs: letting their leases lapse hands them back to the queue (up to
            # max_attempts) instead of failing them for the client.
            release = getattr(self.store, "release", None)
            if release is not None:
                release([job.request_id for job in jobs])
            raise
        finally:
            beating.set()

    def _run_batch(self, jobs: list[Job]) -> None:
        prepared: list[Prepared] = []
        transient = getattr(self.store, "transient_errors", ())
        for job in jobs:
            try:
                prepared.append(self._prepare(job))
            except transient:
                raise
            except Exception as exc:
                self._fail(job, exc)
        if not prepared:
            return
        source = prepared[0].source
        try:
            remover = self.remover(source)
            for item in prepared:
                self._log(
                    item.job,
                    f"Running {remover.describe()} at {item.options.operating_resolution or 'native resolution'}",
                )
            started = time.perf_counter()
            masks, sizes = remover.predict([p.decoded for p in prepared], prepared[0].options.operating_resolution)
            inference_time = time.perf_counter() - started
        except transient:
            raise
        except Exception as exc:
            for item in prepared:
                self._fail(item.job, exc)
            return
        for item, image_masks, size in zip(prepared, masks, sizes, strict=True):
            try:
                if self.store.is_cancel_requested(item.job.request_id):
                    self._cancelled(item.job)
                    continue
                result = remover.finish(item.decoded, image_masks, item.options, size)
                rembg = isinstance(item.request, RembgInput)
                if rembg:
                    result = self._rembg_frames(item, result, remover)
                self._log(item.job, "Encoding output")
                body, keys = self._rembg_output(item, result) if rembg else self._output(item, result)
                self._log(item.job, f"Completed in {inference_time:.2f}s of inference")
                self._complete(item.job, 200, body, metrics={"inference_time": inference_time}, output_keys=keys)
            except transient:
                raise
            except Exception as exc:
                self._fail(item.job, exc)

    def _prepare(self, job: Job) -> Prepared:
        payload = job.payload
        if job.endpoint == REMBG_ENDPOINT:
            return self._prepare_rembg(job)
        request = ENDPOINTS[job.endpoint].model_validate(payload["input"])
        if self.store.is_cancel_requested(job.request_id):
            raise _Cancelled()
        decoded = self._decode(job, request.image_url)
        options = RemovalOptions.build(
            operating_resolution=operating_resolution(request, self.settings.max_operating_side),
            refine_foreground=request.refine_foreground,
            output_mask=request.output_mask,
            mask_only=getattr(request, "mask_only", False),
        )
        return Prepared(job, request, decoded, options, resolve_model(self.settings, job.endpoint, str(request.model)))

    def _decode(self, job: Job, image_url: str) -> DecodedImage:
        self._log(job, "Downloading image" if image_url.startswith("http") else "Decoding image")
        decoded = self._load(image_url, job.payload.get("base_url", ""))
        self._log(
            job,
            f"Decoded {decoded.source_format or 'image'} {decoded.size[0]}x{decoded.size[1]}"
            + (f", {len(decoded.frames)} frames" if decoded.is_animated else ""),
        )
        return decoded

    # -- rembg's API (api/rembg.py): the network's mask, then rembg's options on it ----------------
    def _prepare_rembg(self, job: Job) -> Prepared:
        request = RembgInput.model_validate(job.payload["input"])
        if self.store.is_cancel_requested(job.request_id):
            raise _Cancelled()
        decoded = self._decode(job, request.image_url)
        resolution = rembg_resolution(request.model, request.operating_resolution, self.settings.max_operating_side)
        # The pipeline stops at the alpha (times any input alpha); rembg_cutout does the rest.
        options = RemovalOptions.build(operating_resolution=resolution, refine_foreground=False, mask_only=True)
        return Prepared(job, request, decoded, options, request.model)

    def _rembg_frames(self, item: Prepared, result: Any, remover: Remover) -> Any:
        options = item.request.options()
        device = remover.device if remover.device.type != "cpu" else None
        result.frames = [
            rembg_cutout(frame, mask, options, refine_device=device)
            for frame, mask in zip(item.decoded.frames, result.masks, strict=True)
        ]
        return result

    def _rembg_output(self, item: Prepared, result: Any) -> tuple[dict[str, Any], list[str]]:
        """Always PNG, as rembg; a still image keeps its mode (RGBA, or "L" for a mask) like rembg's."""
        if len(result.frames) == 1:
            buffer = io.BytesIO()
            result.frames[0].save(buffer, "PNG")
            data = buffer.getvalue()
        else:  # an animation: APNG, every frame
            data = encode_image(result.frames, "png", durations=result.durations, loop=result.loop)
        stem = (item.decoded.name or "rembg").replace("/", "_")[:80]
        name = f"{stem}-{'mask' if item.request.only_mask else 'output'}.png"
        stored = self._store(data, name, "image/png")
        width, height = result.frames[0].size
        url = f"{item.job.payload.get('base_url', '')}{FILES_PREFIX}{stored.key}"
        image = ImageFile(
            url=url, content_type="image/png", file_name=name, file_size=len(data), width=width, height=height
        )
        return {"image": image.model_dump(), "storage_key": stored.key}, [stored.key]

    def _load(self, url: str, base_url: str) -> DecodedImage:
        limits = {
            "max_bytes": self.settings.max_image_bytes,
            "max_pixels": self.settings.max_image_pixels,
            "max_frames": self.settings.max_frames,
        }
        key = self._own_file_key(url, base_url)
        if key is not None:  # a file uploaded to this server: read it from storage, not over HTTP
            try:
                return load_image(self.storage.get(key), **limits)
            except (KeyError, FileNotFoundError, ValueError) as exc:
                raise InputError(f"uploaded file not found: {url}") from exc

        def fetch(target: str) -> bytes:
            return fetch_url(
                target,
                max_bytes=self.settings.max_image_bytes,
                timeout=self.settings.fetch_timeout,
                allow_private=self.settings.allow_private_urls,
                allowed_hosts=self.settings.allowed_hosts,
            )

        return load_image(url, fetcher=fetch, **limits)

    @staticmethod
    def _own_file_key(url: str, base_url: str) -> str | None:
        if not base_url or not url.startswith(("http://", "https://")):
            return None
        target, base = urlparse(url), urlparse(base_url)
        base_path = base.path.rstrip("/")
        if target.netloc != base.netloc or not target.path.startswith(base_path + FILES_PREFIX):
            return None
        return target.path[len(base_path + FILES_PREFIX) :]

    def _output(self, item: Prepared, result: Any) -> tuple[dict[str, Any], list[str]]:
        fmt = str(item.request.output_format)
        keys: list[str] = []

        def image_file(frames: list[Any], name: str, durations: list[int]) -> dict[str, Any]:
            data = encode_image(frames, fmt, durations=durations, loop=result.loop)
            mime = mime_for(fmt)
            if item.request.sync_mode:
                url = to_data_uri(data, mime)
            else:
                stored = self._store(data, name, mime)
                keys.append(stored.key)
                presigned = getattr(self.storage, "url_for", lambda key: None)(stored.key)
                url = presigned or f"{item.job.payload.get('base_url', '')}{FILES_PREFIX}{stored.key}"
            width, height = frames[0].size
            return ImageFile(
                url=url, content_type=mime, file_name=name, file_size=len(data), width=width, height=height
            ).model_dump()

        stem = (item.decoded.name or "birefnet").replace("/", "_")[:80]
        try:
            body: dict[str, Any] = {"image": image_file(result.frames, f"{stem}-output.{fmt}", result.durations)}
            if item.request.output_mask:
                body["mask_image"] = image_file(result.masks, f"{stem}-mask.{fmt}", result.durations)
        except BaseException:
            self.storage.delete(keys)  # no half-stored result outlives its failed request
            raise
        return body, keys

    # -- outcomes --------------------------------------------------------------------------------
    def _store(self, data: bytes, name: str, mime: str) -> Any:
        try:
            return self.storage.put(data, file_name=name, content_type=mime)
        except Exception as exc:  # disk full, quota, object store unreachable
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise StorageError(f"could not store the output: {reason}") from exc

    def _log(self, job: Job, message: str, level: str = "INFO") -> None:
        self.store.append_log(job.request_id, message, level=level)

    def _complete(self, job: Job, status_code: int, body: Any, **kw: Any) -> None:
        upload = (job.payload.get("input") or {}).get("input_key") if job.endpoint == REMBG_ENDPOINT else None
        if upload:  # a rembg upload goes with the request (the route deletes it too, when it is still there)
            kw["output_keys"] = [*kw.get("output_keys", []), upload]
        done = self.store.complete(job.request_id, status_code=status_code, body=body, **kw)
        if done is not None:
            self._after_complete(done)

    def _after_complete(self, job: Job) -> None:
        if self.metrics is not None:
            self.metrics.observe_job(job)
        if job.webhook_url:
            self.webhooks.send(job.request_id, job.webhook_url, job.result_status or 500, job.result_body)

    def _cancelled(self, job: Job) -> None:
        self._log(job, "Cancelled", level="WARNING")
        self._complete(
            job,
            499,
            {"detail": "Request cancelled", "error_type": "client_cancelled"},
            error="Request cancelled",
            error_type="client_cancelled",
        )

    def _fail(self, job: Job, exc: BaseException) -> None:
        if isinstance(exc, _Cancelled):
            self._cancelled(job)
            return
        if isinstance(exc, InputError):
            status, error_type, message = 422, exc.error_type, str(exc)
            body: dict[str, Any] = {"detail": [{"loc": ["body", "image_url"], "msg": message, "type": error_type}]}
        elif isinstance(exc, ModelError):
            status, error_type, message = 500, exc.error_type, str(exc)
            body = {"detail": message, "error_type": error_type}
        elif isinstance(exc, StorageError):
            status, error_type, message = 503, exc.error_type, str(exc)
            body = {"detail": message, "error_type": error_type}
            logger.error("job %s: %s", job.request_id, message)
        else:
            status, error_type, message = 500, "internal_error", "Internal Server Error"
            body = {"detail": message, "error_type": error_type}
            logger.error("job %s failed:\n%s", job.request_id, "".join(traceback.format_exception(exc)))
        self._log(job, f"Failed: {message.splitlines()[0] if message else error_type}", level="ERROR")
        self._complete(job, status, body, error=message, error_type=error_type)


class _Cancelled(Exception):
    pass


__all__ = ["BirefnetV2Input", "InferenceWorker", "batch_key_for", "resolve_model"]
