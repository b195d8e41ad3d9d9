"""Node leases (``RUNWIRE_RUNS=local`` on Redis): a killed node's runs end ``node_lost``.

Real Redis servers (one per test, so no other test's nodes are swept), real
``runwire serve`` processes, real sockets, a real SIGKILL. The unit tests drive
:class:`~runwire.redis.nodes.NodeLease` objects in-process on the same real Redis: a
node "dies" by losing its lease key (what its expiry does) and never renewing it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from runwire.client import Client, ReconnectingClient
from runwire.engines.base import StoredEvent
from runwire.events import (
    AgentCompleted,
    AgentMessageDelta,
    AgentStarted,
    Event,
    EventData,
    ToolExecuting,
)
from runwire.ids import RunId, ThreadId, UserId
from runwire.pipeline import Pipeline
from runwire.recovery import run_events
from runwire.redis.backend import BACKEND
from runwire.redis.keys import NODES_KEY, message_key, node_runs_key
from runwire.redis.lease import lease_ttl_s
from runwire.redis.nodes import NodeLease
from runwire.redis.workers import RedisMessageClaims
from runwire.runs import RunStore
from tests.engines.test_multinode import gateway_processes
from tests.helpers import SECRET, assert_run_rules, collect_run, make_settings, token_for
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_S = 0.5
BOUND_S = lease_ttl_s(HEARTBEAT_S) + HEARTBEAT_S
"""The documented bound: the lease expires, then one sweep of a live node."""
TERMINAL = ("agent_completed", "agent_error")


async def _node_keys(url: str) -> set[str]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return {key async for key in client.scan_iter("rw:{nodes}:*")}
    finally:
        await client.aclose()


# -- two real gateway processes, one SIGKILLed ------------------------------------------


async def test_a_killed_nodes_run_ends_node_lost_on_the_other_nodes_tabs_and_a_retry_runs(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    stall = tmp_path / "stall"
    stall.touch()
    env = {
        "RUNWIRE_AGENT": "tests.engines.stalling_agent:agent",
        "RUNWIRE_NODE_HEARTBEAT_S": str(HEARTBEAT_S),
        "RUNWIRE_TEST_STALL_FILE": str(stall),
        "PYTHONPATH": str(ROOT),
    }
    token = token_for(make_settings(auth_secret=SECRET), "lease-user")
    loop = asyncio.get_running_loop()
    with gateway_processes(own_redis.url, tmp_path, 2, extra_env=env) as nodes:
        (process_a, url_a), (_, url_b) = nodes
        async with AsyncExitStack() as stack:
            # A tab on A (it reconnects to B when A dies) and a tab on B.
            tab_a = await stack.enter_async_context(ReconnectingClient([url_a, url_b], token))
            tab_b = await stack.enter_async_context(Client.connect(url_b, token))
            quick = await tab_a.send_message("quick", message_id="q-1")  # runs on A, ends
            quick_on_b = await collect_run(tab_b, quick["run_id"])
            quick_on_a = await collect_run(tab_a.client, quick["run_id"])
            ack = await tab_a.send_message("stream please", message_id="m-1")  # runs on A
            seen_b: list[dict[str, Any]] = []
            while sum(f["type"] == "agent_message_delta" for f in seen_b) < 5:
                frame = await tab_b.recv(timeout=10)
                if frame.get("run_id") == ack["run_id"]:
                    seen_b.append(frame)
            process_a.send_signal(signal.SIGKILL)  # mid-run, inside an open tool call
            killed_at = loop.time()
            await asyncio.to_thread(process_a.wait, 10)
            while seen_b[-1]["type"] not in TERMINAL:
                frame = await tab_b.recv(timeout=BOUND_S + 5)
                if frame.get("run_id") == ack["run_id"]:
                    seen_b.append(frame)
            ended_after_s = loop.time() - killed_at
            seen_a = [await tab_a.recv(timeout=10)]  # A's tab, resumed on B
            while seen_a[-1].get("run_id") != ack["run_id"] or seen_a[-1]["type"] not in TERMINAL:
                seen_a.append(await tab_a.recv(timeout=10))

            stall.unlink()  # the retry streams a moment and answers
            retry = await tab_b.send_message("stream please", message_id="m-1")
            retried = await collect_run(tab_b, retry["run_id"], timeout=15)
            again = await tab_b.send_message("stream please", message_id="m-1")
            runs = {run["run_id"]: run for run in await tab_b.get_runs()}
        left = await _node_keys(own_redis.url)

    # The tabs on B (and A's tab, now on B) got the ending within the bound.
    assert ended_after_s < BOUND_S + 1.0, ended_after_s
    for frames in (seen_b, [f for f in seen_a if f.get("run_id") == ack["run_id"]]):
        assert frames[-1]["type"] == "agent_error"
        assert frames[-1]["data"]["code"] == "node_lost"
        closing = [f for f in frames if f["type"] == "tool_completed"]
        assert [(f["data"]["tool"], f["data"]["ok"]) for f in closing] == [("stream", False)]
    assert_run_rules(seen_b)  # seq continuing 1..n, one terminal, every tool call closed
    assert [f["offset"] for f in seen_b] == list(
        range(seen_b[0]["offset"], seen_b[0]["offset"] + len(seen_b))
    )
    # Every run of the test ended exactly once; the finished one was left alone.
    assert_run_rules(quick_on_b)
    assert quick_on_b == quick_on_a and quick_on_b[-1]["type"] == "agent_completed"
    assert retry["run_id"] != ack["run_id"]  # the retry started a new run...
    assert_run_rules(retried)
    assert retried[-1]["type"] == "agent_completed"  # ...which completed
    assert again["run_id"] == retry["run_id"]  # and is the message's run from now on
    assert runs[ack["run_id"]]["status"] == "error"
    assert runs[ack["run_id"]]["error"]["code"] == "node_lost"
    assert runs[retry["run_id"]]["status"] == "completed"
    assert runs[quick["run_id"]]["status"] == "completed"
    # Nothing of the dead node is left in Redis; B holds no finished run.
    assert len(left) == 2 and NODES_KEY in left, left
    assert not [key for key in left if ":runs:" in key or ":closing:" in key], left


# -- the lease and the claim, in-process ------------------------------------------------


class _Node:
    """One node's parts on a real Redis: engine, snapshots, pipeline and lease."""

    def __init__(self, lease: NodeLease, pipeline: Pipeline, store: RunStore) -> None:
        self.lease = lease
        self.pipeline = pipeline
        self.store = store

    async def emit(self, user: str, run_id: str, seq: int, data: EventData) -> StoredEvent:
        event = Event.of(data, run_id=run_id, thread_id="t-1", seq=seq, ts=1)
        return await self.pipeline.publish(UserId(user), event)


@asynccontextmanager
async def _node(url: str, name: str) -> AsyncIterator[_Node]:
    """A node whose loops never fire during a test (a long heartbeat): the test calls
    ``sweep`` itself."""
    settings = make_settings(engine=url)
    engine = BACKEND.engine(settings)
    store = RunStore(runs_per_user=10, max_users=10)
    assert BACKEND.snapshots is not None
    snapshots = BACKEND.snapshots(settings, store)
    pipeline = Pipeline(engine, store, snapshots=snapshots)
    await pipeline.start()
    snapshots.start()
    lease = NodeLease(
        url,
        name,
        heartbeat_s=600.0,
        keep_s=600,
        engine=engine,
        publish=pipeline.publish,
        store=store,
        snapshots=snapshots,
    )
    await lease.start()
    try:
        yield _Node(lease, pipeline, store)
    finally:
        await lease.close()
        await snapshots.close()
        await engine.close()


async def _started_run(node: _Node, claims: RedisMessageClaims, user: str, run: str) -> None:
    """A run as ``LocalDispatcher`` starts it: message claimed, run held."""
    await claims.claim(UserId(user), f"msg-{run}", RunId(run), ThreadId("t-1"))
    await node.lease.hold(UserId(user), RunId(run), ThreadId("t-1"), f"msg-{run}")


async def test_a_lost_nodes_run_is_claimed_and_ended_by_exactly_one_live_node(
    own_redis: RedisServer,
) -> None:
    url = own_redis.url
    claims = RedisMessageClaims(url, ttl_s=600)
    async with _node(url, "dead") as dead, _node(url, "b") as b, _node(url, "c") as c:
        await _started_run(dead, claims, "u1", "r1")
        await dead.emit("u1", "r1", 1, AgentStarted("agent", "hi"))
        await dead.emit("u1", "r1", 2, ToolExecuting("call-1", "search", {}))
        await dead.emit("u1", "r1", 3, AgentMessageDelta("partial "))
        assert await b.lease.sweep() + await c.lease.sweep() == 0  # alive: left alone

        await dead.lease.liveness.end("dead")  # what the expiry of its lease does
        ended = await asyncio.gather(b.lease.sweep(), c.lease.sweep(), b.lease.sweep())
        assert sum(ended) == 1
        events = [s.event for s in await run_events(b.pipeline.engine, UserId("u1"), "r1")]
        assert [(e.type, e.seq) for e in events][3:] == [
            ("tool_completed", 4),
            ("agent_error", 5),
        ]
        assert events[3].data.ok is False  # type: ignore[union-attr]
        assert events[4].data.code == "node_lost"  # type: ignore[union-attr]
        winner = b if ended[0] or ended[2] else c
        snapshot = winner.store.run(UserId("u1"), "r1")
        assert snapshot is not None and snapshot.status == "error"
        assert snapshot.answer == "partial "  # rebuilt from the history before the end
        # The message may start a new run now.
        again = await claims.claim(UserId("u1"), "msg-r1", RunId("r1-retry"), ThreadId("t-1"))
        assert not again.duplicate
        assert await b.lease.sweep() + await c.lease.sweep() == 0  # nothing twice
        assert "dead" not in await _members(url)
    await claims.close()


async def test_a_lost_nodes_finished_run_is_only_released_and_an_unstarted_one_forgotten(
    own_redis: RedisServer,
) -> None:
    url = own_redis.url
    claims = RedisMessageClaims(url, ttl_s=600)
    async with _node(url, "dead") as dead, _node(url, "b") as b:
        await _started_run(dead, claims, "u2", "done")
        await dead.emit("u2", "done", 1, AgentStarted("agent", "hi"))
        await dead.emit("u2", "done", 2, AgentCompleted("ok", "completed"))
        await _started_run(dead, claims, "u2", "unstarted")
        await dead.lease.liveness.end("dead")

        assert await b.lease.sweep() == 0  # neither needed an ending
        events = await run_events(b.pipeline.engine, UserId("u2"), "done")
        assert [s.event.type for s in events] == ["agent_started", "agent_completed"]
        finished = await claims.claim(UserId("u2"), "msg-done", RunId("x"), ThreadId("t"))
        assert finished.duplicate and finished.run_id == "done"  # its ack stays
        unstarted = await claims.claim(UserId("u2"), "msg-unstarted", RunId("y"), ThreadId("t"))
        assert not unstarted.duplicate  # its retry starts it
        assert await run_events(b.pipeline.engine, UserId("u2"), "unstarted") == []
    await claims.close()


async def test_runs_are_released_when_they_end_and_a_graceful_stop_leaves_no_key(
    own_redis: RedisServer,
) -> None:
    url = own_redis.url
    raw = aioredis.Redis.from_url(url, decode_responses=True)
    async with _node(url, "solo") as solo:
        await solo.lease.hold(UserId("u3"), RunId("r3"), ThreadId("t"), "m3")
        assert await raw.hkeys(node_runs_key("solo")) == ["r3"]
        await solo.lease.finished("r3", published=True)
        assert await raw.hkeys(node_runs_key("solo")) == []
        assert solo.lease.stats() == {"held": 0, "unreleased": 0, "unpublished": 0}
    assert await _node_keys(url) == set()
    assert await raw.get(message_key(UserId("u3"), "m3")) is None
    await raw.aclose()


async def test_a_run_that_ended_unpublished_is_ended_by_its_own_nodes_sweep(
    own_redis: RedisServer,
) -> None:
    url = own_redis.url
    async with _node(url, "n") as node:
        await node.lease.hold(UserId("u4"), RunId("r4"), ThreadId("t-1"), "m4")
        await node.emit("u4", "r4", 1, AgentStarted("agent", "hi"))
        await node.lease.finished("r4", published=False)  # its end could not be published
        assert await node.lease.sweep() == 1
        events = await run_events(node.pipeline.engine, UserId("u4"), "r4")
        assert [s.event.type for s in events] == ["agent_started", "agent_error"]
        assert node.lease.stats()["unpublished"] == 0


async def _members(url: str) -> set[str]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return {str(member) for member in await client.smembers(NODES_KEY)}
    finally:
        await client.aclose()
