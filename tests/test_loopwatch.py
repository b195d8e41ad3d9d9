"""timed_steps behaves like a plain await, and reports the steps that held the loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from runwire.loopwatch import LoopLagMonitor, timed_steps


async def test_result_and_exceptions_pass_through() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    slow: list[float] = []
    assert await timed_steps(answer(), 1.0, slow.append) == 42
    with pytest.raises(ValueError, match="boom"):
        await timed_steps(fail(), 1.0, slow.append)
    assert slow == []


async def test_cancellation_reaches_the_coroutine_which_may_clean_up() -> None:
    cleaned = asyncio.Event()
    entered = asyncio.Event()

    async def work() -> None:
        try:
            entered.set()
            await asyncio.sleep(60)
        finally:
            cleaned.set()

    task = asyncio.ensure_future(timed_steps(work(), 1.0, lambda _: None))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


async def test_exceptions_thrown_in_are_handled_by_the_coroutine() -> None:
    async def recovering() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "recovered"
        return "slept"

    task = asyncio.ensure_future(timed_steps(recovering(), 1.0, lambda _: None))
    await asyncio.sleep(0.01)
    task.cancel()
    assert await task == "recovered"


async def test_only_the_step_that_blocks_is_reported() -> None:
    async def work() -> None:
        for _ in range(3):
            await asyncio.sleep(0.01)  # waiting is not holding the loop
        time.sleep(0.15)  # noqa: ASYNC251 - the blocking step under test
        await asyncio.sleep(0)

    slow: list[float] = []
    await timed_steps(work(), 0.1, slow.append)
    assert len(slow) == 1 and 0.15 <= slow[0] < 1.0


async def test_the_lag_monitor_sees_a_blocked_loop() -> None:
    samples: list[float] = []
    arrived = asyncio.Event()

    def observe(lag: float) -> None:
        samples.append(lag)
        arrived.set()

    monitor = LoopLagMonitor(observe, interval_s=0.02)
    monitor.start()
    await asyncio.wait_for(arrived.wait(), 5)
    arrived.clear()
    time.sleep(0.2)  # noqa: ASYNC251 - block the loop on purpose
    await asyncio.wait_for(arrived.wait(), 5)
    await monitor.stop()
    await monitor.stop()  # idempotent
    assert samples[-1] >= 0.15
