"""The WebSocket I/O adapter: ``/ws`` with picows.

picows + uvloop measured fastest on this class of machine
(docs/benchmarks.md). This module is the only one that imports picows. The
standalone front door (:mod:`runwire.front`) parses HTTP with uvicorn's httptools
protocol and hands each upgrade request's connection to a picows protocol made by
:func:`websocket_protocol_factory`. This module
authenticates the upgrade request, creates connections through the manager,
feeds client frames to it, and implements :class:`~runwire.manager.FrameWriter`:
several pending frames go out in one transport write, with hand-built headers
(server frames are unmasked, so a frame is a 2-10 byte header plus the payload).

RFC 6455: picows parses and validates most of the framing; :class:`_ConnectionListener`
checks the rest (RSV bits, continuation without a message, close codes) and runs
the closing handshake: after its close frame the server reads on until the
client's close frame or ``close_timeout_s``, so the client always sees the code.
Every close code sent is a valid one (:func:`valid_close_code`).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from picows import (
    WSAutoPingStrategy,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in the stubs

from runwire.auth import (
    SUBPROTOCOL,
    Authenticator,
    TokenClaims,
    offered_subprotocols,
    token_from_headers,
)
from runwire.exceptions import AuthError, CloseCode, LimitError, close_reason
from runwire.heartbeat import Heartbeats
from runwire.ids import Epoch
from runwire.manager import Connection, WebSocketManager
from runwire.metrics import Metrics
from runwire.origins import origin_allowed
from runwire.resume import ResumeRequest

__all__ = [
    "WS_PATH",
    "ServerOptions",
    "resume_request",
    "valid_close_code",
    "websocket_protocol_factory",
]

log = logging.getLogger("runwire.server")

WS_PATH = "/ws"


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Socket-level settings of the server."""

    host: str
    port: int
    max_frame_bytes: int
    handshake_timeout_s: float
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    close_timeout_s: float
    allowed_origins: tuple[str, ...] = ()
    """Pages allowed to open sockets (see :mod:`runwire.origins`)."""


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (RFC 6455 7.4, IANA registry).

    Valid: 1000-1003, 1007-1014 (1012-1014 are IANA-registered) and 3000-4999.
    Never on the wire: below 1000, 1004 (reserved), 1005, 1006 and 1015 (API-only
    "no code", "abnormal" and "TLS failure"), 1016-2999 (unassigned), 5000 and up.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _send_close(transport: WSTransport, code: int, reason: str = "") -> None:
    """Send a close frame (picows types only the RFC codes, accepts all); valid codes only."""
    if not valid_close_code(code):
        log.error("refusing to send invalid close code %d; sending 1011", code)
        code = CloseCode.INTERNAL_ERROR
    transport.send_close(code, close_reason(reason).encode())  # type: ignore[arg-type]


def _answer_to_close(payload: bytes) -> tuple[int, str]:
    """The code and reason the server answers a client's close frame with.

    An empty close frame gets 1000 (1005 and 0 are never sent). A valid code is
    echoed. A 1-byte payload or an invalid code gets 1002, a reason that is not
    UTF-8 gets 1007. (picows checks most of these first; this stands on its own.)
    """
    if not payload:
        return CloseCode.NORMAL, ""
    if len(payload) == 1:
        return CloseCode.PROTOCOL_ERROR, "close frame payload of 1 byte"
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        return CloseCode.PROTOCOL_ERROR, f"invalid close code {code}"
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        return CloseCode.INVALID_PAYLOAD, "close reason is not valid UTF-8"
    return code, ""


def _frame_header(length: int) -> bytes:
    """Header of an unmasked, final text frame of ``length`` bytes (RFC 6455 5.2)."""
    if length < 126:
        return bytes((0x81, length))
    if length <= 0xFFFF:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class _PicowsWriter:
    """:class:`~runwire.manager.FrameWriter` over a picows transport, and its closing handshake.

    Closing (RFC 6455 7.1): :meth:`close` sends the close frame and leaves the TCP
    connection open, so the peer reads the frame and the code even while it is still
    sending; the listener keeps reading (data frames are ignored) until the peer's
    close frame, then :meth:`finish` half-closes the TCP connection and the
    transport closes at the peer's FIN. A peer that never answers, never closes or
    never reads is aborted ``close_timeout_s`` after the close frame.
    """

    __slots__ = ("_abort_timer", "_close_timeout_s", "_paused", "_pong", "transport")

    def __init__(self, transport: WSTransport, close_timeout_s: float) -> None:
        self.transport = transport
        self._paused = False
        self._pong: bytes | None = None
        self._close_timeout_s = close_timeout_s
        self._abort_timer: asyncio.TimerHandle | None = None

    @property
    def writable(self) -> bool:
        return not self._paused

    def write_frames(self, frames: list[bytes]) -> None:
        transport = self.transport
        if transport.is_close_frame_sent:
            return  # nothing follows a close frame (RFC 6455 5.5.1)
        if len(frames) == 1:
            transport.send(WSMsgType.TEXT, frames[0])
            return
        parts: list[bytes] = []
        for frame in frames:
            parts.append(_frame_header(len(frame)))
            parts.append(frame)
        transport.underlying_transport.write(b"".join(parts))

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; idempotent (the first close frame is the one sent)."""
        transport = self.transport
        if transport.is_close_frame_sent or transport.is_disconnected:
            return
        _send_close(transport, code, reason)
        self._arm_abort()

    def finish(self) -> None:
        """Both close frames are exchanged: the server closes TCP first (RFC 6455 7.1.1).

        It half-closes (FIN after the close frame) and reads on until the peer's FIN,
        instead of closing outright: closing with unread data (a peer that sent more
        after its close frame) would reset the connection, and a reset can destroy
        the close frame before the peer reads it.
        """
        underlying = self.transport.underlying_transport
        if not self.transport.is_disconnected and not underlying.is_closing():
            try:
                underlying.write_eof()
            except OSError:  # the peer is gone already (ENOTCONN: it reset the connection)
                self.abort()
                return
            self._arm_abort()  # a peer that never closes, or never reads

    def abort(self) -> None:
        """Drop the TCP connection now (no more waiting for the peer)."""
        self.transport.disconnect(graceful=False)

    def pong(self, payload: bytes) -> None:
        """Answer a ping; while the peer is not reading, only the latest (RFC 6455 5.5.3)."""
        if self._paused:
            self._pong = payload
        else:
            self.transport.send_pong(payload)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._pong is not None:
            self.transport.send_pong(self._pong)
            self._pong = None

    def _arm_abort(self) -> None:
        if self._abort_timer is None:
            self._abort_timer = asyncio.get_running_loop().call_later(
                self._close_timeout_s, self.abort
            )

    def cancel_timers(self) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None


_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING
_PONG = WSMsgType.PONG
_CONTINUATION = WSMsgType.CONTINUATION


def _sent_close_code(transport: WSTransport) -> int | None:
    """The code of the close frame sent on ``transport`` (by runwire or by picows), if any."""
    handshake = transport.close_handshake
    if handshake is None or handshake.sent is None:
        return None
    return int(handshake.sent.code.value)


class _RejectListener(WSListener):
    """Accepts the upgrade only to close at once with a code a browser can read."""

    def __init__(self, code: CloseCode, reason: str, close_timeout_s: float) -> None:
        self.code = code
        self.reason = reason
        self.close_timeout_s = close_timeout_s
        self.writer: _PicowsWriter | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.writer = _PicowsWriter(transport, self.close_timeout_s)
        self.writer.close(self.code, self.reason)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _CLOSE and self.writer is not None:
            self.writer.finish()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.writer is not None:
            self.writer.cancel_timers()


class _ConnectionListener(WSListener):
    """Bridges one picows connection to the manager, and enforces RFC 6455 beyond picows.

    picows itself fails the connection (close frame, then TCP closed 10 ms later)
    on: reserved opcodes, fragmented control frames, unmasked frames, control frames
    over 125 bytes, non-minimal or oversized lengths, frames over 4 x
    ``max_frame_bytes`` (1009), close codes below 3000 it does not know, 1-byte close
    payloads and close reasons that are not UTF-8 (1007). This listener adds: RSV
    bits (1002, no extension is negotiated), continuation frames without a message
    (1002), close codes 0, 1006 and 5000+ (1002), binary and fragmented messages
    (4400), pongs (auto-pong is off so that RSV bits on pings are seen), and the
    closing handshake (:class:`_PicowsWriter`).
    """

    __slots__ = (  # no __dict__: one tracked object fewer per socket
        "awaiting_pong",
        "claims",
        "close_timeout_s",
        "connection",
        "heartbeat_entry",
        "heartbeats",
        "last_seen",
        "manager",
        "resume",
        "writer",
    )

    def __init__(
        self,
        manager: WebSocketManager,
        claims: TokenClaims,
        resume: ResumeRequest | None,
        close_timeout_s: float,
        heartbeats: Heartbeats,
    ) -> None:
        self.manager = manager
        self.claims = claims
        self.resume = resume
        self.close_timeout_s = close_timeout_s
        self.connection: Connection | None = None
        self.writer: _PicowsWriter | None = None
        self.heartbeats = heartbeats
        self.last_seen = 0.0
        self.awaiting_pong = False
        self.heartbeat_entry: list[object] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.writer = _PicowsWriter(transport, self.close_timeout_s)
        try:
            claims = self.claims
            self.connection = self.manager.open(
                claims.user_id, self.writer, self.resume, claims.expires_at
            )
        except LimitError as exc:
            self.manager.metrics.connections_rejected.labels(exc.code).inc()
            code = CloseCode.GOING_AWAY if exc.code == "shutting_down" else CloseCode.RATE_LIMITED
            self.writer.close(code, exc.message)
            return
        self.heartbeats.watch(self)

    # -- the heartbeat (runwire.heartbeat) --------------------------------------

    def send_ping(self) -> bool:
        writer = self.writer
        if writer is None or writer.transport.is_close_frame_sent:
            return False
        writer.transport.send_ping()
        return True

    def heartbeat_failed(self) -> None:
        timeout = self.heartbeats.timeout_s
        log.debug("no pong within %s s: closing", timeout)
        self._fail(
            CloseCode.GOING_AWAY,
            f"peer has not replied to ping/heartbeat request within {timeout} second(s)",
        )

    # -- frames -----------------------------------------------------------------

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.last_seen = self.heartbeats.now()
        connection = self.connection
        if (
            frame.msg_type is _TEXT
            and frame.fin
            and not (frame.rsv1 or frame.rsv2 or frame.rsv3)
            and not transport.is_close_frame_sent
            and connection is not None
        ):
            self.manager.receive(connection, frame.get_payload_as_bytes())
        else:
            self._other_frame(transport, frame)

    def _other_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Every frame but an unfragmented text frame on an open connection (the rare ones)."""
        writer = self.writer
        if writer is None:
            return
        msg_type = frame.msg_type
        if transport.is_close_frame_sent:
            # Closing: wait for the peer's close frame, ignore the rest (RFC 6455 7.1.1).
            if msg_type is _CLOSE:
                writer.finish()
        elif frame.rsv1 or frame.rsv2 or frame.rsv3:
            self._fail(CloseCode.PROTOCOL_ERROR, "RSV bits set, but no extension was negotiated")
            if msg_type is _CLOSE:
                writer.finish()  # the peer is closing anyway: no close frame will follow
        elif msg_type is _CLOSE:
            code, reason = _answer_to_close(frame.get_payload_as_bytes())
            session = self.connection.session if self.connection is not None else None
            if session is not None and session.close_code is not None:
                code, reason = session.close_code, session.close_reason  # ours was due first
            writer.close(code, reason)
            writer.finish()
        elif msg_type is _PING:
            writer.pong(frame.get_payload_as_bytes())
        elif msg_type is _PONG:
            self.awaiting_pong = False  # the heartbeat's answer; unsolicited ones are allowed
        elif msg_type is _CONTINUATION:
            self._fail(CloseCode.PROTOCOL_ERROR, "continuation frame without a message to continue")
        else:  # binary, or the first fragment of a text message
            self._fail(CloseCode.PROTOCOL_VIOLATION, "only unfragmented text frames are accepted")

    def _fail(self, code: int, reason: str) -> None:
        """Close now with ``code``, unless the session already asked for another one."""
        assert self.writer is not None
        connection = self.connection
        if connection is not None:
            self.manager.close_connection(connection, code, reason)  # the first request wins
            session = connection.session
            if session.close_code is not None:
                code, reason = session.close_code, session.close_reason
        self.writer.close(code, reason)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        Heartbeats.forget(self)
        if self.writer is not None:
            self.writer.cancel_timers()
        if self.connection is not None:
            code = _sent_close_code(transport)
            if code is None:
                code = self.connection.session.close_code or 1006
            log.debug("connection closed with %d", code)
            self.manager.closed(self.connection, code)

    def pause_writing(self) -> None:
        if self.writer is not None:
            self.writer.pause()

    def resume_writing(self) -> None:
        if self.writer is not None:
            self.writer.resume()
        if self.connection is not None:
            self.manager.writable_again(self.connection)


class _PicowsLog(logging.LoggerAdapter[logging.Logger]):
    """The logger handed to picows: one shared logger, client framing errors demoted.

    picows logs a client's broken framing at ERROR ("WS parser error", once per read
    until the socket closes), and every accept and disconnect at INFO; those are
    the client's doing and go to DEBUG. Everything else (a failure inside picows or
    an exception escaping a listener) keeps its level. Being an adapter, not a
    ``Logger``, it also spares picows one child ``Logger`` object per socket.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level == logging.INFO or (
            level == logging.ERROR and isinstance(msg, str) and msg.startswith("WS parser error")
        ):
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


def resume_request(query: dict[str, list[str]]) -> ResumeRequest | None:
    """``?epoch=E&offset=N`` asks to replay after N before any live event."""
    epoch, offset = query.get("epoch"), query.get("offset")
    if not epoch or not offset:
        return None
    try:
        value = int(offset[0])
    except ValueError:
        return None
    return ResumeRequest(Epoch(epoch[0][:64]), max(value, 0))


def _refuse(status: int, body: bytes) -> WSUpgradeResponseWithListener:
    """An HTTP error answer to an upgrade request (the connection then closes)."""
    headers = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
    upgrade = WSUpgradeResponse.create_error_response(status, body, headers)
    return WSUpgradeResponseWithListener(upgrade, None)


def websocket_protocol_factory(
    options: ServerOptions,
    manager: WebSocketManager,
    authenticator: Authenticator,
    metrics: Metrics,
    heartbeats: Heartbeats,
) -> Callable[[], asyncio.BufferedProtocol]:
    """A factory of picows protocols, one per upgrade request: ``/ws`` upgrades (any
    other path gets 404), with the Origin rule, auth and the manager; every accepted
    socket's heartbeat is on ``heartbeats`` (one timer for all, not picows's task per
    socket).

    A protocol is made for a connection whose upgrade request the front door has
    read; it is given that request's bytes and parses it again (picows validates the
    handshake itself). picows's public API only offers a whole server
    (``ws_create_server``), so the protocol class is built here with the same
    arguments that function passes.
    """

    def route(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        target = urlsplit(request.path.decode("latin-1"))
        if target.path != WS_PATH:
            return _refuse(404, b"not found\n")
        headers = request.headers
        if not origin_allowed(headers.get("Origin"), headers.get("Host"), options.allowed_origins):
            metrics.connections_rejected.labels("origin").inc()
            log.info("connection refused: origin not allowed")
            return _refuse(403, b"origin not allowed\n")
        protocol_headers = {}
        if SUBPROTOCOL in offered_subprotocols(headers):
            protocol_headers["Sec-WebSocket-Protocol"] = SUBPROTOCOL
        upgrade = WSUpgradeResponse.create_101_response(protocol_headers)
        try:
            claims = authenticator.verify_claims(token_from_headers(headers))
        except AuthError as exc:
            metrics.connections_rejected.labels("auth").inc()
            log.info("connection refused: %s", exc.reason)
            return WSUpgradeResponseWithListener(
                upgrade,
                _RejectListener(CloseCode.UNAUTHORIZED, exc.reason, options.close_timeout_s),
            )
        listener = _ConnectionListener(
            manager,
            claims,
            resume_request(parse_qs(target.query)),
            options.close_timeout_s,
            heartbeats,
        )
        return WSUpgradeResponseWithListener(upgrade, listener)

    logger = _PicowsLog(logging.getLogger("picows.runwire"), {})

    def protocol() -> asyncio.BufferedProtocol:
        made: asyncio.BufferedProtocol = WSProtocol(
            None,  # host and port: client side only
            None,  # path: client side only
            False,  # is_client_side
            route,
            logger,
            True,  # disconnect_on_exception
            options.handshake_timeout_s,
            False,  # enable_auto_ping: runwire.heartbeat pings, for every socket at once
            options.heartbeat_interval_s,
            options.heartbeat_timeout_s,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            False,  # enable_auto_pong: the listener pongs, after checking the RSV bits
            options.max_frame_bytes * 4,
            None,  # extra headers
            2048,  # initial read buffer
        )
        return made

    return protocol
