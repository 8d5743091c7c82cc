"""Durable request queue and history (the fal queue API's state), behind the ``JobStore`` interface."""

from __future__ import annotations

from pathlib import Path

from .base import (
    CANCELLED_BODY,
    CANCELLED_STATUS,
    INTERRUPTED_BODY,
    INTERRUPTED_STATUS,
    TIMED_OUT_BODY,
    TIMED_OUT_STATUS,
    CancelOutcome,
    Job,
    JobStatus,
    JobStore,
    LogEntry,
    Priority,
    utc_timestamp,
)
from .sqlite import SQLiteJobStore

__all__ = [
    "CANCELLED_BODY",
    "CANCELLED_STATUS",
    "DEFAULT_DB_NAME",
    "INTERRUPTED_BODY",
    "INTERRUPTED_STATUS",
    "TIMED_OUT_BODY",
    "TIMED_OUT_STATUS",
    "CancelOutcome",
    "Job",
    "JobStatus",
    "JobStore",
    "LogEntry",
    "Priority",
    "SQLiteJobStore",
    "open_job_store",
    "utc_timestamp",
]

DEFAULT_DB_NAME = "bgone.db"


def open_job_store(url: str | None, data_dir: Path) -> JobStore:
    """The store for a ``--queue-url``-style setting.

    ``None`` or ``"sqlite://"`` → ``data_dir / "bgone.db"``; ``"sqlite:///relative/path.db"`` or
    ``"sqlite:////absolute/path.db"`` → that file. Any other scheme raises ValueError.
    """
    if url is None or url.strip() in ("", "sqlite://", "sqlite:///"):
        return SQLiteJobStore(Path(data_dir) / DEFAULT_DB_NAME)
    url = url.strip()
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(f"invalid queue URL {url!r} (expected sqlite:///path/to/bgone.db)")
    if scheme.lower() != "sqlite":
        raise ValueError(
            f"queue backend {scheme.lower()!r} is not available yet; use sqlite:///path/to/bgone.db "
            "(or leave the queue URL unset for the default SQLite file)"
        )
    if not url.startswith("sqlite:///"):
        raise ValueError(f"invalid SQLite queue URL {url!r} (expected sqlite:///path/to/bgone.db)")
    path = url.removeprefix("sqlite:///").partition("?")[0]
    if path in (":memory:", ""):
        # A private in-memory DB per connection would silently lose jobs between threads.
        raise ValueError("an in-memory SQLite queue is not supported; give a file path")
    return SQLiteJobStore(Path(path))
