"""The job-store interface: a durable queue plus the request history behind the fal queue API.

Status semantics follow fal's queue (``IN_QUEUE`` → ``IN_PROGRESS`` → ``COMPLETED``): there is no
separate failed/cancelled state, a failed or cancelled request is ``COMPLETED`` with an error
``result_status``/``result_body`` that the result endpoint replays verbatim.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any, Protocol, Self, runtime_checkable


class JobStatus(StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


class Priority(IntEnum):
    """``X-Fal-Queue-Priority``; a smaller value runs first."""

    NORMAL = 0
    LOW = 1

    @classmethod
    def from_header(cls, value: str | None) -> Priority:
        """Parse an ``X-Fal-Queue-Priority`` header value (missing/empty → NORMAL); ValueError otherwise."""
        if value is None or not value.strip():
            return cls.NORMAL
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"invalid queue priority {value!r} (expected 'normal' or 'low')") from None


class CancelOutcome(StrEnum):
    """The values fal's ``PUT …/cancel`` reports in ``{"status": …}``."""

    CANCELLATION_REQUESTED = "CANCELLATION_REQUESTED"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NOT_FOUND = "NOT_FOUND"


@dataclass(frozen=True)
class Outcome:
    """How a request ended: the status code and body its result replays (fal's format), the error and its
    type when it failed, metrics, and the storage keys of its files (deleted with it)."""

    status_code: int
    body: Any
    error: str | None = None
    error_type: str | None = None
    metrics: dict[str, Any] | None = None
    output_keys: tuple[str, ...] = ()

    @classmethod
    def failed(cls, status_code: int, detail: str, error_type: str) -> Outcome:
        """A failure in fal's request-error format: ``{"detail", "error_type"}``."""
        return cls(status_code, {"detail": detail, "error_type": error_type}, error=detail, error_type=error_type)


# The outcomes the store itself writes (fal's request errors). recover() gives up on a job whose worker
# died `max_attempts` times (a poison input would otherwise crash every restart); 503 runner_disconnected
# is what fal reports when a runner goes away.
CANCELLED = Outcome.failed(499, "Request cancelled", "client_cancelled")
TIMED_OUT = Outcome.failed(504, "Request timed out before it started", "request_timeout")
INTERRUPTED = Outcome.failed(503, "The worker stopped while processing the request", "runner_disconnected")


EPHEMERAL_TTL_S = 300.0  # keep_history=False results only need to live until the sync caller read them


def utc_timestamp(epoch: float | None = None) -> str:
    """ISO-8601 UTC with millisecond precision and a ``Z`` suffix, like fal's log timestamps."""
    moment = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class LogEntry:
    message: str
    level: str = "INFO"
    source: str = "bgone"
    timestamp: str = field(default_factory=utc_timestamp)

    def to_dict(self) -> dict[str, str]:
        """The wire shape of a fal log line: ``{"message", "level", "source", "timestamp"}``."""
        return {"message": self.message, "level": self.level, "source": self.source, "timestamp": self.timestamp}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogEntry:
        return cls(
            message=str(data.get("message", "")),
            level=str(data.get("level", "INFO")),
            source=str(data.get("source", "bgone")),
            timestamp=str(data.get("timestamp") or utc_timestamp()),
        )


@dataclass
class Job:
    """A snapshot of one request; mutating it changes nothing in the store."""

    request_id: str
    endpoint: str  # the submitted model id, e.g. "fal-ai/birefnet/v2"
    app: str  # owner/alias used in status/result/cancel URLs, e.g. "fal-ai/birefnet"
    payload: dict[str, Any]  # the validated input JSON
    status: JobStatus = JobStatus.IN_QUEUE
    priority: Priority = Priority.NORMAL
    batch_key: str = ""  # jobs with the same key can share a forward pass
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    start_deadline: float | None = None  # epoch seconds (X-Fal-Request-Timeout): must START before it
    webhook_url: str | None = None
    user_id: str | None = None  # X-Fal-Webhook-User-Id of its webhook (one per API key, or configured)
    keep_history: bool = True  # False for sync_mode requests
    logs: list[LogEntry] = field(default_factory=list)
    result_status: int | None = None  # HTTP status code the result endpoint replays
    result_body: Any = None  # JSON body the result endpoint replays
    error: str | None = None
    error_type: str | None = None
    metrics: dict[str, Any] | None = None
    cancel_requested: bool = False
    worker_id: str | None = None
    attempts: int = 0  # how many times a worker claimed it
    output_keys: list[str] = field(default_factory=list)  # storage keys to delete with the job
    webhook_delivered: bool = False
    webhook_attempts: int = 0
    webhook_error: str | None = None
    # Bumped by every change; pass it to JobStore.wait(since=…) so a change made between reading
    # the job and starting to wait is not missed.
    version: int = 0

    @classmethod
    def new(
        cls,
        *,
        endpoint: str,
        app: str,
        payload: dict[str, Any],
        priority: Priority = Priority.NORMAL,
        batch_key: str = "",
        start_deadline: float | None = None,
        webhook_url: str | None = None,
        user_id: str | None = None,
        keep_history: bool = True,
        request_id: str | None = None,
    ) -> Job:
        """A request to submit (IN_QUEUE, created now): what :meth:`JobStore.submit` takes."""
        return cls(
            request_id=request_id or str(uuid.uuid4()),
            endpoint=endpoint,
            app=app,
            payload=payload,
            priority=Priority(priority),
            batch_key=batch_key,
            start_deadline=start_deadline,
            webhook_url=webhook_url,
            user_id=user_id,
            keep_history=keep_history,
            created_at=time.time(),
        )

    def to_record(self) -> dict[str, Any]:
        """Every field as a plain value (enums as str/int, logs as dicts): what a backend stores."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record.update(status=self.status.value, priority=int(self.priority), logs=[e.to_dict() for e in self.logs])
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Job:
        """The inverse of :meth:`to_record`; keys that are not fields (a backend's own columns) are ignored,
        missing optional fields take their defaults."""
        values = {f.name: record[f.name] for f in fields(cls) if f.name in record}
        values["status"] = JobStatus(values["status"])
        values["priority"] = Priority(int(values.get("priority") or 0))
        values["logs"] = [LogEntry.from_dict(entry) for entry in values.get("logs") or []]
        values["payload"] = values.get("payload") or {}
        values["output_keys"] = list(values.get("output_keys") or [])
        for flag in ("keep_history", "cancel_requested", "webhook_delivered"):
            if flag in values:
                values[flag] = bool(values[flag])
        return cls(**values)

    @property
    def is_completed(self) -> bool:
        return self.status is JobStatus.COMPLETED


class ClosingStore:
    """What every store shares besides the protocol: ``with store:`` closes it on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class JobStore(Protocol):
    """A durable request queue and history. All methods are blocking and thread-safe; each state
    change is one committed transaction, so a process killed at any point leaves a consistent store.
    Async callers should run them in a worker thread (they are short, except ``wait``)."""

    transient_errors: tuple[type[Exception], ...]
    """Exceptions that mean the backend itself is unreachable for now (Redis restarting), not that a
    request failed: nothing is decided for the jobs in hand. Empty for a backend without such failures."""

    def submit(self, job: Job) -> Job:
        """Enqueue ``job`` (made with :meth:`Job.new`) and return it. An id that already exists raises
        ValueError."""
        ...

    def get(self, request_id: str) -> Job | None:
        """The job, or None if unknown (never submitted, or purged)."""
        ...

    def queue_position(self, request_id: str) -> int | None:
        """How many IN_QUEUE jobs run before this one (order: priority, then created_at, then
        insertion order); 0 = next. None if the job is unknown or not IN_QUEUE."""
        ...

    def queue_depth(self) -> int:
        """Number of IN_QUEUE jobs."""
        ...

    def claim(self, worker_id: str, *, limit: int = 1, batch_key: str | None = None) -> list[Job]:
        """Atomically move up to ``limit`` of the next IN_QUEUE jobs to IN_PROGRESS (``started_at``
        set, ``attempts`` + 1, ``worker_id`` recorded) and return them in queue order. With
        ``batch_key`` only jobs with that key are taken (still in queue order). Jobs whose
        ``start_deadline`` has passed are never claimed (``expire_start_deadlines`` completes them).
        Concurrent claimers, threads or processes sharing the store, never get the same job."""
        ...

    def append_log(self, request_id: str, message: str, *, level: str = "INFO", source: str = "bgone") -> None:
        """Append one log line (kept in order). Unknown ids are ignored."""
        ...

    def complete(self, request_id: str, outcome: Outcome) -> Job | None:
        """IN_QUEUE/IN_PROGRESS → COMPLETED with ``outcome``, the response to replay. Idempotent: on a job
        that is already COMPLETED the stored result is kept and that job is returned (only new
        ``output_keys`` are recorded, so their files are still cleaned up by ``purge``).
        Compare ``job.result_body`` to know whether your result won. None if unknown."""
        ...

    def cancel(self, request_id: str) -> CancelOutcome:
        """IN_QUEUE → COMPLETED at once with :data:`CANCELLED` (499); IN_PROGRESS → sets
        ``cancel_requested`` (the worker stops and completes it): both CANCELLATION_REQUESTED.
        COMPLETED → ALREADY_COMPLETED; unknown → NOT_FOUND."""
        ...

    def is_cancel_requested(self, request_id: str) -> bool:
        """True if a cancel was requested (also True once a queued job was cancelled)."""
        ...

    def expire_start_deadlines(self, now: float | None = None) -> list[Job]:
        """IN_QUEUE jobs whose ``start_deadline`` is at or before ``now`` → COMPLETED with 504
        :data:`TIMED_OUT`. Returns the expired jobs (e.g. to fire their webhooks)."""
        ...

    def release(self, request_ids: Iterable[str]) -> None:
        """Give up jobs claimed through this store object without completing them (the queue failed
        mid-batch): a backend with leases stops renewing them, so they return to the queue for any
        worker once the lease runs out. A no-op where one process owns the queue (it recovers them at
        its next start)."""
        ...

    def reclaim_expired(self) -> list[Job]:
        """Jobs whose worker died while holding them: back to IN_QUEUE at their old position, or
        COMPLETED (499 with a pending cancel, 503 after too many claims). Returns every job touched; safe to
        call from any process at any time. Backends with leases renew them themselves for jobs claimed
        through the same store object, until those are completed or released. [] where one process owns
        the queue (:meth:`recover` at start-up does it there)."""
        ...

    def recover(self, *, max_attempts: int | None = 3) -> list[Job]:
        """At start-up: IN_PROGRESS jobs (their worker died) go back to IN_QUEUE, keeping their queue
        position (created_at is unchanged). A job with a pending cancel, or one already claimed
        ``max_attempts`` times, is COMPLETED instead (:data:`CANCELLED` / :data:`INTERRUPTED`). Returns every
        job it touched; check ``status`` to tell them apart. Only call it when no other live
        process is working on this store."""
        ...

    def history(self, *, limit: int = 50, offset: int = 0) -> list[Job]:
        """Jobs with ``keep_history``, newest first."""
        ...

    def pending_webhooks(self, *, max_attempts: int | None = None) -> list[Job]:
        """COMPLETED jobs with a ``webhook_url`` not yet delivered (oldest completion first), e.g. to
        retry after a restart; optionally only those tried fewer than ``max_attempts`` times."""
        ...

    def record_webhook(self, request_id: str, *, delivered: bool, error: str | None = None) -> None:
        """Record one delivery attempt: ``webhook_attempts`` + 1, ``webhook_delivered``, ``webhook_error``."""
        ...

    def purge(self, *, completed_before: float, ephemeral_before: float | None = None) -> list[Job]:
        """Delete COMPLETED jobs completed before ``completed_before``, and ``keep_history=False``
        ones completed before ``ephemeral_before`` (default: 5 minutes ago, or ``completed_before``
        if later). Returns the deleted jobs so the caller deletes their ``output_keys``."""
        ...

    def wait(self, request_id: str, *, timeout: float, since: int | None = None) -> bool:
        """Block until the job changes (status, logs, anything) or ``timeout`` seconds pass. The
        baseline is ``since`` (a ``Job.version``) if given, else the version at call time. True if
        it changed (or does not exist, so the caller re-reads and finds it gone), False on timeout.
        Changes made through this store object wake it at once, others (another process) within
        about 0.2 s."""
        ...

    def counts(self) -> dict[str, int]:
        """Number of jobs per status (every JobStatus value is present)."""
        ...

    def close(self) -> None:
        """Release connections; wakes any ``wait`` callers. The store must not be used afterwards."""
        ...
