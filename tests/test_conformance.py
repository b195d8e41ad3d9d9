"""RFC 6455 conformance of the gateway, frame by frame, over a real TCP socket.

Every case sends hand-built frames (tests/rawws.py) to a running gateway and asserts
the exact documented outcome (docs/protocol.md sections 1 and 12): the close code,
and what happens to the TCP connection after the close frame.

Two closing behaviours are asserted:

- **handshake**: the server's close frame is followed by nothing; the TCP connection
  stays open (the server keeps reading) until the client's close frame, then the
  server closes it. Every close runwire decides itself works this way.
- **fail fast**: framing picows cannot parse past (reserved opcode, fragmented or
  oversized control frame, unmasked frame, bad length, invalid close code or reason
  in the client's close): close frame, then the TCP connection is closed at once
  (RFC 6455 7.1.7), without waiting for the client.

A client's own close frame is answered and the TCP connection closed at once
(the handshake is complete).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Iterator

import pytest

from runwire import Gateway
from runwire.ids import UserId
from runwire.metrics import CLOSE_CODE_LABELS
from tests.helpers import make_settings, publish_texts, running_gateway, scripted_agent, wait_until
from tests.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWebSocket,
    close_payload,
    encode_frame,
)

PING = b'{"type":"ping","id":"p1"}'
HANDSHAKE_S = 30.0
"""close_timeout_s of the handshake cases: far longer than any assertion waits."""
STILL_OPEN_S = 0.1
"""How long the TCP connection must stay open after the server's close frame (the
old server closed it within milliseconds)."""


@pytest.fixture(autouse=True)
def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Bad frames are the client's fault: nothing at ERROR, no traceback, no 1011."""
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    bad = [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


async def connected(ws: RawWebSocket) -> None:
    """Read the ``connected`` frame: the session is open."""
    frame = await ws.recv_frame()
    assert frame.opcode == OP_TEXT and frame.payload.startswith(b'{"type":"connected"')


async def assert_handshake(ws: RawWebSocket, code: int) -> None:
    """The server's close frame has ``code``; TCP stays open until our close, then closes."""
    close = await ws.recv_close()
    assert close.close_code == code, close
    assert await ws.open_for(STILL_OPEN_S), "TCP closed before the client's close frame"
    await ws.send_close(code)
    assert not await ws.wait_closed(timeout=5), "TCP reset instead of closed"


async def assert_fail_fast(ws: RawWebSocket, code: int) -> None:
    """The server's close frame has ``code``; then the server closes TCP by itself."""
    close = await ws.recv_close()
    assert close.close_code == code, close
    await ws.wait_closed(timeout=5)


# -- frames the listener rejects: closing handshake ------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(encode_frame(OP_TEXT, PING, rsv=4), 1002, id="rsv1-text"),
        pytest.param(encode_frame(OP_TEXT, PING, rsv=2), 1002, id="rsv2-text"),
        pytest.param(encode_frame(OP_TEXT, PING, rsv=1), 1002, id="rsv3-text"),
        pytest.param(encode_frame(OP_TEXT, PING, rsv=7), 1002, id="rsv123-text"),
        pytest.param(encode_frame(OP_PING, b"x", rsv=4), 1002, id="rsv1-ping"),
        pytest.param(encode_frame(OP_PONG, b"x", rsv=2), 1002, id="rsv2-pong"),
        pytest.param(encode_frame(OP_BINARY, b"x", rsv=1), 1002, id="rsv3-binary"),
        pytest.param(encode_frame(OP_CONTINUATION, b"x"), 1002, id="continuation-no-start"),
        pytest.param(
            encode_frame(OP_CONTINUATION, b"x", fin=False), 1002, id="continuation-no-start-fin0"
        ),
        pytest.param(encode_frame(OP_TEXT, b'{"type":', fin=False), 4400, id="fragmented-text"),
        pytest.param(encode_frame(OP_BINARY, PING), 4400, id="binary"),
        pytest.param(encode_frame(OP_BINARY, PING, fin=False), 4400, id="fragmented-binary"),
        pytest.param(encode_frame(OP_TEXT, b'{"type":"ping","id":"\xff"}'), 1007, id="utf8-ff"),
        pytest.param(encode_frame(OP_TEXT, b'{"type":"\xc3"}'), 1007, id="utf8-truncated"),
        pytest.param(encode_frame(OP_TEXT, b'"\xed\xa0\x80"'), 1007, id="utf8-surrogate"),
        pytest.param(encode_frame(OP_TEXT, b'"\xc0\xaf"'), 1007, id="utf8-overlong"),
        pytest.param(encode_frame(OP_TEXT, b"\xf4\x90\x80\x80"), 1007, id="utf8-above-10ffff"),
        pytest.param(encode_frame(OP_TEXT, b"{not json"), 4400, id="not-json"),
        pytest.param(encode_frame(OP_TEXT, b"x" * 2000), 1009, id="over-max_frame_bytes"),
    ],
)
async def test_frame_closes_with_the_documented_code_after_a_handshake(
    frame: bytes, code: int
) -> None:
    async with (
        running_gateway(max_frame_bytes=1024, close_timeout_s=HANDSHAKE_S) as gateway,
        RawWebSocket.connect(gateway) as ws,
    ):
        await connected(ws)
        await ws.send(frame)
        await assert_handshake(ws, code)
        await wait_for_no_connections(gateway)


async def test_a_fragmented_text_message_gets_4400_even_with_its_continuation() -> None:
    async with (
        running_gateway(close_timeout_s=HANDSHAKE_S) as gateway,
        RawWebSocket.connect(gateway) as ws,
    ):
        await connected(ws)
        await ws.send(
            encode_frame(OP_TEXT, PING[:10], fin=False) + encode_frame(OP_CONTINUATION, PING[10:])
        )
        await assert_handshake(ws, 4400)


# -- framing picows fails: close frame, then TCP closed ---------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        *[
            pytest.param(encode_frame(opcode, b"x"), 1002, id=f"opcode-{opcode:#x}")
            for opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)
        ],
        pytest.param(encode_frame(OP_PING, b"x", fin=False), 1002, id="fragmented-ping"),
        pytest.param(encode_frame(OP_PONG, b"x", fin=False), 1002, id="fragmented-pong"),
        pytest.param(
            encode_frame(OP_CLOSE, close_payload(1000), fin=False), 1002, id="fragmented-close"
        ),
        pytest.param(encode_frame(OP_PING, b"x" * 126), 1002, id="ping-126-bytes"),
        pytest.param(encode_frame(OP_PONG, b"x" * 200), 1002, id="pong-200-bytes"),
        pytest.param(encode_frame(OP_CLOSE, close_payload(1000, b"x" * 124)), 1002, id="close-126"),
        pytest.param(encode_frame(OP_TEXT, PING, mask=None), 1002, id="unmasked"),
        pytest.param(
            struct.pack("!BBH", 0x81, 0x80 | 126, 5) + b"\0\0\0\0" + b"hello",
            1002,
            id="16-bit-length-under-126",
        ),
        pytest.param(
            struct.pack("!BBQ", 0x81, 0x80 | 127, 300) + b"\0\0\0\0" + b"x" * 300,
            1002,
            id="64-bit-length-under-65536",
        ),
        pytest.param(encode_frame(OP_TEXT, length=5000), 1009, id="over-4x-max_frame_bytes"),
    ],
)
async def test_broken_framing_fails_the_connection(frame: bytes, code: int) -> None:
    async with (
        running_gateway(max_frame_bytes=1024, close_timeout_s=HANDSHAKE_S) as gateway,
        RawWebSocket.connect(gateway) as ws,
    ):
        await connected(ws)
        await ws.send(frame)
        await assert_fail_fast(ws, code)
        await wait_for_no_connections(gateway)


# -- the client's close frame ---------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        1000,
        1001,
        1002,
        1003,
        1007,
        1008,
        1009,
        1010,
        1011,
        1012,
        1013,
        1014,
        3000,
        3999,
        4000,
        4999,
    ],
)
async def test_a_valid_close_code_is_echoed(code: int) -> None:
    async with running_gateway() as gateway, RawWebSocket.connect(gateway) as ws:
        await connected(ws)
        await ws.send_close(code, "bye, ünïcode".encode())
        close = await ws.recv_close()
        assert close.close_code == code
        await ws.wait_closed(timeout=5)
        await wait_for_no_connections(gateway)
        # Metric labels come from a fixed set: a client's own code counts as "other".
        label = str(code) if str(code) in CLOSE_CODE_LABELS else "other"
        assert closed_total(gateway, label) == 1


async def test_an_empty_close_frame_gets_1000() -> None:
    async with running_gateway() as gateway, RawWebSocket.connect(gateway) as ws:
        await connected(ws)
        await ws.send_frame(OP_CLOSE, b"")
        close = await ws.recv_close()
        assert close.close_code == 1000  # never 0, never 1005
        await ws.wait_closed(timeout=5)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(close_payload(code), id=str(code))
        for code in (0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)
    ]
    + [pytest.param(b"\x03", id="1-byte-payload")],
)
async def test_an_invalid_close_code_gets_1002(payload: bytes) -> None:
    async with running_gateway() as gateway, RawWebSocket.connect(gateway) as ws:
        await connected(ws)
        await ws.send_frame(OP_CLOSE, payload)
        close = await ws.recv_close()
        assert close.close_code == 1002
        await ws.wait_closed(timeout=5)
        await wait_for_no_connections(gateway)
        assert closed_total(gateway, "1002") == 1


@pytest.mark.parametrize("reason", [b"\xff", b"ok \xc3", b"\xed\xa0\x80"])
async def test_a_close_reason_that_is_not_utf8_gets_1007(reason: bytes) -> None:
    async with running_gateway() as gateway, RawWebSocket.connect(gateway) as ws:
        await connected(ws)
        await ws.send_frame(OP_CLOSE, close_payload(1000, reason))
        close = await ws.recv_close()
        assert close.close_code == 1007
        await ws.wait_closed(timeout=5)


async def test_pings_are_answered_with_their_payload_and_pongs_ignored() -> None:
    async with running_gateway() as gateway, RawWebSocket.connect(gateway) as ws:
        await connected(ws)
        await ws.send_frame(OP_PONG, b"unsolicited")
        await ws.send_frame(OP_PING, b"x" * 125)
        await ws.send_frame(OP_PING, b"")
        first, second = await ws.recv_frame(), await ws.recv_frame()
        assert (first.opcode, first.payload) == (OP_PONG, b"x" * 125)
        assert (second.opcode, second.payload) == (OP_PONG, b"")
        await ws.send_frame(OP_TEXT, PING)
        reply = await ws.recv_frame()
        assert reply.payload == b'{"type":"pong","id":"p1"}'


async def test_a_ping_fragment_between_text_frames_is_still_a_violation() -> None:
    # RFC 6455 5.4 allows control frames between fragments; runwire has no fragments,
    # so a text frame with fin=0 closes 4400 before anything else is looked at.
    async with (
        running_gateway(close_timeout_s=HANDSHAKE_S) as gateway,
        RawWebSocket.connect(gateway) as ws,
    ):
        await connected(ws)
        await ws.send(
            encode_frame(OP_TEXT, b'{"type"', fin=False)
            + encode_frame(OP_PING, b"in between")
            + encode_frame(OP_CONTINUATION, b':"ping","id":"x"}')
        )
        await assert_handshake(ws, 4400)


# -- the closing handshake ------------------------------------------------------------


async def flood(ws: RawWebSocket, frame: bytes, stop: asyncio.Event) -> int:
    """Send ``frame`` over and over until ``stop`` (or until the server is gone)."""
    sent = 0
    try:
        while not stop.is_set():
            await ws.send(frame * 8)
            sent += 8
            await asyncio.sleep(0)
    except ConnectionError:
        pass  # the old server dropped the socket under our feet: the test then fails
    return sent


@pytest.mark.parametrize(
    ("trigger", "code"),
    [
        pytest.param(None, 4429, id="rate-limit-flood-4429"),
        pytest.param(encode_frame(OP_TEXT, b"x" * 2000), 1009, id="oversize-1009"),
        pytest.param(encode_frame(OP_BINARY, b"x"), 4400, id="binary-4400"),
        pytest.param(encode_frame(OP_TEXT, b"x", rsv=4), 1002, id="rsv-1002"),
    ],
)
async def test_a_client_still_sending_gets_the_close_code_and_the_tcp_waits_for_its_close(
    trigger: bytes | None, code: int
) -> None:
    async with (
        running_gateway(
            client_messages_per_s=5 if trigger is None else 10_000,
            max_frame_bytes=1024,
            close_timeout_s=HANDSHAKE_S,
        ) as gateway,
        RawWebSocket.connect(gateway) as ws,
    ):
        await connected(ws)
        if trigger is not None:
            await ws.send(trigger)
        stop = asyncio.Event()
        sender = asyncio.create_task(flood(ws, encode_frame(OP_TEXT, PING), stop))
        close = await ws.recv_close()  # RawClosed here is what a client reports as 1006
        assert close.close_code == code
        # The client is still sending: the server reads on, the TCP stays open.
        assert await ws.open_for(STILL_OPEN_S)
        stop.set()
        assert await sender > 0
        await ws.send_close(code)
        assert not await ws.wait_closed(timeout=5)  # closed by the server, not reset
        await wait_for_no_connections(gateway)
        assert closed_total(gateway, str(code)) == 1


async def test_a_client_gone_right_after_its_close_frame_is_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that sends its close frame and shuts its socket at once (a tab
    closing): the server's half-close finds the connection reset (``ENOTCONN``). It
    raised out of the frame handler before, and picows logged an error with a
    traceback for every such client; now the connection is dropped, nothing logged."""
    caplog.set_level(logging.WARNING)
    async with running_gateway() as gateway:
        for user in range(20):
            async with RawWebSocket.connect(gateway, f"gone-{user}") as ws:
                await connected(ws)
                sock = socket.socket(fileno=ws.writer.get_extra_info("socket").fileno())
                try:
                    sock.send(encode_frame(OP_CLOSE, close_payload(1000)))
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.detach()  # the transport still owns the descriptor
            await wait_for_no_connections(gateway)
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []


async def test_a_client_that_never_answers_the_close_is_dropped_after_close_timeout_s() -> None:
    timeout = 0.5
    async with (
        running_gateway(close_timeout_s=timeout) as gateway,
        RawWebSocket.connect(gateway) as ws,
    ):
        await connected(ws)
        loop = asyncio.get_running_loop()
        await ws.send_frame(OP_BINARY, b"x")
        close = await ws.recv_close()
        sent_at = loop.time()
        assert close.close_code == 4400
        # Keep reading, never answer: the server waits close_timeout_s, then aborts.
        await ws.wait_closed(timeout=timeout + 5)
        assert loop.time() - sent_at >= timeout * 0.8
        await wait_for_no_connections(gateway)


async def test_a_client_that_never_reads_is_aborted_after_close_timeout_s() -> None:
    timeout = 0.5
    async with (
        running_gateway(close_timeout_s=timeout, outbound_queue_bytes=65_536) as gateway,
        RawWebSocket.connect(gateway, "stuck") as ws,
    ):
        await connected(ws)
        (connection,) = gateway.manager.connections_of(UserId("stuck"))
        # Publish without ever reading: the kernel buffers fill, then the session's
        # queue overflows (4409) and its close frame cannot be written either.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while connection.session.close_code is None:
            assert loop.time() < deadline, "the queue never overflowed"
            await publish_texts(gateway, "stuck", ["y" * 8000] * 4)  # less than the queue
            await asyncio.sleep(0)  # the flush: written while the transport takes it
        closing_at = loop.time()
        assert connection.session.close_code == 4409
        transport = connection.writer.transport  # type: ignore[attr-defined]
        await wait_until(lambda: transport.is_close_frame_sent, what="the close frame")
        assert transport.underlying_transport.get_write_buffer_size() > 0, "nothing stuck"
        await wait_until(lambda: not gateway.manager.connection_count, timeout + 5, "the abort")
        assert loop.time() - closing_at >= timeout * 0.8
        assert closed_total(gateway, "4409") == 1


async def test_a_refused_token_gets_4401_and_a_closing_handshake() -> None:
    async with (
        running_gateway(close_timeout_s=HANDSHAKE_S) as gateway,
        RawWebSocket.connect(gateway, token="not-a-jwt") as ws,
    ):
        await ws.send_frame(OP_TEXT, PING)  # ignored: the socket is closing
        await assert_handshake(ws, 4401)


async def test_a_connection_over_the_limit_gets_4429_and_a_closing_handshake() -> None:
    async with (
        running_gateway(max_connections_per_user=1, close_timeout_s=HANDSHAKE_S) as gateway,
        RawWebSocket.connect(gateway, "alice") as first,
        RawWebSocket.connect(gateway, "alice") as second,
    ):
        await connected(first)
        await second.send_frame(OP_TEXT, PING)  # ignored: the socket is closing
        await assert_handshake(second, 4429)
        await first.send_frame(OP_TEXT, PING)  # the first one is unaffected
        assert (await first.recv_frame()).payload == b'{"type":"pong","id":"p1"}'


async def test_shutdown_sends_1001_and_waits_for_the_clients_close() -> None:
    gateway = Gateway(make_settings(close_timeout_s=HANDSHAKE_S), agent=scripted_agent)
    await gateway.start()
    async with RawWebSocket.connect(gateway) as ws:
        await connected(ws)
        stopping = asyncio.create_task(gateway.stop())
        close = await ws.recv_close()
        assert close.close_code == 1001
        assert await ws.open_for(STILL_OPEN_S)
        assert not stopping.done()  # the gateway waits for the handshake (grace: 2 s)
        await ws.send_close(1001)
        assert not await ws.wait_closed(timeout=5)
        await asyncio.wait_for(stopping, 5)


async def test_nothing_is_sent_after_the_close_frame() -> None:
    # Events published while the server waits for the client's close stay unsent.
    async with (
        running_gateway(close_timeout_s=HANDSHAKE_S) as gateway,
        RawWebSocket.connect(gateway, "bob") as ws,
    ):
        await connected(ws)
        await ws.send_frame(OP_BINARY, b"x")
        close = await ws.recv_close()
        assert close.close_code == 4400
        await publish_texts(gateway, "bob", ["late"] * 5)
        await ws.send_frame(OP_PING, b"late ping")
        assert await ws.open_for(STILL_OPEN_S)  # wait_closed raises on any byte
        await ws.send_close(4400)
        await ws.wait_closed(timeout=5)


def test_the_close_codes_the_server_may_send_are_exactly_the_valid_ones() -> None:
    from runwire.exceptions import CloseCode
    from runwire.server import valid_close_code

    valid = {c for c in range(65536) if valid_close_code(c)}
    assert valid == {*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)}
    assert all(valid_close_code(code) for code in CloseCode)


# -- helpers --------------------------------------------------------------------------


async def wait_for_no_connections(gateway: Gateway, timeout: float = 5.0) -> None:
    await wait_until(lambda: not gateway.manager.connection_count, timeout, "no connections")


def closed_total(gateway: Gateway, code: str) -> float:
    """``runwire_connections_closed_total{code}`` of ``gateway``."""
    value = gateway.metrics.registry.get_sample_value(
        "runwire_connections_closed_total", {"code": code}
    )
    return value or 0.0


async def test_data_after_the_clients_close_frame_does_not_reset_the_connection() -> None:
    # The client breaks the protocol by sending on after its close frame; closing with
    # that data unread would reset the TCP connection and could destroy the echo.
    async with (
        running_gateway(close_timeout_s=HANDSHAKE_S) as gateway,
        RawWebSocket.connect(gateway) as ws,
    ):
        await connected(ws)
        await ws.send(
            encode_frame(OP_CLOSE, close_payload(3000)) + encode_frame(OP_TEXT, PING) * 500
        )
        close = await ws.recv_close()
        assert close.close_code == 3000
        assert not await ws.wait_closed(timeout=5), "reset"
        await wait_for_no_connections(gateway)
