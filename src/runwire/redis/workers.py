"""Runs handed to ``runwire worker`` processes through Redis.

Gateway side, :class:`RedisDispatcher`: a ``user_message`` becomes an entry in the
``rw:runs`` stream (consumer group ``workers``). The message id is the idempotency
key (``SET NX``), so a retried message maps to the same run. The user's active runs
are a Redis set, bounded by ``max_concurrent_runs_per_user`` across all nodes.
``cancel`` checks ownership, then is published on ``rw:cancel`` for whichever worker
holds the run.

The user's keys and the stream are in different slots of a Redis Cluster, so a start
is two steps, each atomic in its slot: the claim (message key, active set), then the
``XADD``. A start whose ``XADD`` failed is completed by the message's retry: a claim
that finds the message's run adds the run's entry again. A run can therefore have
more than one entry; the worker that reads one first *takes* the run (``SET NX`` of
the run's owner key, in the user's slot) and every other entry of the run is
acknowledged unexecuted.

Worker side, :class:`WorkQueue`: read entries with ``XREADGROUP`` (at least once),
take their runs, acknowledge them when the run has ended, keep a heartbeat key per
worker, and find entries held by workers whose heartbeat expired (``XPENDING`` +
``XCLAIM``), so a crashed worker's run is taken over (its owner key passes to the new
worker) or failed explicitly, never silently lost.

Keys: ``rw:runs`` (stream, capped at about ``runs_stream_max`` entries),
``rw:{user}:msg:<id>`` and ``rw:{user}:active`` (expire with ``idempotency_ttl_s``),
``rw:{user}:run:<run_id>`` (the worker that took the run, same TTL, kept after the run
ends so a late duplicate entry is not run again), ``rw:worker:<name>`` (heartbeat).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, ResponseError

from runwire.agents.runtime import StartedRun
from runwire.exceptions import LimitError
from runwire.ids import RunId, ThreadId, UserId, new_run_id, new_thread_id
from runwire.redis.client import Client, map_redis_errors, pubsub_of, redis_client, run_script
from runwire.redis.keys import (
    CANCEL_CHANNEL,
    RUNS_STREAM,
    active_runs_key,
    message_key,
    run_owner_key,
    worker_key,
)
from runwire.redis.lease import Liveness
from runwire.redis.scripts import FORGET_MESSAGE

__all__ = [
    "GROUP",
    "RUNS_STREAM",
    "RedisDispatcher",
    "RedisMessageClaims",
    "RunRequest",
    "WorkQueue",
]

GROUP = "workers"
ORPHANS_PER_SWEEP = 64
PENDING_PAGES_PER_SWEEP = 16
"""Pages of ``ORPHANS_PER_SWEEP`` pending entries one sweep looks through at most;
the next sweep goes on after the last entry seen (then starts over)."""

# KEYS: message key, active set (one user's slot). ARGV: run id, thread id, per-user
# limit, ttl s. {1, run|thread}: claimed; {0, known}: the message's run; {-1}: limit.
_CLAIM = """
local known = redis.call('GET', KEYS[1])
if known then return {0, known} end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {-1, ''} end
local value = ARGV[1] .. '|' .. ARGV[2]
redis.call('SET', KEYS[1], value, 'EX', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {1, value}
"""

# KEYS: the run's owner key. ARGV: "<this worker>|<entry id>", ttl s, the owner it is
# taken over from ("<dead worker>|<entry id>", or '' for a fresh entry). 1: the run is
# this worker's, through this entry; 0: another entry (or worker) holds it.
_TAKE = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and owner ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One run to execute, as a worker reads it from the stream."""

    entry_id: str
    run_id: RunId
    thread_id: ThreadId
    user_id: UserId
    content: str


async def known_run(redis: Client, user_id: UserId, message_id: str) -> StartedRun | None:
    """The run the idempotency key of ``message_id`` names, if the key is there.

    Raises:
        EngineError: Redis could not be reached.
    """
    async with map_redis_errors("find message"):
        value = await redis.get(message_key(user_id, message_id))
    if value is None:
        return None
    run_id, _, thread_id = str(value).partition("|")
    return StartedRun(RunId(run_id), ThreadId(thread_id), duplicate=True)


class RedisDispatcher:
    """Gateway side: accept user messages as runs for the workers."""

    def __init__(self, url: str, *, per_user: int, ttl_s: int, stream_max: int) -> None:
        self._redis: Client = redis_client(url, decode_responses=True)
        self._claim = self._redis.register_script(_CLAIM)
        self.per_user = per_user
        self.ttl_s = ttl_s
        self.stream_max = stream_max
        self._stopping = False

    async def start_run(
        self, user_id: UserId, content: str, *, message_id: str, thread_id: str | None
    ) -> StartedRun:
        if self._stopping:
            raise LimitError("shutting_down", "the gateway is shutting down")
        run_id, thread = new_run_id(), ThreadId(thread_id) if thread_id else new_thread_id()
        async with map_redis_errors("start run"):
            status, value = await run_script(
                self._claim,
                keys=[message_key(user_id, message_id), active_runs_key(user_id)],
                args=[run_id, thread, self.per_user, self.ttl_s],
            )
            if int(status) < 0:
                raise LimitError("too_many_runs", f"at most {self.per_user} runs at once per user")
            known_run, _, known_thread = str(value).partition("|")
            # Again for a known run: the start that claimed it may have failed here
            # (a worker runs one entry of a run and drops the others).
            await self._redis.xadd(
                RUNS_STREAM,
                {
                    "run_id": known_run,
                    "thread_id": known_thread,
                    "user_id": user_id,
                    "content": content,
                },
                maxlen=self.stream_max,
                approximate=True,
            )
        # A start retried after its reply was lost finds its own run: not a duplicate.
        duplicate = int(status) == 0 and known_run != run_id
        return StartedRun(RunId(known_run), ThreadId(known_thread), duplicate=duplicate)

    async def find(self, user_id: UserId, message_id: str) -> StartedRun | None:
        return await known_run(self._redis, user_id, message_id)

    async def cancel(self, user_id: UserId, run_id: str) -> bool:
        async with map_redis_errors("cancel"):
            if not await self._redis.sismember(active_runs_key(user_id), run_id):
                return False
            await self._redis.publish(CANCEL_CHANNEL, run_id)
        return True

    def active_runs(self) -> int:
        return 0  # runs execute in the workers

    async def stop(self, grace_s: float) -> None:
        self._stopping = True
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()


class RedisMessageClaims:
    """Idempotency keys in Redis (``SET NX``), for gateways running agents locally."""

    def __init__(self, url: str, *, ttl_s: int) -> None:
        self._redis: Client = redis_client(url, decode_responses=True)
        self.ttl_s = ttl_s
        self._forget = self._redis.register_script(FORGET_MESSAGE)

    async def claim(
        self, user_id: UserId, message_id: str, run_id: RunId, thread_id: ThreadId
    ) -> StartedRun:
        key = message_key(user_id, message_id)
        ours = f"{run_id}|{thread_id}"
        async with map_redis_errors("claim message"):
            if await self._redis.set(key, ours, nx=True, ex=self.ttl_s):
                return StartedRun(run_id, thread_id, duplicate=False)
            known = str(await self._redis.get(key) or ours)
        # A SET NX retried after its reply was lost finds our own claim: not a duplicate.
        known_run, _, known_thread = known.partition("|")
        return StartedRun(RunId(known_run), ThreadId(known_thread), duplicate=known != ours)

    async def find(self, user_id: UserId, message_id: str) -> StartedRun | None:
        return await known_run(self._redis, user_id, message_id)

    async def release(self, user_id: UserId, message_id: str, run_id: RunId) -> None:
        """Drop the claim of ``message_id`` if it still names ``run_id``.

        Raises:
            EngineError: Redis could not be reached (the claim stays until its TTL).
        """
        async with map_redis_errors("release message"):
            await run_script(self._forget, keys=[message_key(user_id, message_id)], args=[run_id])

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()


class WorkQueue:
    """Worker side: the runs stream, its consumer group, heartbeats and takeovers."""

    def __init__(self, url: str, name: str, *, heartbeat_ttl_s: int, keep_s: int) -> None:
        self._redis: Client = redis_client(url, decode_responses=True)
        self.name = name
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self._liveness = Liveness(self._redis, worker_key, heartbeat_ttl_s)
        self._take = self._redis.register_script(_TAKE)
        self.keep_s = keep_s
        self._pending_cursor = "-"
        """Where the next look for dead workers' entries starts in the pending list."""

    async def _dead_previous(self, requests: list[RunRequest]) -> dict[str, str]:
        """For the requests whose run is held, through that same entry, by a worker
        whose heartbeat expired: entry id -> that worker (a claim whose reply was
        lost left the entry ours while the owner key still names the dead worker)."""
        if not requests:
            return {}
        owners = await asyncio.gather(
            *(self._redis.get(run_owner_key(r.user_id, r.run_id)) for r in requests)
        )
        previous: dict[str, str] = {}
        alive: dict[str, bool] = {}
        for request, owner in zip(requests, owners, strict=True):
            if owner is None:
                continue
            holder, _, entry_id = str(owner).rpartition("|")
            if holder in ("", self.name) or entry_id != request.entry_id:
                continue
            if holder not in alive:
                alive[holder] = await self._liveness.alive(holder)
            if not alive[holder]:
                previous[request.entry_id] = holder
        return previous

    async def _taken(
        self, requests: list[RunRequest], previous: dict[str, str] | None = None
    ) -> list[RunRequest]:
        """The requests whose run this worker holds now, through that entry (taken
        from nobody, from itself through the same entry, or from ``previous[entry_id]``,
        a dead worker); the other entries (of a run taken through another entry) are
        acknowledged and dropped."""
        if not requests:
            return []
        previous = previous or {}
        answers = await asyncio.gather(
            *(
                run_script(
                    self._take,
                    keys=[run_owner_key(request.user_id, request.run_id)],
                    args=[
                        f"{self.name}|{request.entry_id}",
                        self.keep_s,
                        f"{previous[request.entry_id]}|{request.entry_id}"
                        if request.entry_id in previous
                        else "",
                    ],
                )
                for request in requests
            )
        )
        dropped = [r.entry_id for r, taken in zip(requests, answers, strict=True) if not taken]
        if dropped:
            await self._redis.xack(RUNS_STREAM, GROUP, *dropped)
        return [r for r, taken in zip(requests, answers, strict=True) if taken]

    async def setup(self) -> None:
        """Create the consumer group (once, for everyone)."""
        async with map_redis_errors("setup"):
            try:
                await self._redis.xgroup_create(RUNS_STREAM, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def heartbeat(self) -> None:
        """Say this worker is alive for ``heartbeat_ttl_s``."""
        await self._liveness.renew(self.name)

    async def read(self, count: int, block_ms: int) -> list[RunRequest]:
        """New runs for this worker (at most ``count``; waits up to ``block_ms``)."""
        async with map_redis_errors("read runs"):
            try:
                reply: Any = await self._redis.xreadgroup(
                    GROUP, self.name, {RUNS_STREAM: ">"}, count=count, block=block_ms
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.setup()  # Redis lost its data: the group is gone
                return []
            return await self._taken(
                [
                    _request(entry_id, fields)
                    for _, entries in reply or []
                    for entry_id, fields in entries
                ]
            )

    async def own_pending(self) -> list[RunRequest]:
        """Every entry pending for this worker, oldest first.

        ``XREADGROUP`` and ``XCLAIM`` are not idempotent: when Redis executed one and
        then the connection broke (a restart), the entries it delivered are pending
        for this worker while the reply that carried them is lost (and the
        connection's retry may have hidden the error). The worker compares these
        entries with the runs it holds and takes up the others. Entries whose stream
        entry is gone (trimmed) are acknowledged.
        """
        found: list[RunRequest] = []
        after = "0"
        async with map_redis_errors("read own runs"):
            while True:
                reply: Any = await self._redis.xreadgroup(
                    GROUP, self.name, {RUNS_STREAM: after}, count=ORPHANS_PER_SWEEP
                )
                entries = [entry for _, stream in reply or [] for entry in stream]
                gone = [entry_id for entry_id, fields in entries if not fields]
                if gone:
                    await self._redis.xack(RUNS_STREAM, GROUP, *gone)
                requests = [_request(entry_id, fields) for entry_id, fields in entries if fields]
                found += await self._taken(requests, await self._dead_previous(requests))
                if len(entries) < ORPHANS_PER_SWEEP:
                    return found
                after = entries[-1][0]

    async def orphans(self, min_idle_ms: int, count: int = ORPHANS_PER_SWEEP) -> list[RunRequest]:
        """Claim up to ``count`` runs held by workers whose heartbeat expired; they are
        now ours. The pending list is read in pages, going on where the last call
        stopped, so every entry is looked at over successive calls."""
        if count <= 0:
            return []
        async with map_redis_errors("claim runs"):
            dead: dict[str, str] = {}
            alive: dict[str, bool] = {}
            for _ in range(PENDING_PAGES_PER_SWEEP):
                pending: list[dict[str, Any]] = await self._redis.xpending_range(
                    RUNS_STREAM, GROUP, min=self._pending_cursor, max="+", count=ORPHANS_PER_SWEEP
                )
                for item in pending:
                    self._pending_cursor = _after(str(item["message_id"]))
                    owner = str(item["consumer"])
                    if owner == self.name or item["time_since_delivered"] < min_idle_ms:
                        continue
                    if owner not in alive:
                        alive[owner] = await self._liveness.alive(owner)
                    if not alive[owner]:
                        dead[item["message_id"]] = owner
                        if len(dead) >= count:
                            break
                if len(dead) >= count:
                    break  # the rest of the page is looked at next time
                if len(pending) < ORPHANS_PER_SWEEP:
                    self._pending_cursor = "-"  # the end: start over next time
                    break
            if not dead:
                return []
            claimed: Any = await self._redis.xclaim(
                RUNS_STREAM, GROUP, self.name, min_idle_time=min_idle_ms, message_ids=list(dead)
            )
            return await self._taken(
                [_request(entry_id, fields) for entry_id, fields in claimed if fields], dead
            )

    async def finished(self, request: RunRequest) -> None:
        """The run ended (terminal event published): acknowledge and release it.

        Two slots on a cluster, so not one transaction: both steps are idempotent and
        a failure (``EngineError``) makes the worker call this again later. The owner
        key stays until its time to live, so a late entry of the run is dropped."""
        async with map_redis_errors("finish run"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.srem(active_runs_key(request.user_id), request.run_id)
                pipe.xack(RUNS_STREAM, GROUP, request.entry_id)
                await pipe.execute()

    async def cancellations(self) -> Any:
        """A pub/sub object for cancel requests (the caller subscribes and iterates it).

        Raises:
            RedisError, OSError: Redis could not be reached (a cluster: no node).
        """
        return await pubsub_of(self._redis, ignore_subscribe_messages=True)

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()


def _after(entry_id: str) -> str:
    """The smallest stream id after ``entry_id`` (an inclusive start for the next page)."""
    millis, _, seq = entry_id.partition("-")
    return f"{millis}-{int(seq or 0) + 1}"


def _request(entry_id: str, fields: dict[str, str]) -> RunRequest:
    return RunRequest(
        entry_id,
        RunId(fields["run_id"]),
        ThreadId(fields["thread_id"]),
        UserId(fields["user_id"]),
        fields["content"],
    )
