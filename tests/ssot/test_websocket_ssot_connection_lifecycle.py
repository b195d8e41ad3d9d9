"""One creation path, idempotent cleanup on every exit path, and a manager that agrees
with the clients about which connections exist."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import msgspec
import pytest
import websockets
from websockets.typing import Subprotocol

from runwire import Gateway
from runwire.client import Client
from runwire.exceptions import CloseCode, ConnectionClosed
from runwire.ids import UserId
from runwire.manager import Connection
from runwire.protocol import State
from tests.helpers import GatedAgent, connect, publish_texts, running_gateway, token_for, wait_until


def registry(gateway: Gateway, users: list[str]) -> dict[str, set[str]]:
    """The manager's view: user to connection ids."""
    view = {u: {str(c.id) for c in gateway.manager.connections_of(UserId(u))} for u in users}
    return {u: ids for u, ids in view.items() if ids}


def opened_total(gateway: Gateway) -> float:
    return float(gateway.metrics.connections_opened._value.get())


def closed_total(gateway: Gateway) -> float:
    metrics = gateway.metrics.connections_closed.collect()
    return float(sum(s.value for m in metrics for s in m.samples if s.name.endswith("_total")))


# -- one creation path, under churn ------------------------------------------------


async def test_connection_creation_through_unified_path() -> None:
    users = [f"u{i}" for i in range(20)]
    rng = random.Random(5)
    async with running_gateway(max_connections_per_user=20) as gateway:
        manager = gateway.manager
        live: dict[str, tuple[str, Client, AsyncExitStack]] = {}
        opened = 0
        samples = 0

        async def open_one(user: str) -> None:
            nonlocal opened
            stack = AsyncExitStack()
            client = await stack.enter_async_context(connect(gateway, user))
            cid = client.connected["connection_id"]
            # Registered before `connected` was sent: it is in the registry right now.
            assert cid in {c.id for c in manager.connections_of(UserId(user))}
            assert cid not in live
            live[cid] = (user, client, stack)
            opened += 1

        async def close_one(cid: str) -> None:
            user, client, stack = live.pop(cid)
            if rng.random() < 0.4:
                client.socket.transport.abort()  # a network drop: no close frame
            await stack.aclose()

        async def sample(done: asyncio.Event) -> None:
            nonlocal samples
            while not done.is_set():
                # Every socket a client holds open is registered, at any instant.
                for cid, (user, _, _) in list(live.items()):
                    assert cid in {c.id for c in manager.connections_of(UserId(user))}
                samples += 1
                await asyncio.sleep(0.002)

        for round_ in range(6):
            done = asyncio.Event()
            sampler = asyncio.create_task(sample(done))
            closing = rng.sample(sorted(live), len(live) // 2)
            await asyncio.gather(
                *(open_one(rng.choice(users)) for _ in range(30)),
                *(close_one(cid) for cid in closing),
            )
            done.set()
            await sampler
            await wait_until(
                lambda: manager.connection_count == len(live), what=f"convergence {round_}"
            )
            expected: dict[str, set[str]] = {}
            for cid, (user, _, _) in live.items():
                expected.setdefault(user, set()).add(cid)
            assert registry(gateway, users) == expected
            assert manager.user_count == len(expected)
        for cid in list(live):
            await close_one(cid)
        await wait_until(lambda: manager.connection_count == 0, what="all closed")
        assert samples > 6
        assert opened == 180 == opened_total(gateway)  # every socket came through open()
        assert closed_total(gateway) == opened
        assert manager.stats()["users"] == 0


# -- cleanup on every exit path ---------------------------------------------------------


def residue(gateway: Gateway) -> dict[str, int]:
    stats = gateway.manager.stats()
    return {
        "connections": stats["connections"],
        "users": stats["users"],
        "dirty": stats["dirty"],
        "tasks": stats["tasks"],
        "queued_frames": stats["queued_frames"],
        "subscriptions": gateway.engine.stats()["subscriptions"],
    }


CLEAN = dict.fromkeys(
    ["connections", "users", "dirty", "tasks", "queued_frames", "subscriptions"], 0
)


async def assert_cleaned_up(gateway: Gateway, connection: Connection, baseline_tasks: int) -> None:
    await wait_until(lambda: residue(gateway) == CLEAN, what="no entry, queue or subscription")
    await wait_until(lambda: len(asyncio.all_tasks()) <= baseline_tasks, what="no task left")
    assert connection.closed and not connection.tasks
    assert connection.session.state is State.CLOSED and connection.session.pending == 0
    # Idempotent: cleaning up again changes nothing, and counts nothing twice.
    closes = closed_total(gateway)
    gateway.manager.closed(connection)
    gateway.manager.closed(connection, 1011)
    assert residue(gateway) == CLEAN
    assert closed_total(gateway) == closes


async def read_until_closed(client: Client) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            await client.recv(timeout=5)
    return client.close_code


async def one_exit(
    gateway: Gateway, user: str, leave: Callable[[Client, Connection], Awaitable[int | None]]
) -> int | None:
    """Connect ``user``, put events in flight, leave through ``leave``; check the cleanup."""
    baseline_tasks = len(asyncio.all_tasks())
    async with connect(gateway, user) as client:
        [connection] = gateway.manager.connections_of(UserId(user))
        await publish_texts(gateway, user, [f"event {i}" for i in range(20)])
        code = await leave(client, connection)
    await assert_cleaned_up(gateway, connection, baseline_tasks)
    return code


async def test_connection_cleanup_consistency() -> None:
    async with running_gateway() as gateway:

        async def client_close(client: Client, _: Connection) -> int | None:
            await client.close()
            return client.socket.close_code

        async def network_drop(client: Client, _: Connection) -> int | None:
            client.socket.transport.abort()
            return await read_until_closed(client)

        async def server_close(client: Client, connection: Connection) -> int | None:
            gateway.manager.close_connection(connection, CloseCode.FORBIDDEN, "forbidden")
            return await read_until_closed(client)

        assert await one_exit(gateway, "closer", client_close) == 1000
        assert await one_exit(gateway, "dropper", network_drop) == 1006
        assert await one_exit(gateway, "kicked", server_close) == CloseCode.FORBIDDEN

    async with running_gateway() as gateway:

        def broken_handler(connection: Connection, frame: object) -> None:
            raise RuntimeError("handler bug")

        gateway.manager.set_frame_handler(broken_handler)

        async def handler_exception(client: Client, _: Connection) -> int | None:
            await client.send_raw('{"type": "ping", "id": "p1"}')
            return await read_until_closed(client)

        assert await one_exit(gateway, "victim", handler_exception) == 1011

    agent = GatedAgent()
    async with running_gateway(agent, shutdown_grace_s=0.2) as gateway:
        baseline_tasks = len(asyncio.all_tasks())
        async with connect(gateway, "stayer") as client:
            [connection] = gateway.manager.connections_of(UserId("stayer"))
            await client.send_message("long")
            await asyncio.wait_for(agent.in_tool.wait(), 5)
            await gateway.stop()
            assert residue(gateway) == CLEAN  # stop() returns with nothing left
            assert await read_until_closed(client) == CloseCode.GOING_AWAY
        await assert_cleaned_up(gateway, connection, baseline_tasks)
        assert gateway.runtime.stats()["active_runs"] == 0


# -- the manager's view is the clients' view -----------------------------------------


async def test_connection_state_synchronization() -> None:
    users = [f"sync{i}" for i in range(20)]
    async with running_gateway() as gateway, AsyncExitStack() as stack:
        tabs = await asyncio.gather(
            *(stack.enter_async_context(connect(gateway, u)) for u in users for _ in range(3))
        )
        clients_view: dict[str, set[str]] = {}
        for tab in tabs:
            clients_view.setdefault(tab.connected["user_id"], set()).add(
                tab.connected["connection_id"]
            )
        assert registry(gateway, users) == clients_view
        assert all(len(ids) == 3 for ids in clients_view.values()) and len(clients_view) == 20
        for user in users:
            connections = gateway.manager.connections_of(UserId(user))
            position = await gateway.engine.position(UserId(user))
            for connection in connections:
                assert connection.user_id == user and connection.follower.epoch == position.epoch
            epochs = {t.connected["epoch"] for t in tabs if t.connected["user_id"] == user}
            assert epochs == {position.epoch}

        # Frames sent the moment the socket opens, and right after `connected`, are answered.
        async def eager(index: int) -> list[dict[str, object]]:
            user = users[index % len(users)]
            protocols = [
                Subprotocol("runwire.v1"),
                Subprotocol(f"bearer.{token_for(gateway.settings, user)}"),
            ]
            async with websockets.connect(gateway.ws_url, subprotocols=protocols) as ws:
                await ws.send('{"type": "ping", "id": "early"}')  # before `connected`
                first = msgspec.json.decode(await asyncio.wait_for(ws.recv(), 5))
                await ws.send('{"type": "ping", "id": "right-after"}')
                frames = [first]
                for _ in range(2):
                    frames.append(msgspec.json.decode(await asyncio.wait_for(ws.recv(), 5)))
                return frames

        for frames in await asyncio.gather(*(eager(i) for i in range(40))):
            assert [f["type"] for f in frames] == ["connected", "pong", "pong"]
            assert [f.get("id") for f in frames[1:]] == ["early", "right-after"]
        await wait_until(
            lambda: registry(gateway, users) == clients_view, what="eager sockets gone"
        )
