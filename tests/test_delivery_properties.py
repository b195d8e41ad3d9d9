"""Property: whatever the interleaving, each client gets exactly its user's stream.

Random programs of publish, connect (resuming), disconnect, slow reads (a socket
whose transport stops accepting writes) and loop ticks run against the real
manager, session and memory engine, with an in-memory socket. Each logical client
must receive, from where it first connected, every event of its own user exactly
once and in order, across any number of reconnects and 4409 closes, and nothing of
another user.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings, strategies as st

from runwire import WebSocketManager
from runwire.app import create_engine
from runwire.engines import StoredEvent
from runwire.events import AgentMessageDelta, Event
from runwire.ids import UserId
from runwire.manager import Connection, create_manager
from runwire.metrics import Metrics
from runwire.resume import ResumeRequest
from tests.helpers import Listener, make_settings

USERS = ["ann", "ben", "cat"]
CLIENTS_PER_USER = 2


class FakeSocket:
    """A FrameWriter that records frames, and can stop accepting writes (slow reader)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.paused = False
        self.closed_with: int | None = None

    @property
    def writable(self) -> bool:
        return not self.paused

    def write_frames(self, frames: list[bytes]) -> None:
        assert self.closed_with is None, "write after close"
        self.frames.extend(frames)

    def close(self, code: int, reason: str) -> None:
        self.closed_with = code

    def abort(self) -> None:
        self.closed_with = self.closed_with or 1006


@dataclass
class LogicalClient:
    """One browser tab: reconnects with its position, checks what it receives."""

    user: str
    epoch: str | None = None
    offset: int | None = None
    first_offset: int | None = None
    texts: list[str] = field(default_factory=list)
    socket: FakeSocket | None = None
    connection: Connection | None = None
    read: int = 0

    def consume(self) -> None:
        assert self.socket is not None
        for raw in self.socket.frames[self.read :]:
            frame: dict[str, Any] = msgspec.json.decode(raw)
            kind = frame["type"]
            if kind == "connected":
                if self.epoch is None:
                    self.epoch, self.offset = frame["epoch"], frame["offset"]
                    self.first_offset = frame["offset"]
            elif kind == "resume_failed":
                raise AssertionError(f"unexpected resume_failed: {frame}")
            elif "offset" in frame:
                # A coalesced delta stands for offsets coalesced_from..offset.
                first = frame["data"].get("coalesced_from", frame["offset"])
                assert first == (self.offset or 0) + 1, (frame, self.offset)
                assert frame["data"]["text"].startswith(f"{self.user}:"), "misrouted"
                assert frame["data"]["text"].count(":") == frame["offset"] - first + 1
                self.offset = frame["offset"]
                self.texts.append(frame["data"]["text"])
        self.read = len(self.socket.frames)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from(USERS), st.integers(1, 5)),
        st.tuples(st.just("connect"), st.integers(0, len(USERS) * CLIENTS_PER_USER - 1)),
        st.tuples(st.just("disconnect"), st.integers(0, len(USERS) * CLIENTS_PER_USER - 1)),
        st.tuples(st.just("pause"), st.integers(0, len(USERS) * CLIENTS_PER_USER - 1)),
        st.tuples(st.just("resume_reading"), st.integers(0, len(USERS) * CLIENTS_PER_USER - 1)),
        st.tuples(st.just("tick"), st.integers(1, 3)),
    ),
    min_size=5,
    max_size=60,
)


async def _run_program(program: list[tuple[Any, ...]]) -> None:
    config = make_settings(outbound_queue_events=8, outbound_queue_bytes=4096)
    engine = create_engine(config)
    manager: WebSocketManager = create_manager(engine=engine, settings=config, metrics=Metrics())

    def deliver(stored: StoredEvent) -> None:
        manager.deliver(stored)

    await engine.start(Listener(deliver))
    clients = [LogicalClient(user) for user in USERS for _ in range(CLIENTS_PER_USER)]
    published = dict.fromkeys(USERS, 0)

    async def tick(times: int = 2) -> None:
        for _ in range(times):
            await asyncio.sleep(0)
        for client in clients:
            if client.socket is not None:
                client.consume()
                if client.socket.closed_with is not None and client.connection is not None:
                    manager.closed(client.connection, client.socket.closed_with)
                    client.connection = None

    def connect(client: LogicalClient) -> None:
        if client.connection is not None:
            return
        client.socket = FakeSocket()
        client.read = 0
        resume = None
        if client.epoch is not None and client.offset is not None:
            resume = ResumeRequest(client.epoch, client.offset)  # type: ignore[arg-type]
        client.connection = manager.open(UserId(client.user), client.socket, resume)

    for operation in program:
        kind = operation[0]
        if kind == "publish":
            user, count = operation[1], operation[2]
            for _ in range(count):
                event = Event.of(
                    AgentMessageDelta(f"{user}:{published[user]}"),
                    run_id="r",
                    thread_id="t",
                    seq=1,
                    ts=0,
                )
                published[user] += 1
                await engine.publish(UserId(user), event)
        elif kind == "connect":
            connect(clients[operation[1]])
        elif kind == "disconnect":
            client = clients[operation[1]]
            if client.connection is not None:
                await tick(1)
                manager.closed(client.connection)
                client.connection = None
        elif kind == "pause":
            client = clients[operation[1]]
            if client.socket is not None:
                client.socket.paused = True
        elif kind == "resume_reading":
            client = clients[operation[1]]
            if client.socket is not None and client.socket.paused:
                client.socket.paused = False
                if client.connection is not None:
                    manager.writable_again(client.connection)
        else:
            await tick(operation[1])

    # Settle: every client reads and reconnects until it has its user's whole stream.
    for _ in range(10):
        for client in clients:
            if client.socket is not None:
                client.socket.paused = False
            if client.epoch is not None:
                connect(client)
                if client.connection is not None:
                    manager.writable_again(client.connection)
        await tick(4)
        if all(c.epoch is None or c.offset == published[c.user] for c in clients):
            break
    for client in clients:
        if client.epoch is None:
            continue
        start = client.first_offset or 0
        expected = [f"{client.user}:{i}" for i in range(start, published[client.user])]
        assert "".join(client.texts) == "".join(expected), (client.user, client.texts)
    for client in clients:
        if client.connection is not None:
            manager.closed(client.connection)
    await tick(2)
    assert manager.stats()["connections"] == 0
    assert engine.stats()["subscriptions"] == 0
    await engine.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(program=operations)
def test_every_client_gets_exactly_its_users_stream(program: list[tuple[Any, ...]]) -> None:
    asyncio.run(_run_program(program))
