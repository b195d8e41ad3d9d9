"""HTTP on both front doors: keep-alive, bodies and their limits, timeouts, CORS,
streaming responses, errors. Real sockets; responses parsed with h11 (a client-side
HTTP parser), so what is checked is what any HTTP client would read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
import pytest

from runwire import Gateway
from runwire.http.message import HttpRequest, HttpResponse, StreamResponse, json_response, read_json
from tests.front_doors import (
    FrontDoor,
    OpenDoor,
    door as door,  # the parametrized fixture
)

TIMEOUT = 10.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpConnection:
    """One client TCP connection to a front door, speaking HTTP/1.1 through h11."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, base: str):
        self.reader, self.writer = reader, writer
        self.base = base  # the path prefix of the door ("" or "/runwire")
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, url: str) -> HttpConnection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, parts.path.rstrip("/"))

    def close(self) -> None:
        self.writer.close()

    async def send(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> None:
        all_headers = [("host", "127.0.0.1"), *(headers or [])]
        if body is not None and not any(
            name.lower() == "content-length" for name, _ in all_headers
        ):
            all_headers.append(("content-length", str(len(body))))
        data = self.h11.send(
            h11.Request(method=method, target=self.base + path, headers=all_headers)
        )
        if body is not None:
            data = (data or b"") + (self.h11.send(h11.Data(data=body)) or b"")
            data += self.h11.send(h11.EndOfMessage()) or b""
        elif method not in ("POST", "PUT"):
            data = (data or b"") + (self.h11.send(h11.EndOfMessage()) or b"")
        self.writer.write(data or b"")
        await self.writer.drain()

    async def next_event(self) -> object:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            chunk = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            self.h11.receive_data(chunk)

    async def response(self) -> Response:
        event = await self.next_event()
        assert isinstance(event, h11.Response), event
        body = b""
        while True:
            part = await self.next_event()
            if isinstance(part, h11.Data):
                body += part.data
            elif isinstance(part, h11.EndOfMessage):
                break
        headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        return Response(event.status_code, headers, body)

    def next_request(self) -> None:
        """Ready for the next request on this kept-alive connection."""
        self.h11.start_next_cycle()

    async def request(self, method: str, path: str, **kwargs: object) -> Response:
        await self.send(method, path, **kwargs)  # type: ignore[arg-type]
        response = await self.response()
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.next_request()
        return response


async def request(d: FrontDoor, method: str, path: str, **kwargs: object) -> Response:
    connection = await HttpConnection.open(d.url)
    try:
        return await connection.request(method, path, **kwargs)
    finally:
        connection.close()


@dataclass
class ExtraRoutes:
    """Routes added to the gateway for these tests (on both front doors)."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, gateway: Gateway) -> None:
        gateway.router.get("/test/stream", self.stream)
        gateway.router.get("/test/hold", self.hold)
        gateway.router.post("/test/echo", self.echo)

    async def stream(self, _: HttpRequest) -> StreamResponse:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield b"data: one\n\n"
                await self.release.wait()
                yield b"data: two\n\n"
            finally:
                self.stream_closed.set()

        return StreamResponse(200, chunks())

    async def hold(self, _: HttpRequest) -> HttpResponse:
        await self.release.wait()
        return json_response(200, {"held": True})

    async def echo(self, request: HttpRequest) -> HttpResponse:
        return json_response(200, {"echo": read_json(request)})


async def test_keep_alive_serves_several_requests_on_one_connection(door: OpenDoor) -> None:
    async with door() as d:
        connection = await HttpConnection.open(d.url)
        try:
            for path in ("/healthz", "/api/info", "/metrics", "/healthz"):
                response = await connection.request("GET", path)
                assert response.status == 200, path
                assert response.headers.get("connection") != "close"
            head = await connection.request("HEAD", "/healthz")
            assert head.status == 200 and head.body == b""
        finally:
            connection.close()


async def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(door: OpenDoor) -> None:
    routes = ExtraRoutes()
    async with door(prepare=routes.add, max_request_bytes=2048) as d:
        declared = await request(
            d,
            "POST",
            "/test/echo",
            headers=[("content-type", "application/json")],
            body=b"1" * 4096,
        )
        assert declared.status == 413 and b'"too_large"' in declared.body
        connection = await HttpConnection.open(d.url)
        try:  # chunked: no content-length, the limit is found while reading
            await connection.send(
                "POST",
                "/test/echo",
                headers=[("content-type", "application/json"), ("transfer-encoding", "chunked")],
            )
            for _ in range(4):
                connection.writer.write(connection.h11.send(h11.Data(data=b" " * 1000)) or b"")
            connection.writer.write(connection.h11.send(h11.EndOfMessage()) or b"")
            streamed = await connection.response()
        finally:
            connection.close()
        assert streamed.status == 413
        fits = await request(
            d, "POST", "/test/echo", headers=[("content-type", "application/json")], body=b'{"a":1}'
        )
        assert (fits.status, fits.body) == (200, b'{"echo":{"a":1}}')


async def test_a_body_that_comes_too_slowly_is_408(door: OpenDoor) -> None:
    routes = ExtraRoutes()
    async with door(prepare=routes.add, http_body_timeout_s=0.5) as d:
        connection = await HttpConnection.open(d.url)
        try:
            await connection.send(
                "POST",
                "/test/echo",
                headers=[("content-type", "application/json"), ("content-length", "100")],
            )
            connection.writer.write(b'{"partial": ')
            response = await connection.response()
        finally:
            connection.close()
        assert response.status == 408 and b'"body_timeout"' in response.body


async def test_standalone_headers_that_come_too_slowly_are_408_and_the_connection_closes() -> None:
    from tests.front_doors import front_door

    async with front_door("standalone", http_header_timeout_s=0.5) as d:
        connection = await HttpConnection.open(d.url)
        try:
            connection.writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            data = await asyncio.wait_for(connection.reader.read(), TIMEOUT)  # until EOF
        finally:
            connection.close()
        assert data.startswith(b"HTTP/1.1 408 ") and b'"header_timeout"' in data
        # A kept-alive connection gets the timeout again for its next request.
        connection = await HttpConnection.open(d.url)
        try:
            assert (await connection.request("GET", "/healthz")).status == 200
            connection.writer.write(b"GET /healthz HTTP/1.1\r\n")
            data = await asyncio.wait_for(connection.reader.read(), TIMEOUT)
        finally:
            connection.close()
        assert data.startswith(b"HTTP/1.1 408 ")


async def test_cors_preflight_is_answered_for_listed_origins_and_refused_otherwise(
    door: OpenDoor,
) -> None:
    routes = ExtraRoutes()
    async with door(prepare=routes.add, cors_origins=("https://app.example",)) as d:
        asked = [
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization, content-type"),
        ]
        allowed = await request(d, "OPTIONS", "/test/echo", headers=asked)
        assert allowed.status == 204
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert allowed.headers["access-control-allow-headers"] == "authorization, content-type"
        assert "access-control-allow-credentials" not in allowed.headers
        refused = await request(
            d, "OPTIONS", "/test/echo", headers=[("origin", "https://evil.example"), *asked[1:]]
        )
        assert refused.status == 403 and b'"origin_not_allowed"' in refused.body
        assert "access-control-allow-origin" not in refused.headers
        actual = await request(d, "GET", "/healthz", headers=[("origin", "https://app.example")])
        assert actual.headers["access-control-allow-origin"] == "https://app.example"
        assert actual.headers["vary"] == "Origin"
        other = await request(d, "GET", "/healthz", headers=[("origin", "https://evil.example")])
        assert other.status == 200 and "access-control-allow-origin" not in other.headers


async def test_without_cors_origins_no_cors_headers_are_sent(door: OpenDoor) -> None:
    async with door() as d:
        response = await request(d, "GET", "/healthz", headers=[("origin", "https://app.example")])
        assert response.status == 200 and "access-control-allow-origin" not in response.headers
        preflight = await request(
            d,
            "OPTIONS",
            "/api/runs",
            headers=[("origin", "https://app.example"), ("access-control-request-method", "GET")],
        )
        assert preflight.status == 403


async def test_a_streaming_response_is_read_chunk_by_chunk_and_closed_on_disconnect(
    door: OpenDoor,
) -> None:
    routes = ExtraRoutes()
    async with door(prepare=routes.add) as d:
        connection = await HttpConnection.open(d.url)
        try:
            await connection.send("GET", "/test/stream")
            head = await connection.next_event()
            assert isinstance(head, h11.Response) and head.status_code == 200
            headers = {k.decode(): v.decode() for k, v in head.headers}
            assert headers["content-type"].startswith("text/event-stream")
            assert headers.get("transfer-encoding") == "chunked"
            first = await connection.next_event()
            # The second chunk does not exist yet: the first was sent on its own.
            assert isinstance(first, h11.Data) and first.data == b"data: one\n\n"
            routes.release.set()
            second = await connection.next_event()
            assert isinstance(second, h11.Data) and second.data == b"data: two\n\n"
            assert isinstance(await connection.next_event(), h11.EndOfMessage)
        finally:
            connection.close()
        await asyncio.wait_for(routes.stream_closed.wait(), TIMEOUT)
        # A client that leaves mid-stream: the stream is closed (its finally runs).
        routes.release.clear()
        routes.stream_closed.clear()
        connection = await HttpConnection.open(d.url)
        await connection.send("GET", "/test/stream")
        assert isinstance(await connection.next_event(), h11.Response)
        assert isinstance(await connection.next_event(), h11.Data)
        connection.close()
        await asyncio.wait_for(routes.stream_closed.wait(), TIMEOUT)


async def test_errors_are_json_with_the_right_status(door: OpenDoor) -> None:
    routes = ExtraRoutes()
    async with door(prepare=routes.add) as d:
        missing = await request(d, "GET", "/nope")
        assert missing.status == 404 and missing.headers["content-type"] == "application/json"
        assert missing.body == b'{"error":"not_found"}'
        wrong_method = await request(d, "DELETE", "/healthz")
        assert wrong_method.status == 405 and wrong_method.headers["allow"] == "GET, HEAD"
        options = await request(d, "OPTIONS", "/healthz")
        assert options.status == 204 and options.headers["allow"] == "GET, HEAD, OPTIONS"
        not_json = await request(
            d, "POST", "/test/echo", headers=[("content-type", "text/plain")], body=b"{}"
        )
        assert not_json.status == 415 and b'"unsupported_media_type"' in not_json.body
        broken = await request(
            d, "POST", "/test/echo", headers=[("content-type", "application/json")], body=b"{"
        )
        assert broken.status == 400 and b'"bad_request"' in broken.body
        unauthorized = await request(d, "GET", "/api/threads")
        assert unauthorized.status == 401 and b'"unauthorized"' in unauthorized.body
        assert unauthorized.headers["cache-control"] == "no-store"


async def test_requests_over_the_in_flight_bound_get_503_and_the_rest_are_served(
    door: OpenDoor,
) -> None:
    routes = ExtraRoutes()
    async with door(prepare=routes.add, max_http_requests=2) as d:
        held = [asyncio.ensure_future(request(d, "GET", "/test/hold")) for _ in range(2)]
        gateway = d.gateway
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while gateway.http.in_flight < 2:
            assert asyncio.get_running_loop().time() < deadline, "requests never arrived"
            await asyncio.sleep(0.01)
        busy = await request(d, "GET", "/healthz")
        assert busy.status == 503 and busy.headers["retry-after"] == "1"
        assert b'"busy"' in busy.body
        routes.release.set()
        assert [(await response).status for response in held] == [200, 200]
        assert (await request(d, "GET", "/healthz")).status == 200


@pytest.mark.parametrize("path", ["/assets/../config.py", "/assets/%2e%2e/app.py"])
async def test_asset_paths_cannot_leave_the_web_folder(door: OpenDoor, path: str) -> None:
    async with door() as d:
        assert (await request(d, "GET", path)).status == 404
