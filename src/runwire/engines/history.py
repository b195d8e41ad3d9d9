"""One user's retained events: the bounded history window every node-local engine keeps.

Shared by the memory engine and the SQLite engine (which keeps the same window in
memory in front of its file), so the bounds and the resume answers are one
implementation: count, bytes and age bounds, and ``read`` returning either the
exact events after an offset or the reason it cannot (:class:`ResumeFailure`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from runwire.engines.base import ResumeFailure, ResumeFailureReason, StoredEvent, StreamPosition
from runwire.ids import Epoch

if TYPE_CHECKING:
    from runwire.engines.memory import HistoryBounds

__all__ = ["HeldStream", "Window", "held_stats"]


class HeldStream(Protocol):
    """A node-local engine's stream: its window and how many sockets follow it."""

    window: Window
    subscribers: int


def held_stats(streams: Iterable[HeldStream]) -> dict[str, int]:
    """What the node-local engines report of their streams (``Engine.stats``)."""
    counts = {"streams": 0, "events": 0, "bytes": 0, "subscriptions": 0}
    for stream in streams:
        counts["streams"] += 1
        counts["events"] += len(stream.window.events)
        counts["bytes"] += stream.window.size
        counts["subscriptions"] += stream.subscribers
    return counts


class Window:
    """Retained events of one stream, oldest first, with the time each was stored
    (parallel deques: no tuple per event)."""

    __slots__ = ("events", "size", "times")

    def __init__(self) -> None:
        self.events: deque[StoredEvent] = deque()
        self.times: deque[float] = deque()
        self.size = 0
        """Encoded bytes held."""

    def add(self, stored: StoredEvent, now: float) -> None:
        """Keep ``stored`` (the stream's next offset), stored at ``now``."""
        self.events.append(stored)
        self.times.append(now)
        self.size += len(stored.frame)

    def over(self, bounds: HistoryBounds, now: float) -> bool:
        """Whether a bound is passed (then :meth:`trim`)."""
        return bool(self.events) and (
            len(self.events) > bounds.max_events
            or self.size > bounds.max_bytes
            or now - self.times[0] > bounds.ttl_s
        )

    def trim(self, bounds: HistoryBounds, now: float) -> tuple[int, int]:
        """Drop the oldest events while a bound is passed; returns how many were
        dropped and the offset of the last one dropped (0 when none)."""
        dropped = last = 0
        events, times = self.events, self.times
        while self.over(bounds, now):
            oldest = events.popleft()
            times.popleft()
            self.size -= len(oldest.frame)
            dropped += 1
            last = oldest.offset
        return dropped, last

    def read(
        self, position: StreamPosition, epoch: Epoch, offset: int, limit: int
    ) -> list[StoredEvent] | ResumeFailure:
        """Up to ``limit`` retained events after ``offset`` of ``epoch``, in order, for a
        stream at ``position``; or why that cannot be answered exactly."""
        if epoch != position.epoch:
            return ResumeFailure(ResumeFailureReason.EPOCH_CHANGED, position)
        if offset > position.offset or offset < 0:
            return ResumeFailure(ResumeFailureReason.INVALID_OFFSET, position)
        events = self.events
        first = events[0].offset if events else position.offset + 1
        if offset + 1 < first:
            return ResumeFailure(ResumeFailureReason.OUT_OF_WINDOW, position)
        start = offset + 1 - first
        return [events[i] for i in range(start, min(len(events), start + limit))]
