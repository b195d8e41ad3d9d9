"""The in-memory engine: one process, bounded history, the embedded default.

Use it for a single gateway process. Offsets are assigned and delivered
synchronously inside :meth:`MemoryEngine.publish`, so per-user order is the order
of calls. History is lost on restart; each stream's epoch is random, so clients
resuming against a restarted process get ``epoch_changed``. For several processes
use the Redis engine.

Bounds: per user ``history_max_events``, ``history_max_bytes`` and
``history_ttl_s``; at most ``history_max_users`` streams, the least recently used
unsubscribed stream evicted first (a subscribed stream is never evicted, so the
streams beyond the bound are at most the number of connected users).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from runwire.engines.base import (
    EngineCapabilities,
    EngineListener,
    ResumeFailure,
    StoredEvent,
    StreamPosition,
)
from runwire.engines.history import Window, held_stats
from runwire.events import Event, encode_envelope_checked
from runwire.ids import Epoch, UserId, new_epoch

__all__ = ["HistoryBounds", "MemoryEngine"]


@dataclass(frozen=True, slots=True)
class HistoryBounds:
    """How much history each user keeps, for how many users, and the largest event."""

    max_events: int
    max_bytes: int
    ttl_s: float
    max_users: int
    max_event_bytes: int
    """An envelope over this is refused (:class:`~runwire.exceptions.EventRejected`)."""


@dataclass(slots=True)
class _Stream:
    epoch: Epoch
    last_offset: int = 0
    window: Window = field(default_factory=Window)
    subscribers: int = 0
    touched: float = 0.0


class MemoryEngine:
    """Per-user streams in this process's memory."""

    def __init__(self, bounds: HistoryBounds, clock: Callable[[], float] = time.monotonic) -> None:
        self.bounds = bounds
        self._clock = clock
        self._streams: OrderedDict[UserId, _Stream] = OrderedDict()
        self._reports: EngineListener | None = None
        self.evicted_streams = 0
        self.evicted_events = 0

    available = True
    capabilities = EngineCapabilities(shared=False, durable=False, immediate=True)

    async def start(self, listener: EngineListener) -> None:
        self._reports = listener

    async def close(self) -> None:
        self._reports = None
        self._streams.clear()

    def mark_unavailable(self) -> None:
        """Nothing to do: memory is always available (and nothing else shares it)."""

    def _stream(self, user_id: UserId) -> _Stream:
        stream = self._streams.get(user_id)
        now = self._clock()
        if stream is None:
            stream = _Stream(epoch=new_epoch(), touched=now)
            self._streams[user_id] = stream
            self._evict_streams(keep=user_id)
        else:
            self._streams.move_to_end(user_id)
            stream.touched = now
        return stream

    def _evict_streams(self, keep: UserId | None = None) -> None:
        """Drop least recently used unsubscribed streams beyond ``max_users``.

        ``keep`` (the stream being created) is never the one dropped.
        """
        excess = len(self._streams) - self.bounds.max_users
        if excess <= 0:
            return
        for user_id in list(self._streams):
            if excess <= 0:
                break
            if user_id != keep and self._streams[user_id].subscribers == 0:
                del self._streams[user_id]
                self.evicted_streams += 1
                excess -= 1

    def _trim(self, stream: _Stream, now: float) -> None:
        self.evicted_events += stream.window.trim(self.bounds, now)[0]

    async def publish(self, user_id: UserId, event: Event) -> StoredEvent:
        return self.publish_nowait(user_id, event)

    def publish_nowait(self, user_id: UserId, event: Event) -> StoredEvent:
        """:meth:`publish` without a coroutine: the memory engine never waits.

        Raises:
            EventRejected: the event cannot be encoded or is too big; it took no
                offset (the stream has no gap).
        """
        streams = self._streams
        stream = streams.get(user_id)
        if stream is None:
            stream = self._stream(user_id)
            now = stream.touched
        else:
            streams.move_to_end(user_id)
            stream.touched = now = self._clock()
        offset = stream.last_offset + 1
        # Encoded before the offset is taken: a refused event leaves no gap.
        frame = encode_envelope_checked(event, offset, self.bounds.max_event_bytes)
        stream.last_offset = offset
        stored = StoredEvent(user_id, stream.epoch, offset, frame, event)
        window = stream.window
        window.add(stored, now)
        if window.over(self.bounds, now):
            self._trim(stream, now)
        if stream.subscribers and self._reports is not None:
            self._reports.deliver(stored)
        return stored

    async def position(self, user_id: UserId) -> StreamPosition:
        stream = self._stream(user_id)
        return StreamPosition(stream.epoch, stream.last_offset)

    async def read_after(
        self, user_id: UserId, epoch: Epoch, offset: int, limit: int
    ) -> list[StoredEvent] | ResumeFailure:
        stream = self._stream(user_id)
        self._trim(stream, self._clock())  # never answer with an event past the age bound
        return stream.window.read(
            StreamPosition(stream.epoch, stream.last_offset), epoch, offset, limit
        )

    async def subscribe(self, user_id: UserId) -> None:
        self._stream(user_id).subscribers += 1

    async def unsubscribe(self, user_id: UserId) -> None:
        stream = self._streams.get(user_id)
        if stream is not None and stream.subscribers > 0:
            stream.subscribers -= 1
            if stream.subscribers == 0:
                self._evict_streams()

    def stats(self) -> dict[str, int]:
        return held_stats(self._streams.values()) | {
            "evicted_streams": self.evicted_streams,
            "evicted_events": self.evicted_events,
        }
