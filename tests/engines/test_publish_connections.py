"""The publish calls' connections: opening one never waits for opening another.

On a Redis Cluster the engine keeps one publish connection per master and opens a
master's anew when it broke. A master that accepts the TCP connection and then says
nothing (a hung process, a machine going down) holds its open for the connect
timeout (``CONNECT_TIMEOUT_S``, 5 s; the test's silent server answers no ``AUTH``).
With one lock for every open, the calls to the healthy masters whose connections
were being reopened at the same time (after a failover, every node reconnects)
waited those 5 s too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from runwire.redis.client import CONNECT_TIMEOUT_S, wire_address
from tests.helpers import Listener
from tests.redis_server import RedisServer, engine_on


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never sends a byte; its port."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        with contextlib.suppress(OSError):
            await server.wait_closed()


async def test_a_master_that_never_answers_delays_no_other_masters_connection(
    redis_server: RedisServer, silent_server: int
) -> None:
    engine = engine_on(redis_server.url)
    await engine.start(Listener())
    try:
        # With credentials, an open waits for the answer to AUTH: this one never comes.
        address = {"host": "127.0.0.1", "port": silent_server, "password": "secret"}
        silent = asyncio.create_task(engine._publish_connection("silent", address))
        await asyncio.sleep(0.05)  # its open is under way (connected, waiting for AUTH)
        assert not silent.done()
        healthy = await asyncio.wait_for(
            engine._publish_connection("healthy", wire_address(redis_server.url)),
            CONNECT_TIMEOUT_S / 5,
        )
        assert await healthy.call("PING") in (b"PONG", "PONG")
        assert not silent.done()
        assert list(engine._publisher_opening) == ["silent"]  # only opens under way
        silent.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await silent
        assert engine._publisher_opening == {}
    finally:
        await engine.close()
