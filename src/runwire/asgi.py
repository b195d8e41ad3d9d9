"""The ASGI front door: the whole gateway as one ASGI 3 application.

``gateway.asgi_app()`` serves what the standalone server serves, through the same
parts: ``/ws`` opens connections with :meth:`WebSocketManager.open
<runwire.manager.WebSocketManager.open>` and feeds client frames to the same
:class:`~runwire.protocol.Session` (the same auth, Origin rule, resume query, limits
and close codes); HTTP requests go to the gateway's one
:class:`~runwire.http.exchange.HttpExchange` (its routes, limits and CORS); the
lifespan protocol starts and stops the gateway (unless it was started already).
This module holds no protocol logic: it only translates ASGI messages.

Paths: the app routes on ``scope["path"]`` minus ``scope["root_path"]`` (when the
path starts with it), so it works mounted under a prefix (Starlette's and FastAPI's
``app.mount("/runwire", ...)``, which set ``root_path``) and behind
``uvicorn --root-path``. The prefix itself redirects to ``prefix/`` so that the
page's relative URLs (``assets/...``, ``ws``, ``api/...``) resolve under it.

Backpressure: each socket has one sender task that hands frames to ASGI
``websocket.send`` in order. :attr:`_AsgiWriter.writable` is false while more than
:data:`SEND_HIGH_WATER_BYTES` wait for that task (the ASGI server's own write
buffer comes on top: uvicorn's ``send`` waits while its transport is paused);
the manager then keeps frames in the session's bounded queue and closes a client
that stays behind with 4409, as with the standalone server.

What the ASGI server owns instead of runwire (set them on the server, e.g.
``uvicorn.Config(ws_max_size=..., ws_ping_interval=..., ws_ping_timeout=...,
ws_per_message_deflate=False)``): the largest frame it reads (above it, it closes
with 1009 itself; the session still closes with 1009 above ``max_frame_bytes``),
pings and their timeout, compression, the handshake timeout, and RFC 6455 framing
checks (RSV bits, fragments, close codes). A peer that never answers the close
frame is left to the server's close timeout once this app returns
(``close_timeout_s`` after the close frame).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from runwire.auth import SUBPROTOCOL, offered_subprotocols, token_from_headers
from runwire.config import Settings
from runwire.exceptions import AuthError, CloseCode, LimitError, close_reason
from runwire.http.exchange import AsgiHeaders
from runwire.manager import Connection
from runwire.origins import origin_allowed
from runwire.server import WS_PATH, resume_request, valid_close_code

if TYPE_CHECKING:
    from runwire.app import Gateway

__all__ = ["SEND_HIGH_WATER_BYTES", "AsgiApp", "route_path", "uvicorn_settings"]

log = logging.getLogger("runwire.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SEND_HIGH_WATER_BYTES = 64 * 1024
"""Bytes waiting for a socket's sender task above which the socket is not writable."""
SEND_LOW_WATER_BYTES = SEND_HIGH_WATER_BYTES // 4
"""Below this the socket is writable again (the manager is told)."""

_NOT_TEXT = "only unfragmented text frames are accepted"


def route_path(scope: Scope) -> str:
    """``scope["path"]`` without the mount prefix ``scope["root_path"]`` ("" at the prefix).

    ASGI servers and frameworks differ on whether ``path`` includes ``root_path``;
    it is stripped only when ``path`` starts with it at a segment boundary.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


def uvicorn_settings(settings: Settings) -> dict[str, Any]:
    """The socket limits that move to uvicorn, from runwire's settings, as keyword
    arguments of ``uvicorn.run`` / ``uvicorn.Config``.

    ``ws_max_size`` is 4 x ``max_frame_bytes``, as the standalone server reads: the
    session itself closes larger frames with 1009 and its reason. Pings follow
    ``heartbeat_interval_s`` / ``heartbeat_timeout_s``; permessage-deflate is off
    (runwire never compresses: it costs CPU per frame and memory per socket).
    """
    return {
        "ws_max_size": settings.max_frame_bytes * 4,
        "ws_ping_interval": settings.heartbeat_interval_s,
        "ws_ping_timeout": settings.heartbeat_timeout_s,
        "ws_per_message_deflate": False,
    }


class _AsgiWriter:
    """:class:`~runwire.manager.FrameWriter` over ASGI ``send``, drained by :meth:`run`.

    Frames are queued here and sent in order by one task per socket; the close frame
    goes after them. :meth:`abort` (or ``close_timeout_s`` after :meth:`close` with
    the close frame still unsent) makes the app return, which drops the socket.
    """

    __slots__ = (
        "_abort_timer",
        "_blocked",
        "_bytes",
        "_close",
        "_close_timeout_s",
        "_frames",
        "_owner",
        "_send",
        "_wake",
        "aborted",
        "on_writable",
        "sent_close_code",
    )

    def __init__(self, send: Send, close_timeout_s: float) -> None:
        self._send = send
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._blocked = False
        self._close: tuple[int, str] | None = None
        self._close_timeout_s = close_timeout_s
        self._wake = asyncio.Event()
        self._abort_timer: asyncio.TimerHandle | None = None
        self._owner = asyncio.current_task()
        self.aborted = False
        self.on_writable: Callable[[], None] | None = None
        self.sent_close_code: int | None = None

    @property
    def writable(self) -> bool:
        return self._bytes < SEND_HIGH_WATER_BYTES

    @property
    def closing(self) -> bool:
        """A close was requested (frames after it are not read or written)."""
        return self._close is not None

    def write_frames(self, frames: list[bytes]) -> None:
        if self._close is not None:
            return  # nothing follows a close frame
        self._frames.extend(frames)
        self._bytes += sum(len(frame) for frame in frames)
        if self._bytes >= SEND_HIGH_WATER_BYTES:
            self._blocked = True
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        """Send a close frame after the queued frames; idempotent (the first one wins)."""
        if self._close is not None:
            return
        if not valid_close_code(code):
            log.error("refusing to send invalid close code %d; sending 1011", code)
            code = CloseCode.INTERNAL_ERROR
        self._close = (code, close_reason(reason))
        self._wake.set()
        self._abort_timer = asyncio.get_running_loop().call_later(self._close_timeout_s, self.abort)

    def abort(self) -> None:
        """Stop waiting for the peer: the app returns and the ASGI server drops the socket."""
        if self.aborted or self._owner is None:
            return
        self.aborted = True
        self._owner.cancel()

    def cancel_timers(self) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None

    async def run(self) -> None:
        """Send queued frames in order, then the close frame; ends after the close frame
        or when ``send`` fails (the peer is gone: the receive side will say so)."""
        frames = self._frames
        try:
            while True:
                while frames:
                    frame = frames.popleft()
                    self._bytes -= len(frame)
                    await self._send({"type": "websocket.send", "text": frame.decode()})
                    if self._blocked and self._bytes <= SEND_LOW_WATER_BYTES:
                        self._blocked = False
                        if self.on_writable is not None:
                            self.on_writable()
                if self._close is not None:
                    code, reason = self._close
                    self.sent_close_code = code
                    await self._send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                self._wake.clear()
                await self._wake.wait()
        except (OSError, RuntimeError) as exc:  # uvicorn: ClientDisconnected, or closed
            log.debug("send failed: %s", exc)


class AsgiApp:
    """The gateway as an ASGI 3 application (``http``, ``websocket``, ``lifespan``).

    Create it with :meth:`Gateway.asgi_app() <runwire.app.Gateway.asgi_app>`.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan ---------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Start the gateway at startup unless already started; stop it at shutdown
        only if this lifespan started it."""
        owned = False
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    owned = await self.gateway.start_unless_started()
                except Exception as exc:
                    log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if owned:
                    await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP -------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        if path == "" and scope["path"]:
            # The mount point itself: the page's relative URLs need the trailing slash.
            query = scope.get("query_string", b"")
            location = scope["path"] + "/" + ("?" + query.decode("latin-1") if query else "")
            start = {
                "type": "http.response.start",
                "status": 308,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")],
            }
            await send(start)
            await send({"type": "http.response.body", "body": b""})
            return
        await self.gateway.http(scope, receive, send, path or "/")

    # -- WebSocket --------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        gateway = self.gateway
        metrics = gateway.metrics
        headers = AsgiHeaders(scope["headers"])
        if route_path(scope) != WS_PATH:
            await _refuse(scope, send, 404, b"not found\n")
            return
        allowed = gateway.settings.allowed_origins
        if not origin_allowed(headers.get("Origin"), headers.get("Host"), allowed):
            metrics.connections_rejected.labels("origin").inc()
            log.info("connection refused: origin not allowed")
            await _refuse(scope, send, 403, b"origin not allowed\n")
            return
        accept: Message = {"type": "websocket.accept"}
        if SUBPROTOCOL in offered_subprotocols(headers):
            accept["subprotocol"] = SUBPROTOCOL
        await send(accept)
        writer = _AsgiWriter(send, gateway.settings.close_timeout_s)
        connection: Connection | None = None
        try:
            claims = gateway.authenticator.verify_claims(token_from_headers(headers))
        except AuthError as exc:
            metrics.connections_rejected.labels("auth").inc()
            log.info("connection refused: %s", exc.reason)
            writer.close(CloseCode.UNAUTHORIZED, exc.reason)
        else:
            resume = resume_request(parse_qs(scope.get("query_string", b"").decode("latin-1")))
            try:
                connection = gateway.manager.open(claims.user_id, writer, resume, claims.expires_at)
            except LimitError as exc:
                metrics.connections_rejected.labels(exc.code).inc()
                shutting_down = exc.code == "shutting_down"
                writer.close(
                    CloseCode.GOING_AWAY if shutting_down else CloseCode.RATE_LIMITED, exc.message
                )
        sender = asyncio.get_running_loop().create_task(writer.run())
        code = 1006
        try:
            code = await self._read(connection, writer, receive)
        except asyncio.CancelledError:
            if not writer.aborted:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            writer.cancel_timers()
            sender.cancel()
            with suppress(asyncio.CancelledError):
                await sender
            if connection is not None:
                sent = writer.sent_close_code
                gateway.manager.closed(connection, sent if sent is not None else code)

    async def _read(
        self, connection: Connection | None, writer: _AsgiWriter, receive: Receive
    ) -> int:
        """Feed client frames to the manager until the socket is gone; its close code."""
        manager = self.gateway.manager
        if connection is not None:
            writer.on_writable = lambda: manager.writable_again(connection)
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return int(message.get("code", 1006))
            if kind != "websocket.receive" or connection is None or writer.closing:
                continue  # closing: ignore data until the peer's close frame
            text = message.get("text")
            if text is not None:
                manager.receive(connection, text)
            else:
                manager.close_connection(connection, CloseCode.PROTOCOL_VIOLATION, _NOT_TEXT)


async def _refuse(scope: Scope, send: Send, status: int, body: bytes) -> None:
    """Reject a WebSocket handshake with an HTTP status (the WebSocket Denial Response
    extension when the server has it; else ``websocket.close``, which is a 403)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})  # policy violation)
