"""Requests made in one loop iteration, sent together: one round trip per batch.

:class:`Batcher` is the one place where runwire turns many awaited calls into calls
of a batch coroutine. It knows nothing of Redis: the engine gives it ``send`` (store
a list of publishes with one script call) and ``key`` (the user a publish is for),
and awaits the futures it returns.

Contract:

* **Order per key.** Items of one key are sent in the order they were submitted, and
  a key is in at most one batch in flight: a key's later items wait until its batch
  is answered. Results come back to each submitter in that order too. Items of
  different keys are not ordered with each other.
* **Batches in flight.** Up to ``max_in_flight`` batches are in flight at once (each
  holding keys no other holds), so the caller's work on one answer overlaps the
  server's work on the next batch. A batch takes whole keys, in the order they
  became ready, up to ``max_items`` items; when many items are ready and slots are
  free, they are spread over the free slots, never in batches under ``min_items``.
* **Batching.** Everything submitted while the loop runs the current iteration, or
  while a key's batch is in flight, goes into a later batch.
* **Failure.** When ``send`` raises, every item of that batch *and every item of its
  keys queued behind it* gets the error (each caller may retry); what is submitted
  afterwards is sent as usual. So no item is ever stored after an earlier one of
  its key that failed: a publisher that keeps several items unconfirmed
  (:mod:`runwire.publisher`) finds all of them failed together, and submits them
  again in their order.
* **Cancellation.** An item whose caller gave up before its batch was sent is not
  sent; one already sent may have been applied.
* **Close.** :meth:`close` fails everything not yet answered with ``closed()``.

Bound: the queue holds what callers submitted and did not give up; callers bound it
(the publish window, the runs' limits).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")


class _Queue(Generic[T, R]):
    """One key's queued items and their futures, as two lists (no tuple per item:
    under load tens of thousands wait here, and each tracked object of theirs brings
    the garbage collector's next full collection closer)."""

    __slots__ = ("futures", "items")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.futures: list[asyncio.Future[R]] = []

    def take(self, room: int) -> tuple[list[T], list[asyncio.Future[R]]]:
        """Remove and return the first ``room`` items and futures."""
        items, futures = self.items, self.futures
        if len(futures) <= room:
            self.items, self.futures = [], []
            return items, futures
        self.items, self.futures = items[room:], futures[room:]
        return items[:room], futures[:room]


class Batcher(Generic[T, R]):
    """Queue items; send them in batches through ``send``, per key one batch at a time.

    Args:
        send: stores one batch; returns one result per item, in order.
        key: the key of an item (the Redis engine: its user).
        max_items: the largest batch.
        closed: the error pending items get when the batcher is closed.
        max_in_flight: the most batches in flight at once.
        min_items: ready items are spread over free slots only in batches this big.
    """

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[list[R]]],
        *,
        key: Callable[[T], Hashable],
        max_items: int,
        closed: Callable[[], Exception],
        max_in_flight: int = 1,
        min_items: int = 1,
    ) -> None:
        self._send = send
        self._key = key
        self.max_items = max_items
        self.max_in_flight = max_in_flight
        self.min_items = min_items
        self._closed = closed
        self._queues: dict[Hashable, _Queue[T, R]] = {}
        """Per key, its queued items, in submission order."""
        self._ready: dict[Hashable, None] = {}
        """Keys with queued items and no batch in flight, in the order they got ready."""
        self._busy: set[Hashable] = set()
        """Keys in a batch in flight."""
        self._queued = 0
        self._tasks: dict[asyncio.Task[None], list[asyncio.Future[R]]] = {}
        """The batches in flight and their items' futures."""
        self._pumping = False
        self._is_closed = False
        self.batches = 0
        """Batches sent (for tests and stats)."""

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` behind its key's earlier items; the future gets its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if self._is_closed:
            future.set_exception(self._closed())
            return future
        key = self._key(item)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
            if key not in self._busy:
                self._ready[key] = None
        queue.items.append(item)
        queue.futures.append(future)
        self._queued += 1
        if not self._pumping:
            self._pumping = True
            loop.call_soon(self._pump)
        return future

    @property
    def pending(self) -> int:
        """Items queued and not yet sent."""
        return self._queued

    @property
    def in_flight(self) -> int:
        """Items sent and not answered yet."""
        return sum(len(futures) for futures in self._tasks.values())

    def _pump(self) -> None:
        """Send batches while slots are free and keys are ready."""
        self._pumping = False
        loop = asyncio.get_running_loop()
        while not self._is_closed and self._ready and len(self._tasks) < self.max_in_flight:
            keys, items, futures = self._take()
            if not items:
                self._release(keys)
                continue
            self.batches += 1
            task = loop.create_task(self._run(keys, items, futures))
            self._tasks[task] = futures

    def _take(self) -> tuple[list[Hashable], list[T], list[asyncio.Future[R]]]:
        """The next batch: whole ready keys in order, up to its share of the items."""
        free = self.max_in_flight - len(self._tasks)
        parts = max(1, min(free, self._queued // max(1, self.min_items)))
        limit = min(self.max_items, -(-self._queued // parts))
        keys: list[Hashable] = []
        items: list[T] = []
        futures: list[asyncio.Future[R]] = []
        ready, queues = self._ready, self._queues
        while ready and len(items) < limit:
            key = next(iter(ready))
            del ready[key]
            queue = queues[key]
            room = limit - len(items)
            taken_items, taken_futures = queue.take(room)
            if not queue.futures:
                del queues[key]
            self._queued -= len(taken_futures)
            self._busy.add(key)
            keys.append(key)
            for item, future in zip(taken_items, taken_futures, strict=True):
                if not future.done():  # not given up before being sent
                    items.append(item)
                    futures.append(future)
        return keys, items, futures

    def _release(self, keys: list[Hashable]) -> None:
        """``keys`` are no longer in flight: those with queued items are ready again."""
        for key in keys:
            self._busy.discard(key)
            if key in self._queues:
                self._ready[key] = None

    async def _run(
        self, keys: list[Hashable], items: list[T], futures: list[asyncio.Future[R]]
    ) -> None:
        try:
            results = await self._send(items)
        except Exception as exc:
            for key in keys:  # what waits behind the failed items fails with them
                behind = self._queues.pop(key, None)
                if behind is not None:
                    futures += behind.futures
                    self._queued -= len(behind.futures)
            self._finish(keys)
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            self._finish(keys)
            raise
        self._finish(keys)
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _finish(self, keys: list[Hashable]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.pop(task, None)
        self._release(keys)
        if self._ready and not self._pumping:
            self._pumping = True
            asyncio.get_running_loop().call_soon(self._pump)

    async def close(self) -> None:
        """Stop sending; everything not answered yet, and anything submitted later,
        fails with ``closed()``."""
        self._is_closed = True
        tasks, self._tasks = self._tasks, {}
        waiting = [future for futures in tasks.values() for future in futures]
        for queue in self._queues.values():
            waiting += queue.futures
        self._queues.clear()
        self._ready.clear()
        self._queued = 0
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for future in waiting:
            if not future.done():
                future.set_exception(self._closed())
