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
request's first byte on a kept-alive connection: 408 and close), the ``Date``
header refreshed once a second, and a shutdown that closes idle kept-alive
connections. uvicorn's own server object is not used (runwire owns the listening
socket, the signals and the shutdown order).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, cast

import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

__all__ = ["FrontDoor", "FrontDoorOptions"]

log = logging.getLogger("runwire.front")

_TIMEOUT_BODY = msgspec.json.encode(
    {"error": "header_timeout", "message": "the request headers took too long"}
)
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\nconnection: close\r\n\r\n"
) + _TIMEOUT_BODY


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
    """uvicorn's httptools protocol with a header timeout (see the module docstring)."""

    header_timeout_s = 10.0  # set on the per-server subclass

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

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
