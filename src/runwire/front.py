"""The standalone front door: HTTP/1.1 and ``/ws`` on the gateway's one port.

HTTP is parsed by uvicorn's httptools protocol (keep-alive, pipelining, chunked
request and response bodies, ``Expect: 100-continue``, HEAD) and served by the
same ASGI application as ``gateway.asgi_app()``, so both front doors answer HTTP
alike. A WebSocket upgrade request is handed, connection and all, to a picows
protocol (:func:`runwire.server.websocket_protocol_factory`): after the handshake
the socket is picows's alone, with runwire's batched writes, and no ASGI layer in
between (the fast path the benchmarks measure).

What this module adds to uvicorn's protocol: a header timeout
(``http_header_timeout_s``, from a connection's first byte or from each new
request's first byte on a kept-alive connection: 408 and close); a cap on a
request's head (:data:`MAX_HEAD_BYTES` for the request line and headers,
:data:`MAX_HEADERS` header fields: 431 and close); ``Connection: close`` on a
response that goes out before its request's body was read (a 404, a 413 from
``Content-Length``, a ``GET`` with a body...), after which what the client still
sends is dropped for at most ``http_header_timeout_s`` (no connection is left
reading a trickled body, and no response is lost to a reset); the ``Date`` header
refreshed once a second; and a shutdown that closes idle kept-alive connections. An
upgrade request is handed to picows with its ``Connection`` header(s) made one
``Connection: Upgrade`` (picows accepts nothing else; Firefox sends ``keep-alive,
Upgrade``), and refused with 426 and ``Sec-WebSocket-Version: 13`` for a WebSocket
version picows does not speak, 431 when picows would drop it for its size. uvicorn's
own server object is not used (runwire owns the listening socket, the signals and
the shutdown order).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, cast

import httptools
import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

__all__ = ["MAX_HEADERS", "MAX_HEAD_BYTES", "FrontDoor", "FrontDoorOptions"]

log = logging.getLogger("runwire.front")

MAX_HEAD_BYTES = 64 * 1024
"""The most bytes of a request's head (request line and headers) the standalone
server reads: above it, 431 and the connection closes."""

MAX_HEADERS = 128
"""The most header fields in one request (picows's own limit for an upgrade)."""

_WS_MAX_HEAD_BYTES = 16 * 1024
"""picows drops an upgrade request this long or longer (without the blank line that
ends it) without an answer: it gets a 431 here instead."""

_WS_VERSIONS = frozenset({b"13", b"8", b"7"})  # what picows accepts (RFC 6455 is 13)


def _error_response(status: bytes, code: str, message: str) -> bytes:
    body = msgspec.json.encode({"error": code, "message": message})
    length = str(len(body)).encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + length + b"\r\nconnection: close\r\n\r\n" + body
    )


_TIMEOUT_RESPONSE = _error_response(
    b"408 Request Timeout", "header_timeout", "the request headers took too long"
)
_HEAD_TOO_LARGE_RESPONSE = _error_response(
    b"431 Request Header Fields Too Large",
    "headers_too_large",
    f"the request line and headers are over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} fields",
)
_WS_HEAD_TOO_LARGE_RESPONSE = _error_response(
    b"431 Request Header Fields Too Large",
    "headers_too_large",
    f"a WebSocket upgrade request is limited to {_WS_MAX_HEAD_BYTES} bytes",
)
_WS_VERSION_RESPONSE = (
    b"HTTP/1.1 426 Upgrade Required\r\nsec-websocket-version: 13\r\n"
    b"content-type: text/plain\r\ncontent-length: 30\r\nconnection: close\r\n\r\n"
    b"unsupported websocket version\n"
)


class _HeadTooLarge(Exception):
    """Raised in a parser callback: stops the parser at a head over the limits."""


class FrontDoorOptions:
    """What the front door needs from the settings."""

    __slots__ = ("header_timeout_s", "host", "keepalive_timeout_s", "port")

    def __init__(
        self, host: str, port: int, header_timeout_s: float, keepalive_timeout_s: float
    ) -> None:
        self.host = host
        self.port = port
        self.header_timeout_s = header_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s


class _HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the additions of the module docstring."""

    header_timeout_s = 10.0  # set on the per-server subclass

    _header_timer: asyncio.TimerHandle | None = None
    _in_head = False  # between a request's first byte and the end of its headers
    _requests = 0  # requests begun on this connection
    _head_bytes = 0  # of the head being read: its URL and headers parsed so far
    _head_read = 0  # ...and the bytes of the reads that were all head
    _header_count = 0
    _head_refused = False
    _reading: RequestResponseCycle | None = None  # the request whose body is being read
    _keep_alive = True  # ...and its own choice, kept while its body is read
    _shutting_down = False
    _lingering = False
    _linger_timer: asyncio.TimerHandle | None = None
    _lingering_transport: _LingeringClose | None = None  # made at the first request

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        # uvicorn's, but a head over the limits is answered 431 (not 400, not logged)
        # and the bytes of a read that was all head are counted: a header still
        # arriving is buffered by httptools, and only reported when it is complete.
        if self._lingering:
            return  # what a refused or answered request still sends is dropped
        in_head, requests = self._in_head, self._requests
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._head_refused:
                self._refuse(_HEAD_TOO_LARGE_RESPONSE)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if in_head and self._in_head and self._requests == requests:
            self._head_read += len(data)
            if self._head_read > MAX_HEAD_BYTES:
                self._head_refused = True
                self._refuse(_HEAD_TOO_LARGE_RESPONSE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._requests += 1
        self._head_bytes = self._head_read = self._header_count = 0
        self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._head_refused = True
            raise _HeadTooLarge
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        self._in_head = False
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous:
            # A request, not an upgrade. Until its body is read, a response closes
            # the connection (nothing would await the rest of the body, and no timer
            # bounds it), and lingers first: see _LingeringClose. Most requests have
            # no body: they are complete before the application runs.
            self._reading, self._keep_alive = cycle, cycle.keep_alive
            cycle.keep_alive = False
            if self._lingering_transport is None:
                self._lingering_transport = _LingeringClose(self, self.transport)
            cycle.transport = cast(asyncio.Transport, self._lingering_transport)

    def on_message_complete(self) -> None:
        cycle, self._reading = self._reading, None
        if cycle is not None:
            cycle.transport = self.transport
            if not cycle.response_started:
                cycle.keep_alive = self._keep_alive and not self._shutting_down
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._lingering:  # no next request: the connection is closing
            self.server_state.total_requests += 1
            return
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        headers = self.headers  # the scope's list: what uvicorn replays to picows
        version = next((value for name, value in headers if name == b"sec-websocket-version"), None)
        if version is not None and version.strip() not in _WS_VERSIONS:
            self._refuse(_WS_VERSION_RESPONSE)  # RFC 6455 4.4
            return
        # picows wants one Connection header saying exactly "upgrade"; uvicorn found
        # the token among others (Firefox: "keep-alive, Upgrade"). Only it changes.
        kept: list[tuple[bytes, bytes]] = []
        seen = False
        for name, value in headers:
            if name == b"connection":
                if seen:
                    continue
                seen, value = True, b"Upgrade"
            kept.append((name, value))
        headers[:] = kept
        # The request as uvicorn replays it, as picows measures it (no final CRLF CRLF).
        size = len(self.scope["method"]) + len(self.url) + len("  HTTP/1.1")
        size += sum(len(name) + len(value) + 4 for name, value in kept)
        if size >= _WS_MAX_HEAD_BYTES:
            self._refuse(_WS_HEAD_TOO_LARGE_RESPONSE)
            return
        super().handle_websocket_upgrade()

    def shutdown(self) -> None:
        self._shutting_down = True
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._lingering_transport = self._reading = None  # no cycle to collect
        super().connection_lost(exc)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._head_refused = True
            raise _HeadTooLarge

    def _refuse(self, response: bytes) -> None:
        """Answer ``response`` (unless another response is being written) and close."""
        self._disarm_header_timer()
        transport = self.transport
        if transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            transport.write(response)
            self._linger()
        else:
            transport.close()

    def _linger(self) -> None:
        """Close once the client has stopped sending, or after ``header_timeout_s``.

        The response is followed by a FIN and what the client still sends is read and
        dropped: a socket closed with unread bytes, or receiving more, answers with a
        reset, and a client still sending its request could lose the response.
        """
        transport = self.transport
        if self._lingering or transport.is_closing():
            return
        self._lingering = True
        self._disarm_header_timer()
        self._unset_keepalive_if_required()
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(self.header_timeout_s, transport.close)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = asyncio.get_running_loop().call_later(
                self.header_timeout_s, self._headers_too_slow
            )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            transport.write(_TIMEOUT_RESPONSE)  # no response is being written: say why
        transport.close()


class _LingeringClose:
    """The transport of a request whose body is not read yet, as its cycle sees it.

    uvicorn closes the transport right after a ``Connection: close`` response; this
    one lingers instead (:meth:`_HttpProtocol._linger`). The rest is the transport's.
    """

    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: _HttpProtocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._protocol._linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _nothing_to_receive(data: bytes) -> None:
    """Never called: the data callback uvloop keeps for a transport after the switch."""


class _Detached(asyncio.Protocol):
    """The protocol a transport has for an instant during the switch to picows.

    uvloop keeps the ``data_received`` of a transport's protocol until another
    protocol has one, and picows's (a buffered protocol) has none: without this step
    the :class:`_Handoff`, its bound method and its buffer list lived as long as the
    connection (three GC-tracked objects per socket, each walked by every full
    collection). Its ``data_received`` is a plain function, shared by every transport.
    """

    data_received = staticmethod(_nothing_to_receive)


_DETACHED = _Detached()


class _Handoff(asyncio.Protocol):
    """Takes a connection from uvicorn at its upgrade request and gives it to picows.

    uvicorn replays the request's bytes into :meth:`data_received` and only then
    makes this object the transport's protocol, so the switch to the picows
    protocol happens on the next loop iteration; bytes read before it are kept and
    given to picows in order.
    """

    def __init__(self, make_protocol: Callable[[], asyncio.BufferedProtocol]) -> None:
        self._make_protocol = make_protocol
        self._transport: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._hand_over)
        self._pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True

    def _hand_over(self) -> None:
        transport = self._transport
        if transport is None or self._lost or transport.is_closing():
            return
        protocol = self._make_protocol()
        transport.set_protocol(_DETACHED)  # drops uvloop's reference to this object
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data = memoryview(b"".join(self._pending))
        self._pending.clear()
        while data and not transport.is_closing():
            # As a transport would: as much as picows's buffer takes (it grows as it fills).
            buffer = memoryview(protocol.get_buffer(len(data)))
            size = min(len(buffer), len(data))
            buffer[:size] = data[:size]
            protocol.buffer_updated(size)
            data = data[size:]


class FrontDoor:
    """The listening socket of a standalone gateway: ``app`` for HTTP, picows for ``/ws``."""

    def __init__(
        self,
        app: Any,
        websocket_protocol: Callable[[], asyncio.BufferedProtocol],
        options: FrontDoorOptions,
    ) -> None:
        self.options = options

        def handoff(**_: Any) -> _Handoff:
            return _Handoff(websocket_protocol)

        protocol_class = type(
            "HttpProtocol", (_HttpProtocol,), {"header_timeout_s": options.header_timeout_s}
        )
        self._config = Config(
            app,
            http=protocol_class,
            ws=handoff,  # type: ignore[arg-type]  # uvicorn calls it like a class
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,  # the tick below adds it
            proxy_headers=False,
            timeout_keep_alive=max(1, round(options.keepalive_timeout_s)),
        )
        self._config.load()
        self._state = ServerState()
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked when the options said 0)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen. Raises :class:`OSError` when the address cannot be used."""
        config, state = self._config, self._state
        self._refresh_date()

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state={}
            )

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol, self.options.host, self.options.port, backlog=2048
        )
        self._ticker = loop.create_task(self._tick())

    def close(self) -> None:
        """Stop accepting; close idle HTTP connections, and the others once their
        response is done (WebSocket connections are the manager's to close)."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._state.connections):
            connection.shutdown()
        if self._ticker is not None:
            self._ticker.cancel()

    async def wait_closed(self) -> None:
        """Wait until the listening socket is closed."""
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _refresh_date(self) -> None:
        date = formatdate(usegmt=True).encode()
        self._state.default_headers = [(b"date", date)]

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._refresh_date()
