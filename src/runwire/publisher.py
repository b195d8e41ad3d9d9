"""One publisher's events, in order, without a round trip per event.

An agent run publishes its events one after another. With a shared engine each
publish is a round trip to Redis; waiting for every one caps a run at one event per
round trip and leaves the engine's batches small. :class:`OrderedPublisher` submits
an event and goes on, keeping up to ``window`` events *unconfirmed* (queued or in
flight); it waits only when the window is full, and :meth:`OrderedPublisher.flush`
waits until every event is stored (a run flushes before its terminal event counts
as published).

Contract:

* **Order.** Events are stored in the order :meth:`OrderedPublisher.publish` was
  called. The engine stores submitted publishes in submission order, and when one
  fails it fails every one queued behind it
  (:class:`~runwire.engines.base.PipelinedEngine`), so a failure always leaves a
  suffix of the window unstored: nothing is stored after an event that was not.
* **Failure.** When the engine fails the window, the publisher submits the
  unconfirmed events again, in order, backing off from 50 ms to 1 s, for at most
  ``retry_s`` from the first failure; then :meth:`OrderedPublisher.publish` (or
  ``flush``) raises :class:`~runwire.exceptions.EngineError`. An attempt that did
  reach the store is not stored twice: the engine stores a ``(run_id, seq)`` once.
* **Given up.** Once it has raised so, the publisher is spent: every later
  ``publish`` or ``flush`` raises the same error at once and stores nothing, so no
  event (a terminal one included) is ever stored after one that was lost.
* **Refusal.** An event the engine cannot encode raises
  :class:`~runwire.exceptions.EventRejected` from ``publish`` at once (nothing queued).
* **Cancellation.** Cancelling the caller while it waits never withdraws a submitted
  event: it stays in order, and the next ``flush`` confirms it.
* **Engines that are not pipelined** (memory, SQLite): ``publish`` awaits each event
  (memory stores at once; SQLite commits in groups per loop iteration anyway).

Bound: at most ``window`` events held per publisher; one publisher per active run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from runwire.engines.base import StoredEvent
from runwire.events import Event
from runwire.exceptions import EngineError
from runwire.ids import UserId

__all__ = ["OrderedPublisher", "Publish", "Submit"]

Publish = Callable[[UserId, Event], Awaitable[object]]
"""Store one event and wait for it (``Pipeline.publish``)."""
Submit = Callable[[UserId, Event], "asyncio.Future[StoredEvent]"]
"""Queue one event at once (``Pipeline.submit``, on a pipelined engine)."""

RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0
_NONE: deque[_Pending] = deque(maxlen=0)
"""The window of a publisher that waits for each event: always empty, shared."""


class _Pending:
    """One unconfirmed event. Tracked by the garbage collector on purpose, unlike
    ``PublishRequest``: it holds a future, whose exception's traceback can hold a frame
    that holds this object, and a cycle through an untracked object is never
    collected (it would keep the failed run's frames alive)."""

    __slots__ = ("event", "future", "user_id")

    def __init__(self, user_id: UserId, event: Event, future: asyncio.Future[StoredEvent]):
        self.user_id = user_id
        self.event = event
        self.future = future


class OrderedPublisher:
    """Publishes events in order with up to ``window`` of them unconfirmed.

    Args:
        publish: stores one event and waits (used when ``submit`` is ``None`` or
            ``window`` is 1).
        submit: queues one event at once on a pipelined engine, or ``None``.
        window: the most events unconfirmed at once (at least 1).
        retry_s: how long to keep submitting again after the engine failed.
    """

    __slots__ = ("_given_up", "_publish", "_submit", "_unconfirmed", "retry_s", "window")

    def __init__(
        self, publish: Publish, submit: Submit | None, *, window: int, retry_s: float
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._publish = publish
        self._submit = submit if window > 1 else None
        self.window = window
        self.retry_s = retry_s
        # Only a pipelined publisher holds events (one object less per run elsewhere:
        # the runtime makes one publisher per run).
        self._unconfirmed: deque[_Pending] = deque() if self._submit is not None else _NONE
        self._given_up: EngineError | None = None
        """The error the publisher gave up with; it stores nothing after it."""

    @property
    def unconfirmed(self) -> int:
        """Events submitted and not yet confirmed stored."""
        return len(self._unconfirmed)

    async def publish(self, user_id: UserId, event: Event) -> None:
        """Publish ``event`` after everything published before; wait only while the
        window is full (or, without pipelining, until it is stored).

        Raises:
            EventRejected: the engine cannot encode it (nothing queued).
            EngineError: an earlier or this event could not be stored within
                ``retry_s`` of the engine failing (now or before: the publisher
                has given up).
        """
        if self._given_up is not None:
            raise self._given_up
        submit = self._submit
        if submit is None:
            try:
                await self._publish(user_id, event)
            except EngineError:
                await self._publish_retrying(user_id, event)
            return
        unconfirmed = self._unconfirmed
        self._settle()
        if unconfirmed and unconfirmed[0].future.done():  # failed: resubmit first
            await self.flush()
        unconfirmed.append(_Pending(user_id, event, submit(user_id, event)))
        if len(unconfirmed) >= self.window:
            await self._confirm_oldest()

    async def flush(self) -> None:
        """Wait until every event published so far is stored.

        Raises:
            EngineError: they could not be stored within ``retry_s`` (now or
                before: the publisher has given up).
        """
        if self._given_up is not None:
            raise self._given_up
        while self._unconfirmed:
            await self._confirm_oldest()

    def _settle(self) -> None:
        """Drop the confirmed events at the head of the window."""
        unconfirmed = self._unconfirmed
        while unconfirmed:
            future = unconfirmed[0].future
            if not future.done() or future.cancelled() or future.exception() is not None:
                return
            unconfirmed.popleft()

    async def _confirm_oldest(self) -> None:
        """Wait for the oldest unconfirmed event; on an engine error, submit the whole
        window again (every event of it failed with it) until ``retry_s`` is spent."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        delay = RETRY_FIRST_S
        unconfirmed = self._unconfirmed
        while unconfirmed:
            head = unconfirmed[0]
            try:
                # shield: a cancelled caller must not withdraw a submitted event.
                await asyncio.shield(head.future)
            except EngineError as exc:
                if deadline is None:
                    deadline = loop.time() + self.retry_s
                if loop.time() + delay > deadline:
                    self._give_up(exc)
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                self._resubmit()
                continue
            unconfirmed.popleft()
            self._settle()
            return

    def _give_up(self, error: EngineError) -> None:
        """Stop for good: drop the window (its failures read, so none is reported as
        never retrieved) and refuse everything from now on."""
        self._given_up = error
        for pending in self._unconfirmed:
            pending.future.add_done_callback(_retrieve)
        self._unconfirmed.clear()

    def _resubmit(self) -> None:
        """Submit every failed event of the window again, in order."""
        submit = self._submit
        assert submit is not None
        for pending in self._unconfirmed:
            future = pending.future
            if future.done() and (future.cancelled() or future.exception() is not None):
                pending.future = submit(pending.user_id, pending.event)

    async def _publish_retrying(self, user_id: UserId, event: Event) -> None:
        """Publish again after a failure, until ``retry_s`` from now."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_s
        delay = RETRY_FIRST_S
        while True:
            if loop.time() + delay > deadline:
                self._given_up = EngineError(
                    f"not stored within {self.retry_s:g} s of the engine failing"
                )
                raise self._given_up
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            try:
                await self._publish(user_id, event)
                return
            except EngineError:
                continue


def _retrieve(future: asyncio.Future[StoredEvent]) -> None:
    """Read a dropped event's outcome (asyncio reports an exception never read)."""
    if not future.cancelled():
        future.exception()
