"""Queue semantics every JobStore must have, written once: each backend's test module imports these
tests, and pytest runs them there with that module's ``store`` fixture."""

from __future__ import annotations

import threading
import time

import pytest

from bgone.service.jobs import Job, JobStore, Priority

V2 = "fal-ai/birefnet/v2"
APP = "fal-ai/birefnet"


def submit(store: JobStore, **kw) -> Job:
    kw.setdefault("payload", {"image_url": "https://example.com/a.png"})
    return store.submit(Job.new(endpoint=V2, app=APP, **kw))


def test_queue_positions_with_priorities(store: JobStore) -> None:
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


def test_fifo_ties_break_by_insertion_order(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_000.0)  # identical created_at for all
    jobs = [submit(store) for _ in range(4)]
    monkeypatch.undo()
    assert {store.get(j.request_id).created_at for j in jobs} == {1_000.0}
    assert [store.queue_position(j.request_id) for j in jobs] == [0, 1, 2, 3]
    assert [j.request_id for j in store.claim("w", limit=4)] == [j.request_id for j in jobs]


def test_claim_order_limit_and_batch_key(store: JobStore) -> None:
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


def _claim_all(store: JobStore, worker: str, out: list[str]) -> None:
    limit = 1
    while batch := store.claim(worker, limit=limit):
        out.extend(j.request_id for j in batch)
        limit = limit % 3 + 1  # mix single and batched claims
        time.sleep(0.001)  # "work": lets the other claimers interleave


def _change_later(delay: float, action) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    t = threading.Thread(target=run)
    t.start()
    return t


def test_wait_wakes_in_process(store: JobStore) -> None:
    job = submit(store)
    assert store.wait(job.request_id, timeout=0.05) is False
    changed_at: list[float] = []

    def change() -> None:
        changed_at.append(time.monotonic())
        store.append_log(job.request_id, "progress")

    t = _change_later(0.05, change)
    assert store.wait(job.request_id, timeout=5) is True
    woke = time.monotonic()
    t.join()
    assert woke - changed_at[0] < 0.1
    assert store.wait("unknown", timeout=5) is True  # nothing to wait for: returns at once
