"""Gateways on one Redis: a user's events reach the user's sockets on every node."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from runwire.client import Client, ClientError, ReconnectingClient, StreamPosition
from runwire.ids import UserId
from tests.helpers import (
    GatedAgent,
    Listener,
    collect_run,
    connect,
    get_json,
    publish_texts,
    running_gateway,
    token_for,
    wait_until,
)
from tests.redis_server import RedisServer


async def test_tabs_on_different_nodes_see_the_same_run(redis_server: RedisServer) -> None:
    async with (
        running_gateway(engine=redis_server.url) as node_a,
        running_gateway(engine=redis_server.url) as node_b,
        connect(node_a, "alice-x1") as tab_a,
        connect(node_b, "alice-x1") as tab_b,
        connect(node_b, "bob-x1") as bob,
    ):
        assert tab_a.connected["epoch"] == tab_b.connected["epoch"]
        ack = await tab_a.send_message("across nodes")
        run_a = await collect_run(tab_a, ack["run_id"])
        run_b = await collect_run(tab_b, ack["run_id"])
        await bob.ping()
        assert bob._frames.empty()
    assert run_a == run_b
    offsets = [frame["offset"] for frame in run_a]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    assert [f["type"] for f in run_a][0] == "agent_started"
    assert run_a[-1]["type"] == "agent_completed"


async def test_a_client_resumes_on_another_node(redis_server: RedisServer) -> None:
    async with (
        running_gateway(engine=redis_server.url) as node_a,
        running_gateway(engine=redis_server.url) as node_b,
    ):
        async with connect(node_a, "carol-x2") as first:
            await publish_texts(node_a, "carol-x2", ["a", "b"])
            await wait_until(lambda: first.position is not None and first.position.offset == 2)
            position = first.position
        await publish_texts(node_b, "carol-x2", ["c", "d"])  # published by the other node
        assert position is not None
        async with connect(node_b, "carol-x2", resume=position) as second:
            frames = [await second.recv(timeout=5) for _ in range(3)]
    assert [f.get("offset") for f in frames] == [3, 4, None]
    assert frames[2]["type"] == "resumed" and frames[2]["to"] == 4


async def test_redis_outage_keeps_sockets_and_nothing_is_lost_with_persistence(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    try:
        async with (
            running_gateway(engine=server.url) as gateway,
            connect(gateway, "dora") as client,
        ):
            await publish_texts(gateway, "dora", ["before"])
            assert (await client.recv(timeout=5))["offset"] == 1
            server.stop()
            status = await client.recv(timeout=10)
            assert status == {"type": "engine_status", "state": "unavailable"}
            code, body = await asyncio.to_thread(get_json, gateway.url + "/healthz")
            assert code == 503 and body["status"] == "degraded"
            try:
                await client.send_message("during the outage")
            except ClientError as error:
                assert error.code == "engine_unavailable"
            else:
                raise AssertionError("a run must not start while the engine is down")
            server.start()  # same port, same append-only file
            status = await client.recv(timeout=15)
            assert status == {"type": "engine_status", "state": "available"}
            await publish_texts(gateway, "dora", ["after"])
            frame = await client.recv(timeout=5)
            assert frame["offset"] == 2 and frame["data"]["text"] == "after"
            assert client.connected["epoch"] == client.position.epoch  # type: ignore[union-attr]
            code, _ = await asyncio.to_thread(get_json, gateway.url + "/healthz")
            assert code == 200
    finally:
        server.stop()


async def test_redis_restart_without_persistence_changes_the_epoch(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persistent=False)
    server.start()
    try:
        async with (
            running_gateway(engine=server.url) as gateway,
            connect(gateway, "erin") as client,
        ):
            await publish_texts(gateway, "erin", ["a", "b"])
            await wait_until(lambda: client.position is not None and client.position.offset == 2)
            old_epoch = client.connected["epoch"]
            server.restart()
            frames: list[dict[str, Any]] = []
            while (
                not frames
                or frames[-1]["type"] != "engine_status"
                or (frames[-1]["state"] != "available")
            ):
                frames.append(await client.recv(timeout=15))
            await publish_texts(gateway, "erin", ["new"])
            while True:
                frame = await client.recv(timeout=10)
                frames.append(frame)
                if frame.get("type") == "agent_message_delta":
                    break
        kinds = [f["type"] for f in frames]
        assert "resume_failed" in kinds
        failed = next(f for f in frames if f["type"] == "resume_failed")
        assert failed["reason"] == "epoch_changed" and failed["epoch"] != old_epoch
        assert frames[-1]["data"]["text"] == "new"
        assert failed["offset"] == 0  # the new epoch is delivered from its start
        assert frames[-1]["offset"] == 1
        assert client.position == StreamPosition(failed["epoch"], 1)
    finally:
        server.stop()


async def test_a_retried_message_on_another_node_starts_no_second_run(
    redis_server: RedisServer,
) -> None:
    async with (
        running_gateway(engine=redis_server.url) as node_a,
        running_gateway(engine=redis_server.url) as node_b,
        connect(node_a, "frank-x3") as tab_a,
        connect(node_b, "frank-x3") as tab_b,
    ):
        first = await tab_a.send_message("once", message_id="same-id")
        again = await tab_b.send_message("once", message_id="same-id")
        assert again["run_id"] == first["run_id"]
        await collect_run(tab_b, first["run_id"])
        assert node_a.runtime.started_total + node_b.runtime.started_total == 1


async def test_a_repeated_publish_of_one_run_event_is_stored_once(
    redis_server: RedisServer,
) -> None:
    from runwire.events import AgentThinking, Event
    from runwire.redis.engine import RedisEngine

    engine = RedisEngine(
        redis_server.url,
        max_events=100,
        max_bytes=1_000_000,
        max_age_s=3600,
        key_ttl_s=3600,
        max_event_bytes=65_536,
    )
    await engine.start(Listener())
    try:
        user = UserId("gina-x4")
        first = Event.of(AgentThinking("a"), run_id="r1", thread_id="t", seq=1, ts=0)
        second = Event.of(AgentThinking("b"), run_id="r1", thread_id="t", seq=2, ts=0)
        stored = [await engine.publish(user, e) for e in (first, second, second, first)]
        # A repeat is not stored again; it reports the run's latest stored offset.
        assert [s.offset for s in stored] == [1, 2, 2, 2]
        assert (await engine.position(user)).offset == 2
        other = Event.of(AgentThinking("c"), run_id="r2", thread_id="t", seq=1, ts=0)
        assert (await engine.publish(user, other)).offset == 3  # another run: its own seqs
    finally:
        await engine.close()


async def test_a_run_survives_a_redis_restart_with_persistence(tmp_path: Path) -> None:
    agent = GatedAgent()
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    try:
        async with (
            running_gateway(agent, engine=server.url, engine_retry_s=15) as gateway,
            connect(gateway, "hana") as client,
        ):
            ack = await client.send_message("long job")
            await asyncio.wait_for(agent.in_tool.wait(), 10)
            server.stop()
            frames: list[dict[str, Any]] = []
            while True:
                frame = await client.recv(timeout=10)
                if frame["type"] == "engine_status":
                    assert frame["state"] == "unavailable"
                    break
                frames.append(frame)
            agent.release.set()  # the run goes on emitting while Redis is down
            server.start()
            frames += await collect_run(client, ack["run_id"], timeout=20)
    finally:
        server.stop()
    types = [f["type"] for f in frames]
    assert types == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_message_delta",
        "agent_completed",
    ]
    assert [f["offset"] for f in frames] == [1, 2, 3, 4, 5, 6]


async def test_a_run_across_a_redis_restart_without_persistence_is_rebuilt_from_snapshots(
    tmp_path: Path,
) -> None:
    agent = GatedAgent()
    server = RedisServer(tmp_path / "redis", persistent=False)
    server.start()
    try:
        async with (
            running_gateway(agent, engine=server.url, engine_retry_s=15) as gateway,
            connect(gateway, "ivy") as client,
        ):
            ack = await client.send_message("long job")
            await asyncio.wait_for(agent.in_tool.wait(), 10)
            old_epoch = client.connected["epoch"]
            server.restart()  # all history is gone
            agent.release.set()
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1].get("type") != "agent_completed":
                frames.append(await client.recv(timeout=20))
            token = token_for(gateway.settings, "ivy")
            status, snapshot = await asyncio.to_thread(
                get_json, f"{gateway.url}/api/runs/{ack['run_id']}", token
            )
    finally:
        server.stop()
    failed = [f for f in frames if f["type"] == "resume_failed"]
    assert failed and failed[0]["reason"] == "epoch_changed"
    assert failed[0]["epoch"] != old_epoch
    after = [f for f in frames if f.get("run_id") == ack["run_id"]]
    assert after[-1]["type"] == "agent_completed"
    assert {f["offset"] for f in after} <= set(range(1, 10))  # the new epoch starts at 1
    # The client rebuilds the whole run from the node's snapshot.
    assert status == 200 and isinstance(snapshot, dict)
    assert snapshot["status"] == "completed"
    assert snapshot["thinking"] == ["waiting"]
    assert [t["tool"] for t in snapshot["tools"]] == ["slow_tool"]
    assert snapshot["tools"][0]["result"] == "released"
    assert snapshot["answer"] == "done"


async def test_any_node_answers_get_runs_from_redis(redis_server: RedisServer) -> None:
    async with (
        running_gateway(engine=redis_server.url) as node_a,
        running_gateway(engine=redis_server.url) as node_b,
    ):
        async with connect(node_a, "jill-x5") as on_a:
            ack = await on_a.send_message("remember me", thread_id="t-j")
            await collect_run(on_a, ack["run_id"])
        # Node B never served jill nor ran her run: it answers from Redis.
        assert node_b.runs.run(UserId("jill-x5"), ack["run_id"]) is None
        async with connect(node_b, "jill-x5") as on_b:
            run = None
            for _ in range(200):  # the write-behind lands within its flush interval
                run = await on_b.get_run(ack["run_id"])
                if run is not None and run["status"] == "completed":
                    break
                await asyncio.sleep(0.01)
            runs = await on_b.get_runs(thread_id="t-j")
        async with connect(node_b, "kim-x5") as other:
            assert await other.get_run(ack["run_id"]) is None  # never another user's
    assert run is not None and run["status"] == "completed"
    assert run["answer"] == "echo: remember me." and run["tools"][0]["tool"] == "echo"
    assert [r["run_id"] for r in runs] == [ack["run_id"]]


# -- Redis restarts (issue #19) ------------------------------------------------------


def _connections_to(port: int) -> int:
    """Established TCP connections to ``127.0.0.1:port``, counted on the client side."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[2].split(":")[1], 16) == port:
            count += 1
    return count


async def _texts(client: Client, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` events ``client`` receives (notices skipped)."""
    events: list[dict[str, Any]] = []
    while len(events) < count:
        frame = await client.recv(timeout=timeout)
        if "offset" in frame:
            events.append(frame)
    return events


async def test_a_socket_opened_while_the_resubscribe_hangs_is_not_deaf(tmp_path: Path) -> None:
    """Issue #19, defect 1: Redis comes back and is paused at once, so the node's
    re-subscribe hangs in flight; a new user's first socket opened meanwhile must get
    its live events once Redis runs again (it used to get its history, then nothing)."""
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    try:
        async with (
            running_gateway(engine=server.url) as gateway,
            connect(gateway, "lena") as old_user,
        ):
            await publish_texts(gateway, "lena", ["before"])
            assert (await _texts(old_user, 1))[0]["offset"] == 1
            server.stop()
            await wait_until(lambda: not gateway.engine.available, 10, "the outage noticed")
            server.start()
            assert server.process is not None
            server.process.send_signal(signal.SIGSTOP)
            try:
                # The node's listener reconnects: its connection is accepted by the
                # kernel, and its handshake and re-subscribe wait for the paused Redis.
                await wait_until(lambda: _connections_to(server.port) >= 1, 10, "a reconnect")
                stack = AsyncExitStack()
                opening = asyncio.create_task(
                    stack.enter_async_context(connect(gateway, "mona-new"))
                )
                await wait_until(
                    lambda: gateway.engine.stats()["subscribed_users"] == 2, 5, "the subscribe"
                )
            finally:
                server.process.send_signal(signal.SIGCONT)
            async with stack:
                new_user = await asyncio.wait_for(opening, 15)
                await wait_until(lambda: gateway.engine.available, 15, "the engine back")
                await publish_texts(gateway, "mona-new", ["live-1", "live-2"])
                await publish_texts(gateway, "lena", ["after"])
                live = await _texts(new_user, 2)
                assert [f["data"]["text"] for f in live] == ["live-1", "live-2"]
                assert [f["offset"] for f in live] == [1, 2]
                assert [f["data"]["text"] for f in await _texts(old_user, 1)] == ["after"]
                async with connect(gateway, "mona-new") as second_tab:  # not deaf either
                    await publish_texts(gateway, "mona-new", ["live-3"])
                    assert (await _texts(second_tab, 1))[0]["offset"] == 3
                    assert (await _texts(new_user, 1))[0]["offset"] == 3
    finally:
        server.stop()


async def test_a_message_sent_right_after_available_is_accepted(tmp_path: Path) -> None:
    """Issue #19, defect 2: the first command on each pooled connection used to fail
    after a restart ('Connection closed by server'), so a message sent after
    ``engine_status`` ``available`` got ``engine_unavailable``."""
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    try:
        async with (
            running_gateway(engine=server.url) as gateway,
            connect(gateway, "nina") as client,
        ):
            ack = await client.send_message("before", message_id="m-before")
            await collect_run(client, ack["run_id"])  # every pool has used connections
            assert (await client.get_runs())[0]["run_id"] == ack["run_id"]
            for round_ in range(3):
                server.restart()
                while (await client.recv(timeout=15)) != {
                    "type": "engine_status",
                    "state": "available",
                }:
                    pass
                again = await client.send_message(f"after {round_}")  # no engine_unavailable
                await collect_run(client, again["run_id"])
                assert len(await client.get_runs()) == round_ + 2
    finally:
        server.stop()


async def test_a_message_refused_during_an_outage_is_retried_after_available(
    tmp_path: Path,
) -> None:
    """``error`` ``engine_unavailable`` is always followed by ``engine_status``
    ``available`` once Redis is back; ``ReconnectingClient`` waits for it and retries."""
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    try:
        async with running_gateway(engine=server.url) as gateway:
            token = token_for(gateway.settings, "olga")
            async with ReconnectingClient(gateway.ws_url, token) as client:
                server.stop()
                await wait_until(lambda: not gateway.engine.available, 10, "the outage")
                sending = asyncio.create_task(client.send_message("during", message_id="m-o"))
                registry = gateway.metrics.registry
                await wait_until(
                    lambda: registry.get_sample_value(
                        "runwire_client_errors_total", {"code": "engine_unavailable"}
                    ),
                    5,
                    "the refusal",
                )
                await client.client.ping()  # the refusal has reached the client
                assert not sending.done()  # it waits for `engine_status` `available`
                server.start()
                ack = await asyncio.wait_for(sending, 20)
                assert client.engine_retries >= 1
                frame: dict[str, Any] = {}
                while frame.get("type") != "agent_completed":
                    frame = await client.recv(timeout=10)
                assert frame["run_id"] == ack["run_id"]
    finally:
        server.stop()


async def test_what_an_ended_run_publishes_changes_no_snapshot(redis_server: RedisServer) -> None:
    """A publish the engine did not store (its run ended: a zombie agent on a node
    taken for dead) is not folded into the node's run snapshots either (it was: the
    run's answer grew text no stream holds)."""
    from runwire.events import AgentCompleted, AgentMessageDelta, AgentStarted, Event

    async with running_gateway(engine=redis_server.url) as gateway:
        alice = UserId("alice-snap")
        pipeline = gateway.pipeline

        def at(seq: int, data: Any) -> Event:
            return Event.of(data, run_id="r1", thread_id="t", seq=seq, ts=0)

        for seq, data in enumerate(
            [
                AgentStarted("demo", "hi"),
                AgentMessageDelta("done"),
                AgentCompleted("done", "completed"),
            ],
            start=1,
        ):
            await pipeline.publish(alice, at(seq, data))
        late = await pipeline.publish(alice, at(4, AgentMessageDelta(" and more")))
        assert late.duplicate
        await wait_until(lambda: pipeline.store.run(alice, "r1") is not None, what="snapshot")
        snapshot = pipeline.store.run(alice, "r1")
        assert snapshot is not None
        assert (snapshot.answer, snapshot.status, snapshot.last_seq) == ("done", "completed", 3)
