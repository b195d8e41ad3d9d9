"""The engine port: each user's ordered, bounded, resumable stream of events.

An engine gives every event of a user its ``offset`` (1, 2, 3...) atomically with
appending it to that user's history, and hands it to the nodes subscribed to that
user. Contract (``tests/engines/test_contract.py`` runs it against every engine):

* **Order.** For one user, offsets are assigned without gap or duplicate, and the
  deliver callback sees them in increasing order.
* **History.** ``read_after`` returns the retained events after an offset, in order;
  retention is bounded by count, bytes and age. When it can no longer answer
  exactly, it says why (:class:`ResumeFailure`) instead of returning a partial list.
* **Epoch.** ``(epoch, offset)`` names one event. The epoch changes only when the
  user's history is lost; offsets restart from 1 in a new epoch.
* **Subscription.** Only users this node subscribed to are delivered here.
* **Runs.** ``(run_id, seq)`` names one event, and a run publishes its events in
  ``seq`` order. An engine whose publish can fail after storing (Redis) stores a
  repeated ``(run_id, seq)`` at most once, so publishing may be retried.
* **Pipelining** (``capabilities.pipelined``). :meth:`PipelinedEngine.submit` queues
  a publish at once and stores queued publishes in the order they were submitted;
  when one fails, every publish queued behind it fails too. So a publisher may keep
  several unconfirmed and, on a failure, submit them again in order
  (:class:`runwire.publisher.OrderedPublisher`): nothing is ever stored after an
  event that was not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import msgspec

from runwire.events import Event
from runwire.ids import Epoch, UserId

__all__ = [
    "DeliverCallback",
    "Engine",
    "EngineCapabilities",
    "EngineListener",
    "ImmediateEngine",
    "PipelinedEngine",
    "ResumeFailure",
    "ResumeFailureReason",
    "StoredEvent",
    "StreamPosition",
]


class StoredEvent(msgspec.Struct, frozen=True, gc=False):
    """An event at its place in a user's stream, with its encoded envelope.

    Not tracked by the garbage collector (it holds only strings, bytes and an
    ``Event``): histories hold many of them.
    """

    user_id: UserId
    epoch: Epoch
    offset: int
    frame: bytes
    event: Event
    duplicate: bool = False
    """The publish was not stored: the user's stream holds this event already (a
    retried publish, deduplicated by ``(run_id, seq)``), or its run has ended. Then
    ``offset`` and ``frame`` are of the run's last stored event. Only engines that
    deduplicate (Redis) answer so."""


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """The latest offset of a user's stream in ``epoch`` (0 when it is empty)."""

    epoch: Epoch
    offset: int


class ResumeFailureReason(StrEnum):
    """Why history cannot replay exactly what was asked."""

    EPOCH_CHANGED = "epoch_changed"
    """The stream was lost and started again; the client must rebuild from snapshots."""
    OUT_OF_WINDOW = "out_of_window"
    """Events after the offset have already left the bounded history."""
    INVALID_OFFSET = "invalid_offset"
    """The offset is later than the latest event."""


@dataclass(frozen=True, slots=True)
class ResumeFailure:
    """A refusal to replay, with the stream's current position."""

    reason: ResumeFailureReason
    position: StreamPosition


DeliverCallback = Callable[[StoredEvent], None]
"""Called by the engine, on the event loop, for each event of a subscribed user."""


@dataclass(frozen=True, slots=True)
class EngineCapabilities:
    """What an engine is, declared by the engine (never guessed from its type or URL)."""

    shared: bool
    """Several processes share the streams: a node is delivered events of runs that
    other processes executed (and builds their snapshots from those deliveries)."""
    durable: bool
    """History survives a restart of this process."""
    immediate: bool
    """:meth:`ImmediateEngine.publish_nowait` exists: publishing stores and delivers
    synchronously, without a coroutine (the hot path uses it)."""
    pipelined: bool = False
    """:meth:`PipelinedEngine.submit` exists (see "Pipelining" in the module docstring)."""


class EngineListener(Protocol):
    """Everything an engine reports, to one object (the process's pipeline)."""

    def deliver(self, stored: StoredEvent) -> None:
        """An event of a subscribed user, in offset order per user."""

    def resync(self, user_id: UserId) -> None:
        """Live delivery may have missed events of ``user_id`` (a lost subscription):
        catch its connections up from history."""

    def engine_state_changed(self, available: bool) -> None:
        """The engine became available or unavailable."""


class Engine(Protocol):
    """Port to the per-user event streams.

    Adding an engine is one module implementing this port (and, for a shared store,
    a :class:`~runwire.backends.Backend` for its URL scheme); it must pass the engine
    contract suite ``tests/engines/test_contract.py``.
    """

    capabilities: EngineCapabilities
    available: bool
    """Whether the engine can publish and read right now (memory: always)."""

    async def start(self, listener: EngineListener) -> None:
        """Connect; from now on the engine reports to ``listener``: events of
        subscribed users, resync requests, availability changes."""

    async def close(self) -> None:
        """Release every resource; idempotent."""

    def mark_unavailable(self) -> None:
        """A command on the engine's store failed (possibly in another client of the same
        store, e.g. the run dispatcher). Unless the engine cannot be unavailable, it
        reports unavailable now (``engine_state_changed(False)``), checks itself,
        and reports available (``engine_state_changed(True)``) once the store answers
        again, followed by a
        resync of every subscribed user: whoever was told of the failure learns when
        to retry."""

    async def publish(self, user_id: UserId, event: Event) -> StoredEvent:
        """Assign the user's next offset, append to history and deliver to subscribers.

        Raises:
            EngineError: the engine could not confirm the event was stored (with Redis it
                may have been: publishing the same ``(run_id, seq)`` again is safe).
        """
        ...

    async def position(self, user_id: UserId) -> StreamPosition:
        """The user's current epoch and latest offset."""
        ...

    async def read_after(
        self, user_id: UserId, epoch: Epoch, offset: int, limit: int
    ) -> list[StoredEvent] | ResumeFailure:
        """Up to ``limit`` retained events after ``offset`` in ``epoch``, in order."""
        ...

    async def subscribe(self, user_id: UserId) -> None:
        """Deliver this user's events to this node (counted: one per call).

        When it returns, every event published later for the user is delivered here.

        Raises:
            EngineError: the subscription could not be made (the call counts for
                nothing; the caller does not unsubscribe).
        """

    async def unsubscribe(self, user_id: UserId) -> None:
        """Undo one :meth:`subscribe`; delivery stops after the last one."""

    def stats(self) -> dict[str, int]:
        """Sizes of the engine's structures (users, events, bytes) for metrics."""
        ...


class ImmediateEngine(Engine, Protocol):
    """An engine whose publish never waits (``capabilities.immediate``)."""

    def publish_nowait(self, user_id: UserId, event: Event) -> StoredEvent:
        """:meth:`Engine.publish` without a coroutine."""
        ...


class PipelinedEngine(Engine, Protocol):
    """An engine whose publishes can be queued without waiting (``capabilities.pipelined``)."""

    def submit(self, user_id: UserId, event: Event) -> asyncio.Future[StoredEvent]:
        """Queue ``event`` behind every publish submitted before it; the future gets
        what :meth:`Engine.publish` returns or raises. When a publish fails, every one
        queued behind it fails with the same error.

        Raises:
            EventRejected: not encodable or too big (at once; nothing was queued).
        """
        ...
