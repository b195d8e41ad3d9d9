"""The lean pipelined connection of the Redis hot paths (:mod:`runwire.redis.wire`)
against a real Redis: replies matched in order with many calls in flight, error
replies, NOSCRIPT, a dying server, a reply timeout, the subscriber inbox, AUTH."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
    NoScriptError,
    ResponseError,
    TimeoutError as RedisTimeoutError,
)

from runwire.redis.client import open_wire, wire_address
from runwire.redis.wire import WireConnection
from tests.redis_server import RedisServer


def admin(server: RedisServer, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(command)
        return sock.recv(256)


async def test_many_calls_in_flight_get_their_own_replies_in_order(
    redis_server: RedisServer,
) -> None:
    connection = await open_wire(**wire_address(redis_server.url))
    try:
        futures = [connection.call("ECHO", f"m{i}") for i in range(500)]  # all written at once
        assert await asyncio.wait_for(asyncio.gather(*futures), 10) == [
            f"m{i}".encode() for i in range(500)
        ]
    finally:
        connection.close()


async def test_an_error_reply_fails_its_call_only(redis_server: RedisServer) -> None:
    connection = await open_wire(**wire_address(redis_server.url))
    try:
        await connection.call("SET", "wire-test-text", "abc")
        before = connection.call("ECHO", "before")
        wrong = connection.call("INCR", "wire-test-text")
        after = connection.call("PING")
        assert await before == b"before"
        with pytest.raises(ResponseError, match="not an integer"):
            await wrong
        assert await after == b"PONG"
        with pytest.raises(NoScriptError):
            await connection.call("EVALSHA", "0" * 40, 0)
        assert await connection.call("PING") == b"PONG"
    finally:
        connection.close()


async def test_a_dying_server_fails_every_call_in_flight_and_every_later_one(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        connection = await open_wire(**wire_address(server.url))
        admin(server, b"CLIENT PAUSE 5000 ALL\r\n")  # hold the replies
        in_flight = [connection.call("PING") for _ in range(3)]
        await asyncio.sleep(0.05)
        server.stop()
        for future in in_flight:
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(future, 5)
        await asyncio.wait_for(connection.closed, 5)
        with pytest.raises(RedisConnectionError):
            connection.call("PING")
    finally:
        server.stop()
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        await open_wire(**wire_address(server.url))


async def test_a_late_reply_times_out_and_closes_the_connection(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        connection = await WireConnection.open(
            "127.0.0.1", server.port, connect_timeout_s=5, command_timeout_s=0.3
        )
        admin(server, b"CLIENT PAUSE 2000 ALL\r\n")
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(connection.call("PING"), 5)
        assert 0.25 <= loop.time() - started < 1.5
        assert connection.closed.done()
    finally:
        server.stop()


async def test_a_subscriber_takes_everything_one_read_brought_at_once(
    redis_server: RedisServer,
) -> None:
    listener = await open_wire(**wire_address(redis_server.url), subscriber=True)
    publisher = await open_wire(**wire_address(redis_server.url))
    try:
        listener.send(("SUBSCRIBE", "wire-test-a", "wire-test-b"))
        confirmations: list[object] = []
        while len(confirmations) < 2:
            confirmations += await asyncio.wait_for(listener.replies(), 5)
        assert [reply[0] for reply in confirmations] == [b"subscribe", b"subscribe"]  # type: ignore[index]
        await asyncio.gather(
            *(publisher.call("PUBLISH", "wire-test-a", f"e{i}") for i in range(50))
        )
        messages: list[list[bytes]] = []
        wakeups = 0
        while len(messages) < 50:
            messages += await asyncio.wait_for(listener.replies(), 5)
            wakeups += 1
        assert [m[2] for m in messages] == [f"e{i}".encode() for i in range(50)]
        assert wakeups < 50  # several messages per wake-up
        listener.close()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(listener.replies(), 5)
    finally:
        listener.close()
        publisher.close()


async def test_credentials_in_the_url_authenticate(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        assert admin(server, b"CONFIG SET requirepass s3cret-wire\r\n").startswith(b"+OK")
        url = f"redis://:s3cret-wire@127.0.0.1:{server.port}/3"
        connection = await open_wire(**wire_address(url))
        assert await connection.call("SET", "k", "v") == b"OK"
        info = (await connection.call("CLIENT", "INFO")).decode()
        assert " db=3 " in info
        connection.close()
        with pytest.raises(ResponseError):
            await open_wire(**wire_address(f"redis://:wrong@127.0.0.1:{server.port}/0"))
    finally:
        server.stop()
