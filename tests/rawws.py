"""A raw WebSocket client for conformance and fuzz tests: hand-built frames over TCP.

It sends whatever it is told to (any opcode, RSV bits, fin, mask, declared length,
payload), and reads the server's frames strictly: a server frame must be unmasked
and use no RSV bit, or :class:`ServerBroke` is raised. It never answers anything by
itself (no pong, no close echo): every byte on the wire is the test's decision.

::

    async with RawWebSocket.connect(gateway, "alice") as ws:
        await ws.send_frame(OP_PING, b"x" * 126)      # too big for a control frame
        close = await ws.recv_close()
        assert close.close_code == 1002
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from runwire import Gateway
from tests.helpers import token_for

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "RawClosed",
    "RawWebSocket",
    "ServerBroke",
    "ServerFrame",
    "close_payload",
    "encode_frame",
]

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = b"\x37\xfa\x21\x3d",
    length: int | None = None,
) -> bytes:
    """One client frame, built by hand (RFC 6455 5.2), valid or not.

    Args:
        opcode: 0-15, reserved ones included.
        payload: the unmasked payload.
        fin: the FIN bit.
        rsv: the three RSV bits as a number 0-7 (4 = RSV1, 2 = RSV2, 1 = RSV3).
        mask: the 4-byte masking key; ``None`` sends an unmasked frame.
        length: the payload length to declare, when it must differ from ``len(payload)``.
    """
    declared = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)
    mask_bit = 0x80 if mask is not None else 0
    if declared < 126:
        header = bytes((first, mask_bit | declared))
    elif declared <= 0xFFFF:
        header = struct.pack("!BBH", first, mask_bit | 126, declared)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, declared)
    if mask is None:
        return header + payload
    return header + mask + _masked(payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return b""
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
        len(payload), "big"
    )


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    """The payload of a close frame: a 2-byte code (any 0-65535) and a reason."""
    if code is None:
        return reason
    return struct.pack("!H", code) + reason


class RawClosed(Exception):
    """The TCP connection ended (EOF or reset) before the frame being read was complete."""

    def __init__(self, reset: bool) -> None:
        super().__init__("connection reset" if reset else "connection closed (EOF)")
        self.reset = reset


class ServerBroke(AssertionError):
    """The server sent something RFC 6455 forbids a server to send."""


@dataclass(frozen=True, slots=True)
class ServerFrame:
    """One frame received from the server."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The code of a close frame (None for an empty close frame)."""
        assert self.opcode == OP_CLOSE, f"not a close frame: opcode {self.opcode:#x}"
        if len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code

    @property
    def close_reason(self) -> bytes:
        return self.payload[2:]


@dataclass(eq=False)
class RawWebSocket:
    """A client socket after a successful upgrade; frames are read with :meth:`recv_frame`."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: list[ServerFrame] = field(default_factory=list)
    """Every frame read so far, in order."""

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        gateway: Gateway,
        user: str = "raw",
        *,
        token: str | None = None,
        timeout: float = 5.0,
    ) -> AsyncIterator[RawWebSocket]:
        """Upgrade ``GET /ws`` with a valid token for ``user`` (or ``token``); abort on exit."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(gateway.settings.host, gateway.port), timeout
        )
        ws = cls(reader, writer)
        try:
            await asyncio.wait_for(ws._upgrade(token or token_for(gateway.settings, user)), timeout)
            yield ws
        finally:
            ws.abort()

    async def _upgrade(self, token: str) -> None:
        key = base64.b64encode(os.urandom(16))
        request = (
            b"GET /ws HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
        )
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        assert status.startswith("HTTP/1.1 101"), status
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
        assert headers.get("sec-websocket-accept") == accept, headers

    # -- sending ---------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Write raw bytes and wait until the transport took them."""
        self.writer.write(data)
        await self.writer.drain()

    async def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bytes | None = b"\x37\xfa\x21\x3d",
        length: int | None = None,
    ) -> None:
        """Send one hand-built frame (see :func:`encode_frame`)."""
        await self.send(encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask, length=length))

    async def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        await self.send_frame(OP_CLOSE, close_payload(code, reason))

    # -- receiving -------------------------------------------------------------

    async def recv_frame(self, timeout: float = 5.0) -> ServerFrame:
        """The next server frame.

        Raises:
            RawClosed: the TCP connection ended first.
            TimeoutError: nothing complete arrived within ``timeout``.
            ServerBroke: the frame is masked or sets an RSV bit.
        """
        return await asyncio.wait_for(self._read_frame(), timeout)

    async def _read_frame(self) -> ServerFrame:
        try:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            if second & 0x80:
                raise ServerBroke("the server sent a masked frame")
            payload = await self.reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise RawClosed(reset=False) from None
        except ConnectionError:  # reset, or a broken pipe seen by our own writes
            raise RawClosed(reset=True) from None
        rsv = (first >> 4) & 0x7
        if rsv:
            raise ServerBroke(f"the server set RSV bits {rsv:#b}")
        frame = ServerFrame(bool(first & 0x80), rsv, first & 0xF, payload)
        self.received.append(frame)
        return frame

    async def recv_close(self, timeout: float = 5.0) -> ServerFrame:
        """Read until the server's close frame (skipping text and pong frames) and return it.

        Raises:
            RawClosed: the TCP connection ended without a close frame (what clients
                report as 1006).
            TimeoutError: no close frame within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv_frame(max(deadline - loop.time(), 0.0))
            if frame.opcode == OP_CLOSE:
                return frame

    async def wait_closed(self, timeout: float = 5.0) -> bool:
        """Wait for the server to close the TCP connection; return whether it was a reset.

        On the server's FIN the client closes its side too, as a WebSocket client
        does. Nothing may arrive any more (the close frame has been read already):
        any byte is a :class:`ServerBroke`. Raises ``TimeoutError`` if the TCP stays open.
        """
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except ConnectionError:
            return True
        if data:
            raise ServerBroke(f"the server sent {data[:40]!r} after its close frame")
        self.writer.close()
        return False

    async def open_for(self, seconds: float) -> bool:
        """Whether the TCP connection is still open (no EOF, no reset) ``seconds`` from now.

        Any byte received meanwhile is a :class:`ServerBroke` (it is only called after
        the server's close frame).
        """
        try:
            await self.wait_closed(seconds)
        except TimeoutError:
            return True
        return False

    def abort(self) -> None:
        """Drop the TCP connection at once (no close frame)."""
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()
