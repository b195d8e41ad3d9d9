"""One subscription connection of the Redis engine: to the one server, or to one shard
master of a Redis Cluster.

A :class:`ShardListener` owns one connection and the
:class:`~runwire.redis.subscriptions.SubscriptionSet` of the users whose live channel
is in its slots; it alone sends ``SUBSCRIBE`` / ``UNSUBSCRIBE`` (``SSUBSCRIBE`` /
``SUNSUBSCRIBE`` on a cluster, one command per slot: sharded pub/sub refuses channels
of two slots in one command), derived from that set.

Per connection it subscribes every wanted user, then keeps the server's channels
equal to the wanted users (every change, including those asked while commands are in
flight, is a difference the next round sends). Once they are equal it checks the
engine's command pool (:meth:`ListenerHost.ping`), becomes *verified* and asks the
host to resync each of its users from history. A ``PING`` every ``_PING_INTERVAL_S``
of silence detects a connection that no longer answers.

On any failure the listener is unverified (the host reports the engine unavailable),
forgets what the connection had confirmed, waits (backing off: ``_BACKOFF_MIN_S``
doubling to ``_BACKOFF_MAX_S``, back to the minimum once verified), asks the host for
a new connection (which resolves the shard's master again, so after a failover it is
the promoted replica) and starts over. A failure is: the connection breaks or stops
answering; the server refuses a command (any error reply: each answers a command
whose channels would otherwise stay unconfirmed); or a slot left the master, which
the server says by answering ``MOVED`` (a slot that moved while this listener held
none of its users, so the engine's slot map is stale) or by a ``sunsubscribe`` nobody
asked for (a user's slot moved). After the last, the listener keeps the move
(:attr:`ShardListener.moved`) until it is verified again, and the host's next
topology read looks past cluster nodes that have not heard of it yet. When the host
finds the slots no longer split into the same shards, :meth:`ListenerHost.connect`
raises :class:`ShardsChanged` and the listener stops: the host builds new listeners,
which take over its users. If no node has heard of the move yet, the host connects to
the same master again, which refuses or drops the moved users' channels again: the
listener retries, backing off, until the cluster's slot map shows the move.

The connection is never retried nor re-subscribed by redis-py behind the listener's
back: a silent reconnect would re-subscribe without the resync that must follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from redis.exceptions import (
    ConnectionError as RedisConnectionError,
    RedisError,
    ResponseError,
    TimeoutError as RedisTimeoutError,
)

from runwire.ids import UserId
from runwire.redis.keys import NODE_CHANNEL, live_channel, user_of_channel
from runwire.redis.subscriptions import SubscriptionSet
from runwire.redis.topology import Address, Moved
from runwire.redis.wire import redirect_of

__all__ = ["ListenerHost", "ShardListener", "ShardsChanged", "SlotMoved"]

log = logging.getLogger("runwire.redis.engine")

_PING_INTERVAL_S = 1.0
_PING_TIMEOUT_S = 5.0
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 2.0
_CHANNELS_PER_COMMAND = 512


class ShardsChanged(RedisError):
    """The cluster's slots no longer split into the shards the listeners were made for."""


class SlotMoved(RedisConnectionError):
    """The connection's master no longer serves ``slot`` (it answered ``MOVED``, then
    ``target`` serves it, or dropped a channel of the slot)."""

    def __init__(self, message: str, slot: int, target: Address | None) -> None:
        super().__init__(message)
        self.slot = slot
        self.target = target


class ListenerHost(Protocol):
    """What a listener needs from its engine."""

    @property
    def closing(self) -> bool: ...

    @property
    def failures(self) -> int:
        """Command failures reported so far (a verify spanning one starts over)."""
        ...

    async def connect(self, listener: ShardListener) -> Any:
        """A connected subscription connection to the listener's shard master, found
        by a topology read that shows ``listener.moved`` if it can; the master's address
        goes to ``listener.master``.

        Raises:
            ShardsChanged: the listener's shard no longer exists (stop).
            RedisError, OSError, TimeoutError: no connection now (try again later).
        """
        ...

    async def ping(self) -> None:
        """One command on the command pool (raises when Redis does not answer)."""
        ...

    def on_message(self, channel: bytes, data: bytes) -> None: ...

    def now_live(self, user_id: UserId) -> None: ...

    def state_changed(self) -> None:
        """A listener became verified or lost its connection."""
        ...

    def resync(self, user_id: UserId) -> None: ...

    def shards_changed(self) -> None:
        """Build listeners for the shards as they are now (a listener stopped)."""
        ...


class ShardListener:
    """One subscription connection and its users (see the module docstring).

    Args:
        host: the engine.
        key: the shard's name (its slot ranges; ``()`` for one server).
        sharded: use sharded pub/sub (a cluster).
        slot_of: the slot of a channel name (groups sharded commands per slot).
    """

    def __init__(
        self,
        host: ListenerHost,
        key: tuple[tuple[int, int], ...],
        *,
        sharded: bool,
        slot_of: Callable[[str], int],
    ) -> None:
        self._host = host
        self.key = key
        self.sharded = sharded
        self._slot_of = slot_of
        self.subscriptions = SubscriptionSet()
        self.changed = asyncio.Event()
        """Set when the listener has something to do: send changes, verify."""
        self.synced = False
        """The current connection was in sync at least once."""
        self.verified = False
        """A command succeeded since the connection was (re)made and since the last
        failure, and this listener's users were resynced."""
        self.ready = asyncio.Event()
        """Verified at least once."""
        self.stopped = False
        self.master: Address | None = None
        """The master of the last connection (set by the host)."""
        self.moved: Moved | None = None
        """A slot that left this listener's master, told by the last connections and not
        yet followed (cleared once verified)."""
        self._last_reply = 0.0
        self._backoff = _BACKOFF_MIN_S
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0
        self.resyncs = 0
        if sharded:
            self._subscribe, self._unsubscribe = "SSUBSCRIBE", "SUNSUBSCRIBE"
            self._message, self._subscribed, self._unsubscribed = (
                b"smessage",
                b"ssubscribe",
                b"sunsubscribe",
            )
        else:
            self._subscribe, self._unsubscribe = "SUBSCRIBE", "UNSUBSCRIBE"
            self._message, self._subscribed, self._unsubscribed = (
                b"message",
                b"subscribe",
                b"unsubscribe",
            )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def close(self) -> None:
        """Stop (the host's ``closing`` flag, or this listener was replaced)."""
        self.stopped = True
        self.changed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def unverify(self) -> None:
        """A command failed: verify again (then resync) once Redis answers."""
        self.verified = False
        self.changed.set()

    def _done(self) -> bool:
        return self.stopped or self._host.closing

    async def _listen(self) -> None:
        while not self._done():
            connection: Any = None
            try:
                connection = await self._host.connect(self)
                await self._serve(connection)
            except ShardsChanged:
                log.warning("redis cluster slots moved: rebuilding the subscriptions")
                self._lost()
                self.stopped = True
                self._host.shards_changed()
                return
            except SlotMoved as exc:
                log.warning("redis subscription lost: %s", exc)
                self.moved = Moved(exc.slot, self.master, exc.target)
                self._lost()
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("redis subscription lost: %s", exc)
                self._lost()
            except Exception:  # a bug must not leave the node deaf: start over
                log.exception("redis subscription failed")
                self._lost()
            finally:
                if connection is not None:
                    connection.close()
            self.reconnects += 1
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX_S)

    def _lost(self) -> None:
        self.subscriptions.reset()
        self.synced = self.verified = False
        self._host.state_changed()

    def _commands(self, command: str, users: list[UserId]) -> list[tuple[str, ...]]:
        """``command`` for ``users``' channels: chunks of one slot each when sharded."""
        groups: dict[int, list[str]] = {}
        for user_id in users:
            channel = live_channel(user_id)
            groups.setdefault(self._slot_of(channel) if self.sharded else 0, []).append(channel)
        return [
            (command, *channels[start : start + _CHANNELS_PER_COMMAND])
            for channels in groups.values()
            for start in range(0, len(channels), _CHANNELS_PER_COMMAND)
        ]

    async def _serve(self, connection: Any) -> None:
        """Drive one connection until it fails (raises)."""
        loop = asyncio.get_running_loop()
        self._last_reply = loop.time()
        # A channel nobody publishes on keeps the connection in subscribed mode.
        connection.send(("SUBSCRIBE", NODE_CHANNEL))
        reader = loop.create_task(self._read(connection))
        verifier: asyncio.Task[None] | None = None
        subscriptions = self.subscriptions
        try:
            while not self._done():
                if reader.done():
                    reader.result()  # raises the connection's error
                    raise RedisConnectionError("subscription connection closed")
                self.changed.clear()
                subscribe, unsubscribe = subscriptions.changes()
                commands = [
                    *self._commands(self._subscribe, subscribe),
                    *self._commands(self._unsubscribe, unsubscribe),
                ]
                if commands:
                    connection.send(*commands)
                if not self.synced and subscriptions.in_sync:
                    self.synced = True  # confirmed channels == wanted users
                if verifier is not None and verifier.done():
                    verifier = None
                if self.synced and not self.verified and verifier is None:
                    verifier = loop.create_task(self._verify())
                changed = loop.create_task(self.changed.wait())
                await asyncio.wait(
                    (reader, changed), timeout=_PING_INTERVAL_S, return_when=FIRST_COMPLETED
                )
                changed.cancel()
                if reader.done():
                    continue  # its error is raised at the top
                silence = loop.time() - self._last_reply
                if silence > _PING_TIMEOUT_S:
                    raise RedisTimeoutError(f"no reply on the subscription for {silence:.1f} s")
                if silence >= _PING_INTERVAL_S:
                    connection.send(("PING",))
        finally:
            for task in (reader, verifier):
                if task is not None:
                    task.cancel()
            await asyncio.gather(reader, *([verifier] if verifier else []), return_exceptions=True)

    async def _read(self, connection: Any) -> None:
        """Read the connection: live events, and the server's replies to the
        (un)subscribe commands (one per channel, in order) that confirm them."""
        loop = asyncio.get_running_loop()
        subscriptions, host = self.subscriptions, self._host
        message, subscribed, unsubscribed = self._message, self._subscribed, self._unsubscribed
        while True:
            replies = await connection.replies()  # all that arrived: one wake-up
            self._last_reply = loop.time()
            for reply in replies:
                if isinstance(reply, ResponseError):
                    self._refused(reply)
                if not isinstance(reply, list) or len(reply) < 2:
                    continue
                kind = reply[0]
                if kind == message:
                    host.on_message(reply[1], reply[2])
                elif kind == subscribed or kind == unsubscribed:
                    user_id = user_of_channel(reply[1])
                    if user_id is None:
                        continue
                    if kind == unsubscribed and not subscriptions.awaiting(user_id):
                        raise SlotMoved(
                            f"the server unsubscribed {reply[1]!r}: its slot moved",
                            self._slot_of(live_channel(user_id)),
                            None,
                        )
                    if subscriptions.replied(user_id, kind == subscribed):
                        host.now_live(user_id)
                    if not self.synced and subscriptions.in_sync:
                        self.changed.set()

    def _refused(self, reply: ResponseError) -> NoReturn:
        """An error reply: a command was refused, so its channels will never be
        confirmed. Raises the connection's failure: :class:`SlotMoved` for ``MOVED``
        (the slot's new master, as the server names it), ``ConnectionError`` else
        (``ASK``: the slot is being migrated; start over once it is)."""
        redirect = redirect_of(reply)
        if redirect is not None and redirect.moved:
            host = redirect.host or (self.master.host if self.master is not None else "")
            raise SlotMoved(
                f"redis answered {reply}: the slot moved",
                redirect.slot,
                Address(host, redirect.port) if host else None,
            )
        raise RedisConnectionError(f"redis refused a subscription command: {reply}")

    async def _verify(self) -> None:
        """The connection holds every wanted user: check the command pool too (refused
        while Redis is still loading its data), then become verified and resync every
        user of this listener. A failure reported meanwhile makes it check again."""
        delay = _BACKOFF_MIN_S
        host = self._host
        while True:
            failures = host.failures
            try:
                await host.ping()
            except (RedisError, OSError) as exc:
                log.info("redis not answering commands yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
            if failures == host.failures:
                break
        self.verified = True
        self.moved = None
        self._backoff = _BACKOFF_MIN_S
        self.ready.set()
        host.state_changed()
        for user_id in self.subscriptions.users():
            self.resyncs += 1
            host.resync(user_id)
