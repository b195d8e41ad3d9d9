"""A command written to a connection whose transport uvloop already closed.

uvloop raises ``RuntimeError`` ("the handler is closed") when something writes to a
closed transport, where asyncio's own loop ignores the write; redis-py retries a
command only on its ``ConnectionError``. A Redis restart that closed a connection
between redis-py's connect and its ``HELLO`` let that ``RuntimeError`` out of the
run-start script: the node's message handler failed, and the user's message got no
reply at all (seen in ``test_twenty_redis_restarts...``, about one run in ten). Both
Redis connection kinds of runwire must report it as a broken connection instead, so
the usual retry (and, past it, ``engine_unavailable``) applies. The loop is uvloop,
as in ``runwire serve``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from runwire.redis.client import open_wire, redis_client, wire_address
from tests.redis_server import RedisServer


def on_uvloop(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test())


def test_a_pooled_command_on_a_closed_transport_is_sent_again_on_a_new_connection(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        client = redis_client(redis_server.url, decode_responses=True)
        assert isinstance(client, Redis)
        try:
            assert await client.set("closed-transport", "1")
            connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            assert connection._writer is not None
            connection._writer.transport.close()  # gone, and redis-py does not know it
            await client.connection_pool.release(connection)
            assert await client.get("closed-transport") == "1"  # retried, not RuntimeError
        finally:
            await client.aclose()

    on_uvloop(scenario)


def test_a_lean_call_on_a_closed_transport_fails_as_a_broken_connection(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        connection = await open_wire(**wire_address(redis_server.url))
        try:
            assert await connection.call("PING") == b"PONG"
            transport = connection._transport
            assert transport is not None
            transport.close()  # connection_lost has not run yet
            with pytest.raises(RedisConnectionError):
                connection.call("PING")
            with pytest.raises(RedisConnectionError):
                connection.send(("PING",))
        finally:
            connection.close()

    on_uvloop(scenario)
