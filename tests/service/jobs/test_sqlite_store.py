"""SQLiteJobStore: the JobStore contract (store_contract.py) on one SQLite file, plus what only this
backend does: crash recovery with recover() at start-up (no leases, so released jobs wait for it), the
database file, and sqlite:// URLs in open_job_store."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from store_contract import JobStoreContract, submit

from bgone.service.jobs import (
    CANCELLED,
    INTERRUPTED,
    JobStatus,
    Outcome,
    SQLiteJobStore,
    open_job_store,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bgone.db"


@pytest.fixture
def store(db_path: Path):
    s = SQLiteJobStore(db_path)
    yield s
    s.close()


@pytest.fixture
def open_store(db_path: Path):
    return functools.partial(SQLiteJobStore, db_path)


class TestJobStoreContract(JobStoreContract):
    """The shared JobStore contract, on SQLite."""


def test_no_transient_errors(store: SQLiteJobStore) -> None:
    assert store.transient_errors == ()  # a local file: no backend to lose for a while


def test_recover_after_crash(db_path: Path) -> None:
    crashed = SQLiteJobStore(db_path)
    a = submit(crashed)
    b = submit(crashed)
    [job] = crashed.claim("dead-worker")
    assert job.request_id == a.request_id
    del crashed  # no close(): the process "died"; everything it did is committed

    fresh = SQLiteJobStore(db_path)
    recovered = fresh.recover()
    assert [j.request_id for j in recovered] == [a.request_id]
    assert recovered[0].status is JobStatus.IN_QUEUE and recovered[0].worker_id is None
    assert fresh.queue_position(a.request_id) == 0 and fresh.queue_position(b.request_id) == 1
    assert fresh.get(a.request_id).logs[-1].level == "WARNING"
    [again] = fresh.claim("new-worker")
    assert again.request_id == a.request_id and again.attempts == 2
    fresh.complete(a.request_id, Outcome(200, {"ok": True}))
    assert fresh.get(a.request_id).result_body == {"ok": True}
    assert fresh.recover() == []
    fresh.close()


def test_recover_gives_up_and_honours_cancel(store: SQLiteJobStore) -> None:
    poison = submit(store)
    for _ in range(3):
        store.claim("w")
        [job] = store.recover(max_attempts=3)
    assert job.status is JobStatus.COMPLETED and job.result_status == 503
    assert (job.result_body, job.error_type) == (INTERRUPTED.body, "runner_disconnected")

    cancelled = submit(store)
    store.claim("w")
    store.cancel(cancelled.request_id)
    [job] = store.recover()
    assert job.status is JobStatus.COMPLETED and job.result_body == CANCELLED.body
    assert poison.request_id != cancelled.request_id


def test_released_jobs_wait_for_recover(store: SQLiteJobStore) -> None:
    job = submit(store)
    store.claim("w")
    store.release([job.request_id])  # one process owns the queue: nothing to hand over now
    assert store.reclaim_expired() == []
    assert store.get(job.request_id).status is JobStatus.IN_PROGRESS
    [recovered] = store.recover()  # ... the next start takes it back
    assert recovered.request_id == job.request_id and recovered.status is JobStatus.IN_QUEUE


def test_store_objects_share_the_file(tmp_path: Path) -> None:
    with SQLiteJobStore(tmp_path / "nested" / "deeper" / "jobs.db") as first:
        job = submit(first)
        assert first.path.exists()  # parent directories are created
        with SQLiteJobStore(first.path) as second:  # the schema is already there
            assert second.get(job.request_id) is not None and second.queue_depth() == 1


def test_open_job_store(tmp_path: Path) -> None:
    default = open_job_store(None, tmp_path / "data")
    assert isinstance(default, SQLiteJobStore) and default.path == tmp_path / "data" / "bgone.db"
    assert default.path.exists()
    default.close()
    explicit = open_job_store(f"sqlite:///{tmp_path}/q/jobs.db", tmp_path)
    assert isinstance(explicit, SQLiteJobStore) and explicit.path == tmp_path / "q" / "jobs.db"
    explicit.close()
    with pytest.raises(ValueError, match="unsupported queue backend 'postgres'"):
        open_job_store("postgres://localhost/db", tmp_path)
    with pytest.raises(ValueError):
        open_job_store("sqlite:///:memory:", tmp_path)
