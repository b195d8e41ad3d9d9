"""One user's retained events: the bounded history window every node-local engine keeps,
and the bounded set of streams they hold.

Shared by the memory engine and the SQLite engine (which keeps the same window in
memory in front of its file), so the bounds and the resume answers are one
implementation: count, bytes and age bounds, and ``read`` returning either the
exact events after an offset or the reason it cannot (:class:`ResumeFailure`); and
:class:`HeldStreams`, at most ``max_users`` streams, the least recently used
unsubscribed one evicted first, a subscribed one never.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from runwire.engines.base import ResumeFailure, ResumeFailureReason, StoredEvent, StreamPosition
from runwire.ids import Epoch, UserId

if TYPE_CHECKING:
    from runwire.engines.memory import HistoryBounds

__all__ = ["HeldStream", "HeldStreams", "Window", "held_stats"]


class HeldStream(Protocol):
    """A node-local engine's stream: its window and how many sockets follow it."""

    window: Window
    subscribers: int


class _Parkable(HeldStream, Protocol):
    parked: int
    """0 while in :attr:`HeldStreams.lru`; else when an eviction parked it (its count)."""


S = TypeVar("S", bound=_Parkable)


class HeldStreams(Generic[S]):
    """The streams an engine holds: at most ``max_users``, the least recently used
    unsubscribed one evicted first; a subscribed one (or one ``pinned`` says the
    engine cannot drop yet) is never evicted, so the streams beyond the bound are at
    most those.

    Creating a stream at the bound costs O(1) amortised however many streams are
    subscribed: an eviction *parks* each stream it cannot drop that it meets at the
    least recently used end, taking it out of :attr:`lru` until it is next touched,
    so no later eviction walks past it again. Every parked stream is older than every
    stream in :attr:`lru` (it was the oldest when parked, and streams enter at the
    newest end), so the parked ones that became droppable (:meth:`release`, oldest
    parked first) go first.

    The engines read :attr:`streams` and, on their hot path, move a stream that is not
    parked to the end of :attr:`lru` themselves (what :meth:`touch` does), sparing a
    call per publish.
    """

    __slots__ = ("_freed", "_parks", "evicted", "lru", "max_users", "on_evict", "pinned", "streams")

    def __init__(
        self,
        max_users: int,
        *,
        pinned: Callable[[S], bool] | None = None,
        on_evict: Callable[[UserId, S], None] | None = None,
    ) -> None:
        self.max_users = max_users
        self.pinned = pinned
        """Whether an unsubscribed stream cannot be dropped yet (then call
        :meth:`release` when it can)."""
        self.on_evict = on_evict
        """Called with each stream dropped, after it left :attr:`streams`."""
        self.streams: dict[UserId, S] = {}
        """Every stream held."""
        self.lru: OrderedDict[UserId, S] = OrderedDict()
        """The streams not parked, least recently used first."""
        self._freed: list[tuple[int, UserId]] = []
        """Heap of parked streams released, by when they were parked (entries of
        streams since touched, re-parked or evicted are skipped)."""
        self._parks = 0
        self.evicted = 0
        """Streams dropped."""

    def add(self, user_id: UserId, stream: S, *, evict: bool = True) -> None:
        """Hold a new ``stream`` as the most recently used; then, with ``evict``,
        drop streams beyond the bound (never this one)."""
        self.streams[user_id] = self.lru[user_id] = stream
        if evict:
            self.evict(keep=user_id)

    def touch(self, user_id: UserId, stream: S) -> None:
        """Make ``stream`` the most recently used (unparking it)."""
        if stream.parked:
            stream.parked = 0
            self.lru[user_id] = stream
        else:
            self.lru.move_to_end(user_id)

    def release(self, user_id: UserId, stream: S) -> None:
        """``stream`` may have become droppable (its last subscriber left, or what
        pinned it is done): a parked one is queued for the next eviction."""
        if stream.parked and not self._held_back(stream):
            heapq.heappush(self._freed, (stream.parked, user_id))

    def _held_back(self, stream: S) -> bool:
        return bool(stream.subscribers) or (self.pinned is not None and self.pinned(stream))

    def evict(self, keep: UserId | None = None) -> None:
        """Drop least recently used droppable streams beyond ``max_users``; ``keep``
        (the stream being created) is never the one dropped."""
        streams = self.streams
        excess = len(streams) - self.max_users
        freed = self._freed
        while excess > 0 and freed:
            parked, user_id = heapq.heappop(freed)
            stream = streams.get(user_id)
            if stream is not None and stream.parked == parked and not self._held_back(stream):
                self._drop(user_id)
                excess -= 1
        lru = self.lru
        while excess > 0 and lru:
            user_id, stream = lru.popitem(last=False)
            if user_id == keep:  # the newest: every other stream is parked
                lru[user_id] = stream
                break
            if self._held_back(stream):
                self._parks += 1
                stream.parked = self._parks
            else:
                self._drop(user_id)
                excess -= 1

    def _drop(self, user_id: UserId) -> None:
        stream = self.streams.pop(user_id)
        self.evicted += 1
        if self.on_evict is not None:
            self.on_evict(user_id, stream)

    def clear(self) -> None:
        """Hold nothing (the eviction count stays)."""
        self.streams.clear()
        self.lru.clear()
        self._freed.clear()


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
