"""HTTP requests and responses as the gateway's routes see them (no I/O here).

A route is an ``async`` function of an :class:`HttpRequest` that returns a complete
:class:`HttpResponse` or a :class:`StreamResponse` (a status, headers and an async
iterator of body chunks, such as Server-Sent Events). The front door
(:mod:`runwire.http.exchange`) reads the request, applies the limits, CORS and
errors, and writes the response; routes never touch sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = [
    "HttpError",
    "HttpRequest",
    "HttpResponse",
    "HttpRoute",
    "StreamResponse",
    "json_error",
    "json_response",
    "read_json",
]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request: method, path (under the gateway's mount point), query parameters,
    headers (a case-insensitive mapping), path parameters and the whole body."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    """Values of the route pattern's ``{name}`` segments."""

    def query_value(self, name: str) -> str | None:
        """The first value of query parameter ``name``, if given."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response; ``headers`` are added to the content type and length."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StreamResponse:
    """A response whose body is written chunk by chunk as ``chunks`` yields them.

    The front door closes ``chunks`` (``aclose``) when the client goes away, so a
    generator's ``finally`` runs; it sends no ``content-length`` (HTTP/1.1 chunked).
    """

    status: int
    chunks: AsyncIterator[bytes]
    content_type: str = "text/event-stream; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


HttpRoute = Callable[[HttpRequest], Awaitable[HttpResponse | StreamResponse]]
"""An HTTP handler."""


class HttpError(Exception):
    """Raised by a route to answer with a JSON error: ``{"error": code, "message": ...}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str = "",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message or code)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def response(self) -> HttpResponse:
        """The JSON error response this error stands for."""
        return json_error(self.status, self.code, self.message, self.headers)


def json_response(
    status: int, body: object, headers: tuple[tuple[str, str], ...] = ()
) -> HttpResponse:
    """``body`` encoded as JSON."""
    return HttpResponse(status, msgspec.json.encode(body), "application/json", headers)


def json_error(
    status: int, code: str, message: str = "", headers: tuple[tuple[str, str], ...] = ()
) -> HttpResponse:
    """An error as every route answers it: ``{"error": code}`` (and ``message`` when set).

    ``code`` is a stable machine-readable word (``unauthorized``, ``not_found``, ...);
    ``message`` is for people and may change.
    """
    body: dict[str, str] = {"error": code}
    if message:
        body["message"] = message
    return json_response(status, body, headers)


def read_json(request: HttpRequest, kind: type[object] = dict) -> Any:
    """The request's body decoded as JSON of ``kind`` (a dict by default; a msgspec
    ``Struct`` validates the fields).

    Raises:
        HttpError: 415 ``unsupported_media_type`` unless ``Content-Type`` is
            ``application/json``; 400 ``bad_request`` for a body that is not JSON
            of that shape (the message says where).
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise HttpError(415, "unsupported_media_type", "send Content-Type: application/json")
    try:
        return msgspec.json.decode(request.body, type=kind)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise HttpError(400, "bad_request", str(exc)) from None
