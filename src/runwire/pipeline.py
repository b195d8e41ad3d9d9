"""The one path of an event: publish, store, snapshot, deliver.

:class:`Pipeline` is shared by the gateway and the worker. Publishing goes through
the engine (which gives the event its offset and keeps it in history), then into
the process's run snapshots; delivery to sockets happens when the engine hands the
event back (at once for a node-local engine, through Redis for a shared one).

It is also the engine's listener: everything an engine reports (events of
subscribed users, "resync this user", availability) arrives at one object with
one interface (:class:`~runwire.engines.base.EngineListener`) and goes on to the
snapshots and to the :class:`DeliverySink` (the manager), never back into the
engine's caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, cast

from runwire.callbacks import NO_CONTEXT
from runwire.engines.base import Engine, ImmediateEngine, PipelinedEngine, StoredEvent
from runwire.events import AgentCompleted, AgentError, Event
from runwire.ids import UserId
from runwire.metrics import RUN_STATUS_LABELS, Metrics, label_of
from runwire.runs import RunStore

__all__ = ["PUBLISHES_PER_TURN", "DeliverySink", "Pipeline", "SnapshotWriter"]

PUBLISHES_PER_TURN = 64
"""On an engine that never waits (the memory engine), the most events published in
one turn of the event loop before a publish yields to the loop once.

A publish there stores and queues the event without suspending, so a producer that
publishes in a loop (a run catching up, a burst of tool output) would otherwise hold
the loop, and with it every socket's writes, the other runs and the clients' frames,
until it stops. With this bound the delivery flush runs at least every 64 publishes.
"""


class DeliverySink(Protocol):
    """Where stored events and engine notices go on a gateway (the manager)."""

    def deliver(self, stored: StoredEvent) -> object:
        """Queue ``stored`` on the connections of its user."""
        ...

    def resync(self, user_id: UserId) -> None:
        """Live delivery may have missed events of ``user_id``: catch it up."""

    def engine_state_changed(self, available: bool) -> None:
        """The engine became available or unavailable."""


class SnapshotWriter(Protocol):
    """A shared copy of the snapshots of runs this process executes (Redis)."""

    def executed(self, user_id: UserId, event: Event) -> None:
        """``event`` of a run executed here was published."""


class Pipeline:
    """publish -> store -> snapshot -> deliver, for one process.

    Args:
        engine: the user streams.
        store: this process's run snapshots.
        snapshots: the shared snapshot copy, when the engine is shared.
        sink: where deliveries go (``None`` in a worker, which holds no sockets).
        metrics: counters to keep (``None`` in a worker).
    """

    def __init__(
        self,
        engine: Engine,
        store: RunStore,
        *,
        snapshots: SnapshotWriter | None = None,
        sink: DeliverySink | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self._snapshots = snapshots
        self._sink = sink
        self._metrics = metrics
        self._immediate = engine.capabilities.immediate
        self.pipelined = engine.capabilities.pipelined
        """:meth:`submit` may be used (the engine is pipelined)."""
        # A shared engine delivers runs executed elsewhere: their snapshots are
        # built from those deliveries. A local engine delivers only what this
        # process published, which publish() already observed.
        self._observe_deliveries = engine.capabilities.shared
        self._on_submitted_done = self._submitted_done
        """One bound method for every submitted future (not a new one per event)."""
        self._turn_publishes = 0
        """Immediate publishes in the current turn of the loop (see PUBLISHES_PER_TURN)."""
        self._on_turn_end = self._turn_ended
        self._turn_loop: asyncio.AbstractEventLoop | None = None
        """The loop the current turn's count belongs to (its reset is scheduled there)."""

    async def start(self) -> None:
        """Connect the engine, with this pipeline as its listener."""
        await self.engine.start(self)

    async def publish(self, user_id: UserId, event: Event) -> StoredEvent:
        """Store ``event`` in the user's stream, snapshot it, and have it delivered.

        On an engine that never waits, a publish past :data:`PUBLISHES_PER_TURN` in
        one turn of the loop (over all producers) first yields until a turn has room;
        a cancellation there raises before anything is stored.

        Raises:
            EventRejected: the event cannot be encoded or is too big (no offset taken).
            EngineError: the engine is unavailable.
        """
        engine = self.engine
        if self._immediate:
            while self._turn_publishes >= PUBLISHES_PER_TURN:
                # The flush and every other callback run first. Producers that yielded
                # together share the next turn's budget: some of them yield again.
                await asyncio.sleep(0)
                if self._turn_loop is not asyncio.get_running_loop():
                    self._turn_publishes = 0  # counted on a loop that is gone
            if not self._turn_publishes:
                loop = self._turn_loop = asyncio.get_running_loop()
                loop.call_soon(self._on_turn_end, context=NO_CONTEXT)
            self._turn_publishes += 1
            stored = cast(ImmediateEngine, engine).publish_nowait(user_id, event)  # hot path
        else:
            stored = await engine.publish(user_id, event)
            if stored.duplicate:
                return stored  # stored before (a retry), or its run has ended
        self._published(user_id, stored.event, stored.offset)
        return stored

    @property
    def submitter(self) -> Callable[[UserId, Event], asyncio.Future[StoredEvent]] | None:
        """:meth:`submit` when the engine is pipelined, else ``None``."""
        return self.submit if self.pipelined else None

    def submit(self, user_id: UserId, event: Event) -> asyncio.Future[StoredEvent]:
        """:meth:`publish`, queued at once, on a pipelined engine (:attr:`pipelined`):
        publishes are stored in the order they were submitted, and when one fails every
        one queued behind it fails too (see :class:`~runwire.engines.base.PipelinedEngine`).
        Once stored, the event is snapshotted as :meth:`publish` does.

        Raises:
            EventRejected: the event cannot be encoded or is too big (nothing queued).
        """
        future = cast(PipelinedEngine, self.engine).submit(user_id, event)
        future.add_done_callback(self._on_submitted_done, context=NO_CONTEXT)
        return future

    def _turn_ended(self) -> None:
        self._turn_publishes = 0

    def _submitted_done(self, future: asyncio.Future[StoredEvent]) -> None:
        if not future.cancelled() and future.exception() is None:
            stored = future.result()
            if not stored.duplicate:  # a duplicate was snapshotted when it was stored
                self._published(stored.user_id, stored.event, stored.offset)

    def _published(self, user_id: UserId, event: Event, offset: int) -> None:
        self.store.observe(user_id, offset, event)
        if self._snapshots is not None:
            self._snapshots.executed(user_id, event)
        metrics = self._metrics
        if metrics is not None:
            metrics.published.pending += 1
            data = event.data
            if isinstance(data, AgentCompleted):
                metrics.runs_finished.labels(data.status).inc()
            elif isinstance(data, AgentError):
                metrics.runs_finished.labels(label_of(data.code, RUN_STATUS_LABELS)).inc()

    # -- the engine's listener ------------------------------------------------------

    def deliver(self, stored: StoredEvent) -> None:
        if self._observe_deliveries:
            self.store.observe(stored.user_id, stored.offset, stored.event)
        if self._sink is not None:
            self._sink.deliver(stored)

    def resync(self, user_id: UserId) -> None:
        if self._sink is not None:
            self._sink.resync(user_id)

    def engine_state_changed(self, available: bool) -> None:
        if self._sink is not None:
            self._sink.engine_state_changed(available)
