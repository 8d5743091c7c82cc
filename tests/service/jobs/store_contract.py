"""The JobStore contract: every behaviour the protocol in ``bgone.service.jobs.base`` promises, written
once. Each backend's test module subclasses :class:`JobStoreContract` as ``TestJobStoreContract`` and
provides two fixtures:

- ``store``: a fresh, empty store (closed by the fixture);
- ``open_store``: a picklable callable with no arguments that opens another store object on the same
  queue (a spawned process calls it too); the tests close what it opens.

Concurrency is checked across threads, store objects and processes; ``wait()`` across store objects
stands in for another process (no shared memory). Backend-only behaviour (SQLite's recover() at
start-up, Redis leases and pub/sub, ...) stays in the backend's module.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from bgone.service.jobs import (
    CANCELLED,
    TIMED_OUT,
    CancelOutcome,
    Job,
    JobStatus,
    JobStore,
    Outcome,
    Priority,
)

V2 = "fal-ai/birefnet/v2"
APP = "fal-ai/birefnet"

OpenStore = Callable[[], JobStore]


def submit(store: JobStore, **kw) -> Job:
    kw.setdefault("payload", {"image_url": "https://example.com/a.png"})
    return store.submit(Job.new(endpoint=V2, app=APP, **kw))


def claim_all(store: JobStore, worker: str, out: list[str]) -> None:
    """Claim until the queue is empty, mixing single and batched claims."""
    limit = 1
    while batch := store.claim(worker, limit=limit):
        out.extend(j.request_id for j in batch)
        limit = limit % 3 + 1
        time.sleep(0.001)  # "work": lets the other claimers interleave


def change_later(delay: float, action: Callable[[], object]) -> threading.Thread:
    """Run ``action`` in a thread after ``delay`` seconds (join the returned thread)."""

    def run() -> None:
        time.sleep(delay)
        action()

    t = threading.Thread(target=run)
    t.start()
    return t


@contextlib.contextmanager
def opened(open_store: OpenStore, n: int = 1) -> Iterator[list[JobStore]]:
    """``n`` more store objects on the same queue, closed afterwards."""
    stores: list[JobStore] = []
    try:
        stores.extend(open_store() for _ in range(n))
        yield stores
    finally:
        for s in stores:
            s.close()


def _process_claimer(open_store: OpenStore, name: str, barrier, queue) -> None:  # runs in a spawned process
    s = open_store()
    out: list[str] = []
    barrier.wait()
    claim_all(s, name, out)
    for rid in out:  # complete concurrently with the other process too
        s.complete(rid, Outcome(200, {"by": name}))
    s.close()
    queue.put((name, out))


class JobStoreContract:
    """Subclass as ``TestJobStoreContract`` in a backend's test module (with ``store`` and ``open_store``)."""

    # -- the protocol and submit/get ----------------------------------------------------------------

    def test_implements_protocol(self, store: JobStore) -> None:
        assert isinstance(store, JobStore)

    def test_transient_errors_is_a_tuple_of_exception_types(self, store: JobStore) -> None:
        errors = store.transient_errors
        assert isinstance(errors, tuple)
        assert all(isinstance(e, type) and issubclass(e, Exception) for e in errors)

    def test_submit_and_get_round_trip(self, store: JobStore) -> None:
        job = submit(
            store,
            payload={"image_url": "https://example.com/ä.png", "n": [1, 2.5, None]},
            batch_key="General",
            webhook_url="https://hook",
            start_deadline=time.time() + 60,
        )
        got = store.get(job.request_id)
        assert got is not None
        assert got.status is JobStatus.IN_QUEUE and got.priority is Priority.NORMAL
        assert got.payload == {"image_url": "https://example.com/ä.png", "n": [1, 2.5, None]}
        assert (got.endpoint, got.app, got.batch_key, got.webhook_url) == (V2, APP, "General", "https://hook")
        assert got.created_at == job.created_at and got.start_deadline == job.start_deadline
        assert got.logs == [] and got.output_keys == [] and got.attempts == 0 and got.keep_history
        assert got.result_body is None and got.metrics is None and got.error is None and got.worker_id is None
        assert len(job.request_id) == 36  # uuid4 string
        assert store.get("nope") is None
        with pytest.raises(ValueError):
            submit(store, request_id=job.request_id)

    # -- queue order and claims ---------------------------------------------------------------------

    def test_queue_positions_with_priorities(self, store: JobStore) -> None:
        low = submit(store, priority=Priority.LOW)  # submitted first, but LOW
        normals = [submit(store) for _ in range(3)]
        low2 = submit(store, priority=Priority.LOW)
        assert [store.queue_position(j.request_id) for j in normals] == [0, 1, 2]
        assert store.queue_position(low.request_id) == 3
        assert store.queue_position(low2.request_id) == 4
        assert store.queue_depth() == 5
        order = [j.request_id for j in store.claim("w", limit=10)]
        assert order == [*(j.request_id for j in normals), low.request_id, low2.request_id]
        assert store.queue_position("unknown") is None

    def test_fifo_ties_break_by_insertion_order(self, store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(time, "time", lambda: 1_000.0)  # identical created_at for all
        jobs = [submit(store) for _ in range(4)]
        monkeypatch.undo()
        assert {store.get(j.request_id).created_at for j in jobs} == {1_000.0}
        assert [store.queue_position(j.request_id) for j in jobs] == [0, 1, 2, 3]
        assert [j.request_id for j in store.claim("w", limit=4)] == [j.request_id for j in jobs]

    def test_claim_order_limit_and_batch_key(self, store: JobStore) -> None:
        a1 = submit(store, batch_key="a")
        b1 = submit(store, batch_key="b")
        a2 = submit(store, batch_key="a", priority=Priority.LOW)
        a3 = submit(store, batch_key="a")
        assert [j.request_id for j in store.claim("w", limit=2, batch_key="a")] == [a1.request_id, a3.request_id]
        assert store.queue_position(b1.request_id) == 0
        assert [j.request_id for j in store.claim("w", batch_key="a")] == [a2.request_id]
        assert store.claim("w", batch_key="a") == []
        assert store.claim("w", limit=0) == []
        assert [j.request_id for j in store.claim("w", limit=5)] == [b1.request_id]
        assert store.claim("w") == []

    def test_status_transitions(self, store: JobStore) -> None:
        job = submit(store)
        [claimed] = store.claim("w1")
        assert claimed.request_id == job.request_id
        assert claimed.status is JobStatus.IN_PROGRESS and claimed.worker_id == "w1" and claimed.attempts == 1
        assert claimed.started_at is not None
        assert store.queue_position(job.request_id) is None
        assert store.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 1, "COMPLETED": 0}
        done = store.complete(job.request_id, Outcome(200, {"image": {"url": "u"}}, metrics={"inference_time": 0.5}, output_keys=("outputs/a/b.png",)))
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.result_status == 200 and done.result_body == {"image": {"url": "u"}}
        assert done.metrics == {"inference_time": 0.5} and done.output_keys == ["outputs/a/b.png"]
        assert done.completed_at is not None and done.completed_at >= done.started_at  # type: ignore[operator]
        assert store.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 0, "COMPLETED": 1}
        assert store.complete("unknown", Outcome(200, {})) is None

    def test_complete_is_idempotent(self, store: JobStore) -> None:
        job = submit(store)
        store.claim("w")
        first = store.complete(job.request_id, Outcome(200, {"n": 1}, output_keys=("k1",)))
        again = store.complete(job.request_id, Outcome(500, {"n": 2}, error="late", output_keys=("k1", "k2")))
        assert first is not None and again is not None
        assert again.result_status == 200 and again.result_body == {"n": 1} and again.error is None
        assert again.completed_at == first.completed_at and again.version == first.version
        assert store.get(job.request_id).output_keys == ["k1", "k2"]  # late files still get purged

    def test_concurrent_completes_exactly_once(self, store: JobStore, open_store: OpenStore) -> None:
        with opened(open_store, 3) as others:
            stores = [store, *others]
            job = submit(store)
            store.claim("w")
            barrier = threading.Barrier(8)
            results: list[Job | None] = [None] * 8

            def run(i: int) -> None:
                barrier.wait()
                results[i] = stores[i % 4].complete(job.request_id, Outcome(200, {"by": i}))

            threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=10)
            bodies = {r.result_body["by"] for r in results}  # type: ignore[union-attr]
            assert len(bodies) == 1
            final = stores[1].get(job.request_id)
            assert final.result_body == {"by": bodies.pop()} and final.version == 2  # claim + one completion
            assert stores[2].counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 0, "COMPLETED": 1}

    def test_concurrent_claim_threads(self, store: JobStore, open_store: OpenStore) -> None:
        with opened(open_store) as [other]:
            stores = [store, other]  # two store objects ("nodes"), two threads each
            ids = {submit(store).request_id for _ in range(100)}
            results: list[list[str]] = [[] for _ in range(4)]
            barrier = threading.Barrier(4)

            def run(i: int) -> None:
                barrier.wait()
                claim_all(stores[i % 2], f"t{i}", results[i])

            threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            claimed = Counter(rid for r in results for rid in r)
            assert set(claimed) == ids and max(claimed.values()) == 1
            assert other.counts()["IN_PROGRESS"] == 100
            assert store.counts()["IN_PROGRESS"] == 100

    def test_concurrent_claim_processes(self, store: JobStore, open_store: OpenStore) -> None:
        ids = {submit(store).request_id for _ in range(100)}
        ctx = multiprocessing.get_context("spawn")
        barrier, queue = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_process_claimer, args=(open_store, f"p{i}", barrier, queue)) for i in range(2)]
        for p in procs:
            p.start()
        results = dict(queue.get(timeout=30) for _ in procs)
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
        claimed = Counter(rid for r in results.values() for rid in r)
        assert set(claimed) == ids and max(claimed.values()) == 1
        # (Not asserted: that both got some. SQLite's busy handler backs off up to 100 ms, so one
        # claimer can legitimately drain the queue while the other sleeps.)
        assert store.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 0, "COMPLETED": 100}
        owner = {rid: name for name, r in results.items() for rid in r}
        assert all(store.get(rid).result_body == {"by": owner[rid]} for rid in ids)

    # -- cancel, deadlines, release, reclaim ----------------------------------------------------------

    def test_cancel_outcomes(self, store: JobStore) -> None:
        running = submit(store)
        queued = submit(store)
        assert [j.request_id for j in store.claim("w")] == [running.request_id]
        assert store.cancel(queued.request_id) is CancelOutcome.CANCELLATION_REQUESTED
        got = store.get(queued.request_id)
        assert got.status is JobStatus.COMPLETED and got.result_status == 499 and got.result_body == CANCELLED.body
        assert got.error_type == "client_cancelled" and store.queue_depth() == 0
        assert store.is_cancel_requested(queued.request_id)

        assert not store.is_cancel_requested(running.request_id)
        assert store.cancel(running.request_id) is CancelOutcome.CANCELLATION_REQUESTED
        assert store.get(running.request_id).status is JobStatus.IN_PROGRESS
        assert store.is_cancel_requested(running.request_id)
        assert store.get(running.request_id).logs[-1].message == "Cancellation requested"
        store.complete(running.request_id, Outcome(499, CANCELLED.body))

        assert store.cancel(running.request_id) is CancelOutcome.ALREADY_COMPLETED
        assert store.cancel(queued.request_id) is CancelOutcome.ALREADY_COMPLETED
        assert store.cancel("unknown") is CancelOutcome.NOT_FOUND
        assert not store.is_cancel_requested("unknown")
        assert store.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 0, "COMPLETED": 2}

    def test_start_deadline_expiry(self, store: JobStore) -> None:
        now = time.time()
        soon = submit(store, start_deadline=now + 100)
        later = submit(store, start_deadline=now + 1000)
        free = submit(store)
        assert store.expire_start_deadlines(now) == []
        expired = store.expire_start_deadlines(now + 200)
        assert [j.request_id for j in expired] == [soon.request_id]
        assert expired[0].status is JobStatus.COMPLETED
        assert (expired[0].result_status, expired[0].result_body) == (504, TIMED_OUT.body)
        assert expired[0].logs[-1].level == "ERROR"
        assert store.queue_position(later.request_id) == 0 and store.queue_position(free.request_id) == 1
        assert store.expire_start_deadlines(now + 200) == []

    def test_claim_skips_jobs_past_their_deadline(self, store: JobStore) -> None:
        # 20: more than one scan chunk, for a backend that scans the queue in chunks
        late = [submit(store, start_deadline=time.time() - 1) for _ in range(20)]
        ok = submit(store)
        late_b = submit(store, batch_key="b", start_deadline=time.time() - 1)
        ok_b = submit(store, batch_key="b")
        assert [j.request_id for j in store.claim("w", limit=5)] == [ok.request_id, ok_b.request_id]
        assert store.claim("w", batch_key="b") == []
        expired = store.expire_start_deadlines()
        assert [j.request_id for j in expired] == [*(j.request_id for j in late), late_b.request_id]
        assert store.queue_depth() == 0

    def test_release_is_safe_on_any_ids(self, store: JobStore) -> None:
        running, done, queued = submit(store), submit(store), submit(store)
        store.claim("w", limit=2)  # running, done
        store.complete(done.request_id, Outcome(200, {"done": True}))
        store.release([])
        store.release([running.request_id, done.request_id, queued.request_id, "unknown"])
        store.release(iter([running.request_id]))  # any iterable; releasing twice is fine
        # Nothing is decided for the released jobs at once: each stays where it was.
        got = store.get(running.request_id)
        assert got.status is JobStatus.IN_PROGRESS and got.worker_id == "w"
        assert store.get(done.request_id).result_body == {"done": True}
        assert store.queue_position(queued.request_id) == 0
        assert store.complete(running.request_id, Outcome(200, {})).result_status == 200
        assert store.counts() == {"IN_QUEUE": 1, "IN_PROGRESS": 0, "COMPLETED": 2}

    def test_reclaim_expired_returns_an_empty_list_when_nothing_expired(self, store: JobStore) -> None:
        assert store.reclaim_expired() == [] and isinstance(store.reclaim_expired(), list)
        held = submit(store)
        queued = submit(store)
        store.claim("w")  # a live claim: its worker may still be on it
        reclaimed = store.reclaim_expired()
        assert isinstance(reclaimed, list) and reclaimed == []
        assert store.get(held.request_id).status is JobStatus.IN_PROGRESS
        assert store.queue_position(queued.request_id) == 0

    def test_recover_without_jobs_in_progress_touches_nothing(self, store: JobStore) -> None:
        finished = [submit(store), submit(store)]
        store.claim("w", limit=2)
        for job in finished:
            store.complete(job.request_id, Outcome(200, {}))
        queued = submit(store)
        assert store.recover() == []
        assert store.queue_position(queued.request_id) == 0
        assert store.counts() == {"IN_QUEUE": 1, "IN_PROGRESS": 0, "COMPLETED": 2}

    # -- logs, history, purge, webhooks -------------------------------------------------------------

    def test_logs_in_order(self, store: JobStore) -> None:
        job = submit(store)
        for i in range(20):
            store.append_log(job.request_id, f"line {i}", level="DEBUG" if i % 2 else "INFO")
        store.append_log("unknown", "ignored")
        assert store.get("unknown") is None
        got = store.get(job.request_id)
        assert [entry.message for entry in got.logs] == [f"line {i}" for i in range(20)]
        assert got.logs[1].level == "DEBUG" and got.logs[0].source == "bgone" and got.version == 20
        assert got.logs[0].timestamp.endswith("Z") and "T" in got.logs[0].timestamp
        assert got.logs[0].to_dict().keys() == {"message", "level", "source", "timestamp"}

    def test_history_newest_first_without_sync_jobs(self, store: JobStore) -> None:
        kept = [submit(store) for _ in range(3)]
        submit(store, keep_history=False)
        hist = store.history()
        assert [j.request_id for j in hist] == [j.request_id for j in reversed(kept)]
        assert [j.request_id for j in store.history(limit=1, offset=1)] == [kept[1].request_id]
        assert store.history(limit=0) == [] and store.history(offset=10) == []

    def test_purge(self, store: JobStore) -> None:
        old = submit(store)
        running = submit(store)
        store.claim("w", limit=2)
        store.complete(old.request_id, Outcome(200, {}, output_keys=("outputs/x/a.png",)))
        store.append_log(old.request_id, "bye")
        sync_job = submit(store, keep_history=False)
        store.complete(sync_job.request_id, Outcome(200, {}))
        queued = submit(store)

        # Nothing is old enough yet (the sync job completed just now, within its grace period).
        assert store.purge(completed_before=time.time() - 60) == []
        purged = store.purge(completed_before=time.time() - 60, ephemeral_before=time.time() + 1)
        assert [j.request_id for j in purged] == [sync_job.request_id]
        purged = store.purge(completed_before=time.time() + 1)
        assert [j.request_id for j in purged] == [old.request_id] and purged[0].output_keys == ["outputs/x/a.png"]
        assert purged[0].logs[-1].message == "bye"
        assert store.get(old.request_id) is None
        assert store.get(running.request_id) is not None and store.get(queued.request_id) is not None
        assert [j.request_id for j in store.history()] == [queued.request_id, running.request_id]
        assert store.counts() == {"IN_QUEUE": 1, "IN_PROGRESS": 1, "COMPLETED": 0}

    def test_the_webhook_user_id_is_kept(self, store: JobStore) -> None:
        hooked = submit(store, webhook_url="https://example.com/hook", user_id="3f2a9c")
        plain = submit(store)
        store.claim("w", limit=2)
        store.complete(hooked.request_id, Outcome(200, {"ok": 1}))
        assert store.get(hooked.request_id).user_id == "3f2a9c"
        assert [j.user_id for j in store.pending_webhooks()] == ["3f2a9c"]
        assert store.get(plain.request_id).user_id is None

    def test_webhook_bookkeeping(self, store: JobStore) -> None:
        hooked = submit(store, webhook_url="https://example.com/hook")
        submit(store)  # no webhook
        store.claim("w", limit=2)
        assert store.pending_webhooks() == []  # not completed yet
        store.complete(hooked.request_id, Outcome(200, {"ok": 1}))
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
        store.record_webhook("unknown", delivered=True)  # ignored

    # -- wait() and close() -------------------------------------------------------------------------

    def test_wait_wakes_in_process(self, store: JobStore) -> None:
        job = submit(store)
        assert store.wait(job.request_id, timeout=0.05) is False
        changed_at: list[float] = []

        def change() -> None:
            changed_at.append(time.monotonic())
            store.append_log(job.request_id, "progress")

        t = change_later(0.05, change)
        assert store.wait(job.request_id, timeout=5) is True
        woke = time.monotonic()
        t.join()
        assert woke - changed_at[0] < 0.1
        assert store.wait("unknown", timeout=5) is True  # nothing to wait for: returns at once

    def test_wait_since_version_catches_earlier_change(self, store: JobStore) -> None:
        job = submit(store)
        seen = store.get(job.request_id)
        store.claim("w")  # happens between reading the job and waiting
        start = time.monotonic()
        assert store.wait(job.request_id, timeout=5, since=seen.version) is True
        assert time.monotonic() - start < 0.5  # at once (a backend's first wait may start a listener)
        seen = store.get(job.request_id)
        store.append_log(job.request_id, "progress")  # again, with the store warmed up
        start = time.monotonic()
        assert store.wait(job.request_id, timeout=5, since=seen.version) is True
        assert time.monotonic() - start < 0.05

    def test_wait_notices_changes_through_another_store_object(self, store: JobStore, open_store: OpenStore) -> None:
        with opened(open_store) as [other]:  # stands in for another process: no shared memory
            job = submit(store)
            changed_at: list[float] = []

            def change() -> None:
                other.claim("remote")
                changed_at.append(time.monotonic())

            t = change_later(0.05, change)
            assert store.wait(job.request_id, timeout=5) is True
            woke = time.monotonic()
            t.join()
            assert woke - changed_at[0] < 0.5

    def test_close_wakes_waiters(self, open_store: OpenStore) -> None:
        s = open_store()
        job = submit(s)
        t = change_later(0.05, s.close)
        start = time.monotonic()
        assert s.wait(job.request_id, timeout=5) is False
        assert time.monotonic() - start < 1
        t.join()
