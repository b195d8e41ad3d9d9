"""Requests made in one loop iteration, sent together: one round trip per batch.

:class:`Batcher` is the one place where runwire turns many awaited calls into one
call of a batch coroutine. It knows nothing of Redis: the engine gives it ``send``
(store a list of publishes with one script call) and awaits the futures it returns.

Contract:

* **Order.** Items are sent in the order they were submitted; at most one batch is
  in flight, so a later batch is sent only after the earlier one finished. Results
  come back to each submitter in that order too.
* **Batching.** Everything submitted while the loop runs the current iteration, or
  while a batch is in flight, goes into the next batch (up to ``max_items``).
* **Failure.** When ``send`` raises, every item of that batch *and every item queued
  behind it* gets the error (each caller may retry); what is submitted afterwards is
  sent as usual. So no item is ever stored after an earlier one that failed: a
  publisher that keeps several items unconfirmed (:mod:`runwire.publisher`) finds
  all of them failed together, and submits them again in their order.
* **Cancellation.** An item whose caller gave up before its batch was sent is not
  sent; one already sent may have been applied.
* **Close.** :meth:`close` fails everything not yet answered with ``closed()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Queue items; send them in batches through ``send``, one batch at a time.

    Args:
        send: stores one batch; returns one result per item, in order.
        max_items: the largest batch.
        closed: the error pending items get when the batcher is closed.
    """

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_items: int,
        closed: Callable[[], Exception],
    ) -> None:
        self._send = send
        self.max_items = max_items
        self._closed = closed
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        self._task: asyncio.Task[None] | None = None
        self._sent: list[asyncio.Future[R]] = []
        self.batches = 0
        """Batches sent (for tests and stats)."""

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` for the next batch; the future gets its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return future

    @property
    def pending(self) -> int:
        """Items queued and not yet sent."""
        return len(self._items)

    @property
    def in_flight(self) -> int:
        """Items sent and not answered yet."""
        return len(self._sent)

    def _take(self) -> tuple[list[T], list[asyncio.Future[R]]]:
        limit = self.max_items
        items, futures = self._items[:limit], self._futures[:limit]
        del self._items[:limit], self._futures[:limit]
        if any(future.done() for future in futures):  # given up before being sent
            kept = [(i, f) for i, f in zip(items, futures, strict=True) if not f.done()]
            items, futures = [i for i, _ in kept], [f for _, f in kept]
        return items, futures

    async def _drain(self) -> None:
        try:
            while self._items:
                items, futures = self._take()
                if not items:
                    continue
                self._sent = futures
                self.batches += 1
                try:
                    results = await self._send(items)
                except Exception as exc:
                    futures += self._futures
                    self._items.clear()
                    self._futures.clear()
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                finally:
                    self._sent = []
                for future, result in zip(futures, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._task = None

    async def close(self) -> None:
        """Stop sending; everything not answered yet fails with ``closed()``."""
        task, self._task = self._task, None
        waiting = [*self._sent, *self._futures]
        self._items.clear()
        self._futures.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for future in waiting:
            if not future.done():
                future.set_exception(self._closed())
