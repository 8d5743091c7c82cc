"""SQLiteJobStore: queue semantics, durability across store instances and processes, wait()."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from store_contract import (  # the shared contract tests run here against this backend
    APP,
    V2,
    _change_later,
    _claim_all,
    submit,
    test_claim_order_limit_and_batch_key,  # noqa: F401
    test_fifo_ties_break_by_insertion_order,  # noqa: F401
    test_queue_positions_with_priorities,  # noqa: F401
    test_wait_wakes_in_process,  # noqa: F401
)

from bgone.service.jobs import (
    CANCELLED_BODY,
    TIMED_OUT_BODY,
    CancelOutcome,
    JobStatus,
    JobStore,
    Priority,
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


def test_implements_protocol(store: SQLiteJobStore) -> None:
    assert isinstance(store, JobStore)


def test_submit_and_get_round_trip(store: SQLiteJobStore) -> None:
    job = submit(store, batch_key="General", webhook_url="https://hook", start_deadline=time.time() + 60)
    got = store.get(job.request_id)
    assert got is not None
    assert got.status is JobStatus.IN_QUEUE and got.priority is Priority.NORMAL
    assert got.payload == {"image_url": "https://example.com/a.png"}
    assert (got.endpoint, got.app, got.batch_key, got.webhook_url) == (V2, APP, "General", "https://hook")
    assert got.logs == [] and got.output_keys == [] and got.attempts == 0
    assert len(job.request_id) == 36  # uuid4 string
    assert store.get("nope") is None
    with pytest.raises(ValueError):
        submit(store, request_id=job.request_id)


def test_status_transitions(store: SQLiteJobStore) -> None:
    job = submit(store)
    [claimed] = store.claim("w1")
    assert claimed.request_id == job.request_id
    assert claimed.status is JobStatus.IN_PROGRESS and claimed.worker_id == "w1" and claimed.attempts == 1
    assert claimed.started_at is not None
    assert store.queue_position(job.request_id) is None
    done = store.complete(
        job.request_id,
        status_code=200,
        body={"image": {"url": "u"}},
        metrics={"inference_time": 0.5},
        output_keys=["outputs/a/b.png"],
    )
    assert done is not None and done.status is JobStatus.COMPLETED
    assert done.result_status == 200 and done.result_body == {"image": {"url": "u"}}
    assert done.metrics == {"inference_time": 0.5} and done.output_keys == ["outputs/a/b.png"]
    assert done.completed_at is not None and done.completed_at >= done.started_at  # type: ignore[operator]
    assert store.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 0, "COMPLETED": 1}
    assert store.complete("unknown", status_code=200, body={}) is None


def test_complete_is_idempotent(store: SQLiteJobStore) -> None:
    job = submit(store)
    store.claim("w")
    first = store.complete(job.request_id, status_code=200, body={"n": 1}, output_keys=["k1"])
    again = store.complete(job.request_id, status_code=500, body={"n": 2}, error="late", output_keys=["k1", "k2"])
    assert first is not None and again is not None
    assert again.result_status == 200 and again.result_body == {"n": 1} and again.error is None
    assert again.completed_at == first.completed_at
    assert store.get(job.request_id).output_keys == ["k1", "k2"]  # late files still get purged


def test_concurrent_claim_threads(store: SQLiteJobStore) -> None:
    ids = {submit(store).request_id for _ in range(100)}
    results: list[list[str]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def run(i: int) -> None:
        barrier.wait()
        _claim_all(store, f"t{i}", results[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    claimed = Counter(rid for r in results for rid in r)
    assert set(claimed) == ids and max(claimed.values()) == 1
    assert store.counts()["IN_PROGRESS"] == 100


def _process_claimer(path: str, name: str, barrier, queue) -> None:  # runs in a spawned process
    s = SQLiteJobStore(path)
    out: list[str] = []
    barrier.wait()
    _claim_all(s, name, out)
    s.close()
    queue.put(out)


def test_concurrent_claim_processes(store: SQLiteJobStore, db_path: Path) -> None:
    ids = {submit(store).request_id for _ in range(100)}
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_process_claimer, args=(str(db_path), f"p{i}", barrier, queue)) for i in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    claimed = Counter(rid for r in results for rid in r)
    assert set(claimed) == ids and max(claimed.values()) == 1
    # (Not asserted: that both got some. SQLite's busy handler backs off up to 100 ms, so one
    # claimer can legitimately drain the queue while the other sleeps.)


def test_cancel_outcomes(store: SQLiteJobStore) -> None:
    running = submit(store)
    queued = submit(store)
    assert [j.request_id for j in store.claim("w")] == [running.request_id]
    assert store.cancel(queued.request_id) is CancelOutcome.CANCELLATION_REQUESTED
    got = store.get(queued.request_id)
    assert got.status is JobStatus.COMPLETED and got.result_status == 499 and got.result_body == CANCELLED_BODY
    assert got.error_type == "client_cancelled" and store.queue_depth() == 0

    assert not store.is_cancel_requested(running.request_id)
    assert store.cancel(running.request_id) is CancelOutcome.CANCELLATION_REQUESTED
    assert store.get(running.request_id).status is JobStatus.IN_PROGRESS
    assert store.is_cancel_requested(running.request_id)
    store.complete(running.request_id, status_code=499, body=CANCELLED_BODY)

    assert store.cancel(running.request_id) is CancelOutcome.ALREADY_COMPLETED
    assert store.cancel(queued.request_id) is CancelOutcome.ALREADY_COMPLETED
    assert store.cancel("unknown") is CancelOutcome.NOT_FOUND
    assert not store.is_cancel_requested("unknown")


def test_start_deadline_expiry(store: SQLiteJobStore) -> None:
    now = time.time()
    soon = submit(store, start_deadline=now + 100)
    later = submit(store, start_deadline=now + 1000)
    free = submit(store)
    assert store.expire_start_deadlines(now) == []
    expired = store.expire_start_deadlines(now + 200)
    assert [j.request_id for j in expired] == [soon.request_id]
    assert expired[0].status is JobStatus.COMPLETED
    assert (expired[0].result_status, expired[0].result_body) == (504, TIMED_OUT_BODY)
    assert store.queue_position(later.request_id) == 0 and store.queue_position(free.request_id) == 1


def test_claim_skips_jobs_past_their_deadline(store: SQLiteJobStore) -> None:
    late = submit(store, start_deadline=time.time() - 1)
    ok = submit(store)
    assert [j.request_id for j in store.claim("w", limit=5)] == [ok.request_id]
    assert [j.request_id for j in store.expire_start_deadlines()] == [late.request_id]


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
    fresh.complete(a.request_id, status_code=200, body={"ok": True})
    assert fresh.get(a.request_id).result_body == {"ok": True}
    assert fresh.recover() == []
    fresh.close()


def test_recover_gives_up_and_honours_cancel(store: SQLiteJobStore) -> None:
    poison = submit(store)
    for _ in range(3):
        store.claim("w")
        [job] = store.recover(max_attempts=3)
    assert job.status is JobStatus.COMPLETED and job.result_status == 503
    assert job.error_type == "runner_disconnected"

    cancelled = submit(store)
    store.claim("w")
    store.cancel(cancelled.request_id)
    [job] = store.recover()
    assert job.status is JobStatus.COMPLETED and job.result_body == CANCELLED_BODY
    assert poison.request_id != cancelled.request_id


def test_logs_in_order(store: SQLiteJobStore) -> None:
    job = submit(store)
    for i in range(20):
        store.append_log(job.request_id, f"line {i}", level="DEBUG" if i % 2 else "INFO")
    store.append_log("unknown", "ignored")
    logs = store.get(job.request_id).logs
    assert [entry.message for entry in logs] == [f"line {i}" for i in range(20)]
    assert logs[1].level == "DEBUG" and logs[0].source == "bgone"
    assert logs[0].timestamp.endswith("Z") and "T" in logs[0].timestamp
    assert logs[0].to_dict().keys() == {"message", "level", "source", "timestamp"}


def test_history_newest_first_without_sync_jobs(store: SQLiteJobStore) -> None:
    kept = [submit(store) for _ in range(3)]
    submit(store, keep_history=False)
    hist = store.history()
    assert [j.request_id for j in hist] == [j.request_id for j in reversed(kept)]
    assert [j.request_id for j in store.history(limit=1, offset=1)] == [kept[1].request_id]


def test_purge(store: SQLiteJobStore) -> None:
    old = submit(store)
    running = submit(store)
    store.claim("w", limit=2)
    store.complete(old.request_id, status_code=200, body={}, output_keys=["outputs/x/a.png"])
    sync_job = submit(store, keep_history=False)
    store.complete(sync_job.request_id, status_code=200, body={})
    queued = submit(store)

    # Nothing is old enough yet (the sync job completed just now, within its grace period).
    assert store.purge(completed_before=time.time() - 60) == []
    purged = store.purge(completed_before=time.time() - 60, ephemeral_before=time.time() + 1)
    assert [j.request_id for j in purged] == [sync_job.request_id]
    purged = store.purge(completed_before=time.time() + 1)
    assert [j.request_id for j in purged] == [old.request_id] and purged[0].output_keys == ["outputs/x/a.png"]
    assert store.get(old.request_id) is None
    assert store.get(running.request_id) is not None and store.get(queued.request_id) is not None


def test_webhook_bookkeeping(store: SQLiteJobStore) -> None:
    hooked = submit(store, webhook_url="https://example.com/hook")
    submit(store)  # no webhook
    store.claim("w", limit=2)
    assert store.pending_webhooks() == []  # not completed yet
    store.complete(hooked.request_id, status_code=200, body={"ok": 1})
    assert [j.request_id for j in store.pending_webhooks()] == [hooked.request_id]
    store.record_webhook(hooked.request_id, delivered=False, error="HTTP 500")
    job = store.get(hooked.request_id)
    assert (job.webhook_delivered, job.webhook_attempts, job.webhook_error) == (False, 1, "HTTP 500")
    assert store.pending_webhooks(max_attempts=1) == []
    assert len(store.pending_webhooks(max_attempts=2)) == 1
    store.record_webhook(hooked.request_id, delivered=True)
    job = store.get(hooked.request_id)
    assert (job.webhook_delivered, job.webhook_attempts, job.webhook_error) == (True, 2, None)
    assert store.pending_webhooks() == []


def test_wait_since_version_catches_earlier_change(store: SQLiteJobStore) -> None:
    job = submit(store)
    seen = store.get(job.request_id)
    store.claim("w")  # happens between reading the job and waiting
    start = time.monotonic()
    assert store.wait(job.request_id, timeout=5, since=seen.version) is True
    assert time.monotonic() - start < 0.05


def test_wait_notices_other_process(store: SQLiteJobStore, db_path: Path) -> None:
    other = SQLiteJobStore(db_path)  # stands in for another process: no shared Condition
    job = submit(store)
    changed_at: list[float] = []

    def change() -> None:
        other.claim("remote")
        changed_at.append(time.monotonic())

    t = _change_later(0.05, change)
    assert store.wait(job.request_id, timeout=5) is True
    woke = time.monotonic()
    t.join()
    assert woke - changed_at[0] < 0.5
    other.close()


def test_close_wakes_waiters(db_path: Path) -> None:
    s = SQLiteJobStore(db_path)
    job = submit(s)
    t = _change_later(0.05, s.close)
    start = time.monotonic()
    assert s.wait(job.request_id, timeout=5) is False
    assert time.monotonic() - start < 1
    t.join()


def test_priority_from_header() -> None:
    assert Priority.from_header(None) is Priority.NORMAL
    assert Priority.from_header("low") is Priority.LOW
    assert Priority.from_header(" Normal ") is Priority.NORMAL
    with pytest.raises(ValueError):
        Priority.from_header("urgent")


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
