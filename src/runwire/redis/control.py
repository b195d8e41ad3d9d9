"""Commands every gateway node must carry out, over one Redis channel.

Two commands exist. *Disconnect user U with close code C*, so that revoking a
user closes its sockets on every node, not only on the node that was asked: each
node subscribes to ``rw:control``; a command is published once and every node
(the sender included) applies it to the sockets it holds. It is fire and forget:
a node that is disconnected from Redis at that moment misses it (the sender
still closes its own sockets at once, see
:meth:`runwire.app.Gateway.disconnect_user`). A subscription that hears nothing for
:data:`IDLE_PING_S` is sent a ``PING``; one that does not answer within as long
again (a half-open connection, which would wait for ever) is replaced, so a node is
deaf to commands for at most about twice that.

*How many sockets has user U?* (the server API's presence): the asker subscribes
to a reply channel of its own, counts the nodes listening on ``rw:control``
(``PUBSUB NUMSUB``), publishes the question, and waits for that many answers
minus its own, for at most :data:`PRESENCE_TIMEOUT_S`; a node that does not
answer in time makes the answer ``complete: false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any, Literal

import msgspec

from runwire.backends import NodeHandlers
from runwire.exceptions import CloseCode
from runwire.ids import UserId
from runwire.redis.client import listener_client, map_redis_errors, pubsub_of
from runwire.redis.keys import CONTROL_CHANNEL

__all__ = ["PRESENCE_TIMEOUT_S", "DisconnectCommand", "PresenceQuery", "RedisControl"]

log = logging.getLogger("runwire.redis.engine")

_RECONNECT_DELAY_S = 0.5
IDLE_PING_S = 5.0
"""Silence on the control subscription after which it is pinged (and as long again
for the answer before it is replaced)."""
PRESENCE_TIMEOUT_S = 1.0
"""How long a presence question waits for the other nodes."""


class DisconnectCommand(msgspec.Struct, frozen=True, tag="disconnect", tag_field="op"):
    """Close every socket of ``user_id`` with ``code`` and ``reason``."""

    user_id: str
    code: int
    reason: str


class PresenceQuery(msgspec.Struct, frozen=True, tag="presence", tag_field="op"):
    """Tell ``reply_to`` how many sockets of ``user_id`` you hold (unless you are ``asker``)."""

    user_id: str
    reply_to: str
    asker: str


class PresenceReply(msgspec.Struct, frozen=True):
    """One node's answer to a :class:`PresenceQuery`."""

    node: str
    connections: int


ControlCommand = DisconnectCommand | PresenceQuery
_decode = msgspec.json.Decoder(ControlCommand)
_decode_reply = msgspec.json.Decoder(PresenceReply)


class RedisControl:
    """Publishes control commands and applies those of every node.

    Args:
        url: the Redis URL of the engine.
        node: this node's id, and how it closes and counts a user's local sockets.
    """

    def __init__(self, url: str, node: NodeHandlers) -> None:
        self.url = url
        self._node = node
        self._replies: set[asyncio.Task[None]] = set()
        self._redis = listener_client(url)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.state: Literal["idle", "listening", "reconnecting"] = "idle"

    async def start(self) -> None:
        """Subscribe (waits for the first subscription, so no command is missed after)."""
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5.0)

    async def close(self) -> None:
        for task in list(self._replies):
            task.cancel()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._redis.aclose()

    async def disconnect(self, user_id: UserId, code: int, reason: str) -> None:
        """Ask every node to close ``user_id``'s sockets.

        Raises:
            EngineError: Redis could not be reached.
        """
        command = msgspec.json.encode(DisconnectCommand(user_id, code, reason))
        async with map_redis_errors("control publish"):
            await self._redis.publish(CONTROL_CHANNEL, command)

    async def presence(self, user_id: UserId) -> tuple[dict[str, int], bool]:
        """The user's sockets on every other node, and whether all of them answered.

        Raises:
            EngineError: Redis could not be reached.
        """
        reply_to = f"rw:presence-reply:{self._node.node_id}:{secrets.token_hex(8)}"
        query = msgspec.json.encode(PresenceQuery(user_id, reply_to, self._node.node_id))
        counts: dict[str, int] = {}
        async with map_redis_errors("presence"):
            pubsub = await pubsub_of(self._redis)
            try:
                await pubsub.subscribe(reply_to)
                [(_, listening)] = await self._redis.pubsub_numsub(CONTROL_CHANNEL)
                expected = max(int(listening) - 1, 0)  # every node but this one
                await self._redis.publish(CONTROL_CHANNEL, query)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PRESENCE_TIMEOUT_S):
                        while len(counts) < expected:
                            message = await pubsub.get_message(
                                ignore_subscribe_messages=True, timeout=PRESENCE_TIMEOUT_S
                            )
                            if message is None or message.get("type") != "message":
                                continue
                            try:
                                reply = _decode_reply.decode(message["data"])
                            except msgspec.DecodeError:
                                continue
                            counts[reply.node] = reply.connections
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
        return counts, len(counts) >= expected

    async def _listen(self) -> None:
        while True:
            pubsub: Any = None
            try:
                pubsub = await pubsub_of(self._redis)
                await pubsub.subscribe(CONTROL_CHANNEL)
                self.state = "listening"
                self._subscribed.set()
                await self._receive(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis errors and dropped connections: retry
                self.state = "reconnecting"
                log.warning("control channel lost (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(_RECONNECT_DELAY_S)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    async def _receive(self, pubsub: Any) -> None:
        """Apply the subscription's commands until it fails or falls silent: nothing
        heard (not even the answer to a ``PING``) for twice :data:`IDLE_PING_S`."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=IDLE_PING_S)
            now = loop.time()
            if message is not None:
                heard, pinged = now, False
                if message.get("type") == "message":
                    self._apply(message["data"])
                continue
            if now - heard < IDLE_PING_S:
                continue
            if pinged:
                raise ConnectionError(f"no answer to PING within {IDLE_PING_S:g} s")
            await pubsub.ping()
            pinged = True

    def _apply(self, data: bytes) -> None:
        try:
            command = _decode.decode(data)
        except msgspec.DecodeError:
            log.warning("ignored a malformed control command")
            return
        if isinstance(command, PresenceQuery):
            if command.asker != self._node.node_id:
                count = self._node.count(UserId(command.user_id))
                self._send_reply(command.reply_to, PresenceReply(self._node.node_id, count))
            return
        code = command.code
        if not (4000 <= code <= 4999 or code in CloseCode._value2member_map_):
            log.warning("ignored a control command with close code %d", code)
            return
        self._node.disconnect(UserId(command.user_id), code, command.reason[:120])

    def _send_reply(self, channel: str, reply: PresenceReply) -> None:
        async def send() -> None:
            try:
                await self._redis.publish(channel, msgspec.json.encode(reply))
            except Exception as exc:  # the asker counts this node as not answering
                log.debug("presence reply failed: %s", type(exc).__name__)

        task = asyncio.get_running_loop().create_task(send())
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)
