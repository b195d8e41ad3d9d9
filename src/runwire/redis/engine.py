"""The Redis engine: one ordered, resumable stream per user, shared by many nodes.

Publishing is batched: every publish made while the loop runs one iteration (or
while its user's previous batch is in flight) goes to Redis in one call of one
server-side script (:class:`~runwire.redis.batching.Batcher`: up to four batches in
flight, a user in at most one of them, so each user's batches apply in order). Per
user, atomically, the script creates the epoch if the stream was lost, skips an
event whose ``(run_id, seq)`` is already stored (a retried publish), gives the others
the next offsets, appends each envelope (built around its offset) to the user's
stream (stream ID ``<offset>-0``) and publishes all of them in one message on the
user's channel; it trims the stream once a bound is passed by a sixteenth and
refreshes the keys' time to live once a sixteenth of it has passed. Two nodes
publishing for one user therefore never produce a gap, a duplicate or a reorder.

Live delivery: each node subscribes only to the channels of users it holds sockets
for. One :class:`~runwire.redis.subscriptions.SubscriptionSet` owns which users those
are; the listener alone sends ``SUBSCRIBE`` / ``UNSUBSCRIBE``, from that set, and a
subscription counts only once the server's reply confirmed it. When the subscription
connection fails (or stops answering ``PING``) the listener reconnects, subscribes
every wanted user again (including users added meanwhile), and once the confirmed
channels equal the wanted users and a command succeeds, reports the engine available
and asks the manager to catch every subscribed user up from history (``resync``), so
events published meanwhile are filled in before newer live ones.

An event published here for a user with sockets here is handed on as soon as the
script answers, without waiting for its pub/sub echo, when it is the next offset
after the last one handed on; otherwise it waits for its echo. The echo of an offset
handed on already is skipped without being decoded (:class:`~runwire.redis.live.LiveOrder`).
So every envelope is decoded at most once per node, and the listener sees each
user's offsets in order, each once.

Every other connection comes from :func:`redis_client`: retried once on a broken
connection and health-checked when idle, so the first command after a Redis restart
does not fail. A command that still cannot reach Redis marks the engine unavailable
until it answers again (then available, then a resync): a client told
``engine_unavailable`` always gets ``engine_status`` ``available`` later.

The epoch lives in Redis, so it survives gateway restarts; it changes only when
Redis loses the user's keys (restart without persistence, eviction, expiry).

Bounds: per user ``history_max_events`` entries, ``history_max_bytes`` bytes and
``history_ttl_s`` of age (by the publishing node's wall clock). A read trims exactly
first, so it never returns an event past a bound; between reads a stream holds at
most a sixteenth more (count and bytes), and the age bound is checked every 16th
publish. A user's keys (epoch and offset too) expire ``redis_key_ttl_s`` after its
last event, after which the user's stream starts a new epoch. Redis errors become
:class:`~runwire.exceptions.EngineError`. Requires the ``redis`` extra
(``pip install runwire[redis]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from runwire.engines.base import (
    EngineCapabilities,
    EngineListener,
    ResumeFailure,
    ResumeFailureReason,
    StoredEvent,
    StreamPosition,
)
from runwire.events import Event, encode_envelope_checked, event_from_frame
from runwire.exceptions import EngineError
from runwire.ids import Epoch, UserId, new_epoch
from runwire.redis import scripts
from runwire.redis.batching import Batcher
from runwire.redis.client import (
    POOL_CONNECTIONS,
    BoundedCluster,
    call_script_on,
    map_redis_errors,
    open_wire,
    redis_client,
    run_script,
    wire_address,
)
from runwire.redis.keys import live_channel, stream_keys, user_of_channel
from runwire.redis.listener import ShardListener, ShardsChanged
from runwire.redis.live import LiveOrder
from runwire.redis.publishing import (
    PublishRequest,
    in_request_order,
    partition,
    publish_call,
    stored_of,
)
from runwire.redis.topology import Shard, Topology
from runwire.redis.wire import WireConnection

__all__ = ["RedisEngine"]

log = logging.getLogger("runwire.redis.engine")

_OFFSET_FIELD = b'"offset":'
_RUN_SEQ_TTL_S = 900  # a retried publish comes within seconds; the key then expires
_SUBSCRIBE_TIMEOUT_S = 5.0
_BATCH_EVENTS = 256
"""The most events one publish script call stores (it runs ~4 us per event)."""
_BATCHES_IN_FLIGHT = 4
"""Publish script calls in flight at once (each for other users; see the batcher)."""
_BATCH_MIN_SPLIT = 32
"""Ready publishes are spread over free calls only in batches of at least this many."""


def _user_of(request: PublishRequest) -> UserId:
    return request.user_id


def _split_frame(event: Event, max_event_bytes: int) -> tuple[bytes, bytes]:
    """The envelope's bytes before and after its offset value.

    Raises:
        EventRejected: not encodable, or over ``max_event_bytes`` with any offset
            (checked with the widest offset, before anything is sent to Redis).
    """
    frame = encode_envelope_checked(event, 0, max_event_bytes - 18)
    start = frame.index(_OFFSET_FIELD) + len(_OFFSET_FIELD)
    return frame[:start], frame[start + 1 :]


def _stored(user_id: UserId, epoch: Epoch, frame: bytes) -> StoredEvent:
    offset, event = event_from_frame(frame)
    return StoredEvent(user_id, epoch, offset, frame, event)


def _event_of(frame: bytes) -> Event:
    return event_from_frame(frame)[1]


def _closed() -> Exception:
    return EngineError("the redis engine is closed")


class RedisEngine:
    """Per-user streams in Redis (or Valkey), shared by every gateway node and worker.

    Args:
        url: ``redis://host:port/db``.
        max_events, max_bytes, max_age_s: the history bounds per user.
        max_event_bytes: the largest envelope stored; a bigger one is refused.
        clock: wall-clock seconds used to age events (shared by every node, so keep
            the nodes' clocks in sync: skew shifts the age bound by as much).
        key_ttl_s: seconds after a user's last event before all its keys (epoch and
            offset included) expire; a later event starts a new epoch.

    Availability (``available``, reported through ``on_state``) is true only while the
    subscription connection holds every wanted user's channel *and* a command on the
    command pool has succeeded since the last failure; each change to true is followed
    by a resync of every subscribed user.
    """

    def __init__(
        self,
        url: str,
        *,
        max_events: int,
        max_bytes: int,
        max_age_s: float,
        key_ttl_s: int,
        max_event_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.max_event_bytes = max_event_bytes
        self._epoch_prefix = new_epoch()
        self._epochs = 0
        self.url = url
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_age_ms = int(max_age_s * 1000)
        self.key_ttl_s = key_ttl_s
        # The hot path: a plain pool (no per-command condition variable) whose use is
        # capped by a semaphore, so a burst of publishes waits instead of failing.
        self._redis = redis_client(
            url, decode_responses=False, blocking=False, max_connections=2 * POOL_CONNECTIONS
        )
        self._slots = asyncio.Semaphore(POOL_CONNECTIONS)
        self._topology = Topology(url)
        self._publish_script = self._redis.register_script(
            scripts.SHARDED_PUBLISH if self._topology.sharded else scripts.PUBLISH
        )
        self._batcher: Batcher[PublishRequest, StoredEvent] = Batcher(
            self._store,
            key=_user_of,
            max_items=_BATCH_EVENTS,
            closed=_closed,
            max_in_flight=_BATCHES_IN_FLIGHT,
            min_items=_BATCH_MIN_SPLIT,
        )
        self._live = LiveOrder()
        """The last offset handed on per wanted user (local delivery and echoes)."""
        self._slack_events = max(1, max_events // scripts.TRIM_SLACK_DIVISOR)
        self._slack_bytes = max(1, max_bytes // scripts.TRIM_SLACK_DIVISOR)
        self._position_script = self._redis.register_script(scripts.POSITION)
        self._read_script = self._redis.register_script(scripts.READ)
        # The subscription connections (one per shard master on a cluster) and, on a
        # single server, the publish calls' connection: lean pipelined connections
        # (runwire.redis.wire), made by the engine and never reconnected behind its
        # back (a silent reconnect would re-subscribe without the resync that must
        # follow). Subscriptions have no read timeout (idle between events; PINGs
        # check them).
        self._address = None if self._topology.sharded else wire_address(url)
        self._publishers: dict[str, WireConnection] = {}
        """The publish calls' connections: ``""`` on one server, each master's by node
        name on a cluster. Closed ones are dropped when the next is opened, and those
        of former masters once a failed call refreshed the slot map."""
        self._publisher_opening: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        """Per publish connection name, the lock held while it is opened and how many
        calls hold or wait for it: a master that takes its connect timeout to answer
        delays only its own calls. Dropped once no call uses it (so at most one per
        name being opened)."""
        self._reports: EngineListener | None = None
        """Where events, resyncs and availability go (the process's pipeline)."""
        self._listeners: dict[tuple[tuple[int, int], ...], ShardListener] = {}
        """One per shard, by its slot ranges (one, ``()``, on a single server)."""
        self._by_slot: list[ShardListener] = []
        """The listener of each slot (one entry on a single server)."""
        self._wanted: dict[UserId, ShardListener] = {}
        """Users with sockets here, and the listener holding their channel."""
        self._shards: dict[tuple[tuple[int, int], ...], Shard] = {}
        self._rebuilding: asyncio.Task[None] | None = None
        self._live_waiters: dict[UserId, list[asyncio.Future[None]]] = {}
        self.failures = 0
        """Command failures reported (:meth:`mark_unavailable`)."""
        self.closing = False
        self.available = False
        self.capabilities = EngineCapabilities(
            shared=True, durable=True, immediate=False, pipelined=True
        )
        """Durable as far as Redis persists (AOF/RDB); a lost stream gets a new epoch."""
        self.publish_errors = 0
        self.local_deliveries = 0
        self.echoes_skipped = 0
        self._retired_reconnects = 0
        self._retired_resyncs = 0

    # -- lifecycle --------------------------------------------------------------

    async def start(self, listener: EngineListener) -> None:
        """Connect and start the subscription listener; report to ``listener``.

        Raises:
            EngineError: Redis cannot be reached at start-up.
        """
        self._reports = listener
        async with map_redis_errors("start"):
            await self._redis.ping()
            self._build(await self._topology.shards())
        try:
            async with asyncio.timeout(_SUBSCRIBE_TIMEOUT_S):
                for shard_listener in list(self._listeners.values()):
                    await shard_listener.ready.wait()
        except TimeoutError:
            raise EngineError("redis subscription could not be established") from None

    async def close(self) -> None:
        # The flag, not only the cancel: Python 3.11's wait_for swallows a cancel that
        # comes as its awaitable completes; the listener checks the flag every round.
        self.closing = True
        await self._batcher.close()
        if self._rebuilding is not None:
            self._rebuilding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebuilding
            self._rebuilding = None
        for shard_listener in list(self._listeners.values()):
            await shard_listener.close()
        for waiters in self._live_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(EngineError("the redis engine is closed"))
        self._live_waiters.clear()
        for connection in self._publishers.values():
            connection.close()
        self._publishers.clear()
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()
        self.available = False
        self._reports = None

    def _set_available(self, available: bool) -> None:
        if available != self.available:
            self.available = available
            log.warning("redis engine %s", "available" if available else "UNAVAILABLE")
            if self._reports is not None:
                self._reports.engine_state_changed(available)

    def mark_unavailable(self) -> None:
        """A command on this engine's Redis failed (here, or in another client of the
        same Redis: the run dispatcher, the snapshots). Report unavailable now
        (``on_state(False)``) and verify: as soon as Redis answers, the engine reports
        available again (``engine_state_changed(True)``) and resyncs every user. So whoever was told
        of the failure is told when to retry."""
        self.failures += 1
        for shard_listener in self._listeners.values():
            shard_listener.unverify()
        self._set_available(False)

    # -- publishing and reading -------------------------------------------------

    def _epoch_candidate(self) -> str:
        """A fresh epoch name, cheap enough for every publish batch (used only when a
        user's stream is new or was lost): this engine's random prefix and a counter
        (the publish script appends the group's number)."""
        self._epochs += 1
        return f"{self._epoch_prefix}{self._epochs:x}"

    async def publish(self, user_id: UserId, event: Event) -> StoredEvent:
        """Store ``event`` with the next batch (see the module docstring).

        Raises:
            EventRejected: not encodable or too big (before anything is sent).
            EngineError: Redis did not confirm the batch (it may have stored it:
                publishing the same ``(run_id, seq)`` again is safe).
        """
        return await self.submit(user_id, event)

    def submit(self, user_id: UserId, event: Event) -> asyncio.Future[StoredEvent]:
        """:meth:`publish`, queued at once (see :class:`~runwire.engines.base.PipelinedEngine`:
        the batcher fails everything queued behind a failed batch).

        Raises:
            EventRejected: not encodable or too big (nothing was queued).
        """
        prefix, suffix = _split_frame(event, self.max_event_bytes)
        return self._batcher.submit(PublishRequest(user_id, event, prefix, suffix))

    async def _store(self, requests: list[PublishRequest]) -> list[StoredEvent]:
        """One script call for a batch; hands this node's fresh events on at once."""
        header = [
            int(self._clock() * 1000),
            self.max_events,
            self.max_bytes,
            self.max_age_ms,
            self.key_ttl_s,
            _RUN_SEQ_TTL_S * 1000,
            self._slack_events,
            self._slack_bytes,
            self._epoch_candidate(),
        ]
        try:
            if not self._topology.sharded:
                results = await self._store_slot(requests, header)
            else:  # one call per master, all at once
                results = await self._store_sharded(requests, header)
        except EngineError:
            self.publish_errors += len(requests)
            raise
        reports = self._reports
        if reports is not None and self._wanted:
            self._deliver_local(reports, *results)
        return results[0]

    async def _store_slot(
        self, requests: list[PublishRequest], header: list[Any]
    ) -> tuple[list[StoredEvent], list[bool]]:
        """One script call for ``requests`` (one server)."""
        keys, args, groups = publish_call(requests, header)
        async with map_redis_errors("publish", self.mark_unavailable):
            assert self._address is not None
            connect = functools.partial(self._publish_connection, "", self._address)
            reply = await call_script_on(connect, self._publish_script, keys, args)
        return stored_of(requests, reply, groups)

    async def _publish_connection(self, name: str, address: dict[str, Any]) -> WireConnection:
        """The publish calls' connection ``name`` to ``address`` (``open_wire``'s
        arguments), opened anew once it closed (a call that finds it broken is sent once
        more on a fresh one; on a cluster a MOVED answer fails the batch, which
        refreshes the slot map)."""
        publishers = self._publishers
        connection = publishers.get(name)
        if connection is not None and not connection.closed.done():
            return connection
        opening = self._publisher_opening.get(name)
        if opening is None:
            opening = self._publisher_opening[name] = (asyncio.Lock(), [0])
        lock, users = opening
        users[0] += 1
        try:
            async with lock:
                connection = publishers.get(name)
                if connection is None or connection.closed.done():
                    for old in [old for old, known in publishers.items() if known.closed.done()]:
                        del publishers[old]
                    connection = publishers[name] = await open_wire(**address)
                if self.closing:
                    connection.close()
        finally:
            users[0] -= 1
            if not users[0] and self._publisher_opening.get(name) is opening:
                del self._publisher_opening[name]
        return connection

    def _forget_former_masters(self, masters: set[str]) -> None:
        """Close the publish connections of nodes that are no longer masters (after a
        failover the old master may live on as a replica): at most one per master."""
        for name in [name for name in self._publishers if name not in masters]:
            self._publishers.pop(name).close()

    async def _store_sharded(
        self, requests: list[PublishRequest], header: list[Any]
    ) -> tuple[list[StoredEvent], list[bool]]:
        """A batch on a cluster: the users of each master in one script call (its
        cross-slot variant), sent to that master; every call ends before the batch
        does (a user in one batch in flight keeps the user's order), failed or not. Each call
        gets its own epoch candidate (the script numbers its groups per call)."""
        cluster = self._redis
        assert isinstance(cluster, BoundedCluster)
        async with map_redis_errors("publish", self.mark_unavailable):
            nodes = {}
            for user_id in {request.user_id for request in requests}:
                nodes[user_id] = await cluster.node_of_slot(self._slot_of_user(user_id))
        parts = partition(requests, lambda user_id: nodes[user_id].name)

        async def call(part: list[int]) -> tuple[list[StoredEvent], list[bool]]:
            chunk = [requests[i] for i in part]
            keys, args, groups = publish_call(chunk, [*header[:-1], self._epoch_candidate()])
            node = nodes[chunk[0].user_id]
            async with map_redis_errors("publish", self.mark_unavailable):
                reply = await call_script_on(
                    functools.partial(
                        self._publish_connection,
                        node.name,
                        {"host": node.host, "port": int(node.port), **self._topology.options},
                    ),
                    self._publish_script,
                    keys[:2],
                    [len(keys), *keys, *args],
                )
            return stored_of(chunk, reply, groups)

        replies = await asyncio.gather(*(call(part) for part in parts), return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                # Routed by a map that may be stale (MOVED, a dead master): the next
                # batch (or the publish's retry) goes by a fresh one.
                with contextlib.suppress(RedisError, OSError):
                    await cluster.refresh_slots()
                self._forget_former_masters({node.name for node in cluster.get_primaries()})
                raise reply
        return in_request_order(len(requests), parts, replies)  # type: ignore[arg-type]

    def _slot_of_user(self, user_id: UserId) -> int:
        return self._topology.slot(live_channel(user_id))

    def _deliver_local(
        self, reports: EngineListener, results: list[StoredEvent], duplicates: list[bool]
    ) -> None:
        subscriptions, live = self._wanted, self._live
        for stored, duplicate in zip(results, duplicates, strict=True):
            if (
                not duplicate
                and stored.user_id in subscriptions
                and live.local(stored.user_id, stored.epoch, stored.offset)
            ):
                self.local_deliveries += 1
                try:
                    reports.deliver(stored)
                except Exception:  # a delivery bug must not fail the publish
                    log.exception("local delivery failed")

    async def _command(self, action: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run one command on the pool (retried once by the connection on a broken
        connection); a failure to reach Redis marks the engine unavailable."""
        async with self._slots, map_redis_errors(action, self.mark_unavailable):
            return await call()

    async def position(self, user_id: UserId) -> StreamPosition:
        epoch, offset = await self._command(
            "position",
            lambda: run_script(
                self._position_script,
                keys=list(stream_keys(user_id)),
                args=[new_epoch(), self.key_ttl_s],
            ),
        )
        return StreamPosition(Epoch(epoch.decode()), int(offset))

    async def read_after(
        self, user_id: UserId, epoch: Epoch, offset: int, limit: int
    ) -> list[StoredEvent] | ResumeFailure:
        args = [
            max(offset, 0),
            limit,
            self.max_events,
            self.max_bytes,
            self.max_age_ms,
            int(self._clock() * 1000),
        ]
        current, last, entries = await self._command(
            "read",
            lambda: run_script(self._read_script, keys=list(stream_keys(user_id)), args=args),
        )
        current_epoch = Epoch(current.decode())
        position = StreamPosition(current_epoch, int(last))
        if not current_epoch or current_epoch != epoch:
            return ResumeFailure(ResumeFailureReason.EPOCH_CHANGED, position)
        if offset > position.offset or offset < 0:
            return ResumeFailure(ResumeFailureReason.INVALID_OFFSET, position)
        events = [_stored(user_id, current_epoch, fields[b"f"]) for _, fields in _pairs(entries)]
        if offset < position.offset and (not events or events[0].offset != offset + 1):
            return ResumeFailure(ResumeFailureReason.OUT_OF_WINDOW, position)
        return events

    # -- live delivery ----------------------------------------------------------

    async def subscribe(self, user_id: UserId) -> None:
        """Subscribe; when it returns, every later publish for the user reaches this node.

        Counted, one per call. The listener, the only one that sends ``SUBSCRIBE`` and
        ``UNSUBSCRIBE``, subscribes the user's channel; this waits until the server has
        confirmed it on the current connection and no command for it is unanswered.
        That holds whenever the call comes: before, during or after a re-subscribe
        following a reconnect.

        Raises:
            EngineError: not confirmed within ``_SUBSCRIBE_TIMEOUT_S`` (Redis is down);
                the call then counts for nothing.
        """
        listener = (
            self._wanted.get(user_id)
            or self._by_slot[self._slot_of_user(user_id) if len(self._by_slot) > 1 else 0]
        )
        subscriptions = listener.subscriptions
        subscriptions.add(user_id)
        self._wanted[user_id] = listener
        if subscriptions.live(user_id):
            return
        listener.changed.set()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._live_waiters.setdefault(user_id, [])
        waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, _SUBSCRIBE_TIMEOUT_S)
        except BaseException as exc:
            self._release(user_id)
            if isinstance(exc, TimeoutError):
                raise EngineError("redis did not confirm the subscription in time") from None
            raise
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
            if not waiters and self._live_waiters.get(user_id) is waiters:
                del self._live_waiters[user_id]

    async def unsubscribe(self, user_id: UserId) -> None:
        """Undo one :meth:`subscribe`. After the user's last one its events are no
        longer delivered (at once), and the listener unsubscribes its channel."""
        self._release(user_id)

    def _release(self, user_id: UserId) -> None:
        listener = self._wanted.get(user_id)
        if listener is not None and listener.subscriptions.remove(user_id):
            del self._wanted[user_id]
            self._live.forget(user_id)
            listener.changed.set()

    # -- the listeners (runwire.redis.listener.ListenerHost) ---------------------

    def _build(self, shards: list[Shard]) -> None:
        """One listener per shard; every wanted user (with its count) moves to the
        listener of its slot. Called at start and when the slots moved.

        Raises:
            ShardsChanged: some slot is served by no master (nothing changed then).
        """
        sharded = self._topology.sharded
        listeners = {
            shard.key: ShardListener(
                self, shard.key if sharded else (), sharded=sharded, slot_of=self._topology.slot
            )
            for shard in shards
        }
        by_slot: list[ShardListener | None] = list(listeners.values())
        if sharded:
            by_slot = [None] * 16384
            for shard in shards:
                for start, end in shard.ranges:
                    by_slot[start : end + 1] = [listeners[shard.key]] * (end - start + 1)
            if any(listener is None for listener in by_slot):
                raise ShardsChanged("some slots are not served by any master")
        old = self._listeners
        self._shards = {shard.key: shard for shard in shards}
        self._listeners = listeners
        self._by_slot = by_slot  # type: ignore[assignment]  # no None left
        for user_id, listener in list(self._wanted.items()):
            target = self._by_slot[self._slot_of_user(user_id) if sharded else 0]
            for _ in range(listener.subscriptions.counts().get(user_id, 0)):
                target.subscriptions.add(user_id)
            self._wanted[user_id] = target
        for listener in old.values():
            self._retired_reconnects += listener.reconnects
            self._retired_resyncs += listener.resyncs
            listener.stopped = True
            listener.changed.set()
        for listener in self._listeners.values():
            listener.start()

    async def connect(self, listener: ShardListener) -> WireConnection:
        """A subscription connection to ``listener``'s shard master, found anew (by a
        slot map that shows the move the listener was told of, if any node has heard of
        it: :meth:`Topology.shards`)."""
        if self._address is not None:
            return await open_wire(**self._address, subscriber=True)
        shards = {shard.key: shard for shard in await self._topology.shards(listener.moved)}
        if shards.keys() != self._shards.keys():
            raise ShardsChanged("the cluster's slots moved")
        master = listener.master = shards[listener.key].master
        return await open_wire(master.host, master.port, subscriber=True, **self._topology.options)

    def shards_changed(self) -> None:
        if self._rebuilding is None or self._rebuilding.done():
            self._rebuilding = asyncio.get_running_loop().create_task(self._rebuild())

    async def _rebuild(self) -> None:
        """Build listeners for the shards as they are now (retried until it works)."""
        delay = 0.05
        while not self.closing:
            try:
                shards = await self._topology.shards()
                old = list(self._listeners.values())
                self._build(shards)
            except (RedisError, OSError, TimeoutError, EngineError) as exc:
                log.warning("redis cluster shards not known yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            for listener in old:
                await listener.close()
            return

    async def ping(self) -> None:
        async with self._slots:
            await self._redis.ping()

    def state_changed(self) -> None:
        listeners = self._listeners.values()
        self._set_available(bool(listeners) and all(x.verified for x in listeners))

    def resync(self, user_id: UserId) -> None:
        if self._reports is not None:
            self._reports.resync(user_id)

    def now_live(self, user_id: UserId) -> None:
        for waiter in self._live_waiters.pop(user_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    def on_message(self, channel: bytes, data: bytes) -> None:
        """An echo: ``epoch|first offset|frame\\nframe...`` (one publish script group).
        Frames handed on already (published here) are skipped undecoded."""
        user_id = user_of_channel(channel)
        reports = self._reports
        if user_id is None or user_id not in self._wanted or reports is None:
            return
        raw_epoch, raw_first, body = data.split(b"|", 2)
        epoch, first = Epoch(raw_epoch.decode()), int(raw_first)
        frames = body.split(b"\n")
        skip = self._live.echo(user_id, epoch, first, len(frames))
        self.echoes_skipped += skip
        for index in range(skip, len(frames)):
            frame = frames[index]
            reports.deliver(StoredEvent(user_id, epoch, first + index, frame, _event_of(frame)))

    @property
    def reconnects(self) -> int:
        return self._retired_reconnects + sum(x.reconnects for x in self._listeners.values())

    @property
    def resyncs(self) -> int:
        return self._retired_resyncs + sum(x.resyncs for x in self._listeners.values())

    def stats(self) -> dict[str, int]:
        sets = [listener.subscriptions for listener in self._listeners.values()]
        return {
            "streams": 0,
            "events": 0,
            "bytes": 0,
            "subscriptions": sum(subscriptions.count for subscriptions in sets),
            "subscribed_users": len(self._wanted),
            "unconfirmed_users": sum(len(subscriptions.missing()) for subscriptions in sets),
            "shards": len(sets),
            "available": int(self.available),
            "publish_errors": self.publish_errors,
            "publish_batches": self._batcher.batches,
            "local_deliveries": self.local_deliveries,
            "echoes_skipped": self.echoes_skipped,
            "reconnects": self.reconnects,
            "resyncs": self.resyncs,
        }


def _pairs(entries: list[Any]) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE replies as (id, fields) with fields as a dict."""
    result = []
    for entry_id, raw in entries:
        fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
        result.append((entry_id, fields))
    return result
