"""RedisJobStore: the JobStore contract (store_contract.py) on a throwaway redis-server, plus what only
a distributed store has: leases, heartbeats, release and reclaim by another worker, namespaces, its
transient errors, pub/sub wake-ups across store objects, jobs surviving a Redis restart (AOF), and
redis:// URLs in open_job_store."""

from __future__ import annotations

import functools
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

redis = pytest.importorskip("redis")

from store_contract import JobStoreContract, change_later, submit  # noqa: E402

from bgone.service.jobs import (  # noqa: E402
    CANCELLED,
    INTERRUPTED,
    JobStatus,
    Outcome,
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


@pytest.fixture
def open_store(server: RedisServer, namespace: str) -> Callable[[], RedisJobStore]:
    return functools.partial(RedisJobStore, server.url, namespace=namespace)


# -- the JobStore contract, transient errors, namespaces ------------------------------------------


class TestJobStoreContract(JobStoreContract):
    """The shared JobStore contract, on Redis."""


def test_transient_errors_are_connection_failures(store: RedisJobStore) -> None:
    assert set(store.transient_errors) == {redis.ConnectionError, redis.TimeoutError}


def test_namespaces_are_isolated(server: RedisServer, store: RedisJobStore) -> None:
    submit(store)
    other = RedisJobStore(server.url, namespace=f"{store.namespace}-other")
    try:
        assert other.queue_depth() == 0 and other.claim("w") == []
        assert store.queue_depth() == 1
    finally:
        other.close()


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
    won = other.complete(a.request_id, Outcome(200, {"by": "live"}))
    late = dying.complete(a.request_id, Outcome(200, {"by": "dead"}))  # the zombie finishes too
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
    assert (job.result_body, job.error_type) == (INTERRUPTED.body, "runner_disconnected")
    assert job.logs[-1].level == "ERROR" and job.request_id == poison.request_id

    cancelled = submit(store)
    store.claim("w")
    store.cancel(cancelled.request_id)
    [job] = store.reclaim_expired(now=time.time() + 100)
    assert job.status is JobStatus.COMPLETED and job.result_body == CANCELLED.body
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


def test_released_jobs_return_to_the_queue_when_their_lease_runs_out(make_store) -> None:
    node = make_store(lease_seconds=0.3)  # auto heartbeat on
    other = make_store()
    a, b = submit(node), submit(node)
    node.claim("w", limit=2)
    node.release([a.request_id])  # e.g. the batch failed: a stops being renewed, b does not
    time.sleep(0.5)
    [again] = other.claim("live", limit=5)
    assert again.request_id == a.request_id and again.attempts == 2
    assert node.get(b.request_id).status is JobStatus.IN_PROGRESS and node.get(b.request_id).worker_id == "w"


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


# -- purge and pub/sub wake-ups -------------------------------------------------------------------


def test_purge_leaves_no_keys_behind(store: RedisJobStore) -> None:
    old = submit(store)
    store.claim("w")
    store.complete(old.request_id, Outcome(200, {}, output_keys=("outputs/x/a.png",)))
    store.append_log(old.request_id, "bye")
    assert [j.request_id for j in store.purge(completed_before=time.time() + 1)] == [old.request_id]
    leftover = store._r.keys(f"{store.prefix}*{old.request_id}*")
    assert leftover == []


@pytest.mark.parametrize("change", ["claim", "cancel", "complete", "purge"])
def test_pubsub_wakes_waiters_across_store_objects(make_store, change: str) -> None:
    api, worker = make_store(), make_store()  # two "processes": no shared memory, only Redis
    job = submit(api)
    if change in ("complete", "purge"):
        worker.claim("w")
    if change == "purge":
        worker.complete(job.request_id, Outcome(200, {}))
    version = api.get(job.request_id).version
    actions = {
        "claim": lambda: worker.claim("w"),
        "cancel": lambda: worker.cancel(job.request_id),
        "complete": lambda: worker.complete(job.request_id, Outcome(200, {})),
        "purge": lambda: worker.purge(completed_before=time.time() + 1),
    }
    changed_at: list[float] = []

    def act() -> None:
        actions[change]()
        changed_at.append(time.monotonic())

    t = change_later(0.1, act)
    assert api.wait(job.request_id, timeout=5, since=version) is True
    woke = time.monotonic()
    t.join()
    assert woke - changed_at[0] < 0.5
    assert api._sub_ok  # woken through pub/sub, not by polling


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
        t = change_later(0.1, lambda: s.claim("w2"))
        assert waiter.wait(jobs[2].request_id, timeout=5, since=version) is True  # pub/sub resubscribed
        t.join()
        assert s.complete(running.request_id, Outcome(200, {})).result_status == 200
        new = submit(s, priority=Priority.LOW)  # the seq counter survived: new jobs go after old ones
        assert [s.queue_position(j.request_id) for j in (jobs[1], new)] == [0, 1]
    finally:
        for st in (s, waiter):
            if st is not None:
                st.close()
        srv.stop(signal.SIGKILL)
