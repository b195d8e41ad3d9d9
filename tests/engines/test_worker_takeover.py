"""Workers taking runs over: restarts, full workers, long pending lists, lost claims."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from runwire.app import create_engine
from runwire.exceptions import EngineError
from runwire.ids import UserId
from runwire.recovery import run_events
from runwire.redis.keys import run_owner_key
from runwire.redis.worker import Worker
from runwire.redis.workers import GROUP, RUNS_STREAM, RedisDispatcher, WorkQueue
from tests.helpers import GatedAgent, make_settings, scripted_agent, wait_until
from tests.redis_server import RedisServer


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def pending_count(dispatcher: RedisDispatcher) -> int:
    reply: Any = await dispatcher._redis.xpending(RUNS_STREAM, GROUP)
    return int(reply["pending"])


async def test_a_run_whose_first_publish_failed_is_run_again(own_redis: RedisServer) -> None:
    settings = make_settings(
        engine=own_redis.url, runs="workers", worker_heartbeat_s=0.2, engine_retry_s=0.3
    )
    runner = Worker(settings, create_engine(settings), scripted_agent, name="w-unpublished")
    real_publish = runner.runtime._publish
    broken = True

    async def publish(user_id: Any, event: Any) -> Any:
        if broken:
            raise EngineError("simulated: redis unavailable")
        return await real_publish(user_id, event)

    runner.runtime._publish, runner.runtime._submit = publish, None
    dispatcher = RedisDispatcher(own_redis.url, per_user=3, ttl_s=600, stream_max=1000)
    await runner.start()
    try:
        user = UserId("tk-unpublished")
        started = await dispatcher.start_run(user, "hi", message_id="m1", thread_id=None)
        await wait_until(lambda: runner.runtime.finished_total.get("unpublished", 0) >= 1)
        broken = False  # the engine is back
        await completed_and_acknowledged(runner, dispatcher, 1, "the run to be run again")
        events = await run_events(runner.engine, user, started.run_id)
        assert events and events[-1].event.is_terminal
        assert not await dispatcher._redis.smembers(f"rw:{{{user}}}:active")
    finally:
        await runner.stop(0.5)
        await dispatcher.stop(0)


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def completed_and_acknowledged(
    runner: Worker, dispatcher: RedisDispatcher, completed: int, what: str
) -> None:
    """Wait for ``completed`` runs of ``runner`` to complete, then for the run queue to
    hold no pending entry (every one acknowledged)."""
    await wait_until(
        lambda: runner.runtime.finished_total.get("completed", 0) == completed,
        timeout=8.0,
        what=what,
    )
    await eventually(
        lambda: _is_zero(pending_count(dispatcher)), 5.0, "the entries to be acknowledged"
    )


async def test_a_full_worker_leaves_a_dead_workers_run_and_keeps_sweeping(
    own_redis: RedisServer,
) -> None:
    settings = make_settings(
        engine=own_redis.url, runs="workers", worker_heartbeat_s=0.2, max_active_runs=1
    )
    agent = GatedAgent()
    runner = Worker(settings, create_engine(settings), agent, name="w-full")
    dispatcher = RedisDispatcher(own_redis.url, per_user=3, ttl_s=600, stream_max=1000)
    dead = WorkQueue(own_redis.url, "w-dead", heartbeat_ttl_s=1, keep_s=600)  # no heartbeat
    await runner.start()
    try:
        await dispatcher.start_run(UserId("tk-full-a"), "one", message_id="m1", thread_id=None)
        await asyncio.wait_for(agent.in_tool.wait(), 5)
        await dispatcher.start_run(UserId("tk-full-b"), "two", message_id="m2", thread_id=None)
        [lost] = await dead.read(1, 100)
        await asyncio.sleep(2.0)  # the dead worker's entry is idle long enough to claim
        assert not runner._tasks[2].done(), "the sweep loop ended"
        pending: Any = await dispatcher._redis.xpending_range(RUNS_STREAM, GROUP, "-", "+", 10)
        holders = {p["message_id"]: p["consumer"] for p in pending}
        assert holders[lost.entry_id] == "w-dead"  # no room: not claimed
        agent.release.set()
        await completed_and_acknowledged(
            runner, dispatcher, 2, "the dead worker's run to be taken over"
        )
        assert not runner._tasks[2].done()
    finally:
        agent.release.set()
        await runner.stop(0.5)
        await dispatcher.stop(0)
        await dead.close()


async def test_the_sweep_finds_dead_entries_behind_live_ones(own_redis: RedisServer) -> None:
    dispatcher = RedisDispatcher(own_redis.url, per_user=1000, ttl_s=600, stream_max=1000)
    live = WorkQueue(own_redis.url, "w-live", heartbeat_ttl_s=60, keep_s=600)
    dead = WorkQueue(own_redis.url, "w-gone", heartbeat_ttl_s=60, keep_s=600)  # no heartbeat
    rescuer = WorkQueue(own_redis.url, "w-rescuer", heartbeat_ttl_s=60, keep_s=600)
    try:
        await live.setup()
        await live.heartbeat()
        for i in range(70):
            await dispatcher.start_run(UserId(f"tk-page-{i}"), "x", message_id="m", thread_id=None)
        assert len(await live.read(64, 10)) == 64  # the 64 oldest: a live worker's
        lost = {r.run_id for r in await dead.read(6, 10)}
        await asyncio.sleep(0.05)
        first = await rescuer.orphans(min_idle_ms=10, count=4)  # at most what it asks for
        second = await rescuer.orphans(min_idle_ms=10, count=4)
        assert len(first) == 4 and len(second) == 2
        assert {r.run_id for r in first + second} == lost
        assert await rescuer.orphans(min_idle_ms=10) == []
    finally:
        await dispatcher.stop(0)
        for queue in (live, dead, rescuer):
            await queue.close()


async def test_a_claim_whose_reply_was_lost_keeps_the_dead_workers_run(
    own_redis: RedisServer,
) -> None:
    dispatcher = RedisDispatcher(own_redis.url, per_user=10, ttl_s=600, stream_max=1000)
    dead = WorkQueue(own_redis.url, "w-crashed", heartbeat_ttl_s=60, keep_s=600)  # no heartbeat
    rescuer = WorkQueue(own_redis.url, "w-heir", heartbeat_ttl_s=60, keep_s=600)
    user = UserId("tk-lost-claim")
    try:
        await dead.setup()
        started = await dispatcher.start_run(user, "x", message_id="m", thread_id=None)
        [taken] = await dead.read(1, 10)
        await asyncio.sleep(0.05)
        # The XCLAIM of rescuer.orphans() as Redis ran it; its reply never came.
        await rescuer._redis.xclaim(
            RUNS_STREAM, GROUP, "w-heir", min_idle_time=10, message_ids=[taken.entry_id]
        )
        found = await rescuer.own_pending()
        assert [r.run_id for r in found] == [started.run_id]
        assert await pending_count(dispatcher) == 1  # not acknowledged: still to close
        owner = await dispatcher._redis.get(run_owner_key(user, started.run_id))
        assert owner == f"w-heir|{taken.entry_id}"
    finally:
        await dispatcher.stop(0)
        await dead.close()
        await rescuer.close()


async def test_a_live_owner_is_not_taken_from_by_own_pending(own_redis: RedisServer) -> None:
    dispatcher = RedisDispatcher(own_redis.url, per_user=10, ttl_s=600, stream_max=1000)
    holder = WorkQueue(own_redis.url, "w-holder", heartbeat_ttl_s=60, keep_s=600)
    other = WorkQueue(own_redis.url, "w-other", heartbeat_ttl_s=60, keep_s=600)
    user = UserId("tk-live-owner")
    try:
        await holder.setup()
        await holder.heartbeat()
        started = await dispatcher.start_run(user, "x", message_id="m", thread_id=None)
        [taken] = await holder.read(1, 10)
        await asyncio.sleep(0.05)
        await other._redis.xclaim(
            RUNS_STREAM, GROUP, "w-other", min_idle_time=10, message_ids=[taken.entry_id]
        )
        assert await other.own_pending() == []  # the live holder keeps the run
        owner = await dispatcher._redis.get(run_owner_key(user, started.run_id))
        assert owner == f"w-holder|{taken.entry_id}"
    finally:
        await dispatcher.stop(0)
        await holder.close()
        await other.close()
