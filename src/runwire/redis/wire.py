"""A lean, pipelined RESP connection for the engine's two hot paths.

The publish script calls and the subscription carry every event. Through redis-py's
asyncio client each command costs its pool, retry and timeout machinery: on the
2-core bench machine a ``PING`` took 160-185 us of client CPU there against 39 us
on a bare asyncio socket (docs/benchmarks.md, "Redis mode"). :class:`WireConnection`
is that bare socket with hiredis (the C RESP packer and parser redis-py itself
uses) on both sides, and nothing else:

* **Pipelined.** :meth:`WireConnection.call` writes a command at once and returns a
  future; Redis answers one connection's commands in order, so replies are matched
  to futures first in, first out. Several calls may be in flight.
* **Subscriber mode** (:meth:`WireConnection.listen`): every reply (pushed messages
  and (un)subscribe confirmations) goes to an inbox that
  :meth:`WireConnection.replies` empties at once, so a reader handles everything
  one read brought in one wake-up. An error reply goes there too, in its place, as a
  ``ResponseError`` instance (not raised): the reader must handle it (one command
  was refused); :func:`redirect_of` reads a cluster's ``MOVED`` / ``ASK``.
* **Errors** are redis-py's, so callers map them as before: an error reply raises
  ``ResponseError`` (``NoScriptError`` for ``NOSCRIPT``); a closed or broken
  connection fails every call in flight, and every later one, with
  ``ConnectionError``; a reply later than ``command_timeout_s`` closes the
  connection and fails what is in flight with ``TimeoutError``.
* **Bounded.** A connect (with ``AUTH`` and ``SELECT``) gives up after
  ``connect_timeout_s``. The inbox holds what one or more reads brought in until the
  reader takes it; the calls in flight are the caller's (the engine's batcher bounds
  them).

A connection is never reconnected: the owner opens a new one.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any, NamedTuple

import hiredis
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
    NoScriptError,
    ResponseError,
    TimeoutError as RedisTimeoutError,
)

__all__ = ["Redirect", "WireConnection", "redirect_of"]


class WireConnection(asyncio.Protocol):
    """One Redis connection: pipelined calls, or a subscriber's inbox."""

    def __init__(self, command_timeout_s: float | None) -> None:
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._error: Exception | None = None
        self._timeout_s = command_timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._inbox: list[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        """Done once the connection is closed or lost."""

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        connect_timeout_s: float,
        command_timeout_s: float | None,
    ) -> WireConnection:
        """Connect, authenticate and select ``db``.

        Raises:
            redis.exceptions.ConnectionError: not connected within ``connect_timeout_s``
                (or refused); ``ResponseError``: ``AUTH`` or ``SELECT`` refused.
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: cls(command_timeout_s), host, port
                )
                try:
                    if password is not None:
                        auth = (
                            ("AUTH", password) if username is None else ("AUTH", username, password)
                        )
                        await connection.call(*auth)
                    if db:
                        await connection.call("SELECT", db)
                except BaseException:
                    connection.close()
                    raise
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(
                f"cannot connect to redis at {host}:{port}: {exc!r}"
            ) from exc
        return connection

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        inbox = self._inbox
        if inbox is not None:
            reply = reader.gets()
            while reply is not False:
                inbox.append(reply)
                reply = reader.gets()
            waiter = self._waiter
            if inbox and waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        pending = self._pending
        reply = reader.gets()
        while reply is not False:
            if not pending:  # a reply to nothing: the stream is out of step
                self._fail(RedisConnectionError("redis sent a reply nobody asked for"))
                return
            future, _ = pending.popleft()
            if not future.done():
                if isinstance(reply, ResponseError):
                    future.set_exception(_refusal(reply))
                else:
                    future.set_result(reply)
            reply = reader.gets()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"redis connection lost: {exc!r}" if exc else "closed"))

    # -- calls ----------------------------------------------------------------------

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Send one command now; the future gets its reply.

        Raises:
            redis.exceptions.ConnectionError: the connection is closed.
        """
        transport = self._check_open()
        future: asyncio.Future[Any] = self._loop.create_future()
        timeout_s = self._timeout_s
        self._pending.append((future, 0.0 if timeout_s is None else self._loop.time() + timeout_s))
        transport.write(hiredis.pack_command(args))
        if timeout_s is not None and self._timer is None:
            self._timer = self._loop.call_later(timeout_s, self._check_timeout)
        return future

    def send(self, *commands: tuple[Any, ...]) -> None:
        """Write ``commands`` without waiting for replies (subscriber mode: they arrive
        in the inbox).

        Raises:
            redis.exceptions.ConnectionError: the connection is closed.
        """
        self._check_open().write(b"".join(hiredis.pack_command(command) for command in commands))

    def _check_open(self) -> asyncio.Transport:
        """The transport to write to; ``ConnectionError`` unless commands can be written
        (a transport the loop is closing counts as closed: its ``connection_lost`` may
        not have run yet)."""
        if self._error is not None:
            raise self._error
        transport = self._transport
        if transport is None:
            raise RedisConnectionError("not connected")
        if transport.is_closing():  # closed under us: fail now, so the owner opens anew
            self._fail(RedisConnectionError("redis connection closed"))
            assert self._error is not None
            raise self._error
        return transport

    def listen(self) -> None:
        """Switch to subscriber mode: from now on every reply goes to the inbox."""
        if self._inbox is None:
            self._inbox = []

    async def replies(self) -> list[Any]:
        """Every reply received since the last call (waits for one at least).

        Raises:
            redis.exceptions.ConnectionError: the connection is closed (after the
                replies it received before are taken).
        """
        inbox = self._inbox
        assert inbox is not None, "replies() needs listen() first"
        while not inbox:
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            inbox = self._inbox
            assert inbox is not None
        self._inbox = []
        return inbox

    def close(self) -> None:
        """Close now; whatever is in flight fails with ``ConnectionError``."""
        self._fail(RedisConnectionError("redis connection closed"))

    # -- failure --------------------------------------------------------------------

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._pending or self._error is not None:
            return
        _, deadline = self._pending[0]
        now = self._loop.time()
        if now >= deadline:
            self._fail(RedisTimeoutError(f"no reply from redis for {self._timeout_s:g} s"))
            return
        self._timer = self._loop.call_later(deadline - now, self._check_timeout)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, deque()
        for future, _ in pending:
            if not future.done():
                future.set_exception(self._error)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._transport is not None:
            self._transport.close()
        if not self.closed.done():
            self.closed.set_result(None)


def _refusal(reply: ResponseError) -> ResponseError:
    """An error reply as redis-py raises it (``NOSCRIPT`` as ``NoScriptError``)."""
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return reply


class Redirect(NamedTuple):
    """A cluster's ``MOVED <slot> <host>:<port>`` (the slot is served there now) or
    ``ASK`` (the slot is being migrated there: this one command may go there)."""

    moved: bool
    slot: int
    host: str
    """Empty when the server did not say (the host of the connection that answered)."""
    port: int


def redirect_of(reply: ResponseError) -> Redirect | None:
    """The redirection an error reply is, if it is one (``MOVED`` or ``ASK``)."""
    kind, _, rest = str(reply).partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    slot, _, node = rest.strip().partition(" ")
    host, _, port = node.rpartition(":")
    if not slot.isdigit() or not port.isdigit():
        return None
    return Redirect(kind == "MOVED", int(slot), host.strip("[]"), int(port))
