"""Leases of gateway nodes that run agents themselves (``RUNWIRE_RUNS=local``, Redis).

Each such node holds a lease in Redis, renewed every ``node_heartbeat_s``
(:class:`~runwire.redis.lease.Liveness`, the workers' heartbeat), and records there
every run it executes, before the run's first event. When a node dies, its lease
expires after ``LEASE_PERIODS`` heartbeats of silence; the sweep of a live node
(every ``node_heartbeat_s``) then claims the dead node's runs, atomically (one
script: exactly one node gets them), and ends each one the way
:mod:`runwire.recovery` ends runs whose executor died:

* a run with events and no terminal one: ``tool_completed`` ``ok: false`` for every
  open tool call, then ``agent_error`` ``node_lost``, ``seq`` continuing, published
  through this node's pipeline (so every tab on every node receives them and the
  snapshot becomes terminal); then its idempotency key is dropped, so the user's
  retry of the same message starts a new run;
* a run with no published event: its idempotency key is dropped (a retry starts it);
* a finished run (the node died between its end and its release): only released.

Bound: a killed node's runs are ended within ``(LEASE_PERIODS + 1) x node_heartbeat_s``
plus the time to publish the endings (8 s with the default 2 s). A claimed run stays
in the claimer's ``closing`` hash until it is ended, so a claimer that dies in turn
hands it on to the next live node.

Keys (all tagged ``{nodes}``, one slot): ``rw:{nodes}:all`` (set of nodes with a
lease), ``rw:{nodes}:lease:<node>`` (expires ``LEASE_PERIODS`` heartbeats after the
last renewal), ``rw:{nodes}:runs:<node>`` and ``rw:{nodes}:closing:<node>`` (hashes
run id -> owner; at most the node's ``max_active_runs`` entries plus the runs it
claimed; their time to live, ``keep_s``, is refreshed by every heartbeat, so they
vanish when no node is left to claim them). A node that stops gracefully ends its
runs itself (``shutdown``), releases them and drops its lease and set entry; a dead
node's set entry goes when its runs are claimed.

Caveat: a node that is alive but cannot renew its lease (cut off from Redis, or an
agent holding its event loop) for ``LEASE_PERIODS`` heartbeats is taken for dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec
from redis.exceptions import RedisError

from runwire.engines.base import Engine, StoredEvent
from runwire.events import Event
from runwire.exceptions import EngineError
from runwire.ids import RunId, ThreadId, UserId
from runwire.recovery import NODE_LOST, end_run, open_calls_of, run_events
from runwire.redis.client import Client, map_redis_errors, redis_client, run_script
from runwire.redis.keys import (
    NODES_KEY,
    message_key,
    node_closing_key,
    node_lease_key,
    node_runs_key,
)
from runwire.redis.lease import Liveness, lease_ttl_s
from runwire.redis.scripts import FORGET_MESSAGE
from runwire.runs import RunStore, SnapshotReader

__all__ = ["HeldRun", "NodeLease"]

log = logging.getLogger("runwire.redis.nodes")

Publish = Callable[[UserId, Event], Awaitable[StoredEvent]]

# KEYS: the dead node's lease, runs, closing runs; the nodes set; the claimer's closing
# runs. ARGV: the dead node, the claimer's keep ttl s. -1: the node is alive.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local moved = 0
for k = 2, 3 do
  local runs = redis.call('HGETALL', KEYS[k])
  for i = 1, #runs, 2 do
    redis.call('HSET', KEYS[5], runs[i], runs[i + 1])
    moved = moved + 1
  end
  redis.call('DEL', KEYS[k])
end
if moved > 0 then redis.call('EXPIRE', KEYS[5], ARGV[2]) end
redis.call('SREM', KEYS[4], ARGV[1])
return moved
"""


class HeldRun(msgspec.Struct, frozen=True, array_like=True):
    """Who a held run belongs to (the value in a node's runs hash)."""

    user_id: str
    thread_id: str
    message_id: str


_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(HeldRun)


class NodeLease:
    """This node's lease, the runs it executes, and the sweep that ends dead nodes' runs.

    Args:
        url: the Redis URL of the engine.
        name: this node's name (unique per process).
        heartbeat_s: the renewal period (``node_heartbeat_s``).
        keep_s: time to live of the run hashes (``idempotency_ttl_s``).
        engine: the user streams (the history is the authority on a run's ``seq``).
        publish: the pipeline's publish (the endings take the one event path).
        store: this node's run snapshots (a claimed run's snapshot is rebuilt in it
            before its ending is published, so the shared copy becomes terminal).
        snapshots: the shared snapshots (a claimed run's copy is adopted first).
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        heartbeat_s: float,
        keep_s: int,
        engine: Engine,
        publish: Publish,
        store: RunStore,
        snapshots: SnapshotReader,
    ) -> None:
        self._redis: Client = redis_client(url, decode_responses=True)
        self._claim = self._redis.register_script(_CLAIM)
        self._forget = self._redis.register_script(FORGET_MESSAGE)
        self.name = name
        self.heartbeat_s = heartbeat_s
        self.keep_s = keep_s
        self.liveness = Liveness(self._redis, node_lease_key, lease_ttl_s(heartbeat_s))
        self._engine = engine
        self._publish = publish
        self._store = store
        self._snapshots = snapshots
        self._held: dict[str, HeldRun] = {}
        """Runs executing here (as recorded in Redis, or about to be)."""
        self._unreleased: set[str] = set()
        """Runs that ended here whose release failed (retried every heartbeat)."""
        self._unpublished: dict[str, HeldRun] = {}
        """Runs that ended here without their terminal event (the engine was down):
        ended by the sweep once it is back."""
        self._tasks: list[asyncio.Task[None]] = []
        self._sweeping = asyncio.Lock()
        self._stopping = False
        self.ended = 0
        """Runs of lost nodes (or unpublished ones of this node) this node ended."""

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Take the lease and start the heartbeat and the sweep. Redis unreachable: the
        heartbeat takes it once Redis answers (no run can start before: ``hold``
        fails)."""
        try:
            await self._renew()
        except EngineError as exc:
            log.warning("node lease not taken yet: %s", exc)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._forever(self._renew, "heartbeat")),
            loop.create_task(self._forever(self.sweep, "sweep")),
        ]

    async def close(self) -> None:
        """Stop the loops and give the lease up (the runtime has ended every run)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            if not self._held and not self._unpublished:
                async with map_redis_errors("give up the lease"):
                    async with self._redis.pipeline(transaction=True) as pipe:
                        pipe.srem(NODES_KEY, self.name)
                        pipe.delete(node_runs_key(self.name))
                        pipe.delete(node_lease_key(self.name))
                        await pipe.execute()
            else:
                # Runs still unended: let the lease expire, so a live node ends them.
                left = len(self._held) + len(self._unpublished)
                log.warning("%d run(s) left to the other nodes to end", left)
        except EngineError as exc:
            log.warning("node lease not given up: %s", exc)
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    async def _forever(self, body: Callable[[], Awaitable[object]], what: str) -> None:
        while not self._stopping:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await body()
            except EngineError as exc:
                log.warning("node lease %s: %s", what, exc)

    # -- the runs executed here -------------------------------------------------

    async def hold(
        self, user_id: UserId, run_id: RunId, thread_id: ThreadId, message_id: str
    ) -> None:
        """Record ``run_id`` as executing here, before it starts.

        Raises:
            EngineError: Redis could not be reached (the run must not start).
        """
        held = HeldRun(user_id, thread_id, message_id)
        self._held[run_id] = held
        try:
            async with map_redis_errors("hold run"):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hset(node_runs_key(self.name), run_id, _encode.encode(held))
                    pipe.expire(node_runs_key(self.name), self.keep_s)
                    await pipe.execute()
        except EngineError:
            self._held.pop(run_id, None)
            raise

    async def finished(self, run_id: str, published: bool) -> None:
        """The run ended here (``published``: its terminal event is stored): release it.

        A run whose terminal event could not be published is kept, and ended by the
        sweep once Redis answers. Never raises (a failed release is retried).
        """
        held = self._held.pop(run_id, None)
        if held is None:
            return
        if not published:
            self._unpublished[run_id] = held
            return
        self._unreleased.add(run_id)
        with contextlib.suppress(EngineError):
            await self._release_ended()

    async def _release_ended(self) -> None:
        if not self._unreleased:
            return
        run_ids = list(self._unreleased)
        async with map_redis_errors("release runs"):
            await self._redis.hdel(node_runs_key(self.name), *run_ids)
        self._unreleased.difference_update(run_ids)

    async def _renew(self) -> None:
        """One heartbeat: the lease, the set entry, the hashes' time to live."""
        async with map_redis_errors("renew the node lease"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.sadd(NODES_KEY, self.name)
                pipe.expire(NODES_KEY, self.keep_s)
                pipe.expire(node_runs_key(self.name), self.keep_s)
                pipe.expire(node_closing_key(self.name), self.keep_s)
                await pipe.execute()
        await self.liveness.renew(self.name)
        await self._release_ended()

    # -- the sweep --------------------------------------------------------------

    async def sweep(self) -> int:
        """Claim the runs of every node whose lease expired, end every run claimed (now
        or before, by a claim whose reply was lost) and this node's unpublished ones.
        Returns how many runs were ended.

        One sweep at a time per node (a second call waits for the first), so a claimed
        run is ended once.

        Raises:
            EngineError: Redis could not be reached (what is left is retried).
        """
        async with self._sweeping:
            return await self._sweep()

    async def _sweep(self) -> int:
        before = self.ended
        async with map_redis_errors("find lost nodes"):
            nodes = {str(n) for n in await self._redis.smembers(NODES_KEY)}
        for node in sorted(nodes - {self.name}):
            async with map_redis_errors("claim runs"):
                moved = await run_script(
                    self._claim,
                    keys=[
                        node_lease_key(node),
                        node_runs_key(node),
                        node_closing_key(node),
                        NODES_KEY,
                        node_closing_key(self.name),
                    ],
                    args=[node, self.keep_s],
                )
            if int(moved) > 0:
                log.warning("node %s lost: claimed its %d run(s)", node, int(moved))
        async with map_redis_errors("read claimed runs"):
            claimed = await self._redis.hgetall(node_closing_key(self.name))
        for run_id, value in claimed.items():
            await self._end(str(run_id), _decode.decode(value))
            async with map_redis_errors("release claimed run"):
                await self._redis.hdel(node_closing_key(self.name), run_id)
        for run_id, held in list(self._unpublished.items()):
            await self._end(run_id, held)
            async with map_redis_errors("release run"):
                await self._redis.hdel(node_runs_key(self.name), run_id)
            self._unpublished.pop(run_id, None)
        return self.ended - before

    async def _end(self, run_id: str, held: HeldRun) -> None:
        """End one run whose executor is gone (see the module's contract)."""
        user_id = UserId(held.user_id)
        events = await run_events(self._engine, user_id, run_id)
        if events and events[-1].event.is_terminal:
            return  # it ended before its node died: nothing to do but release it
        if events:
            log.warning("ending run %s of a lost node (agent_error node_lost)", run_id)
            await self._snapshots.run(user_id, run_id)  # adopt the shared snapshot...
            for stored in events:  # ...and bring it up to the last stored event
                self._store.observe(user_id, stored.offset, stored.event)
            await end_run(
                self._publish,
                user_id,
                run_id=run_id,
                thread_id=held.thread_id,
                last_seq=events[-1].event.seq,
                open_calls=open_calls_of(s.event for s in events),
                code=NODE_LOST,
                message="the gateway node running this run stopped",
                tool_error="node lost",
            )
            self.ended += 1
        else:
            log.warning("run %s of a lost node never started; its message may come again", run_id)
        async with map_redis_errors("forget message"):
            await run_script(
                self._forget, keys=[message_key(user_id, held.message_id)], args=[run_id]
            )

    def stats(self) -> dict[str, int]:
        """Sizes of the per-run structures (for leak tests)."""
        return {
            "held": len(self._held),
            "unreleased": len(self._unreleased),
            "unpublished": len(self._unpublished),
        }
