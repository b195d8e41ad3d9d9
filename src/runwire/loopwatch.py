"""Watching the event loop: how late it runs, and which run held it.

One gateway serves every user from one event loop, so code that computes for a
long time between two ``await``\\ s delays everyone. Two instruments, both cheap:

* :class:`LoopLagMonitor` wakes up every ``interval_s`` and records how late it
  woke (the loop was busy with something else meanwhile) in a histogram.
* :func:`timed_steps` drives a coroutine (an agent run) step by step and reports
  every step (the code between two suspensions) that held the loop longer than a
  threshold, so the warning can name the run responsible.

Neither stops a blocking step: that is impossible from inside the loop. The rule
for agent authors is in docs/agents.md: blocking work goes in a worker thread
(``@tool`` on a plain function does that).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["LoopLagMonitor", "timed_steps"]

T = TypeVar("T")


class LoopLagMonitor:
    """Samples the loop's lateness into ``observe`` (seconds) until stopped.

    Args:
        observe: called with each sample (for example a histogram's ``observe``).
        interval_s: time between samples; the lag is what a sleep overshoots it by.
    """

    def __init__(self, observe: Callable[[float], None], interval_s: float = 0.25) -> None:
        self._observe = observe
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        """Stop sampling (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self._observe(max(0.0, loop.time() - expected))


class _TimedSteps:
    """An awaitable driving another one step at a time, timing each step."""

    __slots__ = ("_awaitable", "_on_slow", "_threshold_s")

    def __init__(
        self,
        awaitable: Awaitable[Any],
        threshold_s: float,
        on_slow: Callable[[float], None],
    ) -> None:
        self._awaitable = awaitable
        self._threshold_s = threshold_s
        self._on_slow = on_slow

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine = self._awaitable.__await__()
        threshold = self._threshold_s
        clock = time.perf_counter
        value: Any = None
        error: BaseException | None = None
        while True:
            started = clock()
            try:
                if error is None:
                    yielded = coroutine.send(value)
                else:
                    yielded = coroutine.throw(error)
            except StopIteration as stop:
                self._check(clock() - started, threshold)
                return stop.value
            except BaseException:
                self._check(clock() - started, threshold)
                raise
            self._check(clock() - started, threshold)
            error = None
            try:
                value = yield yielded
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # cancellation included: hand it to the run
                error, value = exc, None

    def _check(self, held_s: float, threshold_s: float) -> None:
        if held_s > threshold_s:
            self._on_slow(held_s)


def timed_steps(
    awaitable: Awaitable[T],
    threshold_s: float,
    on_slow: Callable[[float], None],
) -> Coroutine[Any, Any, T]:
    """Await ``awaitable``, calling ``on_slow(seconds)`` after each step that held
    the loop longer than ``threshold_s``.

    Behaves exactly like awaiting ``awaitable`` itself: same result, same
    exceptions, cancellation delivered to it. The cost is two clock reads per step.
    """

    async def run() -> T:
        result: T = await _TimedSteps(awaitable, threshold_s, on_slow)
        return result

    return run()
