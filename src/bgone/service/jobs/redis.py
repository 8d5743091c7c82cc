"""``JobStore`` on Redis: one queue shared by API and worker processes on several machines.

Data model (every key starts with ``{namespace}:``; the braces are a Redis Cluster hash tag, so all
keys of one store live in one slot and the Lua scripts may touch any of them):

* ``job:<id>``: a hash with the job's fields (JSON for payload/result/metrics/output keys; a field is
  absent when its value is None), plus ``seq`` (global insertion counter) and ``score`` (queue order).
* ``logs:<id>``: a list of JSON log lines (RPUSH, so appending never rewrites the job).
* ``queue``: IN_QUEUE ids, score = ``priority * 1e13 + seq``: priority, then FIFO. ``queue_position``
  is ZRANK. ``queue:bk:<batch_key>`` holds the same entries per batch key, for batched claims.
* ``deadlines``: IN_QUEUE ids with a ``start_deadline``, scored by it.
* ``inprogress``: IN_PROGRESS ids scored by lease expiry (epoch seconds). Workers renew leases with
  ``heartbeat`` (done automatically for jobs claimed through a store object, see ``auto_heartbeat``);
  a job whose lease ran out (its worker died) goes back to the queue at its old position.
* ``completed`` / ``ephemeral``: COMPLETED ids (ephemeral: only ``keep_history=False`` ones) scored by
  ``completed_at``, for ``purge`` and ``counts``. ``webhooks``: completed, undelivered webhook jobs.
* ``history``: ``keep_history`` ids scored by ``seq`` (newest first = ZREVRANGE).
* ``seq``: the INCR counter.

Every state change is one Lua script, so it is atomic with respect to every other client: two
workers never claim the same job, a job completes once. Each script bumps the job's ``version`` and
publishes the request id on the pub/sub channel ``<namespace>:events``; ``wait`` listens there (one
subscriber thread per store object, started by the first ``wait``) and falls back to polling every
0.2 s while the subscription is down.

Times are the clients' ``time.time()``: keep the machines' clocks in sync (NTP), well within
``lease_seconds``. Durability is Redis's: run it with ``appendonly yes`` (``appendfsync always`` if
losing the last second of changes on a Redis crash is not acceptable).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import redis as redis_lib

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

__all__ = ["RedisJobStore"]

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2  # wait(): re-check interval while the pub/sub subscription is down
SAFETY_INTERVAL_S = 1.0  # wait(): re-check interval while it is up (covers a message lost on reconnect)
PURGE_BATCH = 500  # jobs deleted per script call, so one purge never blocks Redis for long
_NIL = "\x00"  # "None" for optional script arguments

# -- Lua --------------------------------------------------------------------------------------------
# ARGV[1] = key prefix, ARGV[2] = event channel; each script's own arguments start at ARGV[3].

_PRELUDE = r"""
local P = ARGV[1]
local CH = ARGV[2]
local NIL = '\0'

local function jkey(id) return P .. 'job:' .. id end
local function lkey(id) return P .. 'logs:' .. id end

local function snapshot(id)
  return {redis.call('HGETALL', jkey(id)), redis.call('LRANGE', lkey(id), 0, -1)}
end

local function touch(id)
  redis.call('HINCRBY', jkey(id), 'version', 1)
  redis.call('PUBLISH', CH, id)
end

local function setopt(id, field, value)
  if value == NIL then redis.call('HDEL', jkey(id), field)
  else redis.call('HSET', jkey(id), field, value) end
end

local function enqueue(id)
  local f = redis.call('HMGET', jkey(id), 'score', 'batch_key', 'start_deadline')
  redis.call('ZADD', P .. 'queue', f[1], id)
  redis.call('ZADD', P .. 'queue:bk:' .. (f[2] or ''), f[1], id)
  if f[3] then redis.call('ZADD', P .. 'deadlines', f[3], id) end
end

local function dequeue(id)
  local bk = redis.call('HGET', jkey(id), 'batch_key') or ''
  redis.call('ZREM', P .. 'queue', id)
  redis.call('ZREM', P .. 'queue:bk:' .. bk, id)
  redis.call('ZREM', P .. 'deadlines', id)
end

-- Any state -> COMPLETED (callers check the state first). Does not bump the version.
local function finish(id, code, body, now, err, etype)
  local jk = jkey(id)
  dequeue(id)
  redis.call('ZREM', P .. 'inprogress', id)
  redis.call('HSET', jk, 'status', 'COMPLETED', 'result_status', code, 'result_body', body, 'completed_at', now)
  setopt(id, 'error', err)
  setopt(id, 'error_type', etype)
  redis.call('ZADD', P .. 'completed', now, id)
  local f = redis.call('HMGET', jk, 'keep_history', 'webhook_url', 'webhook_delivered')
  if f[1] == '0' then redis.call('ZADD', P .. 'ephemeral', now, id) end
  if f[2] and f[3] ~= '1' then redis.call('ZADD', P .. 'webhooks', now, id) end
end

-- Leases that ran out before `now`: back to the queue (same score, so same position), or, when
-- `terminal` is true, COMPLETED if cancel was requested (499) or attempts >= max_attempts (503).
-- With `terminal` false those two kinds are left alone (for a later terminal pass, which returns
-- them so that their webhooks fire). Returns the touched ids.
local function reclaim(now, max_attempts, terminal, requeue_log, cancelled, interrupted)
  local touched = {}
  local ids = redis.call('ZRANGEBYSCORE', P .. 'inprogress', '-inf', now)
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', jkey(id), 'status', 'cancel_requested', 'attempts')
    if f[1] ~= 'IN_PROGRESS' then
      redis.call('ZREM', P .. 'inprogress', id)
    elseif f[2] == '1' then
      if terminal then
        finish(id, cancelled[1], cancelled[2], now, cancelled[3], cancelled[4])
        touch(id)
        table.insert(touched, id)
      end
    elseif max_attempts >= 0 and tonumber(f[3] or '0') >= max_attempts then
      if terminal then
        finish(id, interrupted[1], interrupted[2], now, interrupted[3], interrupted[4])
        redis.call('RPUSH', lkey(id), interrupted[5])
        touch(id)
        table.insert(touched, id)
      end
    else
      redis.call('ZREM', P .. 'inprogress', id)
      redis.call('HSET', jkey(id), 'status', 'IN_QUEUE')
      redis.call('HDEL', jkey(id), 'started_at', 'worker_id')
      redis.call('RPUSH', lkey(id), requeue_log)
      enqueue(id)
      touch(id)
      table.insert(touched, id)
    end
  end
  return touched
end
"""

# ARGV: id, priority, batch_key, keep_history ('1'/'0'), start_deadline or NIL, then field/value pairs.
_SUBMIT = r"""
local id = ARGV[3]
local jk = jkey(id)
if redis.call('EXISTS', jk) == 1 then return 0 end
local seq = redis.call('INCR', P .. 'seq')
local score = string.format('%d', tonumber(ARGV[4]) * 10000000000000 + seq)
redis.call('HSET', jk, 'seq', seq, 'score', score, unpack(ARGV, 8))
if ARGV[7] ~= NIL then redis.call('HSET', jk, 'start_deadline', ARGV[7]) end
enqueue(id)
if ARGV[6] == '1' then redis.call('ZADD', P .. 'history', seq, id) end
redis.call('PUBLISH', CH, id)
return 1
"""

# ARGV: id. Returns the 0-based rank among IN_QUEUE jobs, or nil.
_POSITION = r"""
local id = ARGV[3]
if redis.call('HGET', jkey(id), 'status') ~= 'IN_QUEUE' then return nil end
return redis.call('ZRANK', P .. 'queue', id)
"""

# ARGV: worker_id, limit, now, lease_expiry, batch_key or NIL, max_attempts (-1 = none), requeue log.
_CLAIM = r"""
local worker, limit, now, expiry = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
reclaim(now, tonumber(ARGV[8]), false, ARGV[9], nil, nil)
local zkey = P .. 'queue'
if ARGV[7] ~= NIL then zkey = P .. 'queue:bk:' .. ARGV[7] end
local nnow = tonumber(now)
local claimed = {}
local skipped = 0
while #claimed < limit do
  local ids = redis.call('ZRANGE', zkey, skipped, skipped + limit - #claimed + 15)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local jk = jkey(id)
    local f = redis.call('HMGET', jk, 'status', 'start_deadline')
    if f[1] ~= 'IN_QUEUE' then
      redis.call('ZREM', zkey, id)  -- stale index entry (never expected)
    elseif f[2] and tonumber(f[2]) <= nnow then
      skipped = skipped + 1  -- left for expire_start_deadlines
    else
      dequeue(id)
      redis.call('HSET', jk, 'status', 'IN_PROGRESS', 'started_at', now, 'worker_id', worker)
      redis.call('HINCRBY', jk, 'attempts', 1)
      redis.call('ZADD', P .. 'inprogress', expiry, id)
      touch(id)
      table.insert(claimed, snapshot(id))
      if #claimed >= limit then break end
    end
  end
end
return claimed
"""

# ARGV: worker_id, lease_expiry, ids... Returns the ids this worker still holds.
_HEARTBEAT = r"""
local held = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', jkey(id), 'status', 'worker_id')
  if f[1] == 'IN_PROGRESS' and f[2] == ARGV[3] then
    redis.call('ZADD', P .. 'inprogress', 'XX', ARGV[4], id)
    table.insert(held, id)
  end
end
return held
"""

# ARGV: id, log json.
_APPEND_LOG = r"""
local id = ARGV[3]
if redis.call('EXISTS', jkey(id)) == 0 then return 0 end
redis.call('RPUSH', lkey(id), ARGV[4])
touch(id)
return 1
"""

# ARGV: id, now, status code, body json, error|NIL, error_type|NIL, metrics json, n_keys, keys...
# Returns {won (1/0), snapshot} or nil when unknown.
_COMPLETE = r"""
local id = ARGV[3]
local jk = jkey(id)
local status = redis.call('HGET', jk, 'status')
if not status then return nil end
local cur = cjson.decode(redis.call('HGET', jk, 'output_keys') or '[]')
local seen, changed = {}, false
for _, k in ipairs(cur) do seen[k] = true end
for i = 11, 10 + tonumber(ARGV[10]) do
  local k = ARGV[i]
  if not seen[k] then seen[k] = true; table.insert(cur, k); changed = true end
end
if changed then
  local parts = {}
  for i, k in ipairs(cur) do parts[i] = cjson.encode(k) end
  redis.call('HSET', jk, 'output_keys', '[' .. table.concat(parts, ',') .. ']')
end
if status == 'COMPLETED' then return {0, snapshot(id)} end
finish(id, ARGV[5], ARGV[6], ARGV[4], ARGV[7], ARGV[8])
redis.call('HSET', jk, 'metrics', ARGV[9])
touch(id)
return {1, snapshot(id)}
"""

# ARGV: id, now, queued log, running log, code, body, error, error_type.
_CANCEL = r"""
local id = ARGV[3]
local jk = jkey(id)
local status = redis.call('HGET', jk, 'status')
if not status then return 'NOT_FOUND' end
if status == 'COMPLETED' then return 'ALREADY_COMPLETED' end
if status == 'IN_QUEUE' then
  finish(id, ARGV[7], ARGV[8], ARGV[4], ARGV[9], ARGV[10])
  redis.call('RPUSH', lkey(id), ARGV[5])
else
  redis.call('RPUSH', lkey(id), ARGV[6])
end
redis.call('HSET', jk, 'cancel_requested', '1')
touch(id)
return 'CANCELLATION_REQUESTED'
"""

# ARGV: now, log, code, body, error, error_type.
_EXPIRE = r"""
local now = ARGV[3]
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', now)) do
  if redis.call('HGET', jkey(id), 'status') == 'IN_QUEUE' then
    finish(id, ARGV[5], ARGV[6], now, ARGV[7], ARGV[8])
    redis.call('RPUSH', lkey(id), ARGV[4])
    touch(id)
    table.insert(out, snapshot(id))
  else
    redis.call('ZREM', P .. 'deadlines', id)
  end
end
return out
"""

# ARGV: now, max_attempts (-1 = none), requeue log, cancelled (code, body, err, etype),
#       interrupted (code, body, err, etype, log).
_RECLAIM = r"""
local ids = reclaim(ARGV[3], tonumber(ARGV[4]), true, ARGV[5],
  {ARGV[6], ARGV[7], ARGV[8], ARGV[9]}, {ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]})
local out = {}
for i, id in ipairs(ids) do out[i] = snapshot(id) end
return out
"""

# ARGV: offset, stop (ZREVRANGE bounds) over history.
_HISTORY = r"""
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', P .. 'history', ARGV[3], ARGV[4])) do
  local s = snapshot(id)
  if #s[1] > 0 then table.insert(out, s) end
end
return out
"""

# ARGV: zset name suffix, min, max ... (ZRANGEBYSCORE over one of the ids indexes) -> snapshots.
_SNAPSHOTS = r"""
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ARGV[3], ARGV[4], ARGV[5])) do
  local s = snapshot(id)
  if #s[1] > 0 then table.insert(out, s) end
end
return out
"""

# ARGV: id, delivered ('1'/'0'), error|NIL.
_RECORD_WEBHOOK = r"""
local id = ARGV[3]
local jk = jkey(id)
if redis.call('EXISTS', jk) == 0 then return 0 end
redis.call('HSET', jk, 'webhook_delivered', ARGV[4])
redis.call('HINCRBY', jk, 'webhook_attempts', 1)
setopt(id, 'webhook_error', ARGV[5])
if ARGV[4] == '1' then
  redis.call('ZREM', P .. 'webhooks', id)
else
  local f = redis.call('HMGET', jk, 'status', 'webhook_url', 'completed_at')
  if f[1] == 'COMPLETED' and f[2] then redis.call('ZADD', P .. 'webhooks', 'NX', f[3], id) end
end
touch(id)
return 1
"""

# ARGV: completed_before (exclusive, '(x'), ephemeral_before (exclusive), batch size.
_PURGE = r"""
local seen, out = {}, {}
local n = tonumber(ARGV[5])
local ids = redis.call('ZRANGEBYSCORE', P .. 'completed', '-inf', ARGV[3], 'LIMIT', 0, n)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'ephemeral', '-inf', ARGV[4], 'LIMIT', 0, n)) do
  table.insert(ids, id)
end
for _, id in ipairs(ids) do
  if not seen[id] then
    seen[id] = true
    local s = snapshot(id)
    if #s[1] > 0 then table.insert(out, s) end
    redis.call('DEL', jkey(id), lkey(id))
    for _, z in ipairs({'completed', 'ephemeral', 'history', 'webhooks', 'inprogress', 'queue', 'deadlines'}) do
      redis.call('ZREM', P .. z, id)
    end
    redis.call('PUBLISH', CH, id)
  end
end
return out
"""


def _num(value: float) -> str:
    return repr(float(value))


def _opt(value: str | None) -> str:
    return _NIL if value is None else value


def _outcome_args(outcome: Outcome) -> list[Any]:
    """An outcome as the scripts take it: status code, JSON body, error, error type."""
    return [int(outcome.status_code), json.dumps(outcome.body, ensure_ascii=False), _opt(outcome.error), _opt(outcome.error_type)]


def _log_json(message: str, level: str = "INFO") -> str:
    return json.dumps(LogEntry(message, level=level).to_dict(), ensure_ascii=False)


def _kind(hint: Any) -> str:
    """How a Job field of type ``hint`` is written as hash text: json, bool, float, int or str."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):  # X | None -> X
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    origin = typing.get_origin(hint) or hint
    if hint is Any or origin in (dict, list):
        return "json"
    return next(kind.__name__ for kind in (bool, float, int, str) if issubclass(origin, kind))


_KINDS = {name: _kind(hint) for name, hint in typing.get_type_hints(Job).items() if name != "logs"}


def _to_text(value: Any, kind: str) -> str:
    if kind == "json":
        return json.dumps(value, ensure_ascii=False)
    if kind == "bool":
        return "1" if value else "0"
    if kind == "float":
        return _num(value)
    return str(value)


def _from_text(text: str, kind: str) -> Any:
    if kind == "json":
        return json.loads(text)
    if kind == "bool":
        return text == "1"
    if kind == "float":
        return float(text)
    if kind == "int":
        return int(text)
    return text


def _encode(job: Job) -> list[str]:
    """The job's hash fields as a flat [name, value, ...] list (fields that are None are left out)."""
    record = job.to_record()
    return [x for name, kind in _KINDS.items() if record[name] is not None for x in (name, _to_text(record[name], kind))]


def _decode(snap: Sequence[Any]) -> Job | None:
    flat, logs = snap[0], snap[1]
    if not flat:
        return None
    record: dict[str, Any] = {
        name: _from_text(text, _KINDS[name]) for name, text in zip(flat[::2], flat[1::2], strict=True) if name in _KINDS
    }
    record["logs"] = [json.loads(line) for line in logs]
    return Job.from_record(record)


def _seq(snap: Sequence[Any]) -> int:
    flat = snap[0]
    for i in range(0, len(flat), 2):
        if flat[i] == "seq":
            return int(flat[i + 1])
    return 0


def _decode_all(snaps: Iterable[Sequence[Any]]) -> list[Job]:
    return [job for job in map(_decode, snaps) if job is not None]


class RedisJobStore(ClosingStore):
    """A ``JobStore`` shared by any number of processes on any number of machines through Redis.

    Claimed jobs are leased for ``lease_seconds``. The store renews the leases itself: a daemon thread
    calls :meth:`heartbeat` every ``lease_seconds / 3`` for the jobs claimed through this object until
    they are completed or released through it (or lost), so the leases run out only when the process
    dies or loses Redis for longer than a lease (``auto_heartbeat=False`` turns the thread off, for
    tests). ``reclaim_expired()`` re-queues (or gives up on) jobs whose lease ran out; ``recover()`` is
    the same (other workers may be alive, so only expired leases are taken back), and ``claim()`` also
    reclaims before claiming.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "bgone",
        lease_seconds: float = 30.0,
        max_attempts: int | None = 3,
        auto_heartbeat: bool = True,
        client: redis_lib.Redis | None = None,
        connect_wait: float = 30.0,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.url = url
        self.namespace = namespace
        self.lease_seconds = float(lease_seconds)
        self.max_attempts = max_attempts
        self.auto_heartbeat = auto_heartbeat
        self.prefix = f"{{{namespace}}}:"
        self.channel = f"{namespace}:events"
        self._r: redis_lib.Redis = client or redis_lib.Redis.from_url(
            url, decode_responses=True, socket_keepalive=True, health_check_interval=30
        )
        self._owns_client = client is None
        self._scripts = {
            name: self._r.register_script(_PRELUDE + body)
            for name, body in {
                "submit": _SUBMIT,
                "position": _POSITION,
                "claim": _CLAIM,
                "heartbeat": _HEARTBEAT,
                "append_log": _APPEND_LOG,
                "complete": _COMPLETE,
                "cancel": _CANCEL,
                "expire": _EXPIRE,
                "reclaim": _RECLAIM,
                "history": _HISTORY,
                "snapshots": _SNAPSHOTS,
                "record_webhook": _RECORD_WEBHOOK,
                "purge": _PURGE,
            }.items()
        }
        # wait(): per-request generations bumped by pub/sub messages and local changes.
        self._cond = threading.Condition()
        self._global_gen = 0  # bumped to wake every waiter (close, (re)subscribe)
        self._gens: dict[str, int] = {}
        self._watchers: dict[str, int] = {}
        self._listener: threading.Thread | None = None
        self._subscribed = threading.Event()
        self._sub_ok = False
        # Leases of jobs claimed through this object, renewed by the heartbeat thread.
        self._held: dict[str, str] = {}  # request id -> worker id
        self._held_lock = threading.Lock()
        self._heartbeater: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._wait_for_server(connect_wait)

    def _wait_for_server(self, patience: float) -> None:
        """Ping until Redis answers: a worker or API node started while Redis restarts waits for it
        instead of dying; a wrong URL still fails, after ``patience`` seconds, with Redis's error."""
        deadline = time.monotonic() + patience
        delay = 0.25
        while True:
            try:
                self._r.ping()
                return
            except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning(
                    "waiting for Redis at %s: %s (retrying for up to %.0f s)", self._safe_url(), exc, patience
                )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _safe_url(self) -> str:
        """The URL without its password, for logs."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.url)
        if parts.password:
            netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
            parts = parts._replace(netloc=netloc)
        return urlunsplit(parts._replace(query=""))

    # -- plumbing -------------------------------------------------------------------------------

    def _run(self, name: str, *args: Any) -> Any:
        return self._scripts[name](args=[self.prefix, self.channel, *args])

    def _key(self, kind: str, request_id: str = "") -> str:
        return f"{self.prefix}{kind}{request_id}"

    def _notify(self, request_ids: Iterable[str] = ()) -> None:
        with self._cond:
            for rid in request_ids:
                if rid in self._gens:
                    self._gens[rid] += 1
            self._cond.notify_all()

    def _requeue_log(self) -> str:
        return _log_json("Worker stopped; request re-queued", level="WARNING")

    def _max_attempts_arg(self, max_attempts: int | None) -> int:
        return -1 if max_attempts is None else int(max_attempts)

    # -- JobStore -------------------------------------------------------------------------------

    def submit(self, job: Job) -> Job:
        created = self._run(
            "submit",
            job.request_id,
            int(job.priority),
            job.batch_key,
            "1" if job.keep_history else "0",
            _NIL if job.start_deadline is None else _num(job.start_deadline),
            *_encode(job),
        )
        if not created:
            raise ValueError(f"request id {job.request_id!r} already exists")
        self._notify([job.request_id])
        return job

    def get(self, request_id: str) -> Job | None:
        with self._r.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._key("job:", request_id))
            pipe.lrange(self._key("logs:", request_id), 0, -1)
            fields, logs = pipe.execute()
        if not fields:
            return None
        return _decode([[x for kv in fields.items() for x in kv], logs])

    def queue_position(self, request_id: str) -> int | None:
        rank = self._run("position", request_id)
        return None if rank is None else int(rank)

    def queue_depth(self) -> int:
        return int(self._r.zcard(self._key("queue")))

    def claim(self, worker_id: str, *, limit: int = 1, batch_key: str | None = None) -> list[Job]:
        if limit < 1:
            return []
        now = time.time()
        snaps = self._run(
            "claim",
            worker_id,
            int(limit),
            _num(now),
            _num(now + self.lease_seconds),
            _NIL if batch_key is None else batch_key,
            self._max_attempts_arg(self.max_attempts),
            self._requeue_log(),
        )
        jobs = _decode_all(snaps)
        if jobs:
            if self.auto_heartbeat:
                with self._held_lock:
                    for job in jobs:
                        self._held[job.request_id] = worker_id
                self._start_heartbeater()
            self._notify(j.request_id for j in jobs)
        return jobs

    def heartbeat(self, worker_id: str, request_ids: Iterable[str]) -> list[str]:
        """Renew the leases (``lease_seconds`` from now) of the jobs ``worker_id`` holds. Returns the
        ids it still holds; a missing one was completed, or its lease ran out and it was re-queued
        (possibly claimed by another worker): stop working on it."""
        ids = list(request_ids)
        if not ids:
            return []
        held = self._run("heartbeat", worker_id, _num(time.time() + self.lease_seconds), *ids)
        return list(held)

    def append_log(self, request_id: str, message: str, *, level: str = "INFO", source: str = "bgone") -> None:
        entry = json.dumps(LogEntry(message=message, level=level, source=source).to_dict(), ensure_ascii=False)
        if self._run("append_log", request_id, entry):
            self._notify([request_id])

    def complete(self, request_id: str, outcome: Outcome) -> Job | None:
        keys = list(outcome.output_keys)
        result = self._run(
            "complete",
            request_id,
            _num(time.time()),
            *_outcome_args(outcome),
            json.dumps(outcome.metrics, ensure_ascii=False),
            len(keys),
            *keys,
        )
        with self._held_lock:
            self._held.pop(request_id, None)
        if result is None:
            return None
        won, snap = result
        if won:
            self._notify([request_id])
        return _decode(snap)

    def cancel(self, request_id: str) -> CancelOutcome:
        outcome = CancelOutcome(
            self._run(
                "cancel",
                request_id,
                _num(time.time()),
                _log_json("Request cancelled while in queue"),
                _log_json("Cancellation requested"),
                *_outcome_args(CANCELLED),
            )
        )
        if outcome is CancelOutcome.CANCELLATION_REQUESTED:
            self._notify([request_id])
        return outcome

    def is_cancel_requested(self, request_id: str) -> bool:
        return self._r.hget(self._key("job:", request_id), "cancel_requested") == "1"

    def expire_start_deadlines(self, now: float | None = None) -> list[Job]:
        now = time.time() if now is None else now
        snaps = self._run(
            "expire",
            _num(now),
            _log_json("Request timed out before it started", level="ERROR"),
            *_outcome_args(TIMED_OUT),
        )
        expired = sorted(snaps, key=_seq)  # queue order (priority, then FIFO), like the SQLite store
        jobs = _decode_all(expired)
        self._notify(j.request_id for j in jobs)
        return jobs

    def reclaim_expired(self, now: float | None = None, *, max_attempts: int | None = None) -> list[Job]:
        """Jobs whose lease ran out at or before ``now`` (their worker died) go back to IN_QUEUE at
        their old position; one with a pending cancel, or claimed ``max_attempts`` times (default:
        the store's), is COMPLETED instead (:data:`CANCELLED` / :data:`INTERRUPTED`). Returns every job it
        touched; check ``status`` to tell them apart. Safe to call from any process at any time."""
        now = time.time() if now is None else now
        attempts = self.max_attempts if max_attempts is None else max_attempts
        snaps = self._run(
            "reclaim",
            _num(now),
            self._max_attempts_arg(attempts),
            self._requeue_log(),
            *_outcome_args(CANCELLED),
            *_outcome_args(INTERRUPTED),
            _log_json("Worker stopped too many times on this request; giving up", level="ERROR"),
        )
        jobs = _decode_all(sorted(snaps, key=_seq))
        if jobs:
            with self._held_lock:
                for job in jobs:
                    self._held.pop(job.request_id, None)
            self._notify(j.request_id for j in jobs)
        return jobs

    def recover(self, *, max_attempts: int | None = 3) -> list[Job]:
        """``reclaim_expired()``: only jobs whose lease ran out, since other workers may be alive."""
        return self.reclaim_expired(max_attempts=max_attempts)

    def history(self, *, limit: int = 50, offset: int = 0) -> list[Job]:
        limit, offset = max(0, limit), max(0, offset)
        if limit == 0:
            return []
        return _decode_all(self._run("history", offset, offset + limit - 1))

    def pending_webhooks(self, *, max_attempts: int | None = None) -> list[Job]:
        jobs = [
            job
            for job in _decode_all(sorted(self._run("snapshots", "webhooks", "-inf", "+inf"), key=_seq))
            if job.is_completed
            and job.webhook_url is not None
            and not job.webhook_delivered
            and (max_attempts is None or job.webhook_attempts < max_attempts)
        ]
        jobs.sort(key=lambda j: j.completed_at or 0.0)  # stable: seq breaks ties
        return jobs

    def record_webhook(self, request_id: str, *, delivered: bool, error: str | None = None) -> None:
        if self._run("record_webhook", request_id, "1" if delivered else "0", _opt(error)):
            self._notify([request_id])

    def purge(self, *, completed_before: float, ephemeral_before: float | None = None) -> list[Job]:
        if ephemeral_before is None:
            ephemeral_before = max(completed_before, time.time() - EPHEMERAL_TTL_S)
        snaps: list[Any] = []
        while True:
            batch = self._run("purge", f"({_num(completed_before)}", f"({_num(ephemeral_before)}", PURGE_BATCH)
            snaps += batch
            if len(batch) < PURGE_BATCH:
                break
        jobs = _decode_all(sorted(snaps, key=_seq))
        jobs.sort(key=lambda j: j.completed_at or 0.0)
        self._notify(j.request_id for j in jobs)
        return jobs

    def counts(self) -> dict[str, int]:
        with self._r.pipeline(transaction=True) as pipe:
            pipe.zcard(self._key("queue"))
            pipe.zcard(self._key("inprogress"))
            pipe.zcard(self._key("completed"))
            queued, running, completed = pipe.execute()
        return {
            JobStatus.IN_QUEUE.value: int(queued),
            JobStatus.IN_PROGRESS.value: int(running),
            JobStatus.COMPLETED.value: int(completed),
        }

    # -- wait() and its pub/sub listener --------------------------------------------------------

    def _version(self, request_id: str) -> int | None:
        value = self._r.hget(self._key("job:", request_id), "version")
        return None if value is None else int(value)

    def _ensure_listener(self) -> None:
        with self._cond:
            if self._listener is None and not self._closed:
                self._listener = threading.Thread(
                    target=self._listen, name=f"bgone-redis-events-{self.namespace}", daemon=True
                )
                self._listener.start()
        # A subscription confirmed before the baseline read guarantees no later change is missed.
        self._subscribed.wait(1.0)

    def _listen(self) -> None:
        backoff = 0.1
        while not self._closed:
            pubsub = self._r.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._closed:
                    msg = pubsub.get_message(timeout=0.25)
                    if msg is None:
                        continue
                    if msg["type"] == "message":
                        rid = msg["data"]
                        with self._cond:
                            if rid in self._gens:
                                self._gens[rid] += 1
                                self._cond.notify_all()
                    elif msg["type"] == "subscribe":
                        # (Re)subscribed: anything published while we were away is unknown, so
                        # every waiter re-checks.
                        backoff = 0.1
                        self._sub_ok = True
                        self._subscribed.set()
                        with self._cond:
                            self._global_gen += 1
                            self._cond.notify_all()
            except Exception as exc:  # connection lost: waiters poll meanwhile
                if not self._closed:
                    logger.warning("redis event subscription lost (%s); retrying in %.1fs", exc, backoff)
            finally:
                self._sub_ok = False
                with contextlib.suppress(Exception):  # best effort
                    pubsub.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    def wait(self, request_id: str, *, timeout: float, since: int | None = None) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        self._ensure_listener()
        with self._cond:
            self._watchers[request_id] = self._watchers.get(request_id, 0) + 1
            self._gens.setdefault(request_id, 0)
            marker = (self._global_gen, self._gens[request_id])
        try:
            # The marker is taken BEFORE the version read: a change after the read bumps it.
            baseline = since if since is not None else self._version(request_id)
            if baseline is None:
                return True  # unknown/purged: let the caller re-read and find it gone
            while True:
                if self._version(request_id) != baseline:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return False
                interval = SAFETY_INTERVAL_S if self._sub_ok else POLL_INTERVAL_S
                with self._cond:
                    if (self._global_gen, self._gens[request_id]) == marker and not self._closed:
                        self._cond.wait(min(interval, remaining))
                    marker = (self._global_gen, self._gens[request_id])
        finally:
            with self._cond:
                self._watchers[request_id] -= 1
                if not self._watchers[request_id]:
                    del self._watchers[request_id]
                    del self._gens[request_id]

    # -- lease renewal --------------------------------------------------------------------------

    def _start_heartbeater(self) -> None:
        with self._held_lock:
            if self._heartbeater is not None or self._closed:
                return
            self._heartbeater = threading.Thread(
                target=self._heartbeat_loop, name=f"bgone-redis-heartbeat-{self.namespace}", daemon=True
            )
            self._heartbeater.start()

    transient_errors: tuple[type[Exception], ...] = (redis_lib.ConnectionError, redis_lib.TimeoutError)

    def release(self, request_ids: Iterable[str]) -> None:
        """Stop renewing these leases: a worker that could not finish them (Redis went away mid-batch)
        lets them expire, and the next reclaim puts them back in the queue for any worker."""
        with self._held_lock:
            for rid in request_ids:
                self._held.pop(rid, None)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            with self._held_lock:
                by_worker: dict[str, list[str]] = {}
                for rid, worker in self._held.items():
                    by_worker.setdefault(worker, []).append(rid)
            for worker, ids in by_worker.items():
                try:
                    still = set(self.heartbeat(worker, ids))
                except Exception as exc:
                    logger.warning("redis lease heartbeat failed: %s", exc)
                    continue
                lost = [rid for rid in ids if rid not in still]
                if lost:
                    with self._held_lock:
                        for rid in lost:
                            if self._held.get(rid) == worker:
                                del self._held[rid]

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        with self._cond:
            self._global_gen += 1
            self._cond.notify_all()
        for thread in (self._listener, self._heartbeater):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        if self._owns_client:
            self._r.close()


    def __repr__(self) -> str:
        return f"RedisJobStore({self.url!r}, namespace={self.namespace!r})"
