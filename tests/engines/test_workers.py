"""Runs executed by workers: a gateway hands runs over Redis; workers run them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from runwire.agents.base import Agent
from runwire.app import create_engine
from runwire.client import ClientError
from runwire.ids import UserId
from runwire.redis.worker import Worker
from tests.helpers import (
    SECRET,
    GatedAgent,
    collect_run,
    connect,
    make_settings,
    running_gateway,
    scripted_agent as scripted,
)
from tests.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def worker(redis_url: str, agent: Agent, name: str) -> AsyncIterator[Worker]:
    settings = make_settings(engine=redis_url, runs="workers", worker_heartbeat_s=0.2)
    instance = Worker(settings, create_engine(settings), agent, name=name)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop(1.0)


async def test_a_worker_runs_what_the_gateway_accepted(redis_server: RedisServer) -> None:
    async with (
        worker(redis_server.url, scripted, "w-golden") as runner,
        running_gateway(engine=redis_server.url, runs="workers") as gateway,
        connect(gateway, "wk-alice") as client,
    ):
        ack = await client.send_message("hello", message_id="m-1")
        frames = await collect_run(client, ack["run_id"])
        again = await client.send_message("hello", message_id="m-1")  # a retry
        assert again["run_id"] == ack["run_id"]
        assert runner.runtime.started_total == 1
        assert gateway.dispatcher.active_runs() == 0  # nothing ran in the gateway
        snapshot = gateway.runs.run(UserId("wk-alice"), ack["run_id"])  # fed by deliveries
        assert snapshot is not None and snapshot.status == "completed"
        async with (
            running_gateway(engine=redis_server.url, runs="workers") as other,
            connect(other, "wk-alice") as elsewhere,
        ):
            remote = None
            for _ in range(200):  # the worker writes snapshots behind itself
                remote = await elsewhere.get_run(ack["run_id"])
                if remote is not None and remote["status"] == "completed":
                    break
                await asyncio.sleep(0.01)
            assert remote is not None and remote["answer"] == "echo: hello."
    assert [f["type"] for f in frames][0] == "agent_started"
    assert frames[-1]["data"] == {"output": "echo: hello.", "status": "completed"}
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))


async def test_cancel_reaches_the_worker_holding_the_run(redis_server: RedisServer) -> None:
    agent = GatedAgent()
    async with (
        worker(redis_server.url, agent, "w-cancel"),
        running_gateway(engine=redis_server.url, runs="workers") as gateway,
        connect(gateway, "wk-bob") as bob,
        connect(gateway, "wk-mallory") as mallory,
    ):
        ack = await bob.send_message("long")
        await asyncio.wait_for(agent.in_tool.wait(), 10)
        with pytest.raises(ClientError) as error:
            await mallory.cancel(ack["run_id"])
        assert error.value.code == "not_found"
        await bob.cancel(ack["run_id"])
        frames = await collect_run(bob, ack["run_id"])
    assert frames[-2]["data"]["error"] == "cancelled"
    assert frames[-1]["data"]["status"] == "cancelled"


async def test_the_per_user_run_limit_holds_across_gateways(redis_server: RedisServer) -> None:
    agent = GatedAgent()
    settings: dict[str, Any] = {
        "engine": redis_server.url,
        "runs": "workers",
        "max_concurrent_runs_per_user": 1,
    }
    async with (
        worker(redis_server.url, agent, "w-limit"),
        running_gateway(**settings) as node_a,
        running_gateway(**settings) as node_b,
        connect(node_a, "wk-carol") as tab_a,
        connect(node_b, "wk-carol") as tab_b,
    ):
        first = await tab_a.send_message("one")
        with pytest.raises(ClientError) as error:
            await tab_b.send_message("two")
        assert error.value.code == "too_many_runs"
        agent.release.set()
        await collect_run(tab_a, first["run_id"])
        await collect_run(tab_b, first["run_id"])


async def test_a_killed_workers_run_is_failed_explicitly(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env.update(
        RUNWIRE_ENGINE=redis_server.url,
        RUNWIRE_RUNS="workers",
        RUNWIRE_AUTH_SECRET=SECRET,
        RUNWIRE_AGENT="tests.helpers:sleepy_agent",
        RUNWIRE_WORKER_HEARTBEAT_S="0.2",
        RUNWIRE_STATE_DIR=str(tmp_path),
    )
    doomed = subprocess.Popen(  # noqa: ASYNC220 - started once, before any awaiting
        [sys.executable, "-m", "runwire", "worker"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert doomed.stdout is not None
        assert "runwire worker" in doomed.stdout.readline()
        async with (
            running_gateway(engine=redis_server.url, runs="workers") as gateway,
            connect(gateway, "wk-dave") as client,
        ):
            ack = await client.send_message("work")
            seen: list[dict[str, Any]] = []
            while not seen or seen[-1]["type"] != "tool_executing":
                seen.append(await client.recv(timeout=10))
            doomed.send_signal(signal.SIGKILL)  # mid-tool: no terminal event was published
            doomed.wait(timeout=10)
            async with worker(redis_server.url, scripted, "w-rescuer") as rescuer:
                rest = await collect_run(client, ack["run_id"], timeout=20)
                assert rescuer.failed_over == 1
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(timeout=10)
        if doomed.stdout is not None:
            doomed.stdout.close()
    frames = [f for f in seen if f.get("run_id") == ack["run_id"]] + rest
    types = [f["type"] for f in frames]
    assert types == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_error",
    ]
    assert frames[3]["data"]["ok"] is False and frames[3]["data"]["error"] == "worker lost"
    assert frames[4]["data"]["code"] == "worker_lost"
    assert [f["seq"] for f in frames] == [1, 2, 3, 4, 5]


async def test_cancels_reach_the_worker_after_a_redis_restart(tmp_path: Path) -> None:
    """A worker's cancel subscription survives a Redis restart (it used to die with
    the first error, so no cancel reached that worker again)."""
    import redis.asyncio as aioredis

    agent = GatedAgent()
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    probe = aioredis.Redis.from_url(server.url)
    try:
        async with (
            worker(server.url, agent, "w-restart"),
            running_gateway(engine=server.url, runs="workers") as gateway,
            connect(gateway, "wk-erin") as client,
        ):
            ack = await client.send_message("long")
            await asyncio.wait_for(agent.in_tool.wait(), 10)
            server.restart()
            available = {"type": "engine_status", "state": "available"}
            while (await client.recv(timeout=15)) != available:
                pass

            async def cancel_subscribers() -> int:
                try:
                    reply: Any = await probe.pubsub_numsub("rw:cancel")
                except (OSError, aioredis.RedisError):
                    return 0
                return int(reply[0][1])

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while await cancel_subscribers() < 1:
                assert loop.time() < deadline, "the worker never subscribed to cancels again"
                await asyncio.sleep(0.02)
            await client.cancel(ack["run_id"])
            frames = await collect_run(client, ack["run_id"])
    finally:
        await probe.aclose()
        server.stop()
    assert frames[-1]["data"]["status"] == "cancelled"


@pytest.mark.parametrize("store", ["redis", "redis-cluster"])
async def test_a_start_whose_stream_entry_was_lost_is_completed_by_its_retry(
    request: pytest.FixtureRequest, store: str
) -> None:
    """The claim and the stream entry are two steps (two slots on a cluster). A claim
    without its entry (the XADD failed) is completed by the message's retry; a run
    with two entries is taken through one, and the other is dropped unexecuted."""
    from runwire.redis.workers import RedisDispatcher, WorkQueue

    fixture = "redis_cluster" if store == "redis-cluster" else "redis_server"
    url = request.getfixturevalue(fixture).url
    user = UserId(f"wk-lost-{store}")
    dispatcher = RedisDispatcher(url, per_user=5, ttl_s=60, stream_max=1000)
    queue = WorkQueue(url, f"q-lost-{store}", heartbeat_ttl_s=5, keep_s=60)
    try:
        await queue.setup()
        await queue.read(1000, block_ms=1)  # whatever earlier tests left unread
        # The first start's claim only, as if its XADD had failed.
        status, _ = await dispatcher._claim(
            keys=[f"rw:{{{user}}}:msg:m-lost", f"rw:{{{user}}}:active"],
            args=["r_lost", "t_lost", 5, 60],
        )
        assert int(status) == 1
        retried = await dispatcher.start_run(user, "hello", message_id="m-lost", thread_id=None)
        again = await dispatcher.start_run(user, "hello", message_id="m-lost", thread_id=None)
        assert retried.run_id == again.run_id == "r_lost"
        taken = await queue.read(10, block_ms=100)
        assert [(r.run_id, r.content) for r in taken] == [("r_lost", "hello")]
        assert await queue.own_pending() == taken  # the dropped entry is acknowledged
        assert await queue.read(10, block_ms=1) == []
        await queue.finished(taken[0])
        assert await queue.own_pending() == []
        assert not await dispatcher._redis.sismember(f"rw:{{{user}}}:active", "r_lost")
        # A late entry of the finished run (its owner key stays) is dropped too.
        await dispatcher.start_run(user, "hello", message_id="m-lost", thread_id=None)
        assert await queue.read(10, block_ms=100) == []
        assert await queue.own_pending() == []
    finally:
        await queue.close()
        await dispatcher.stop(0)
