"""The Redis engine: one ordered, resumable stream per user, shared by many nodes.

Every publish runs one server-side script that, atomically: creates the user's
epoch if the stream was lost, increments the user's offset, appends the envelope
(built around that offset) to the user's stream (stream ID ``<offset>-1``), trims
the stream to its bounds, refreshes the keys' time to live (every 64th event), and
publishes it on the user's channel. Two nodes publishing for one user therefore
never produce a gap, a duplicate or a reorder.

Live delivery: each node subscribes only to the channels of users it holds sockets
for. When the node's subscription connection fails it reconnects, re-subscribes and
asks the manager to catch every subscribed user up from history (``resync``), so
events published meanwhile are filled in before newer live ones.

The epoch lives in Redis, so it survives gateway restarts; it changes only when
Redis loses the user's keys (restart without persistence, eviction, expiry).

Bounds: per user ``history_max_events`` entries, ``history_max_bytes`` bytes and
``history_ttl_s`` of age (by the publishing node's wall clock): count and bytes are
trimmed on every publish, age on every 16th publish and on every read (so a read
never returns an event older than the bound); a user's keys (epoch and offset too)
expire ``redis_key_ttl_s`` after its last event, after which the user's stream
starts a new epoch. Redis errors become :class:`~runwire.exceptions.EngineError`.
Requires the ``redis`` extra (``pip install runwire[redis]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runwire.engines.base import (
    DeliverCallback,
    ResumeFailure,
    ResumeFailureReason,
    StoredEvent,
    StreamPosition,
)
from runwire.events import EVENT_TYPES, Event, EventData, decode_envelope, encode_envelope_checked
from runwire.exceptions import EngineError
from runwire.ids import Epoch, UserId, new_epoch

__all__ = ["RedisEngine"]

log = logging.getLogger("runwire.engines.redis")

_PAYLOADS: dict[str, type[Any]] = {name: cls for cls, name in EVENT_TYPES.items()}
_OFFSET_FIELD = b'"offset":'
_SYNC = b"sync|"
_SYNC_TIMEOUT_S = 5.0
_READ_ATTEMPTS = 3
_POOL_CONNECTIONS = 32
_RUN_SEQ_TTL_S = 900  # a retried publish comes within seconds; the key then expires
_POOL_TIMEOUT_S = 10.0

# Trim the user's stream from its oldest entry while it holds more than ARGV[1]
# entries or max bytes, or entries older than max age (ms, by the caller's clock).
_TRIM = """
local function trim(stream, size_key, max_events, max_bytes, max_age_ms, now, check_age)
  local length = redis.call('XLEN', stream)
  local size = tonumber(redis.call('GET', size_key) or '0')
  if not check_age and length <= max_events and size <= max_bytes then
    return
  end
  while length > 0 do
    local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    local fields = oldest[2]
    local bytes = #fields[2]
    local age = now - tonumber(fields[4])
    if length > max_events or size > max_bytes or age > max_age_ms then
      redis.call('XDEL', stream, oldest[1])
      size = redis.call('DECRBY', size_key, bytes)
      length = length - 1
    else
      break
    end
  end
end
"""

# KEYS: epoch, offset, stream, bytes, the run's last seq. ARGV: candidate epoch, frame
# prefix, frame suffix, max entries, max bytes, max age ms, key ttl s, channel, now ms,
# seq, run key ttl s. An event whose (run_id, seq) is not newer than the run's last
# stored one is not stored again (a retried publish): the reply's third item is 1 and
# its offset is that of the run's last stored event.
_PUBLISH = (
    _TRIM
    + """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
end
local seq = tonumber(ARGV[10])
local last = redis.call('GET', KEYS[5])
if last then
  local sep = string.find(last, ':')
  if seq <= tonumber(string.sub(last, 1, sep - 1)) then
    return {epoch, tonumber(string.sub(last, sep + 1)), 1}
  end
end
local offset = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[5], seq .. ':' .. offset, 'EX', ARGV[11])
local frame = ARGV[2] .. offset .. ARGV[3]
local now = tonumber(ARGV[9])
redis.call('XADD', KEYS[3], offset .. '-1', 'f', frame, 't', now)
redis.call('INCRBY', KEYS[4], #frame)
-- The age bound is checked every 16 events here (and always on reads).
trim(KEYS[3], KEYS[4], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), now,
  offset % 16 == 0)
if offset % 64 == 1 then
  -- Refreshing the keys' time to live every 64 events is enough: it is days long.
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[7]) end
end
redis.call('PUBLISH', ARGV[8], epoch .. '|' .. frame)
return {epoch, offset, 0}
"""
)

# KEYS: epoch, offset, stream, bytes. ARGV: candidate epoch, key ttl s.
_POSITION = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch, 'EX', ARGV[2])
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
end
return {epoch, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""

# KEYS: epoch, offset, stream, bytes. ARGV: after offset, count, max entries, max bytes,
# max age ms, now ms.
_READ = (
    _TRIM
    + """
trim(KEYS[3], KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
  true)
local epoch = redis.call('GET', KEYS[1])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[1] .. '-1', '+', 'COUNT', ARGV[2])
return {epoch or '', last, entries}
"""
)


def _keys(user_id: UserId) -> tuple[str, str, str, str]:
    base = f"rw:{{{user_id}}}"
    return f"{base}:epoch", f"{base}:offset", f"{base}:stream", f"{base}:bytes"


def _run_seq_key(user_id: UserId, run_id: str) -> str:
    return f"rw:{{{user_id}}}:seq:{run_id}"


def _channel(user_id: UserId) -> str:
    return f"rw:{{{user_id}}}:live"


def _split_frame(event: Event, max_event_bytes: int) -> tuple[bytes, bytes]:
    """The envelope's bytes before and after its offset value.

    Raises:
        EventRejected: not encodable, or over ``max_event_bytes`` with any offset
            (checked with the widest offset, before anything is sent to Redis).
    """
    frame = encode_envelope_checked(event, 0, max_event_bytes - 18)
    start = frame.index(_OFFSET_FIELD) + len(_OFFSET_FIELD)
    return frame[:start], frame[start + 1 :]


def event_from_frame(frame: bytes) -> tuple[int, Event]:
    """Rebuild ``(offset, Event)`` from an encoded envelope (read from Redis)."""
    envelope = decode_envelope(frame)
    data: EventData = msgspec.convert(envelope.data, _PAYLOADS[envelope.type])
    event = Event(
        envelope.type, envelope.run_id, envelope.thread_id, envelope.seq, envelope.ts, data
    )
    return envelope.offset, event


def _stored(user_id: UserId, epoch: Epoch, frame: bytes) -> StoredEvent:
    offset, event = event_from_frame(frame)
    return StoredEvent(user_id, epoch, offset, frame, event)


def redis_client(url: str, *, decode_responses: bool) -> aioredis.Redis:
    """A client on a blocking pool: a burst of commands waits for a free connection
    (up to ``_POOL_TIMEOUT_S``) instead of failing with "too many connections". The
    client owns its pool: ``aclose()`` closes both."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=_POOL_CONNECTIONS,
        timeout=_POOL_TIMEOUT_S,
        decode_responses=decode_responses,
    )
    return aioredis.Redis.from_pool(pool)


@asynccontextmanager
async def map_redis_errors(action: str) -> AsyncIterator[None]:
    """Translate redis-py errors into :class:`EngineError` at the adapter boundary."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise EngineError(f"redis unavailable during {action}: {exc}") from exc


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
        pool = aioredis.ConnectionPool.from_url(url, max_connections=2 * _POOL_CONNECTIONS)
        self._redis = aioredis.Redis.from_pool(pool)
        self._slots = asyncio.Semaphore(_POOL_CONNECTIONS)
        self._publish_script = self._redis.register_script(_PUBLISH)
        self._position_script = self._redis.register_script(_POSITION)
        self._read_script = self._redis.register_script(_READ)
        self._deliver: DeliverCallback | None = None
        self._resync: Callable[[UserId], None] | None = None
        self._on_state: Callable[[bool], None] | None = None
        self._subscriptions: dict[UserId, int] = {}
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._sync_waiters: dict[bytes, asyncio.Future[None]] = {}
        self._ready = asyncio.Event()
        self.available = False
        self.publish_errors = 0

    # -- lifecycle --------------------------------------------------------------

    async def start(
        self,
        deliver: DeliverCallback,
        *,
        resync: Callable[[UserId], None] | None = None,
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        """Connect and start the subscription listener.

        Raises:
            EngineError: Redis cannot be reached at start-up.
        """
        self._deliver, self._resync, self._on_state = deliver, resync, on_state
        async with map_redis_errors("start"):
            await self._redis.ping()
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        try:
            await asyncio.wait_for(self._ready.wait(), _SYNC_TIMEOUT_S)
        except TimeoutError:
            raise EngineError("redis subscription could not be established") from None

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
            self._pubsub = None
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()
        self._deliver = None

    def _set_available(self, available: bool) -> None:
        if available != self.available:
            self.available = available
            log.warning("redis engine %s", "available" if available else "UNAVAILABLE")
            if self._on_state is not None:
                self._on_state(available)

    # -- publishing and reading -------------------------------------------------

    def _epoch_candidate(self) -> str:
        """A fresh epoch name, cheap enough for every publish (used only when a user's
        stream is new or was lost): this engine's random prefix and a counter."""
        self._epochs += 1
        return f"{self._epoch_prefix}{self._epochs:x}"

    async def publish(self, user_id: UserId, event: Event) -> StoredEvent:
        prefix, suffix = _split_frame(event, self.max_event_bytes)
        try:
            async with self._slots, map_redis_errors("publish"):
                epoch, offset, _duplicate = await self._publish_script(
                    keys=[*_keys(user_id), _run_seq_key(user_id, event.run_id)],
                    args=[
                        self._epoch_candidate(),
                        prefix,
                        suffix,
                        self.max_events,
                        self.max_bytes,
                        self.max_age_ms,
                        self.key_ttl_s,
                        _channel(user_id),
                        int(self._clock() * 1000),
                        event.seq,
                        _RUN_SEQ_TTL_S,
                    ],
                )
        except EngineError:
            self.publish_errors += 1
            raise
        offset = int(offset)
        frame = prefix + str(offset).encode() + suffix
        return StoredEvent(user_id, Epoch(epoch.decode()), offset, frame, event)

    async def _retrying(self, action: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a read, retrying on a dropped connection. (Publishing is not retried
        here; the runtime retries it, and the script drops a repeated (run, seq).)"""
        for attempt in range(_READ_ATTEMPTS):
            try:
                async with self._slots, map_redis_errors(action):
                    return await call()
            except EngineError:
                if attempt + 1 == _READ_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def position(self, user_id: UserId) -> StreamPosition:
        epoch, offset = await self._retrying(
            "position",
            lambda: self._position_script(
                keys=list(_keys(user_id)), args=[new_epoch(), self.key_ttl_s]
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
        current, last, entries = await self._retrying(
            "read", lambda: self._read_script(keys=_keys(user_id), args=args)
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

        The first subscription of a user is confirmed by a round trip through the
        user's own channel. If Redis is down, the subscription is recorded and made
        when the listener reconnects (followed by a resync from history).
        """
        count = self._subscriptions.get(user_id, 0)
        self._subscriptions[user_id] = count + 1
        if count or self._pubsub is None:
            return
        nonce = new_epoch().encode()
        waiter = asyncio.get_running_loop().create_future()
        self._sync_waiters[nonce] = waiter
        try:
            await self._pubsub.subscribe(_channel(user_id))
            await self._redis.publish(_channel(user_id), _SYNC + nonce)
            await asyncio.wait_for(waiter, _SYNC_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("subscription of a user not confirmed: %s", exc)
        finally:
            self._sync_waiters.pop(nonce, None)

    async def unsubscribe(self, user_id: UserId) -> None:
        count = self._subscriptions.get(user_id, 0)
        if count <= 1:
            self._subscriptions.pop(user_id, None)
            if count == 1 and self._pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(_channel(user_id))
        else:
            self._subscriptions[user_id] = count - 1

    async def _listen(self) -> None:
        """Receive live events; on failure reconnect, re-subscribe and resync."""
        delay = 0.05
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                # A channel nobody publishes on keeps the connection subscribed.
                await pubsub.subscribe("rw:node", *(_channel(u) for u in self._subscriptions))
                self._pubsub = pubsub
                self._ready.set()
                self._set_available(True)
                delay = 0.05
                for user_id in list(self._subscriptions):
                    if self._resync is not None:
                        self._resync(user_id)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._on_message(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                log.warning("redis subscription lost: %s", exc)
                self._set_available(False)
            finally:
                self._pubsub = None
                self._ready.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py stub gap
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        if data.startswith(_SYNC):
            waiter = self._sync_waiters.get(data[len(_SYNC) :])
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        user_id = UserId(channel.decode()[4:-6])  # rw:{<user>}:live
        if user_id not in self._subscriptions or self._deliver is None:
            return
        epoch, _, frame = data.partition(b"|")
        self._deliver(_stored(user_id, Epoch(epoch.decode()), frame))

    def stats(self) -> dict[str, int]:
        return {
            "streams": 0,
            "events": 0,
            "bytes": 0,
            "subscriptions": sum(self._subscriptions.values()),
            "subscribed_users": len(self._subscriptions),
            "available": int(self.available),
            "publish_errors": self.publish_errors,
        }


def _pairs(entries: list[Any]) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE replies as (id, fields) with fields as a dict."""
    result = []
    for entry_id, raw in entries:
        fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
        result.append((entry_id, fields))
    return result
