"""RedisJobStore: the JobStore contract (as in test_sqlite_store.py) on a throwaway redis-server, plus
what only a distributed store has: leases, heartbeats, reclaim by another worker, pub/sub wake-ups
across store objects and processes, and jobs surviving a Redis restart (AOF)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

redis = pytest.importorskip("redis")

from store_contract import (  # noqa: E402 - the shared contract tests run here against this backend
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

from bgone.service.jobs import (  # noqa: E402
    CANCELLED_BODY,
    INTERRUPTED_BODY,
    TIMED_OUT_BODY,
    CancelOutcome,
    Job,
    JobStatus,
    JobStore,
    Priority,
    open_job_store,
)
from bgone.service.jobs.redis import RedisJobStore  # noqa: E402

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
if not os.path.exists(REDIS_SERVER):
    pytest.skip("redis-server is not installed", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server child process on a free loopback port."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += list(self.extra) or ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    srv = RedisServer().start()
    yield srv
    srv.stop(signal.SIGKILL)


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"  # a fresh namespace per test: no FLUSHALL needed


@pytest.fixture
def make_store(server: RedisServer, namespace: str) -> Iterator[Callable[..., RedisJobStore]]:
    stores: list[RedisJobStore] = []

    def make(**kw) -> RedisJobStore:
        s = RedisJobStore(server.url, namespace=namespace, **kw)
        stores.append(s)
        return s

    yield make
    for s in stores:
        s.close()


@pytest.fixture
def store(make_store) -> RedisJobStore:
    return make_store()


# -- the JobStore contract ------------------------------------------------------------------------


def test_implements_protocol_and_round_trip(store: RedisJobStore) -> None:
    assert isinstance(store, JobStore)
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
    assert len(job.request_id) == 36
    assert store.get("nope") is None
    with pytest.raises(ValueError):
        submit(store, request_id=job.request_id)


def test_namespaces_are_isolated(server: RedisServer, store: RedisJobStore) -> None:
    submit(store)
    other = RedisJobStore(server.url, namespace=f"{store.namespace}-other")
    try:
        assert other.queue_depth() == 0 and other.claim("w") == []
        assert store.queue_depth() == 1
    finally:
        other.close()


def test_status_transitions(store: RedisJobStore) -> None:
    job = submit(store)
    [claimed] = store.claim("w1")
    assert claimed.request_id == job.request_id
    assert claimed.status is JobStatus.IN_PROGRESS and claimed.worker_id == "w1" and claimed.attempts == 1
    assert claimed.started_at is not None
    assert store.queue_position(job.request_id) is None
    assert store.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 1, "COMPLETED": 0}
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


def test_complete_is_idempotent(store: RedisJobStore) -> None:
    job = submit(store)
    store.claim("w")
    first = store.complete(job.request_id, status_code=200, body={"n": 1}, output_keys=["k1"])
    again = store.complete(job.request_id, status_code=500, body={"n": 2}, error="late", output_keys=["k1", "k2"])
    assert first is not None and again is not None
    assert again.result_status == 200 and again.result_body == {"n": 1} and again.error is None
    assert again.completed_at == first.completed_at and again.version == first.version
    assert store.get(job.request_id).output_keys == ["k1", "k2"]  # late files still get purged


def test_concurrent_completes_exactly_once(make_store) -> None:
    stores = [make_store() for _ in range(4)]
    job = submit(stores[0])
    stores[0].claim("w")
    barrier = threading.Barrier(8)
    results: list[Job | None] = [None] * 8

    def run(i: int) -> None:
        barrier.wait()
        results[i] = stores[i % 4].complete(job.request_id, status_code=200, body={"by": i})

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


def test_concurrent_claim_threads(make_store) -> None:
    stores = [make_store() for _ in range(2)]  # two "nodes", two threads each
    ids = {submit(stores[0]).request_id for _ in range(100)}
    results: list[list[str]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def run(i: int) -> None:
        barrier.wait()
        _claim_all(stores[i % 2], f"t{i}", results[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    claimed = Counter(rid for r in results for rid in r)
    assert set(claimed) == ids and max(claimed.values()) == 1
    assert stores[1].counts()["IN_PROGRESS"] == 100


def _process_claimer(url: str, namespace: str, name: str, barrier, queue) -> None:  # spawned process
    s = RedisJobStore(url, namespace=namespace)
    out: list[str] = []
    barrier.wait()
    _claim_all(s, name, out)
    for rid in out:  # complete concurrently with the other process too
        s.complete(rid, status_code=200, body={"by": name})
    s.close()
    queue.put((name, out))


def test_concurrent_claim_processes(server: RedisServer, store: RedisJobStore) -> None:
    ids = {submit(store).request_id for _ in range(100)}
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_process_claimer, args=(server.url, store.namespace, f"p{i}", barrier, queue))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    claimed = Counter(rid for r in results.values() for rid in r)
    assert set(claimed) == ids and max(claimed.values()) == 1
    assert store.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 0, "COMPLETED": 100}
    owner = {rid: name for name, r in results.items() for rid in r}
    assert all(store.get(rid).result_body == {"by": owner[rid]} for rid in ids)


def test_cancel_outcomes(store: RedisJobStore) -> None:
    running = submit(store)
    queued = submit(store)
    assert [j.request_id for j in store.claim("w")] == [running.request_id]
    assert store.cancel(queued.request_id) is CancelOutcome.CANCELLATION_REQUESTED
    got = store.get(queued.request_id)
    assert got.status is JobStatus.COMPLETED and got.result_status == 499 and got.result_body == CANCELLED_BODY
    assert got.error_type == "client_cancelled" and store.queue_depth() == 0
    assert store.is_cancel_requested(queued.request_id)

    assert not store.is_cancel_requested(running.request_id)
    assert store.cancel(running.request_id) is CancelOutcome.CANCELLATION_REQUESTED
    assert store.get(running.request_id).status is JobStatus.IN_PROGRESS
    assert store.is_cancel_requested(running.request_id)
    assert store.get(running.request_id).logs[-1].message == "Cancellation requested"
    store.complete(running.request_id, status_code=499, body=CANCELLED_BODY)

    assert store.cancel(running.request_id) is CancelOutcome.ALREADY_COMPLETED
    assert store.cancel(queued.request_id) is CancelOutcome.ALREADY_COMPLETED
    assert store.cancel("unknown") is CancelOutcome.NOT_FOUND
    assert not store.is_cancel_requested("unknown")
    assert store.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 0, "COMPLETED": 2}


def test_start_deadline_expiry(store: RedisJobStore) -> None:
    now = time.time()
    soon = submit(store, start_deadline=now + 100)
    later = submit(store, start_deadline=now + 1000)
    free = submit(store)
    assert store.expire_start_deadlines(now) == []
    expired = store.expire_start_deadlines(now + 200)
    assert [j.request_id for j in expired] == [soon.request_id]
    assert expired[0].status is JobStatus.COMPLETED
    assert (expired[0].result_status, expired[0].result_body) == (504, TIMED_OUT_BODY)
    assert expired[0].logs[-1].level == "ERROR"
    assert store.queue_position(later.request_id) == 0 and store.queue_position(free.request_id) == 1
    assert store.expire_start_deadlines(now + 200) == []


def test_claim_skips_jobs_past_their_deadline(store: RedisJobStore) -> None:
    late = [submit(store, start_deadline=time.time() - 1) for _ in range(20)]  # more than one scan chunk
    ok = submit(store)
    late_b = submit(store, batch_key="b", start_deadline=time.time() - 1)
    ok_b = submit(store, batch_key="b")
    assert [j.request_id for j in store.claim("w", limit=5)] == [ok.request_id, ok_b.request_id]
    assert store.claim("w", batch_key="b") == []
    expired = store.expire_start_deadlines()
    assert [j.request_id for j in expired] == [*(j.request_id for j in late), late_b.request_id]
    assert store.queue_depth() == 0


# -- leases, heartbeats, reclaim ------------------------------------------------------------------


def test_expired_lease_is_reclaimed_by_another_worker(make_store) -> None:
    dying = make_store(lease_seconds=0.3, auto_heartbeat=False)  # its worker "dies": no heartbeats
    other = make_store(lease_seconds=30)
    a = submit(dying)
    b = submit(dying)
    [job] = dying.claim("dead-worker")
    assert job.request_id == a.request_id
    [taken] = other.claim("live", limit=5)  # a is leased: only b is free to take
    assert taken.request_id == b.request_id and taken.worker_id == "live"
    assert other.recover() == []  # the lease has not run out: a live worker may still be on it
    time.sleep(0.35)
    [again] = other.claim("live")  # claim() re-queues expired leases first, keeping the position
    assert again.request_id == a.request_id and again.attempts == 2 and again.worker_id == "live"
    assert [e.level for e in again.logs] == ["WARNING"]
    assert dying.heartbeat("dead-worker", [a.request_id]) == []  # it lost the job
    assert other.heartbeat("live", [a.request_id, b.request_id]) == [a.request_id, b.request_id]
    won = other.complete(a.request_id, status_code=200, body={"by": "live"})
    late = dying.complete(a.request_id, status_code=200, body={"by": "dead"})  # the zombie finishes too
    assert won.result_body == late.result_body == {"by": "live"}
    assert other.get(a.request_id).version == won.version
    assert other.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 1, "COMPLETED": 1}


def test_reclaim_expired_keeps_queue_position(store: RedisJobStore) -> None:
    a, b, c = submit(store), submit(store), submit(store, priority=Priority.LOW)
    store.claim("w")  # a
    assert store.reclaim_expired() == []
    [job] = store.reclaim_expired(now=time.time() + store.lease_seconds + 1)
    assert job.request_id == a.request_id and job.status is JobStatus.IN_QUEUE and job.worker_id is None
    assert job.started_at is None and job.logs[-1].level == "WARNING"
    assert [store.queue_position(j.request_id) for j in (a, b, c)] == [0, 1, 2]
    assert store.counts() == {"IN_QUEUE": 3, "IN_PROGRESS": 0, "COMPLETED": 0}


def test_reclaim_gives_up_after_max_attempts_and_honours_cancel(store: RedisJobStore) -> None:
    poison = submit(store)
    for attempt in range(1, 4):
        [job] = store.claim("w")
        assert job.attempts == attempt
        [job] = store.reclaim_expired(now=time.time() + 100)
    assert job.status is JobStatus.COMPLETED and job.result_status == 503
    assert (job.result_body, job.error_type) == (INTERRUPTED_BODY, "runner_disconnected")
    assert job.logs[-1].level == "ERROR" and job.request_id == poison.request_id

    cancelled = submit(store)
    store.claim("w")
    store.cancel(cancelled.request_id)
    [job] = store.reclaim_expired(now=time.time() + 100)
    assert job.status is JobStatus.COMPLETED and job.result_body == CANCELLED_BODY
    assert store.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 0, "COMPLETED": 2}


def test_the_housekeeping_pass_finishes_dead_exhausted_jobs(make_store) -> None:
    s = make_store(lease_seconds=0.2, auto_heartbeat=False, max_attempts=1)
    job = submit(s, webhook_url="https://example.com/hook")
    s.claim("dead")
    time.sleep(0.25)
    assert s.claim("w") == []  # claim only re-queues; giving up is for the housekeeping pass
    assert s.expire_start_deadlines() == []  # only deadlines; dead workers are reclaim_expired's
    [done] = s.reclaim_expired()
    assert done.request_id == job.request_id and done.result_status == 503
    assert [j.request_id for j in s.pending_webhooks()] == [job.request_id]


def _dying_worker(url: str, namespace: str, ready, die) -> None:  # spawned process
    s = RedisJobStore(url, namespace=namespace, lease_seconds=0.4)  # auto heartbeat on
    [job] = s.claim("doomed")
    ready.put(job.request_id)
    die.wait(30)
    os._exit(0)  # no close(), no complete(): the process just vanishes


def test_heartbeat_keeps_lease_until_process_dies(server: RedisServer, store: RedisJobStore) -> None:
    job = submit(store)
    ctx = multiprocessing.get_context("spawn")
    ready, die = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_dying_worker, args=(server.url, store.namespace, ready, die))
    proc.start()
    try:
        assert ready.get(timeout=30) == job.request_id
        time.sleep(1.0)  # 2.5 leases: only the heartbeat thread keeps it alive
        assert store.claim("other") == [] and store.reclaim_expired() == []
        assert store.get(job.request_id).worker_id == "doomed"
        die.set()
        proc.join(timeout=10)
        deadline = time.monotonic() + 5
        while not (taken := store.claim("other")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [j.request_id for j in taken] == [job.request_id] and taken[0].attempts == 2
    finally:
        die.set()
        proc.join(timeout=10)


# -- logs, history, purge, webhooks ---------------------------------------------------------------


def test_logs_in_order(store: RedisJobStore) -> None:
    job = submit(store)
    for i in range(20):
        store.append_log(job.request_id, f"line {i}", level="DEBUG" if i % 2 else "INFO")
    store.append_log("unknown", "ignored")
    assert store.get("unknown") is None
    got = store.get(job.request_id)
    assert [entry.message for entry in got.logs] == [f"line {i}" for i in range(20)]
    assert got.logs[1].level == "DEBUG" and got.logs[0].source == "bgone" and got.version == 20
    assert got.logs[0].timestamp.endswith("Z") and "T" in got.logs[0].timestamp


def test_history_newest_first_without_sync_jobs(store: RedisJobStore) -> None:
    kept = [submit(store) for _ in range(3)]
    submit(store, keep_history=False)
    hist = store.history()
    assert [j.request_id for j in hist] == [j.request_id for j in reversed(kept)]
    assert [j.request_id for j in store.history(limit=1, offset=1)] == [kept[1].request_id]
    assert store.history(limit=0) == [] and store.history(offset=10) == []


def test_purge(store: RedisJobStore) -> None:
    old = submit(store)
    running = submit(store)
    store.claim("w", limit=2)
    store.complete(old.request_id, status_code=200, body={}, output_keys=["outputs/x/a.png"])
    store.append_log(old.request_id, "bye")
    sync_job = submit(store, keep_history=False)
    store.complete(sync_job.request_id, status_code=200, body={})
    queued = submit(store)

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
    leftover = store._r.keys(f"{store.prefix}*{old.request_id}*")
    assert leftover == []


def test_webhook_bookkeeping(store: RedisJobStore) -> None:
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
    store.record_webhook("unknown", delivered=True)


# -- wait() ---------------------------------------------------------------------------------------


def test_wait_since_version_catches_earlier_change(store: RedisJobStore) -> None:
    job = submit(store)
    seen = store.get(job.request_id)
    store.claim("w")  # happens between reading the job and waiting
    start = time.monotonic()
    assert store.wait(job.request_id, timeout=5, since=seen.version) is True
    assert time.monotonic() - start < 0.5


@pytest.mark.parametrize("change", ["claim", "cancel", "complete", "purge"])
def test_wait_wakes_across_store_objects(make_store, change: str) -> None:
    api, worker = make_store(), make_store()  # two "processes": no shared memory, only Redis
    job = submit(api)
    if change in ("complete", "purge"):
        worker.claim("w")
    if change == "purge":
        worker.complete(job.request_id, status_code=200, body={})
    version = api.get(job.request_id).version
    actions = {
        "claim": lambda: worker.claim("w"),
        "cancel": lambda: worker.cancel(job.request_id),
        "complete": lambda: worker.complete(job.request_id, status_code=200, body={}),
        "purge": lambda: worker.purge(completed_before=time.time() + 1),
    }
    changed_at: list[float] = []

    def act() -> None:
        actions[change]()
        changed_at.append(time.monotonic())

    t = _change_later(0.1, act)
    assert api.wait(job.request_id, timeout=5, since=version) is True
    woke = time.monotonic()
    t.join()
    assert woke - changed_at[0] < 0.5
    assert api._sub_ok  # woken through pub/sub, not by polling


def test_close_wakes_waiters(make_store) -> None:
    s = make_store()
    job = submit(s)
    t = _change_later(0.1, s.close)
    start = time.monotonic()
    assert s.wait(job.request_id, timeout=5) is False
    assert time.monotonic() - start < 1
    t.join()


# -- open_job_store and Redis restarts ------------------------------------------------------------


def test_open_job_store_redis(server: RedisServer, tmp_path: Path) -> None:
    s = open_job_store(f"{server.url}?namespace=custom-ns&lease_seconds=5", tmp_path)
    try:
        assert isinstance(s, RedisJobStore) and s.namespace == "custom-ns" and s.lease_seconds == 5
        assert s.url == server.url
    finally:
        s.close()
    s = open_job_store(server.url, tmp_path)
    assert isinstance(s, RedisJobStore) and s.namespace == "bgone" and s.lease_seconds == 30
    s.close()
    with pytest.raises(ValueError):
        open_job_store(f"{server.url}?lease_seconds=soon", tmp_path)
    with pytest.raises(ValueError, match="unsupported queue backend 'postgres'"):
        open_job_store("postgres://localhost/db", tmp_path)


def test_jobs_survive_a_redis_restart(tmp_path: Path) -> None:
    srv = RedisServer("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path)).start()
    s = waiter = None
    try:
        s = RedisJobStore(srv.url)
        waiter = RedisJobStore(srv.url)
        jobs = [submit(s), submit(s, priority=Priority.LOW), submit(s)]
        [running] = s.claim("w")
        s.append_log(jobs[2].request_id, "still here")
        assert waiter.wait(jobs[2].request_id, timeout=0.01) is False  # starts its subscriber

        srv.stop(signal.SIGKILL)  # a crash, not a clean shutdown
        srv.start()

        assert s.counts() == {"IN_QUEUE": 2, "IN_PROGRESS": 1, "COMPLETED": 0}  # clients reconnect
        assert [s.queue_position(j.request_id) for j in jobs] == [None, 1, 0]
        assert s.get(running.request_id).worker_id == "w"
        assert s.get(jobs[2].request_id).logs[0].message == "still here"
        version = waiter.get(jobs[2].request_id).version
        t = _change_later(0.1, lambda: s.claim("w2"))
        assert waiter.wait(jobs[2].request_id, timeout=5, since=version) is True  # pub/sub resubscribed
        t.join()
        assert s.complete(running.request_id, status_code=200, body={}).result_status == 200
        new = submit(s, priority=Priority.LOW)  # the seq counter survived: new jobs go after old ones
        assert [s.queue_position(j.request_id) for j in (jobs[1], new)] == [0, 1]
    finally:
        for st in (s, waiter):
            if st is not None:
                st.close()
        srv.stop(signal.SIGKILL)
