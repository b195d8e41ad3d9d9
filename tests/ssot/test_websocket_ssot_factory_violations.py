"""One factory for the manager, per-user isolation, and bounded memory per user."""

from __future__ import annotations

import asyncio
import gc
import socket
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.typing import Subprotocol

import runwire.app
from runwire import WebSocketManager
from runwire.client import Client
from runwire.exceptions import CloseCode
from runwire.ids import UserId
from runwire.manager import create_manager
from tests.helpers import connect, publish_texts, running_gateway, token_for, wait_until
from tests.ssot._support import (
    PACKAGE,
    TESTS,
    assert_none,
    broken_tree,
    drain_nowait,
    frames_until_terminal,
    repo_findings,
    settle,
    ssot_findings,
    write_ssot_config,
)

# -- one factory -------------------------------------------------------------------


def live_managers() -> list[WebSocketManager]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, WebSocketManager)]


def manager_constructions(config: Path) -> list[str]:
    return [hit for hit in ssot_findings(config, ["SSOT005"]) if hit.endswith(":manager")]


async def test_websocket_manager_unified_factory_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Statically: src builds no concept outside its factory; src and tests build no manager.
    assert_none(repo_findings(tmp_path / "src", ["SSOT005"], [PACKAGE]))
    assert_none(manager_constructions(write_ssot_config(tmp_path / "all", [PACKAGE, TESTS])))
    # At runtime: a gateway makes exactly one manager, through the factory.
    made: list[WebSocketManager] = []

    def counting_factory(**kwargs: Any) -> WebSocketManager:
        manager = create_manager(**kwargs)
        made.append(manager)
        return manager

    monkeypatch.setattr(runwire.app, "create_manager", counting_factory)
    before = live_managers()
    async with running_gateway() as gateway, connect(gateway, "alice"), connect(gateway, "bob"):
        new = [m for m in live_managers() if all(m is not old for old in before)]
        assert made == [gateway.manager]
        assert new == [gateway.manager]
        assert gateway.manager.connection_count == 2


def test_factory_check_fails_on_a_construction_outside_the_factory(tmp_path: Path) -> None:
    config = broken_tree(
        tmp_path,
        {
            "src/runwire/legacy.py": (
                "from runwire.manager import WebSocketManager\n"
                "\n\n"
                "def make_manager(**kwargs: object) -> WebSocketManager:\n"
                "    return WebSocketManager(**kwargs)\n"
            )
        },
    )
    assert manager_constructions(config) == ["SSOT005 src/runwire/legacy.py:5 make_manager:manager"]


# -- isolation ---------------------------------------------------------------------

USERS = 50
TABS = 3


async def test_user_isolation_in_multi_user_scenarios() -> None:
    users = [f"user{i:02d}" for i in range(USERS)]
    async with running_gateway() as gateway, AsyncExitStack() as stack:
        tabs: dict[str, list[Client]] = {}
        for user in users:
            opened = [connect(gateway, user) for _ in range(TABS)]
            tabs[user] = list(await asyncio.gather(*(stack.enter_async_context(c) for c in opened)))
        for user, clients in tabs.items():
            assert {c.connected["user_id"] for c in clients} == {user}
        acks = await asyncio.gather(
            *(
                tabs[user][i % TABS].send_message(f"hello from {user}")
                for i, user in enumerate(users)
            )
        )
        run_of = {user: ack["run_id"] for user, ack in zip(users, acks, strict=True)}
        received = await asyncio.gather(
            *(frames_until_terminal(c, {run_of[u]}) for u in users for c in tabs[u])
        )
        late = await asyncio.gather(*(settle(c) for u in users for c in tabs[u]))
        owners = [u for u in users for _ in range(TABS)]
        wrong = 0
        for user, frames, extra, client in zip(
            owners, received, late, [c for u in users for c in tabs[u]], strict=True
        ):
            wrong += sum(f.get("run_id") != run_of[user] for f in frames + extra)
            assert extra == [], f"{user} got frames after its run ended: {extra}"
            assert client.duplicates_dropped == 0
            types = [f["type"] for f in frames]
            assert types.count("agent_started") == 1 and types[-1] == "agent_completed"
            started = next(f for f in frames if f["type"] == "agent_started")
            assert started["data"]["input"] == f"hello from {user}"
            offsets = [f["offset"] for f in frames]
            assert offsets == list(range(1, len(frames) + 1))
        assert wrong == 0
        for user in users:
            ids = {c.id for c in gateway.manager.connections_of(UserId(user))}
            assert ids == {c.connected["connection_id"] for c in tabs[user]}


# -- bounded memory per user -------------------------------------------------------

LIMITS: dict[str, Any] = {
    "outbound_queue_bytes": 16_384,
    "user_queue_budget_bytes": 65_536,
    "max_connections_per_user": 60,
    "history_max_bytes": 32_768,
    "heartbeat_timeout_s": 10.0,
}
READERS = 50
BATCH = 8  # per round, 50 readers queue ~50 x 8 x 140 B: under the budget, not by much
EVENTS = 2_000


async def test_memory_growth_bounds_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    user = UserId("hoarder")
    async with running_gateway(**LIMITS) as gateway, AsyncExitStack() as stack:
        settings = gateway.settings
        manager = gateway.manager
        readers = list(
            await asyncio.gather(
                *(stack.enter_async_context(connect(gateway, user)) for _ in range(READERS))
            )
        )
        # The one that never reads: a tiny receive window and a one-frame client queue...
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, (settings.host, gateway.port))
        protocols = [Subprotocol("runwire.v1"), Subprotocol(f"bearer.{token_for(settings, user)}")]
        hoarder = await stack.enter_async_context(
            websockets.connect(gateway.ws_url, sock=raw, subprotocols=protocols, max_queue=1)
        )
        await wait_until(lambda: manager.connection_count == READERS + 1, what="51 connections")
        reader_ids = {r.connected["connection_id"] for r in readers}
        [slow] = [c for c in manager.connections_of(user) if c.id not in reader_ids]
        # ...behind a small kernel send buffer (a slow link), so the gateway's own queue
        # fills after hundreds of events rather than after megabytes of kernel buffers.
        transport = slow.writer.transport.underlying_transport  # type: ignore[attr-defined]
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        peak = {"user_bytes": 0, "history_bytes": 0}
        deliver = manager.deliver

        def measured_deliver(stored: Any) -> Any:
            delivery = deliver(stored)
            queued = sum(c.session.pending_bytes for c in manager.connections_of(user))
            assert queued <= settings.user_queue_budget_bytes, queued
            history = gateway.engine.stats()["bytes"]
            assert history <= settings.history_max_bytes, history
            peak["user_bytes"] = max(peak["user_bytes"], queued)
            peak["history_bytes"] = max(peak["history_bytes"], history)
            return delivery

        monkeypatch.setattr(manager, "deliver", measured_deliver)

        def readers_at(offset: int) -> bool:
            return all(r.position is not None and r.position.offset == offset for r in readers)

        for start in range(0, EVENTS, BATCH):
            end = start + BATCH
            texts = [f"{n:05d}:" + "x" * 24 for n in range(start, end)]
            await publish_texts(gateway, user, texts, run_id=f"r{start}")
            # The readers keep up (flow control by offsets, not by time).
            await wait_until(partial(readers_at, end), timeout=10, what=f"readers at {end}")
            for reader in readers:
                drain_nowait(reader)

        assert slow.session.close_code == CloseCode.SLOW_CONSUMER
        assert peak["user_bytes"] > settings.user_queue_budget_bytes // 2  # the bound mattered
        assert peak["history_bytes"] > settings.history_max_bytes // 2
        assert gateway.engine.stats()["evicted_events"] > 0
        assert all(r.duplicates_dropped == 0 for r in readers)
        # The hoarder finally reads: what was buffered, then 4409.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(hoarder.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CloseCode.SLOW_CONSUMER
        await stack.aclose()
        await wait_until(lambda: manager.stats()["connections"] == 0, what="all disconnected")
        await wait_until(lambda: gateway.engine.stats()["subscriptions"] == 0, what="unsubscribed")
        assert manager.stats() == {
            "connections": 0,
            "users": 0,
            "dirty": 0,
            "tasks": 0,
            "queued_frames": 0,
        }
