"""The server API: what the product's backend asks of the gateway, over HTTP.

Off unless ``RUNWIRE_API_KEY`` is set (then every ``/api/v1/*`` route is 404).
Every call, ``openapi.json`` included, carries ``Authorization: Bearer <key>`` (the
scheme in any case, RFC 7235); the key is compared in constant time and never logged
(nor shown by ``repr``). A missing or wrong key is 401 ``unauthorized``. Every call
is audited on the ``runwire.audit`` logger (route, user, outcome; no secrets, no
message content).

Routes (JSON bodies, ``Content-Type: application/json``):

``POST /api/v1/runs`` ``{user_id, content, id, thread_id?}``
    Start a run for a user as if the user had sent ``content`` on a socket: the
    user's tabs see it live. ``id`` is the idempotency key (the socket's message
    id): a retry answers the same run with ``duplicate: true``. 202.
``POST /api/v1/runs/{run_id}/cancel`` ``{user_id}``
    Cancel one of that user's active runs (runs are kept per user, so the user is
    named, as on the socket). 200, or 404 ``not_found`` when it is not active.
``POST /api/v1/users/{user_id}/disconnect`` ``{code?, reason?}``
    Close every socket of the user on every node (default 4403 ``revoked``;
    ``code`` 4000-4999, ``reason`` at most 120 bytes in UTF-8: a close frame holds
    123). 200 with the sockets closed on the node asked.
``GET /api/v1/users/{user_id}/presence``
    The user's open sockets per node and in total (every node in Redis mode).
``GET /api/v1/openapi.json``
    The OpenAPI 3.1 document of these routes.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from runwire.agents.runtime import StartedRun
from runwire.events import ClientId, WireId
from runwire.exceptions import CloseCode, EngineError, LimitError
from runwire.http.message import HttpError, HttpRequest, HttpResponse, json_response, read_json
from runwire.http.router import Router
from runwire.http.routes import engine_unavailable, limit_refused

__all__ = [
    "API_PREFIX",
    "CancelRun",
    "Disconnect",
    "Presence",
    "ServerApi",
    "StartRun",
    "openapi_document",
]

audit = logging.getLogger("runwire.audit")

API_PREFIX = "/api/v1"

UserIdField = Annotated[str, Meta(min_length=1, max_length=256)]

MAX_REASON_BYTES = 120
"""The longest disconnect ``reason``, in UTF-8 bytes (a close frame's reason holds 123)."""


class StartRun(Struct, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/runs``."""

    user_id: UserIdField
    content: str
    id: ClientId
    thread_id: WireId | None = None


class CancelRun(Struct, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/runs/{run_id}/cancel``."""

    user_id: UserIdField


class Disconnect(Struct, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/users/{user_id}/disconnect`` (may be empty: ``{}``)."""

    code: Annotated[int, Meta(ge=4000, le=4999)] = int(CloseCode.FORBIDDEN)
    reason: Annotated[
        str,
        Meta(max_length=MAX_REASON_BYTES, description="at most 120 bytes in UTF-8"),
    ] = "revoked"

    def __post_init__(self) -> None:
        # max_length counts characters; the close frame counts bytes.
        if len(self.reason.encode()) > MAX_REASON_BYTES:
            raise ValueError(
                f"Expected `str` of at most {MAX_REASON_BYTES} bytes in UTF-8 - at `$.reason`"
            )


class RunStarted(Struct):
    """Answer of ``POST /api/v1/runs``."""

    id: str
    run_id: str
    thread_id: str
    duplicate: bool


class Presence(Struct):
    """Answer of ``GET /api/v1/users/{user_id}/presence``.

    ``complete`` is false when a node did not answer in time (its sockets are then
    not counted).
    """

    user_id: str
    connections: int
    nodes: dict[str, int]
    complete: bool = True


@dataclass(frozen=True, slots=True)
class ServerApi:
    """The gateway operations the server API calls."""

    key: str = field(repr=False)
    max_message_chars: int
    engine_available: Callable[[], bool]
    start_run: Callable[[str, str, str, str | None], Awaitable[StartedRun]]
    """``(user_id, content, message_id, thread_id)``"""
    cancel: Callable[[str, str], Awaitable[bool]]
    """``(user_id, run_id)``"""
    disconnect: Callable[[str, int, str], Awaitable[int]]
    """``(user_id, code, reason)``: sockets closed on this node."""
    presence: Callable[[str], Awaitable[Presence]]

    def add_routes(self, router: Router) -> None:
        """Add the ``/api/v1`` routes to ``router``."""
        router.post(f"{API_PREFIX}/runs", self._guard("start_run", self._start_run))
        router.post(f"{API_PREFIX}/runs/{{run_id}}/cancel", self._guard("cancel_run", self._cancel))
        router.post(
            f"{API_PREFIX}/users/{{user_id}}/disconnect",
            self._guard("disconnect_user", self._disconnect),
        )
        router.get(
            f"{API_PREFIX}/users/{{user_id}}/presence", self._guard("presence", self._presence)
        )
        router.get(f"{API_PREFIX}/openapi.json", self._guard("openapi", self._openapi))

    def _guard(
        self, name: str, route: Callable[[HttpRequest], Awaitable[HttpResponse]]
    ) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
        """``route`` behind the key check, audited."""
        expected = self.key.encode()

        async def guarded(request: HttpRequest) -> HttpResponse:
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            given = credentials.lstrip(" ").encode("latin-1", "replace")
            # The scheme is case-insensitive (RFC 7235); the key is exact, in constant time.
            key_ok = hmac.compare_digest(given, expected)
            if not (key_ok and scheme.lower() == "bearer"):
                audit.warning("server API %s refused: missing or wrong key", name)
                raise HttpError(401, "unauthorized", "missing or wrong API key")
            try:
                response = await route(request)
            except HttpError as exc:
                audit.info("server API %s: %d %s", name, exc.status, exc.code, extra=request.params)
                raise
            audit.info("server API %s: %d", name, response.status, extra=request.params)
            return response

        return guarded

    async def _start_run(self, request: HttpRequest) -> HttpResponse:
        body: StartRun = read_json(request, StartRun)
        if len(body.content) > self.max_message_chars:
            raise HttpError(413, "message_too_long", "content exceeds max_message_chars")
        if not self.engine_available():
            raise engine_unavailable()
        try:
            started = await self.start_run(body.user_id, body.content, body.id, body.thread_id)
        except LimitError as exc:
            raise limit_refused(exc) from None
        except EngineError:
            raise engine_unavailable() from None
        answer = RunStarted(body.id, started.run_id, started.thread_id, started.duplicate)
        return json_response(202, answer)

    async def _cancel(self, request: HttpRequest) -> HttpResponse:
        body: CancelRun = read_json(request, CancelRun)
        try:
            cancelled = await self.cancel(body.user_id, request.params["run_id"])
        except EngineError:
            raise engine_unavailable() from None
        if not cancelled:
            raise HttpError(404, "not_found", "no active run with this id for this user")
        return json_response(200, {"run_id": request.params["run_id"], "cancelled": True})

    async def _disconnect(self, request: HttpRequest) -> HttpResponse:
        body: Disconnect = read_json(request, Disconnect) if request.body else Disconnect()
        user_id = request.params["user_id"]
        try:
            closed = await self.disconnect(user_id, body.code, body.reason)
        except EngineError:
            raise engine_unavailable() from None
        return json_response(200, {"user_id": user_id, "closed_here": closed})

    async def _presence(self, request: HttpRequest) -> HttpResponse:
        try:
            presence = await self.presence(request.params["user_id"])
        except EngineError:
            raise engine_unavailable() from None
        return json_response(200, presence)

    async def _openapi(self, _: HttpRequest) -> HttpResponse:
        return json_response(200, openapi_document())


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the server API (schemas from the body types)."""
    (start, cancel, disconnect, started, presence), components = msgspec.json.schema_components(
        (StartRun, CancelRun, Disconnect, RunStarted, Presence),
        ref_template="#/components/schemas/{name}",
    )
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    }
    components["Error"] = error

    def answers(ok: str, schema: dict[str, Any] | None, *errors: int) -> dict[str, Any]:
        ref = {"$ref": "#/components/schemas/Error"}
        responses: dict[str, Any] = {
            ok: {"description": "done"}
            | ({"content": {"application/json": {"schema": schema}}} if schema else {}),
            "401": {
                "description": "missing or wrong key",
                "content": {"application/json": {"schema": ref}},
            },
        }
        for status in errors:
            responses[str(status)] = {
                "description": _ERROR_TEXT[status],
                "content": {"application/json": {"schema": ref}},
            }
        return responses

    def body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
        return {"required": required, "content": {"application/json": {"schema": schema}}}

    def user_param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    return {
        "openapi": "3.1.0",
        # ssotcheck: ignore[SSOT008] -- the OpenAPI "info" object, not the log level
        "info": {"title": "runwire server API", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
        "paths": {
            f"{API_PREFIX}/runs": {
                "post": {
                    "summary": "Start a run for a user (idempotent by id)",
                    "requestBody": body(start),
                    "responses": answers("202", started, 400, 413, 415, 429, 503),
                }
            },
            f"{API_PREFIX}/runs/{{run_id}}/cancel": {
                "post": {
                    "summary": "Cancel one of a user's active runs",
                    "parameters": [user_param("run_id")],
                    "requestBody": body(cancel),
                    "responses": answers("200", None, 400, 404, 415, 503),
                }
            },
            f"{API_PREFIX}/users/{{user_id}}/disconnect": {
                "post": {
                    "summary": "Close every socket of a user on every node",
                    "parameters": [user_param("user_id")],
                    "requestBody": body(disconnect, required=False),
                    "responses": answers("200", None, 400, 415, 503),
                }
            },
            f"{API_PREFIX}/users/{{user_id}}/presence": {
                "get": {
                    "summary": "A user's open sockets, per node and in total",
                    "parameters": [user_param("user_id")],
                    "responses": answers("200", presence, 503),
                }
            },
        },
    }


_ERROR_TEXT = {
    400: "the body is not valid",
    404: "not found",
    413: "the content or body is too large",
    415: "the body is not JSON",
    429: "a limit of the user was reached",
    503: "the engine is unavailable or the gateway is busy",
}
