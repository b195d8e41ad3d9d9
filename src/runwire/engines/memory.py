"""The in-memory engine: one process, bounded history, the embedded default.

Use it for a single gateway process. Offsets are assigned and delivered
synchronously inside :meth:`MemoryEngine.publish`, so per-user order is the order
of calls. History is lost on restart; each stream's epoch is random, so clients
resuming against a restarted process get ``epoch_changed``. For several processes
use the Redis engine.

Bounds: per user ``history_max_events``, ``history_max_bytes`` and
``history_ttl_s``; at most ``history_max_users`` streams, the least recently used
unsubscribed stream evicted first (a subscribed stream is never evicted, so the
streams beyond the bound are at most the number of connected users). Creating a
stream at the bound costs O(1) amortised however many streams are subscribed: the
eviction parks each subscribed stream it passes, once, out of the order it walks
(:class:`~runwire.engines.history.HeldStreams`, shared with the SQLite engine).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runwire.engines.base import (
    EngineCapabilities,
    EngineListener,
    ResumeFailure,
    StoredEvent,
    StreamPosition,
)
from runwire.engines.history import HeldStreams, Window, held_stats
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
    parked: int = 0
    """0 while in the engine's LRU order; else when the eviction parked it (its count)."""


class MemoryEngine:
    """Per-user streams in this process's memory."""

    def __init__(self, bounds: HistoryBounds, clock: Callable[[], float] = time.monotonic) -> None:
        self.bounds = bounds
        self._clock = clock
        self._held: HeldStreams[_Stream] = HeldStreams(bounds.max_users)
        self._streams = self._held.streams
        """Every stream (the held ones' own dict, read on the hot path)."""
        self._lru = self._held.lru
        """The streams not parked, least recently used first (likewise)."""
        self._reports: EngineListener | None = None
        self.evicted_events = 0

    available = True
    capabilities = EngineCapabilities(shared=False, durable=False, immediate=True)

    @property
    def evicted_streams(self) -> int:
        return self._held.evicted

    async def start(self, listener: EngineListener) -> None:
        self._reports = listener

    async def close(self) -> None:
        self._reports = None
        self._held.clear()

    def mark_unavailable(self) -> None:
        """Nothing to do: memory is always available (and nothing else shares it)."""

    def _stream(self, user_id: UserId) -> _Stream:
        stream = self._streams.get(user_id)
        now = self._clock()
        if stream is None:
            stream = _Stream(epoch=new_epoch(), touched=now)
            self._held.add(user_id, stream)
        else:
            self._held.touch(user_id, stream)
            stream.touched = now
        return stream

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
            if stream.parked:
                self._held.touch(user_id, stream)
            else:
                self._lru.move_to_end(user_id)
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
                self._held.release(user_id, stream)
                self._held.evict()

    def stats(self) -> dict[str, int]:
        return held_stats(self._streams.values()) | {
            "evicted_streams": self.evicted_streams,
            "evicted_events": self.evicted_events,
        }
