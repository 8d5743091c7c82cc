"""``JobStore`` on a SQLite file (SQLAlchemy 2 Core), safe for threads and for several processes.

Design notes:
* WAL mode: readers never block the writer, so status polling does not slow the worker down.
* Every write runs in ``BEGIN IMMEDIATE``: the write lock is taken up front, which makes
  select-then-update (claim) atomic across processes and lets the busy timeout queue writers
  instead of failing with "database is locked" on a read→write upgrade.
* Every state change is a single committed transaction, so killing the process at any point
  leaves either the old or the new state.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import IntegrityError

from bgone.service.jobs.base import (
    CANCELLED,
    EPHEMERAL_TTL_S,
    INTERRUPTED,
    TIMED_OUT,
    CancelOutcome,
    ClosingStore,
    Job,
    JobStatus,
    LogEntry,
    Outcome,
)

__all__ = ["SCHEMA_VERSION", "SQLiteJobStore"]

SCHEMA_VERSION = 2  # 2: jobs.user_id
BUSY_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.2  # wait(): how often to look for changes made by other processes

_metadata = MetaData()

jobs_table = Table(
    "jobs",
    _metadata,
    # seq is the insertion order: the FIFO tie-break when created_at values are equal.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("endpoint", Text, nullable=False),
    Column("app", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("batch_key", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("completed_at", Float),
    Column("start_deadline", Float),
    Column("webhook_url", Text),
    Column("user_id", Text),
    Column("keep_history", Boolean, nullable=False, default=True),
    Column("logs", JSON, nullable=False),
    Column("result_status", Integer),
    Column("result_body", JSON),
    Column("error", Text),
    Column("error_type", Text),
    Column("metrics", JSON),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("worker_id", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("output_keys", JSON, nullable=False),
    Column("webhook_delivered", Boolean, nullable=False, default=False),
    Column("webhook_attempts", Integer, nullable=False, default=0),
    Column("webhook_error", Text),
    Column("version", Integer, nullable=False, default=0),
    # Queue order (claim, queue_position), the batch-key variant, history, purge and webhooks.
    Index("ix_jobs_queue", "status", "priority", "created_at", "seq"),
    Index("ix_jobs_batch", "status", "batch_key", "priority", "created_at", "seq"),
    Index("ix_jobs_history", "keep_history", "created_at", "seq"),
    Index("ix_jobs_completed", "status", "completed_at"),
)

_t = jobs_table.c
_QUEUE_ORDER = (_t.priority.asc(), _t.created_at.asc(), _t.seq.asc())


def _update_seqs(conn: Connection, seqs: Sequence[int], **values: Any) -> None:
    """One UPDATE of the jobs with these insertion numbers."""
    conn.execute(update(jobs_table).where(_t.seq.in_(seqs)).values(**values))


def _migrate(conn: Connection) -> None:
    """Bring a database written by an older bgone up to this schema (columns are only ever added)."""
    present = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(jobs)")}
    for column in jobs_table.columns:
        if column.name not in present:
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE jobs ADD COLUMN {column.name} {kind}")


def _row_to_job(row: Row[Any]) -> Job:
    return Job.from_record(row._mapping)


class SQLiteJobStore(ClosingStore):
    """The default ``JobStore``: one SQLite file, shareable by threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._engine: Engine = create_engine(
            URL.create("sqlite", database=str(self.path)),
            # timeout = sqlite3's busy timeout; check_same_thread off because the pool hands a
            # connection to whichever thread asks next (we never share one concurrently).
            connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        event.listen(self._engine, "connect", self._on_connect)
        event.listen(self._engine, "begin", self._on_begin)
        self._writer = self._engine.execution_options(bgone_begin="IMMEDIATE")
        # In-process change notification for wait(); other processes are caught by polling.
        self._cond = threading.Condition()
        self._generation = 0
        self._closed = False
        with self._write() as conn:  # IMMEDIATE: two processes creating the schema cannot race
            _metadata.create_all(conn)
            _migrate(conn)
            conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- connection plumbing ------------------------------------------------------------------

    @staticmethod
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself: pysqlite's implicit transactions
        # cannot do BEGIN IMMEDIATE (the documented SQLAlchemy recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process in WAL mode (only an OS crash/power loss can
        # drop the last commits), and much faster than FULL.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @staticmethod
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("bgone_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        # A deferred transaction: one consistent WAL snapshot, no write lock.
        with self._engine.begin() as conn:
            yield conn

    def _notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    @staticmethod
    def _fetch(conn: Connection, request_id: str) -> Job | None:
        row = conn.execute(select(jobs_table).where(_t.request_id == request_id)).first()
        return _row_to_job(row) if row is not None else None

    @staticmethod
    def _fetch_many(conn: Connection, seqs: Sequence[int]) -> list[Job]:
        if not seqs:
            return []
        rows = conn.execute(select(jobs_table).where(_t.seq.in_(seqs))).all()
        by_seq = {row.seq: _row_to_job(row) for row in rows}
        return [by_seq[s] for s in seqs if s in by_seq]

    @staticmethod
    def _complete_values(outcome: Outcome, now: float, **extra: Any) -> dict[str, Any]:
        return {
            "status": JobStatus.COMPLETED.value,
            "result_status": outcome.status_code,
            "result_body": outcome.body,
            "error": outcome.error,
            "error_type": outcome.error_type,
            "completed_at": now,
            "version": _t.version + 1,
            **extra,
        }

    @staticmethod
    def _log_append(entry: LogEntry) -> Any:
        # json_insert(..., '$[#]', ...) appends inside SQLite: no read-modify-write of the list.
        return func.json_insert(_t.logs, "$[#]", func.json(json.dumps(entry.to_dict(), ensure_ascii=False)))

    # -- JobStore -----------------------------------------------------------------------------

    def submit(self, job: Job) -> Job:
        try:
            with self._write() as conn:
                conn.execute(insert(jobs_table).values(**job.to_record()))
        except IntegrityError as exc:
            raise ValueError(f"request id {job.request_id!r} already exists") from exc
        self._notify()
        return job

    def get(self, request_id: str) -> Job | None:
        with self._read() as conn:
            return self._fetch(conn, request_id)

    def queue_position(self, request_id: str) -> int | None:
        with self._read() as conn:
            row = conn.execute(
                select(_t.status, _t.priority, _t.created_at, _t.seq).where(_t.request_id == request_id)
            ).first()
            if row is None or row.status != JobStatus.IN_QUEUE:
                return None
            ahead = select(func.count()).where(
                _t.status == JobStatus.IN_QUEUE.value,
                tuple_(_t.priority, _t.created_at, _t.seq) < tuple_(row.priority, row.created_at, row.seq),
            )
            return int(conn.execute(ahead).scalar_one())

    def queue_depth(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).where(_t.status == JobStatus.IN_QUEUE.value)).scalar_one())

    def claim(self, worker_id: str, *, limit: int = 1, batch_key: str | None = None) -> list[Job]:
        if limit < 1:
            return []
        now = time.time()
        query = (
            select(_t.seq)
            .where(
                _t.status == JobStatus.IN_QUEUE.value,
                or_(_t.start_deadline.is_(None), _t.start_deadline > now),
            )
            .order_by(*_QUEUE_ORDER)
            .limit(limit)
        )
        if batch_key is not None:
            query = query.where(_t.batch_key == batch_key)
        with self._write() as conn:  # the IMMEDIATE lock makes select + update atomic
            seqs = list(conn.execute(query).scalars())
            if not seqs:
                return []
            _update_seqs(
                conn,
                seqs,
                status=JobStatus.IN_PROGRESS.value,
                started_at=now,
                worker_id=worker_id,
                attempts=_t.attempts + 1,
                version=_t.version + 1,
            )
            claimed = self._fetch_many(conn, seqs)
        self._notify()
        return claimed

    def append_log(self, request_id: str, message: str, *, level: str = "INFO", source: str = "bgone") -> None:
        entry = LogEntry(message=message, level=level, source=source)
        with self._write() as conn:
            conn.execute(
                update(jobs_table)
                .where(_t.request_id == request_id)
                .values(logs=self._log_append(entry), version=_t.version + 1)
            )
        self._notify()

    def complete(self, request_id: str, outcome: Outcome) -> Job | None:
        keys = list(outcome.output_keys)
        with self._write() as conn:
            job = self._fetch(conn, request_id)
            if job is None:
                return None
            if job.status is JobStatus.COMPLETED:
                # Idempotent: keep the first result; only remember extra files for cleanup.
                new_keys = [k for k in keys if k not in job.output_keys]
                if not new_keys:
                    return job
                job.output_keys += new_keys
                conn.execute(update(jobs_table).where(_t.request_id == request_id).values(output_keys=job.output_keys))
                return job
            conn.execute(
                update(jobs_table)
                .where(_t.request_id == request_id)
                .values(
                    **self._complete_values(
                        outcome,
                        time.time(),
                        metrics=outcome.metrics,
                        output_keys=job.output_keys + [k for k in keys if k not in job.output_keys],
                    )
                )
            )
            job = self._fetch(conn, request_id)
        self._notify()
        return job

    def cancel(self, request_id: str) -> CancelOutcome:
        with self._write() as conn:
            row = conn.execute(select(_t.status).where(_t.request_id == request_id)).first()
            if row is None:
                return CancelOutcome.NOT_FOUND
            status = JobStatus(row.status)
            if status is JobStatus.COMPLETED:
                return CancelOutcome.ALREADY_COMPLETED
            if status is JobStatus.IN_QUEUE:
                values = self._complete_values(
                    CANCELLED,
                    time.time(),
                    cancel_requested=True,
                    logs=self._log_append(LogEntry("Request cancelled while in queue")),
                )
            else:
                values = {
                    "cancel_requested": True,
                    "logs": self._log_append(LogEntry("Cancellation requested")),
                    "version": _t.version + 1,
                }
            conn.execute(update(jobs_table).where(_t.request_id == request_id).values(**values))
        self._notify()
        return CancelOutcome.CANCELLATION_REQUESTED

    def is_cancel_requested(self, request_id: str) -> bool:
        with self._read() as conn:
            value = conn.execute(select(_t.cancel_requested).where(_t.request_id == request_id)).scalar()
            return bool(value)

    def expire_start_deadlines(self, now: float | None = None) -> list[Job]:
        now = time.time() if now is None else now
        with self._write() as conn:
            seqs = list(
                conn.execute(
                    select(_t.seq)
                    .where(_t.status == JobStatus.IN_QUEUE.value, _t.start_deadline <= now)
                    .order_by(*_QUEUE_ORDER)
                ).scalars()
            )
            if not seqs:
                return []
            _update_seqs(
                conn,
                seqs,
                **self._complete_values(
                    TIMED_OUT,
                    time.time(),
                    logs=self._log_append(LogEntry("Request timed out before it started", level="ERROR")),
                ),
            )
            expired = self._fetch_many(conn, seqs)
        self._notify()
        return expired

    transient_errors: tuple[type[Exception], ...] = ()  # a local file: no backend to lose for a while

    def release(self, request_ids: Iterable[str]) -> None:
        """Nothing to do: one process owns this queue and :meth:`recover` re-queues at its next start."""

    def reclaim_expired(self) -> list[Job]:
        """No leases here: :meth:`recover` at start-up takes back what a dead worker held."""
        return []

    def recover(self, *, max_attempts: int | None = 3) -> list[Job]:
        now = time.time()
        with self._write() as conn:
            rows = conn.execute(
                select(_t.seq, _t.attempts, _t.cancel_requested)
                .where(_t.status == JobStatus.IN_PROGRESS.value)
                .order_by(*_QUEUE_ORDER)
            ).all()
            if not rows:
                return []
            cancelled = [r.seq for r in rows if r.cancel_requested]
            exhausted = [
                r.seq
                for r in rows
                if not r.cancel_requested and max_attempts is not None and r.attempts >= max_attempts
            ]
            requeue = [r.seq for r in rows if r.seq not in cancelled and r.seq not in exhausted]
            if requeue:
                _update_seqs(
                    conn,
                    requeue,
                    status=JobStatus.IN_QUEUE.value,
                    started_at=None,
                    worker_id=None,
                    logs=self._log_append(LogEntry("Worker stopped; request re-queued", level="WARNING")),
                    version=_t.version + 1,
                )
            if cancelled:
                _update_seqs(conn, cancelled, **self._complete_values(CANCELLED, now))
            if exhausted:
                _update_seqs(
                    conn,
                    exhausted,
                    **self._complete_values(
                        INTERRUPTED,
                        now,
                        logs=self._log_append(
                            LogEntry("Worker stopped too many times on this request; giving up", level="ERROR")
                        ),
                    ),
                )
            touched = self._fetch_many(conn, [r.seq for r in rows])
        self._notify()
        return touched

    def history(self, *, limit: int = 50, offset: int = 0) -> list[Job]:
        with self._read() as conn:
            rows = conn.execute(
                select(jobs_table)
                .where(_t.keep_history.is_(True))
                .order_by(_t.created_at.desc(), _t.seq.desc())
                .limit(max(0, limit))
                .offset(max(0, offset))
            ).all()
        return [_row_to_job(r) for r in rows]

    def pending_webhooks(self, *, max_attempts: int | None = None) -> list[Job]:
        query = (
            select(jobs_table)
            .where(
                _t.status == JobStatus.COMPLETED.value,
                _t.webhook_url.is_not(None),
                _t.webhook_delivered.is_(False),
            )
            .order_by(_t.completed_at.asc(), _t.seq.asc())
        )
        if max_attempts is not None:
            query = query.where(_t.webhook_attempts < max_attempts)
        with self._read() as conn:
            return [_row_to_job(r) for r in conn.execute(query).all()]

    def record_webhook(self, request_id: str, *, delivered: bool, error: str | None = None) -> None:
        with self._write() as conn:
            conn.execute(
                update(jobs_table)
                .where(_t.request_id == request_id)
                .values(
                    webhook_delivered=delivered,
                    webhook_error=error,
                    webhook_attempts=_t.webhook_attempts + 1,
                    version=_t.version + 1,
                )
            )
        self._notify()

    def purge(self, *, completed_before: float, ephemeral_before: float | None = None) -> list[Job]:
        if ephemeral_before is None:
            ephemeral_before = max(completed_before, time.time() - EPHEMERAL_TTL_S)
        with self._write() as conn:
            rows = conn.execute(
                select(jobs_table)
                .where(
                    _t.status == JobStatus.COMPLETED.value,
                    or_(
                        _t.completed_at < completed_before,
                        (_t.keep_history.is_(False)) & (_t.completed_at < ephemeral_before),
                    ),
                )
                .order_by(_t.completed_at.asc(), _t.seq.asc())
            ).all()
            if not rows:
                return []
            conn.execute(delete(jobs_table).where(_t.seq.in_([r.seq for r in rows])))
        self._notify()
        return [_row_to_job(r) for r in rows]

    def _version(self, request_id: str) -> int | None:
        with self._read() as conn:
            return conn.execute(select(_t.version).where(_t.request_id == request_id)).scalar()

    def wait(self, request_id: str, *, timeout: float, since: int | None = None) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        # Read the generation BEFORE the version: a local change committed after our read bumps
        # the generation afterwards, so we either see it in the DB or are woken for it.
        with self._cond:
            generation = self._generation
        baseline = since if since is not None else self._version(request_id)
        if baseline is None:
            return True  # unknown/purged: let the caller re-read and find it gone
        while True:
            current = self._version(request_id)
            if current != baseline:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return False
            with self._cond:
                if self._generation == generation:
                    self._cond.wait(min(POLL_INTERVAL_S, remaining))
                generation = self._generation

    def counts(self) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(select(_t.status, func.count()).group_by(_t.status)).all()
        found = {status: int(n) for status, n in rows}
        return {s.value: found.get(s.value, 0) for s in JobStatus}

    def close(self) -> None:
        self._closed = True
        self._notify()
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"SQLiteJobStore({str(self.path)!r})"
