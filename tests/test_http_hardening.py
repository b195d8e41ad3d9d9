"""The standalone server's HTTP edges: head limits, browser upgrades, early answers.

Every test talks raw bytes to a real gateway on a free port (asyncio streams), so
what is checked is what a client sees on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest

from runwire import Gateway
from runwire.http.exchange import AsgiHeaders
from runwire.http.message import HttpRequest, HttpResponse
from tests.helpers import make_settings, running_gateway, scripted_agent, token_for
from tests.rawws import RawWebSocket

MAX_HEAD_BYTES = 64 * 1024  # the documented limits (runwire.front)
MAX_HEADERS = 128
API_KEY = "k" * 40
WAIT = 10.0  # the bound of every wait: far above what each step takes


class Probe:
    """A route that records the requests it was given."""

    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        return HttpResponse(200, str(len(request.body)).encode())


@asynccontextmanager
async def probed_gateway(**overrides: Any) -> AsyncIterator[tuple[Gateway, Probe]]:
    """A started gateway with ``GET /probe`` and ``POST /probe`` recorded."""
    probe = Probe()
    gateway = Gateway(make_settings(**overrides), agent=scripted_agent)
    gateway.router.get("/probe", probe)
    gateway.router.post("/probe", probe)
    await gateway.start()
    try:
        yield gateway, probe
    finally:
        await gateway.stop()


class Reply:
    """One HTTP response as read off the wire."""

    def __init__(self, head: bytes, body: bytes) -> None:
        status, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status.split(" ")[1])
        self.headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.body = body

    @property
    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    async def read() -> Reply:
        head = (await reader.readuntil(b"\r\n\r\n"))[:-4]
        reply = Reply(head, b"")
        reply.body = await reader.readexactly(int(reply.headers.get("content-length", "0")))
        return reply

    return await asyncio.wait_for(read(), WAIT)


async def at_eof(reader: asyncio.StreamReader) -> bool:
    """Whether the server ended its side (FIN) within the bound, nothing more sent."""
    try:
        return await asyncio.wait_for(reader.read(1), WAIT) == b""
    except TimeoutError:
        return False


async def request(port: int, data: bytes) -> Reply:
    """Send ``data`` (still sending while the answer is read) and read one response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        with suppress(ConnectionError):
            writer.write(data)
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        return await read_reply(reader)
    finally:
        sending.cancel()
        with suppress(asyncio.CancelledError):
            await sending
        writer.close()


async def gone_within(writer: asyncio.StreamWriter, seconds: float) -> bool:
    """Trickle one byte every 0.1 s: whether the server dropped the connection in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            writer.write(b"a")
            await writer.drain()
        except ConnectionError:
            return True
        if writer.transport.is_closing():
            return True
        await asyncio.sleep(0.1)
    return False


# -- 1. the request head is bounded ------------------------------------------------


async def test_repeated_headers_get_431_without_reaching_the_app() -> None:
    # 320,000 x "x: y" (1.9 MB) stalled the loop for seconds and then got a 200.
    async with probed_gateway() as (gateway, probe):
        head = b"GET /probe HTTP/1.1\r\nHost: x\r\n" + b"x: y\r\n" * 320_000 + b"\r\n"
        reply = await request(gateway.port, head)
        assert reply.status == 431
        assert json.loads(reply.body)["error"] == "headers_too_large"
        assert reply.closes
        assert probe.requests == []
        # The gateway goes on serving.
        reply = await request(gateway.port, b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.status == 200 and len(probe.requests) == 1


async def test_a_huge_header_value_gets_431() -> None:
    async with probed_gateway() as (gateway, probe):
        big = b"GET /probe HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (16 * 1024 * 1024) + b"\r\n\r\n"
        reply = await request(gateway.port, big)
        assert reply.status == 431 and reply.closes
        assert probe.requests == []


async def test_the_head_limits_are_exact() -> None:
    async with probed_gateway() as (gateway, probe):
        port = gateway.port
        fields = b"".join(b"x-%d: y\r\n" % n for n in range(MAX_HEADERS - 1))
        reply = await request(port, b"GET /probe HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert reply.status == 200  # Host and the others: MAX_HEADERS fields
        fields += b"x-last: y\r\n"
        reply = await request(port, b"GET /probe HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert reply.status == 431
        # A big cookie under the byte limit is fine; one byte over is not.
        room = MAX_HEAD_BYTES - len("/probe") - (len("host") + len("x") + 4) - len("cookie") - 4
        for size, status in ((room, 200), (room + 1, 431)):
            cookie = b"Cookie: " + b"c" * size + b"\r\n"
            reply = await request(port, b"GET /probe HTTP/1.1\r\nHost: x\r\n" + cookie + b"\r\n")
            assert reply.status == status, size
        assert len(probe.requests) == 2


async def test_a_url_over_the_limit_gets_431() -> None:
    async with probed_gateway() as (gateway, probe):
        path = b"/probe?q=" + b"q" * MAX_HEAD_BYTES
        reply = await request(gateway.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.status == 431 and probe.requests == []


def test_repeated_headers_are_joined_once() -> None:
    headers = AsgiHeaders([(b"x", b"a"), (b"Y", b"1"), (b"X", b"b"), (b"x", b"c")])
    assert dict(headers) == {"x": "a, b, c", "y": "1"}
    # Joined as they came (quadratic), 200,000 copies took 6-8 s; joined once, 0.05 s.
    many = [(b"x", b"0123456789")] * 200_000
    started = time.perf_counter()
    assert len(AsgiHeaders(many)["x"]) == 12 * 200_000 - 2
    assert time.perf_counter() - started < 2.0  # a generous bound


# -- 2. browsers' upgrade requests --------------------------------------------------


def _firefox_handshake(port: int, token: str, **replace: str) -> bytes:
    """What Firefox 128 sends for ``new WebSocket(url, ["runwire.v1", "bearer.<jwt>"])``."""
    key = base64.b64encode(os.urandom(16)).decode()
    fields = {
        "Host": f"127.0.0.1:{port}",
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Accept": "*/*",
        "Accept-Language": "en-US,en;q=0.5",
        "Accept-Encoding": "gzip, deflate, br, zstd",
        "Sec-WebSocket-Version": "13",
        "Origin": f"http://127.0.0.1:{port}",
        "Sec-WebSocket-Protocol": f"runwire.v1, bearer.{token}",
        "Sec-WebSocket-Extensions": "permessage-deflate",
        "Sec-WebSocket-Key": key,
        "Connection": "keep-alive, Upgrade",
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "websocket",
        "Sec-Fetch-Site": "same-origin",
        "Pragma": "no-cache",
        "Cache-Control": "no-cache",
        "Upgrade": "websocket",
    }
    fields.update(replace)
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"GET /ws HTTP/1.1\r\n{lines}\r\n".encode()


async def _handshake(gateway: Gateway, data: bytes) -> tuple[Reply, RawWebSocket]:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(data)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    return Reply(head[:-4], b""), RawWebSocket(reader, writer)


async def test_firefox_opens_a_socket() -> None:
    async with running_gateway() as gateway:
        token = token_for(gateway.settings, "alice")
        reply, ws = await _handshake(gateway, _firefox_handshake(gateway.port, token))
        try:
            assert reply.status == 101, reply.headers
            assert reply.headers["sec-websocket-protocol"] == "runwire.v1"
            connected = json.loads((await ws.recv_frame(WAIT)).payload)
            assert connected["type"] == "connected" and connected["user_id"] == "alice"
        finally:
            ws.abort()


async def test_an_upgrade_split_over_connection_headers_opens_a_socket() -> None:
    async with running_gateway() as gateway:
        token = token_for(gateway.settings, "bob")
        data = _firefox_handshake(gateway.port, token, Connection="keep-alive")
        data = data.replace(b"\r\n\r\n", b"\r\nConnection: Upgrade\r\n\r\n")
        reply, ws = await _handshake(gateway, data)
        try:
            assert reply.status == 101, reply.headers
            connected = json.loads((await ws.recv_frame(WAIT)).payload)
            assert connected["user_id"] == "bob"
        finally:
            ws.abort()


async def test_an_unknown_websocket_version_gets_426() -> None:
    async with running_gateway() as gateway:
        token = token_for(gateway.settings, "carol")
        data = _firefox_handshake(gateway.port, token, **{"Sec-WebSocket-Version": "12"})
        reply = await request(gateway.port, data)
        assert reply.status == 426  # RFC 6455 4.4
        assert reply.headers["sec-websocket-version"] == "13"


async def test_an_upgrade_over_picows_limit_gets_431() -> None:
    # picows drops an upgrade request of 16 KiB or more (its blank line not counted)
    # without a word. Connection: Upgrade, so that picows gets the bytes sent.
    async with running_gateway() as gateway:
        token = token_for(gateway.settings, "dave")
        bare = _firefox_handshake(gateway.port, token, Connection="Upgrade", Cookie="")
        room = 16 * 1024 - 1 - (len(bare) - 4)  # the longest cookie picows takes
        for size, status in ((room, 101), (room + 1, 431)):
            data = _firefox_handshake(gateway.port, token, Connection="Upgrade", Cookie="c" * size)
            reply, ws = await _handshake(gateway, data)
            ws.abort()
            assert reply.status == status, size


# -- 3. an answer before the body was read closes the connection ---------------------


EARLY = {
    "404 for a body": (404, b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"),
    "405 for a body": (405, b"PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"),
    "413 from Content-Length": (
        413,
        b"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
    ),
    "GET with a body": (200, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"),
    "GET with a chunked body": (
        200,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
    ),
}


@pytest.mark.parametrize(("status", "head"), EARLY.values(), ids=EARLY.keys())
async def test_an_answer_before_the_body_closes_the_connection(status: int, head: bytes) -> None:
    # The body never comes in full: a trickle held such connections open for good.
    async with running_gateway(
        http_header_timeout_s=1.0,
        http_body_timeout_s=30.0,
        http_keepalive_timeout_s=30.0,
        api_key=API_KEY,
    ) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            writer.write(head)
            reply = await read_reply(reader)
            assert reply.status == status
            assert reply.closes, reply.headers
            assert await at_eof(reader)
            # The server drops what still comes, then the connection (after
            # http_header_timeout_s), however the trickle goes on.
            assert await gone_within(writer, WAIT)
        finally:
            writer.close()


async def test_a_body_read_in_full_keeps_the_connection() -> None:
    async with probed_gateway() as (gateway, probe):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            for _ in range(2):  # the body after the head, as many clients send it
                writer.write(b"POST /probe HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"hello")
                reply = await read_reply(reader)
                assert reply.status == 200 and reply.body == b"5" and not reply.closes
            # A complete request to no route keeps it too.
            writer.write(b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            reply = await read_reply(reader)
            assert reply.status == 404 and not reply.closes
            writer.write(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_reply(reader)).status == 200
        finally:
            writer.close()
        assert len(probe.requests) == 3


async def test_a_client_still_sending_its_body_gets_the_413() -> None:
    # The server answers at once and reads the rest away: closing with bytes unread
    # would reset the connection, and the client could lose the answer.
    async with running_gateway(api_key=API_KEY, max_request_bytes=1024) as gateway:
        body = b"x" * (8 * 1024 * 1024)
        head = b"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        reply = await request(gateway.port, head + body)
        assert reply.status == 413 and reply.closes
        assert json.loads(reply.body)["error"] == "too_large"
