"""One HTTP request over ASGI, from the first message to the last byte of the answer.

Both front doors serve HTTP through :class:`HttpExchange`: the standalone server
(uvicorn's httptools protocol on the gateway's port, :mod:`runwire.front`) and
``gateway.asgi_app()`` under any ASGI server. In order, a request gets:

1. ``OPTIONS``: a CORS preflight answer (204, or 403 for an origin not in
   ``cors_origins``), or 204 with ``Allow``;
2. a route, or 404 (``not_found``) / 405 (``method_not_allowed``, with ``Allow``);
3. a place among ``max_http_requests`` in flight, or 503 (``busy``, ``Retry-After``);
4. its body (``POST``/``PUT``/``PATCH``): 413 (``too_large``, ``Connection: close``)
   above ``max_request_bytes`` (at once when ``Content-Length`` says so), 408
   (``body_timeout``) if it takes longer than ``http_body_timeout_s``;
5. the route's answer: a complete response, or a stream written chunk by chunk
   until it ends or the client goes away (then the stream is closed); a route's
   :class:`~runwire.http.message.HttpError` becomes its JSON error, anything else
   500 (``internal``), logged.

Every answer carries ``Cache-Control: no-store`` (unless the route sets its own) and,
for an allowed cross-origin request, the CORS headers. ``HEAD`` answers as ``GET``
without the body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qs

from runwire.http.cors import CorsPolicy
from runwire.http.message import (
    HttpError,
    HttpRequest,
    HttpResponse,
    StreamResponse,
    json_error,
)
from runwire.http.router import Router

__all__ = ["AsgiHeaders", "HttpExchange", "HttpLimits"]

log = logging.getLogger("runwire.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class AsgiHeaders(Mapping[str, str]):
    """ASGI headers as a case-insensitive mapping; repeated headers joined with ``, ``."""

    __slots__ = ("_items",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        items: dict[str, str] = {}
        repeated: dict[str, list[str]] = {}  # joined once: joining as they come is quadratic
        for name, value in raw:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            values = repeated.get(key)
            if values is not None:
                values.append(text)
            elif key in items:
                repeated[key] = [items[key], text]
            else:
                items[key] = text
        for key, values in repeated.items():
            items[key] = ", ".join(values)
        self._items = items

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class HttpLimits:
    """The request limits (from :class:`~runwire.config.Settings`)."""

    __slots__ = ("body_timeout_s", "max_in_flight", "max_request_bytes")

    def __init__(self, max_request_bytes: int, body_timeout_s: float, max_in_flight: int) -> None:
        self.max_request_bytes = max_request_bytes
        self.body_timeout_s = body_timeout_s
        self.max_in_flight = max_in_flight


class _BodyTimeout(Exception):
    pass


class _Disconnected(Exception):
    pass


class HttpExchange:
    """Serves HTTP requests through ``router`` with ``limits`` and the CORS ``policy``."""

    def __init__(self, router: Router, limits: HttpLimits, policy: CorsPolicy) -> None:
        self.router = router
        self.limits = limits
        self.policy = policy
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Answer the request of ``scope`` whose path under the mount point is ``path``."""
        method: str = scope["method"]
        headers = AsgiHeaders(scope["headers"])
        origin = self.policy.cross_origin(headers)
        match = self.router.match(
            method if method != "OPTIONS" else "GET", path, scope.get("raw_path")
        )
        if method == "OPTIONS":
            await _write(send, self._options(headers, origin, match.allowed))
            return
        cors = self.policy.response_headers(origin)
        if match.route is None:
            if match.allowed:
                allow = (("allow", ", ".join(match.allowed)),)
                refused = json_error(405, "method_not_allowed", f"{method} is not allowed here")
                await _write(send, _with(refused, allow + cors))
            else:
                await _write(send, _with(json_error(404, "not_found"), cors))
            return
        if self.in_flight >= self.limits.max_in_flight:
            busy = json_error(503, "busy", "too many requests in flight", (("retry-after", "1"),))
            await _write(send, _with(busy, cors))
            return
        self.in_flight += 1
        try:
            try:
                body = await self._body(method, headers, receive)
            except HttpError as exc:
                await _write(send, _with(exc.response(), cors))
                return
            except _BodyTimeout:
                timeout = json_error(408, "body_timeout", "the request body took too long")
                await _write(send, _with(timeout, cors + (("connection", "close"),)))
                return
            except _Disconnected:
                return
            request = HttpRequest(
                method,
                path,
                parse_qs(scope.get("query_string", b"").decode("latin-1")),
                headers,
                body,
                match.params,
            )
            response: HttpResponse | StreamResponse
            try:
                response = await match.route(request)
            except HttpError as exc:
                response = exc.response()
            except Exception:
                log.exception("HTTP route failed", extra={"path": path, "method": method})
                response = json_error(500, "internal")
            if isinstance(response, StreamResponse):
                await _stream(send, receive, response, cors, head=method == "HEAD")
            else:
                await _write(send, _with(response, cors), head=method == "HEAD")
        finally:
            self.in_flight -= 1

    def _options(
        self, headers: AsgiHeaders, origin: str | None, allowed: tuple[str, ...]
    ) -> HttpResponse:
        if not allowed:
            return json_error(404, "not_found")
        allowed = tuple(sorted({*allowed, "OPTIONS"}))
        requested = headers.get("access-control-request-method")
        if origin is None or requested is None:
            return HttpResponse(204, b"", headers=(("allow", ", ".join(allowed)),))
        answer = self.policy.preflight_headers(
            origin, allowed, headers.get("access-control-request-headers")
        )
        if answer is None:
            return json_error(403, "origin_not_allowed", "this origin may not call the gateway")
        return HttpResponse(204, b"", headers=answer)

    async def _body(self, method: str, headers: AsgiHeaders, receive: Receive) -> bytes:
        """The whole body, within the size limit and the timeout."""
        if method not in _WITH_BODY:
            return b""
        limit = self.limits.max_request_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected
                    chunk: bytes = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    parts.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(parts)
        except TimeoutError:
            raise _BodyTimeout from None


def _too_large(limit: int) -> HttpError:
    # The rest of the body is not read: the connection cannot carry another request.
    close = (("connection", "close"),)
    return HttpError(413, "too_large", f"the request body is over {limit} bytes", close)


def _with(response: HttpResponse, headers: tuple[tuple[str, str], ...]) -> HttpResponse:
    if not headers:
        return response
    return HttpResponse(
        response.status, response.body, response.content_type, response.headers + headers
    )


def _header_list(
    content_type: str, extra: tuple[tuple[str, str], ...], length: int | None
) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    if content_type:
        headers.append((b"content-type", content_type.encode("latin-1")))
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    if not any(name.lower() == "cache-control" for name, _ in extra):
        headers.append((b"cache-control", b"no-store"))
    headers.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in extra)
    return headers


async def _write(send: Send, response: HttpResponse, *, head: bool = False) -> None:
    """Send a complete response (``head``: the headers only)."""
    no_body = response.status in (204, 304)
    headers = _header_list(
        "" if no_body else response.content_type,
        response.headers,
        None if no_body else len(response.body),
    )
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head or no_body else response.body})


async def _stream(
    send: Send,
    receive: Receive,
    response: StreamResponse,
    cors: tuple[tuple[str, str], ...],
    *,
    head: bool,
) -> None:
    """Send ``response``'s chunks as they come; stop when the client disconnects."""
    chunks = response.chunks
    try:
        headers = _header_list(response.content_type, response.headers + cors, None)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if head:
            await send({"type": "http.response.body", "body": b""})
            return
        pump = asyncio.ensure_future(_pump(send, chunks))
        watch = asyncio.ensure_future(_until_disconnect(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
            for task in (pump, watch):
                with suppress(asyncio.CancelledError):
                    await task
    except Exception:
        # Headers are out: the stream can only end early (the client sees it cut short).
        log.exception("HTTP stream failed")
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _pump(send: Send, chunks: Any) -> None:
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
