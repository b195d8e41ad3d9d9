"""``runwire worker``: runs agents for the gateways, out of their processes.

A worker reads runs from Redis (``runwire.redis.workers.WorkQueue``), runs
each with the ordinary :class:`~runwire.agents.runtime.AgentRuntime` (so every run
rule holds), publishes events through the Redis engine, and acknowledges a run once
its terminal event is stored. It keeps a heartbeat; runs held by a worker whose
heartbeat expired are claimed by a live worker and then:

* run from the start, if none of their events was published yet (taken over);
* closed with ``tool_completed`` (``ok: false``, ``worker lost``) for each open tool
  call and ``agent_error`` ``worker_lost``, if they had started (failed explicitly);
* only acknowledged, if their terminal event was already published.

Cancel requests reach the worker holding the run over ``rw:cancel``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any, Literal

from runwire.agents.base import Agent, Run
from runwire.agents.runtime import UNPUBLISHED, AgentRuntime, RunLimits
from runwire.config import Settings
from runwire.engines import Engine
from runwire.exceptions import EngineError, LimitError
from runwire.pipeline import Pipeline
from runwire.recovery import WORKER_LOST, end_run, open_calls_of, run_events
from runwire.redis.client import map_redis_errors
from runwire.redis.keys import CANCEL_CHANNEL
from runwire.redis.lease import lease_ttl_s
from runwire.redis.snapshots import RedisSnapshots
from runwire.redis.workers import RunRequest, WorkQueue
from runwire.runs import RunStore

__all__ = ["Worker"]

log = logging.getLogger("runwire.worker")

READ_BATCH = 16


class Worker:
    """One worker process's loop: read, run, acknowledge, heartbeat, take over."""

    def __init__(
        self, settings: Settings, engine: Engine, agent: Agent, name: str | None = None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.name = name or f"worker-{secrets.token_hex(4)}"
        self.heartbeat_s = settings.worker_heartbeat_s
        self.queue = WorkQueue(
            settings.engine,
            self.name,
            heartbeat_ttl_s=lease_ttl_s(self.heartbeat_s),
            keep_s=settings.idempotency_ttl_s,
        )
        self.store = RunStore(
            runs_per_user=settings.snapshot_runs_per_user, max_users=settings.history_max_users
        )
        self.snapshots = RedisSnapshots(
            settings.engine,
            self.store,
            runs_per_user=settings.snapshot_runs_per_user,
            ttl_s=settings.idempotency_ttl_s,
        )
        # The one publish path, as in the gateway; a worker holds no sockets (no sink).
        self.pipeline = Pipeline(engine, self.store, snapshots=self.snapshots)
        self.runtime = AgentRuntime(
            agent,
            self.pipeline.publish,
            # The gateways enforce the per-user bound.
            RunLimits.of(settings, per_user=settings.max_active_runs),
            on_finished=self._finished,
            submit=self.pipeline.submitter,
        )
        self._requests: dict[str, RunRequest] = {}
        self._unclosed: dict[str, RunRequest] = {}
        """Runs of ours whose end is not yet recorded (closed by the sweep)."""
        self._room = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Flags, not only cancels, end the loops: Python 3.11's wait_for (redis-py
        # wraps every send in one) swallows a cancel that comes as its awaitable
        # completes, and a loop would then go on and hang stop().
        self._stopping = False
        """Stop taking, sweeping and cancelling runs."""
        self._closing = False
        """Stop the heartbeat too."""
        self.taken_over = 0
        self.failed_over = 0

    async def start(self) -> None:
        """Connect, join the consumer group and start the loops."""
        await self.pipeline.start()
        self.snapshots.start()
        await self.queue.setup()
        await self.queue.heartbeat()
        loop = asyncio.get_running_loop()
        for loop_body in (self._consume, self._heartbeats, self._sweep, self._cancels):
            self._tasks.append(loop.create_task(self._forever(loop_body)))  # heartbeats: [1]
        log.info("worker %s started", self.name)

    async def stop(self, grace_s: float) -> None:
        """Stop taking runs; give running ones ``grace_s`` while still sending heartbeats
        (so nobody takes them over); then stop everything."""
        heartbeat, others = self._tasks[1], [t for i, t in enumerate(self._tasks) if i != 1]
        self._stopping = True
        self._room.set()
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self.runtime.stop(grace_s)
        self._closing = True
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        await self.queue.close()
        await self.snapshots.close()
        await self.engine.close()

    def _done(self, body: Any) -> bool:
        return self._closing if body == self._heartbeats else self._stopping

    async def _forever(self, body: Any) -> None:
        """Run one loop; on Redis errors wait a moment and go on (until stopped)."""
        while not self._done(body):
            try:
                await body()
            except EngineError as exc:
                log.warning("worker loop: %s", exc)
                await asyncio.sleep(self.heartbeat_s)

    # -- the loops --------------------------------------------------------------

    async def _consume(self) -> None:
        while not self._stopping:
            room = self.runtime.limits.active - self.runtime.active_runs()
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            for request in await self.queue.read(min(room, READ_BATCH), block_ms=1000):
                if self._stopping:
                    return  # left pending: taken over once our heartbeat stops
                if request.run_id not in self._requests and request.run_id not in self._unclosed:
                    self._begin(request)  # (a re-read pending entry may be running already)

    async def _heartbeats(self) -> None:
        while not self._closing:
            await self.queue.heartbeat()
            await asyncio.sleep(self.heartbeat_s)

    async def _sweep(self) -> None:
        """Take over dead workers' runs, close our own runs left unpublished, and take
        up entries delivered to us whose delivery was lost (a Redis restart)."""
        while not self._stopping:
            await asyncio.sleep(self.heartbeat_s)
            for request in await self.queue.own_pending():
                if request.run_id not in self._requests and request.run_id not in self._unclosed:
                    log.warning("taking up run %s: its delivery was lost", request.run_id)
                    self._unclosed[request.run_id] = request
            for request in list(self._unclosed.values()):
                if await self._take_over(request):  # raises while the engine is down
                    self._unclosed.pop(request.run_id, None)
            # Claim no more than there is room for: a claimed run may need starting.
            room = self.runtime.limits.active - self.runtime.active_runs()
            if room <= 0:
                continue  # left to a worker with room, or to a later sweep
            min_idle_ms = lease_ttl_s(self.heartbeat_s) * 1000
            for request in await self.queue.orphans(min_idle_ms, count=room):
                self._unclosed[request.run_id] = request  # ours now, until closed
                if await self._take_over(request):
                    self._unclosed.pop(request.run_id, None)

    async def _cancels(self) -> None:
        """Cancel requests. A lost connection is re-made (and re-subscribed) by the
        client's retry; when Redis stays down, the loop starts again after a pause."""
        pubsub: Any = None
        try:
            async with map_redis_errors("cancellations"):
                pubsub = await self.queue.cancellations()
                await pubsub.subscribe(CANCEL_CHANNEL)
                while not self._stopping:
                    # A bounded wait: each round health-checks the idle connection.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self.runtime.cancel_any(str(message["data"]))
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    # -- runs -------------------------------------------------------------------

    def _begin(self, request: RunRequest) -> Literal["started", "duplicate", "busy"]:
        self._requests[request.run_id] = request
        try:
            started = self.runtime.start_run(
                request.user_id,
                request.content,
                message_id=request.run_id,
                thread_id=request.thread_id,
                run_id=request.run_id,
            )
        except LimitError as exc:
            # No room now: the entry stays pending (ours), started by a later sweep.
            log.warning("run %s waits for room: %s", request.run_id, exc)
            self._requests.pop(request.run_id, None)
            self._unclosed[request.run_id] = request
            return "busy"
        if started.duplicate:  # this worker already ran it (a pending entry read again)
            self._requests.pop(request.run_id, None)
            return "duplicate"
        return "started"

    async def _finished(self, run: Run, status: str) -> None:
        request = self._requests.pop(run.run_id, None)
        self._room.set()
        if request is None:
            return
        if status == UNPUBLISHED:
            # No terminal event reached the engine: close the run once it is back.
            self._unclosed[request.run_id] = request
            return
        try:
            await self.queue.finished(request)
        except EngineError:
            self._unclosed[request.run_id] = request  # acknowledged by the sweep later

    async def _take_over(self, request: RunRequest) -> bool:
        """A dead worker's run (or one of ours left unpublished): start it, close it,
        or just release it. ``False`` if it is still to do (no room to start it)."""
        events = await run_events(self.engine, request.user_id, request.run_id)
        if not events:
            log.warning("taking over run %s", request.run_id)
            # Nothing was published: run it from the start, even if this worker
            # started it before (its first publish failed), so forget that start.
            if not self.runtime.forget(request.user_id, request.run_id):
                return True  # it is running here already
            begun = self._begin(request)
            if begun == "busy":
                return False
            if begun == "duplicate":  # the restart was refused: release the entry
                await self.queue.finished(request)
            else:
                self.taken_over += 1
            return True
        if not events[-1].event.is_terminal:
            self.failed_over += 1
            log.warning("failing run %s of a lost worker", request.run_id)
            await end_run(
                self.pipeline.publish,
                request.user_id,
                run_id=request.run_id,
                thread_id=request.thread_id,
                last_seq=events[-1].event.seq,
                open_calls=open_calls_of(s.event for s in events),
                code=WORKER_LOST,
                message="the worker running this run stopped",
                tool_error="worker lost",
            )
        await self.queue.finished(request)
        return True
