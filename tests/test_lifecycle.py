"""Lifecycle: every exit path leaves no connection, subscription, queue or task behind."""

from __future__ import annotations

import asyncio
import random

import pytest

from runwire.exceptions import ConnectionClosed
from runwire.ids import UserId
from tests.helpers import (
    GatedAgent,
    collect_run,
    connect,
    running_gateway,
    wait_until,
)


def _residue(gateway: object) -> dict[str, int]:
    manager = gateway.manager  # type: ignore[attr-defined]
    engine = gateway.engine  # type: ignore[attr-defined]
    runtime = gateway.runtime  # type: ignore[attr-defined]
    stats = manager.stats()
    return {
        "connections": stats["connections"],
        "users": stats["users"],
        "tasks": stats["tasks"],
        "queued_frames": stats["queued_frames"],
        "subscriptions": engine.stats()["subscriptions"],
        "active_runs": runtime.stats()["active_runs"],
        "users_with_runs": runtime.stats()["users_with_runs"],
    }


CLEAN = {
    "connections": 0,
    "users": 0,
    "tasks": 0,
    "queued_frames": 0,
    "subscriptions": 0,
    "active_runs": 0,
    "users_with_runs": 0,
}


async def test_200_connect_disconnect_cycles_leave_nothing_behind() -> None:
    async with running_gateway() as gateway:
        baseline_tasks = len(asyncio.all_tasks())
        rng = random.Random(7)

        async def cycle(index: int) -> None:
            user = f"user{index % 40}"
            async with connect(gateway, user) as client:
                if rng.random() < 0.3:
                    ack = await client.send_message(f"hello {index}")
                    await collect_run(client, ack["run_id"])
                elif rng.random() < 0.5:
                    client.socket.transport.abort()  # network drop, no close frame

        for batch in range(10):
            await asyncio.gather(*(cycle(batch * 20 + i) for i in range(20)))
        await wait_until(lambda: _residue(gateway) == CLEAN, what="registries to empty")
        await wait_until(lambda: len(asyncio.all_tasks()) <= baseline_tasks, what="tasks")
        assert gateway.manager.metrics.connections_opened._value.get() == 200


async def test_abrupt_network_drop_mid_run_cleans_up_and_the_run_still_ends() -> None:
    agent = GatedAgent()
    async with running_gateway(agent) as gateway:
        async with connect(gateway, "alice") as client:
            await client.send_message("work")
            await asyncio.wait_for(agent.in_tool.wait(), 5)
            client.socket.transport.abort()
            await wait_until(lambda: gateway.manager.connection_count == 0)
        agent.release.set()
        await wait_until(lambda: _residue(gateway) == CLEAN, what="registries to empty")
        # The run finished into history: a new tab of alice can see the stream is intact.
        async with connect(gateway, "alice") as again:
            assert again.connected["offset"] == 6


async def test_server_closing_a_connection_cleans_up() -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        [connection] = gateway.manager.connections_of("alice")  # type: ignore[arg-type]
        gateway.manager.close_connection(connection, 4403, "forbidden")
        with pytest.raises(ConnectionClosed):
            while True:
                await client.recv(timeout=5)
        assert client.close_code == 4403
        await wait_until(lambda: _residue(gateway) == CLEAN)
        gateway.manager.closed(connection)  # idempotent: a second cleanup changes nothing
        assert _residue(gateway) == CLEAN


async def test_a_failing_frame_handler_does_not_take_the_gateway_down() -> None:
    async with running_gateway() as gateway:
        calls = 0

        def broken_handler(connection: object, frame: object) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("handler bug")

        gateway.manager.set_frame_handler(broken_handler)
        async with connect(gateway, "alice") as client:
            await client.send_raw('{"type": "ping", "id": "p1"}')
            with pytest.raises(ConnectionClosed):
                while True:
                    await client.recv(timeout=5)
            assert client.close_code == 1011
        assert calls == 1
        await wait_until(lambda: _residue(gateway) == CLEAN)
        async with connect(gateway, "bob") as bob:  # others are still served
            assert bob.connected["user_id"] == "bob"


async def test_graceful_shutdown_ends_runs_and_closes_every_socket_with_1001() -> None:
    agent = GatedAgent()
    async with running_gateway(agent, shutdown_grace_s=0.2) as gateway:
        async with connect(gateway, "alice") as alice, connect(gateway, "bob") as bob:
            ack = await alice.send_message("long")
            await asyncio.wait_for(agent.in_tool.wait(), 5)
            await gateway.stop()
            frames = await collect_run(alice, ack["run_id"])
            for client in (alice, bob):
                with pytest.raises(ConnectionClosed):
                    while True:
                        await client.recv(timeout=5)
                assert client.close_code == 1001
        assert _residue(gateway) == CLEAN
    assert frames[-2]["type"] == "tool_completed" and frames[-2]["data"]["ok"] is False
    assert frames[-1]["type"] == "agent_error" and frames[-1]["data"]["code"] == "shutdown"


async def test_a_reply_cancelled_before_it_started_leaves_no_unawaited_coroutine() -> None:
    # A ping answered in order, on a connection that goes away before the reply task
    # ran: the task is cancelled unstarted, and its reply coroutine must be closed
    # (else "coroutine ... was never awaited" at garbage collection).
    import gc
    import warnings

    async with running_gateway() as gateway, connect(gateway, "alice"):
        (connection,) = gateway.manager.connections_of(UserId("alice"))
        ran = asyncio.Event()

        async def reply() -> None:
            ran.set()

        gateway.manager.spawn_in_order(connection, reply())
        gateway.manager.closed(connection)  # before the task's first step
        await asyncio.sleep(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        assert not ran.is_set()
        assert not [w for w in caught if "never awaited" in str(w.message)]
