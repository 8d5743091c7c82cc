"""Durable request queue and history (the fal queue API's state), behind the ``JobStore`` interface."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bgone.service.jobs.base import (
    CANCELLED,
    INTERRUPTED,
    TIMED_OUT,
    CancelOutcome,
    Job,
    JobStatus,
    JobStore,
    LogEntry,
    Outcome,
    Priority,
    utc_timestamp,
)
from bgone.service.jobs.sqlite import SQLiteJobStore

if TYPE_CHECKING:
    from bgone.service.jobs.redis import RedisJobStore

__all__ = [
    "CANCELLED",
    "DEFAULT_DB_NAME",
    "INTERRUPTED",
    "TIMED_OUT",
    "CancelOutcome",
    "Job",
    "JobStatus",
    "JobStore",
    "LogEntry",
    "Outcome",
    "Priority",
    "RedisJobStore",
    "SQLiteJobStore",
    "open_job_store",
    "utc_timestamp",
]

DEFAULT_DB_NAME = "bgone.db"


def __getattr__(name: str) -> Any:
    # RedisJobStore imports redis-py, which a SQLite-only install need not have.
    if name == "RedisJobStore":
        from bgone.service.jobs.redis import RedisJobStore

        return RedisJobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_job_store(url: str | None, data_dir: Path) -> JobStore:
    """The store for a ``--queue-url``-style setting.

    ``None`` or ``"sqlite://"`` → ``data_dir / "bgone.db"``; ``"sqlite:///relative/path.db"`` or
    ``"sqlite:////absolute/path.db"`` → that file. ``"redis://[:password@]host:port/db"`` (or
    ``rediss://`` for TLS) → a ``RedisJobStore`` on that server, shareable by several API and worker
    machines; ``?namespace=NAME`` (default ``bgone``) and ``?lease_seconds=S`` (default 30) are
    read from the query string, the other parameters go to redis-py. Any other scheme raises
    ValueError.
    """
    if url is None or url.strip() in ("", "sqlite://", "sqlite:///"):
        return SQLiteJobStore(Path(data_dir) / DEFAULT_DB_NAME)
    url = url.strip()
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(f"invalid queue URL {url!r} (expected sqlite:///path/to/bgone.db or redis://host:port/db)")
    if scheme.lower() in ("redis", "rediss"):
        return _open_redis(url)
    if scheme.lower() != "sqlite":
        raise ValueError(
            f"unsupported queue backend {scheme.lower()!r}; use sqlite:///path/to/bgone.db, "
            "redis://host:port/db (or leave the queue URL unset for the default SQLite file)"
        )
    if not url.startswith("sqlite:///"):
        raise ValueError(f"invalid SQLite queue URL {url!r} (expected sqlite:///path/to/bgone.db)")
    path = url.removeprefix("sqlite:///").partition("?")[0]
    if path in (":memory:", ""):
        # A private in-memory DB per connection would silently lose jobs between threads.
        raise ValueError("an in-memory SQLite queue is not supported; give a file path")
    return SQLiteJobStore(Path(path))


def _open_redis(url: str) -> JobStore:
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        from bgone.service.jobs.redis import RedisJobStore
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ValueError("a redis:// queue needs the redis package (pip install 'redis>=5')") from exc
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "namespace":
            if not value:
                raise ValueError("the namespace in a redis:// queue URL must not be empty")
            options["namespace"] = value
        elif key == "lease_seconds":
            try:
                options["lease_seconds"] = float(value)
            except ValueError:
                raise ValueError(f"invalid lease_seconds {value!r} in the queue URL") from None
        else:
            rest.append((key, value))
    return RedisJobStore(urlunsplit(parts._replace(query=urlencode(rest))), **options)
