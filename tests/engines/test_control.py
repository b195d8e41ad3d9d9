"""The control channel (``runwire.redis.control``) over a connection that goes silent:
a half-open connection (a NAT or load balancer that forgot it, a peer gone without a
FIN) must not leave a node deaf to disconnect commands (revocation) for good."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis.asyncio as aioredis

from runwire.backends import NodeHandlers
from runwire.ids import UserId
from runwire.redis import control
from runwire.redis.control import RedisControl
from runwire.redis.keys import CONTROL_CHANNEL
from tests.helpers import wait_until
from tests.redis_server import RedisServer


class FreezingProxy:
    """A TCP proxy to Redis whose open connections can be frozen: they stay open but
    carry nothing more either way (new connections go through)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self._frozen: list[asyncio.Event] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def freeze(self) -> None:
        """Every connection open now goes silent (without a FIN)."""
        for flag in self._frozen:
            flag.set()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        frozen = asyncio.Event()
        self._frozen.append(frozen)
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers += [writer, upstream_writer]

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    if not frozen.is_set():  # frozen: swallowed, the connection is silent
                        sink.write(data)
                        await sink.drain()

        self._pumps += [
            asyncio.create_task(pump(reader, upstream_writer)),
            asyncio.create_task(pump(upstream_reader, writer)),
        ]


async def test_a_silent_control_connection_is_replaced_and_commands_apply_again(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "IDLE_PING_S", 0.2, raising=False)
    proxy = FreezingProxy(redis_server.port)
    port = await proxy.start()
    closed: list[tuple[UserId, int, str]] = []
    node = NodeHandlers(
        node_id="n1",
        disconnect=lambda user, code, reason: closed.append((user, code, reason)),
        count=lambda user: 0,
    )
    listener = RedisControl(f"redis://127.0.0.1:{port}/0", node)
    sender = aioredis.from_url(redis_server.url)
    serving: list[asyncio.Task[None]] = []
    try:
        await listener.start()
        assert listener.state == "listening"
        proxy.freeze()  # the control connection goes silent, without a FIN
        await wait_until(lambda: proxy.connections >= 2, timeout=5, what="a new connection")
        await wait_until(lambda: listener.state == "listening", timeout=5, what="listening")
        command = b'{"op":"disconnect","user_id":"alice","code":4401,"reason":"revoked"}'

        async def until_applied() -> None:
            while not closed:  # the new subscription may still be on its way
                await sender.publish(CONTROL_CHANNEL, command)
                await asyncio.sleep(0.05)

        serving.append(asyncio.create_task(until_applied()))
        await asyncio.wait_for(serving[0], 5)
        assert closed[0] == (UserId("alice"), 4401, "revoked")
    finally:
        for task in serving:
            task.cancel()
        await sender.aclose()
        await listener.close()
        await proxy.close()
