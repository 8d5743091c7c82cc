"""The inference worker: owns the models, pulls jobs from the queue, batches them, stores results.

One worker runs one stream of work (one device). Jobs that share a batch key (model and operating
resolution) are claimed together and go through the network in one batch; everything else about a job
(its options, its outputs, its errors) stays its own. Each job's protocol adapter, looked up in an explicit
endpoint → adapter map, parses its payload, finishes its result and renders its body; the worker itself
knows no protocol and no route. Every job ends COMPLETED, with a result or with an error.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from bgone.errors import BgoneError, InputError, RequestCancelledError, StorageError, VideoTooLargeError
from bgone.imaging.data_uri import parse_data_uri
from bgone.imaging.decode import load_image
from bgone.imaging.fetch import fetch_to_file, fetch_url
from bgone.imaging.frames import DecodedImage
from bgone.pipeline.remover import Remover
from bgone.pipeline.runtime import ModelCache
from bgone.pipeline.video import VideoProgress, remove_video
from bgone.service.jobs import Job, JobStore, Outcome
from bgone.service.protocols import ProtocolAdapter, adapters_for
from bgone.service.protocols.base import StoredOutput, WorkItem, default_failure
from bgone.service.storage import Storage, sanitize_file_name
from bgone.service.upload_urls import EXPIRED_PARTS_GRACE_S, PARTS_PREFIX, UPLOAD_URL_SECONDS, UPLOADS_PREFIX
from bgone.service.urls import file_url, own_file_key
from bgone.service.webhooks import WebhookSender
from bgone.settings import ServerSettings

logger = logging.getLogger("bgone.worker")
PURGE_EVERY_S = 60.0
UPLOAD_SWEEP_EVERY_S = 3600.0  # listing every upload is heavier than the store's purge: hourly


@dataclass
class Planned:
    job: Job
    adapter: ProtocolAdapter
    item: WorkItem
    decoded: DecodedImage


@dataclass
class _Outputs:
    """A job's output files: stored, addressed under the request's base URL, and remembered so that a
    request that fails after storing some leaves none behind."""

    storage: Storage
    base_url: str
    keys: list[str] = field(default_factory=list)

    def save(self, data: bytes, file_name: str, content_type: str) -> StoredOutput:
        try:
            stored = self.storage.put(data, file_name=file_name, content_type=content_type)
        except Exception as exc:  # disk full, quota, object store unreachable
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise StorageError(f"could not store the output: {reason}") from exc
        self.keys.append(stored.key)
        return StoredOutput(stored.key, file_url(self.base_url, stored.key, self.storage))


class _ProgressLog:
    """Video progress into the request's logs: the first batch, then at most one line a second, and the last."""

    def __init__(self, log: Callable[[str], None], every: float = 1.0) -> None:
        self.log = log
        self.every = every
        self.last = -float("inf")

    def __call__(self, progress: VideoProgress) -> None:
        now = time.monotonic()
        if now - self.last >= self.every or progress.done >= progress.total:
            self.last = now
            self.log(f"Processed {progress}")


def _file_name(url: str) -> str:
    """A safe local file name for a video URL (its last path segment), so outputs are named after it."""
    if url.strip()[:5].lower() == "data:":
        return "video"
    stem = Path(unquote(urlsplit(url).path)).name
    return sanitize_file_name(stem, default="video")


class InferenceWorker:
    def __init__(
        self,
        settings: ServerSettings,
        store: JobStore,
        storage: Storage,
        metrics: Any = None,
        *,
        webhooks: WebhookSender | None = None,
        adapters: dict[str, ProtocolAdapter] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.metrics = metrics
        self.adapters = adapters if adapters is not None else adapters_for(settings)
        budget = settings.model_memory_mb * 1024 * 1024 if settings.model_memory_mb else None
        self.cache = ModelCache(max_models=settings.max_models, max_bytes=budget)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.webhooks = webhooks or WebhookSender.from_settings(store, settings)
        self.ready = settings.warm_model is None
        self.ready_error: str | None = None
        self._stop = threading.Event()
        self._last_upload_sweep = -float("inf")
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
        """Stop the loop, close the webhook sender and release the loaded models."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self.webhooks.close()
        self.cache.clear()

    def notify(self) -> None:
        """A job was submitted: wake up now rather than at the next poll."""
        self._wake.set()

    def _run_forever(self) -> None:
        self.webhooks.resume_pending()
        self._warm_up()
        last_purge = 0.0
        while not self._stop.is_set():
            try:
                # Jobs of dead workers (leases that ran out) and jobs that waited past their start deadline.
                for job in [*self.store.reclaim_expired(), *self.store.expire_start_deadlines()]:
                    if job.is_completed:
                        self._after_complete(job)
                if time.time() - last_purge > PURGE_EVERY_S:
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
            self.remover(self.settings.model_names("v2").get(self.settings.warm_model, self.settings.warm_model))
            self.ready = True
        except BgoneError as exc:
            self.ready_error = f"[{exc.error_type}] {exc}"
            logger.error("warm model %s could not be loaded: %s", self.settings.warm_model, exc)

    def _purge(self) -> None:
        now = time.time()
        for job in self.store.purge(completed_before=now - self.settings.retention_seconds):
            self.storage.delete(job.output_keys)
        if now - self._last_upload_sweep >= UPLOAD_SWEEP_EVERY_S:
            self._last_upload_sweep = now
            self.sweep_uploads(now)

    def sweep_uploads(self, now: float | None = None) -> int:
        """Delete uploads older than the retention, and the parts of multipart uploads whose URL expired
        without being completed (whichever node received them, across restarts): how many files."""
        now = time.time() if now is None else now
        try:
            stale = self.storage.stored_before(UPLOADS_PREFIX, now - self.settings.retention_seconds)
            stale += self.storage.stored_before(PARTS_PREFIX, now - UPLOAD_URL_SECONDS - EXPIRED_PARTS_GRACE_S)
            self.storage.delete(stale)
        except Exception as exc:  # a storage hiccup: the next sweep tries again
            logger.warning("could not sweep old uploads: %s", exc)
            return 0
        if stale:
            logger.info("deleted %d upload(s) older than the retention or abandoned", len(stale))
        return len(stale)

    def remover(self, source: str) -> Remover:
        remover = Remover(
            source,
            device=self.settings.device,
            dtype=self.settings.dtype,
            batch_size=self.settings.batch_size,
            compile=self.settings.compile,
            backend=self.settings.backend,
            limits=self.settings.limits,
            cache=self.cache,
            progress=False,
        )
        self.ready = True
        return remover

    # -- one batch -------------------------------------------------------------------------------
    def run_batch(self, jobs: list[Job]) -> None:
        try:
            self._run_batch(jobs)
        except Exception:
            # Something beyond one job failed, typically the queue itself (Redis restarting), so nothing
            # is decided for these jobs: releasing them hands them back to the queue once their leases
            # lapse (up to max_attempts) instead of failing them for the client.
            self.store.release([job.request_id for job in jobs])
            raise

    def _run_batch(self, jobs: list[Job]) -> None:
        transient = self.store.transient_errors
        planned: list[Planned] = []
        for job in jobs:
            adapter = self.adapters.get(job.endpoint)
            try:
                if adapter is None:
                    raise RuntimeError(f"no protocol adapter for endpoint {job.endpoint!r}")
                item = adapter.parse(job.payload["input"])
                if self.store.is_cancel_requested(job.request_id):
                    raise RequestCancelledError("Request cancelled")
                if item.video is not None:  # a video batches its own frames: it always runs alone
                    self._run_video(job, adapter, item)
                else:
                    planned.append(Planned(job, adapter, item, self._decode(job, item.source_url)))
            except transient:
                raise
            except Exception as exc:
                self._fail(job, adapter, exc)
        if not planned:
            return
        try:
            remover = self.remover(planned[0].item.model)
            for entry in planned:
                resolution = entry.item.options.operating_resolution
                self._log(entry.job, f"Running {remover.describe()} at {resolution} resolution")
            started = time.perf_counter()
            masks, sizes = remover.predict([p.decoded for p in planned], planned[0].item.options.operating_resolution)
            inference_time = time.perf_counter() - started
        except transient:
            raise
        except Exception as exc:
            for entry in planned:
                self._fail(entry.job, entry.adapter, exc)
            return
        refine_device = remover.device if remover.device.type != "cpu" else None
        for entry, image_masks, size in zip(planned, masks, sizes, strict=True):
            outputs = _Outputs(self.storage, entry.job.payload.get("base_url", ""))
            try:
                if self.store.is_cancel_requested(entry.job.request_id):
                    raise RequestCancelledError("Request cancelled")
                result = remover.finish(entry.decoded, image_masks, entry.item.options, size)
                result = entry.adapter.finish(entry.item, entry.decoded, result, refine_device=refine_device)
                self._log(entry.job, "Encoding output")
                body = entry.adapter.render(entry.item, result, outputs)
                self._log(entry.job, f"Completed in {inference_time:.2f}s of inference")
                outcome = Outcome(
                    200, body, metrics={"inference_time": inference_time}, output_keys=tuple(outputs.keys)
                )
                self._complete(entry.job, entry.item, outcome)
            except transient:
                raise
            except Exception as exc:
                self.storage.delete(outputs.keys)  # no half-stored result outlives its failed request
                self._fail(entry.job, entry.adapter, exc, entry.item)

    def _decode(self, job: Job, url: str) -> DecodedImage:
        self._log(job, "Downloading image" if url.startswith("http") else "Decoding image")
        decoded = self._load(url, job.payload.get("base_url", ""))
        frames = f", {len(decoded.frames)} frames" if decoded.is_animated else ""
        self._log(job, f"Decoded {decoded.source_format or 'image'} {decoded.size[0]}x{decoded.size[1]}{frames}")
        return decoded

    # -- one video ----------------------------------------------------------------------------------
    def _run_video(self, job: Job, adapter: ProtocolAdapter, item: WorkItem) -> None:
        """Download, run every frame in batches (progress in the logs, cancel within one batch), store the
        finished files, complete. Temporary files only until the outputs are stored; a crash re-queues it."""
        encoding = item.video
        outputs = _Outputs(self.storage, job.payload.get("base_url", ""))
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="bgone-video-") as folder:
                source = self._fetch_video(job, item.source_url, Path(folder))
                remover = self.remover(item.model)
                self._log(
                    job,
                    f"Running {remover.describe()} at {item.options.operating_resolution} resolution, "
                    f"{remover.batch_size} frames per pass",
                )
                output = Path(folder) / f"output.{encoding.format}"  # type: ignore[union-attr]
                mask = Path(folder) / f"mask.{encoding.format}" if item.options.output_mask else None  # type: ignore[union-attr]
                reporter = _ProgressLog(lambda message: self._log(job, message))
                result = remove_video(
                    remover,
                    source,
                    output,
                    options=item.options,
                    encoding=encoding,
                    mask_output=mask,
                    limits=self.settings.video_limits,
                    progress=reporter,
                    should_stop=lambda: self.store.is_cancel_requested(job.request_id),
                )
                self._log(job, "Storing the output")
                body = adapter.render(item, result, outputs)
            seconds = time.perf_counter() - started
            self._log(job, f"Completed {result.frames} frames in {seconds:.2f}s")
            metrics = {"inference_time": seconds, "frames": result.frames}
            self._complete(job, item, Outcome(200, body, metrics=metrics, output_keys=tuple(outputs.keys)))
        except BaseException:
            self.storage.delete(outputs.keys)  # no half-stored result outlives its failed request
            raise

    def _fetch_video(self, job: Job, url: str, folder: Path) -> Path:
        """The video as a local file: this server's own upload (from storage), a data URI, or a download
        streamed to disk under the byte limit."""
        limit = self.settings.max_video_bytes
        name = _file_name(url)
        target = folder / name
        key = own_file_key(url, job.payload.get("base_url", ""))
        if key is not None:
            self._log(job, "Reading the uploaded video")
            try:
                target.write_bytes(self.storage.get(key))
            except (KeyError, FileNotFoundError, ValueError) as exc:
                raise InputError(f"uploaded file not found: {url}") from exc
        elif url.strip()[:5].lower() == "data:":
            if len(url) > limit * 4 / 3 + 1024:
                raise VideoTooLargeError(f"the video's data URI is over the limit of {limit:,} bytes")
            target.write_bytes(parse_data_uri(url)[1])
        else:
            self._log(job, "Downloading video")
            fetch_to_file(
                url,
                target,
                max_bytes=limit,
                timeout=self.settings.fetch_timeout,
                allow_private=self.settings.allow_private_urls,
                allowed_hosts=self.settings.allowed_hosts,
            )
        if target.stat().st_size > limit:
            raise VideoTooLargeError(f"the video is {target.stat().st_size:,} bytes, over the limit of {limit:,}")
        return target

    def _load(self, url: str, base_url: str) -> DecodedImage:
        limits = self.settings.limits
        key = own_file_key(url, base_url)
        if key is not None:  # a file uploaded to this server: read it from storage, not over HTTP
            try:
                return load_image(self.storage.get(key), limits=limits)
            except (KeyError, FileNotFoundError, ValueError) as exc:
                raise InputError(f"uploaded file not found: {url}") from exc

        def fetch(target: str) -> bytes:
            return fetch_url(
                target,
                max_bytes=limits.max_bytes,
                timeout=self.settings.fetch_timeout,
                allow_private=self.settings.allow_private_urls,
                allowed_hosts=self.settings.allowed_hosts,
            )

        return load_image(url, limits=limits, fetcher=fetch)

    # -- outcomes --------------------------------------------------------------------------------
    def _log(self, job: Job, message: str, level: str = "INFO") -> None:
        self.store.append_log(job.request_id, message, level=level)

    def _complete(self, job: Job, item: WorkItem | None, outcome: Outcome) -> None:
        if item is not None and item.owned_keys:  # e.g. a rembg upload goes with its request
            outcome = replace(outcome, output_keys=(*outcome.output_keys, *item.owned_keys))
        done = self.store.complete(job.request_id, outcome)
        if done is not None:
            self._after_complete(done)

    def _after_complete(self, job: Job) -> None:
        if self.metrics is not None:
            self.metrics.observe_job(job)
        if job.webhook_url:
            self.webhooks.send(job)

    def _fail(
        self, job: Job, adapter: ProtocolAdapter | None, exc: BaseException, item: WorkItem | None = None
    ) -> None:
        failure = adapter.failure(exc, job.request_id) if adapter is not None else default_failure(exc, job.request_id)
        if isinstance(exc, StorageError):
            logger.error("job %s: %s", job.request_id, exc)
        if isinstance(exc, RequestCancelledError):
            self._log(job, "Cancelled", level="WARNING")
        else:
            first_line = failure.message.splitlines()[0] if failure.message else failure.error_type
            self._log(job, f"Failed: {first_line}", level="ERROR")
        self._complete(job, item, Outcome(failure.status, failure.body, failure.message, failure.error_type))


__all__ = ["InferenceWorker"]
