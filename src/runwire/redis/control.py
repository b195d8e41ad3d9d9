"""Commands every gateway node must carry out, over one Redis channel.

Today one command exists: *disconnect user U with close code C*, so that revoking a
user closes its sockets on every node, not only on the node that was asked. Each
node subscribes to ``rw:control``; a command is published once and every node
(the sender included) applies it to the sockets it holds. Commands are fire and
forget: a node that is disconnected from Redis at that moment misses it (the
sender still closes its own sockets at once, see
:meth:`runwire.app.Gateway.disconnect_user`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from runwire.exceptions import CloseCode
from runwire.ids import UserId
from runwire.redis.client import map_redis_errors
from runwire.redis.keys import CONTROL_CHANNEL

__all__ = ["DisconnectCommand", "RedisControl"]

log = logging.getLogger("runwire.redis.engine")

_RECONNECT_DELAY_S = 0.5


class DisconnectCommand(msgspec.Struct, frozen=True, tag="disconnect", tag_field="op"):
    """Close every socket of ``user_id`` with ``code`` and ``reason``."""

    user_id: str
    code: int
    reason: str


ControlCommand = DisconnectCommand
_decode = msgspec.json.Decoder(ControlCommand)


class RedisControl:
    """Publishes control commands and applies those of every node.

    Args:
        url: the Redis URL of the engine.
        on_disconnect: closes the local sockets of a user (``user_id, code, reason``).
    """

    def __init__(self, url: str, on_disconnect: Callable[[UserId, CloseCode, str], object]) -> None:
        self.url = url
        self._on_disconnect = on_disconnect
        self._redis = aioredis.Redis.from_url(url)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.state: Literal["idle", "listening", "reconnecting"] = "idle"

    async def start(self) -> None:
        """Subscribe (waits for the first subscription, so no command is missed after)."""
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5.0)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._redis.aclose()

    async def disconnect(self, user_id: UserId, code: CloseCode, reason: str) -> None:
        """Ask every node to close ``user_id``'s sockets.

        Raises:
            EngineError: Redis could not be reached.
        """
        command = msgspec.json.encode(DisconnectCommand(user_id, code, reason))
        async with map_redis_errors("control publish"):
            await self._redis.publish(CONTROL_CHANNEL, command)

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(CONTROL_CHANNEL)
                self.state = "listening"
                self._subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._apply(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis errors and dropped connections: retry
                self.state = "reconnecting"
                log.warning("control channel lost (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(_RECONNECT_DELAY_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _apply(self, data: bytes) -> None:
        try:
            command = _decode.decode(data)
            code = CloseCode(command.code)
        except (msgspec.DecodeError, ValueError):
            log.warning("ignored a malformed control command")
            return
        self._on_disconnect(UserId(command.user_id), code, command.reason[:120])
