"""The gateway's HTTP routes: the page, its assets, health, metrics and ``/api/*``.

Each route is an ``async`` function of an :class:`~runwire.http.message.HttpRequest`;
:class:`~runwire.http.exchange.HttpExchange` calls them for both front doors.
``/api/*`` routes authenticate with ``Authorization: Bearer`` exactly as sockets do,
and answer JSON (errors: ``{"error": code, "message": ...}``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from runwire.auth import Authenticator, TokenClaims, issue_token, token_from_headers
from runwire.config import Mode, Settings
from runwire.events import MAX_RUNS_PAGE
from runwire.exceptions import AuthError, EngineError, LimitError
from runwire.http.message import HttpError, HttpRequest, HttpResponse, json_response
from runwire.http.router import Router
from runwire.ids import UserId
from runwire.metrics import Metrics
from runwire.runs import RunSnapshot, RunStore, SnapshotReader, page_of

__all__ = ["caller_of", "claims_of", "engine_unavailable", "gateway_routes", "limit_refused"]


def gateway_routes(
    router: Router,
    *,
    settings: Settings,
    authenticator: Authenticator,
    runs: RunStore,
    snapshots: SnapshotReader,
    metrics: Metrics,
    health: Callable[[], dict[str, Any]],
) -> None:
    """Add every GET route of a gateway to ``router``: the page and its assets,
    ``/healthz``, ``/metrics`` and ``/api/*``.

    ``health()`` gives the body of ``/healthz``; its ``engine_available`` decides
    200 or 503. ``/api/runs*`` and ``/api/threads`` read through ``snapshots`` (the
    store shared by every node in Redis mode, as the socket's ``get_runs``), which
    keeps ``runs`` (this node's store) up to date.
    """
    api = _Api(settings, authenticator, runs, snapshots)

    async def healthz(_: HttpRequest) -> HttpResponse:
        state = health()
        available = bool(state["engine_available"])
        return json_response(
            200 if available else 503, {"status": "ok" if available else "degraded"} | state
        )

    async def page(_: HttpRequest) -> HttpResponse:
        return _static("index.html")

    async def asset(request: HttpRequest) -> HttpResponse:
        return _static(request.params["*"])

    async def metrics_text(_: HttpRequest) -> HttpResponse:
        return HttpResponse(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")

    router.get("/", page)
    router.get("/assets/*", asset)
    router.get("/healthz", healthz)
    router.get("/metrics", metrics_text)
    router.get("/api/runs", api.runs)
    router.get("/api/runs/{run_id}", api.run)
    router.get("/api/threads", api.threads)
    router.get("/api/info", api.info)
    if settings.mode is Mode.DEV:
        router.get("/api/dev-token", api.dev_token)


def caller_of(authenticator: Authenticator, request: HttpRequest) -> UserId:
    """The verified user of a request (``Authorization: Bearer <token>``, as sockets).

    Raises:
        HttpError: 401 ``unauthorized`` (the message says why: missing, expired, ...).
    """
    return claims_of(authenticator, request).user_id


def claims_of(authenticator: Authenticator, request: HttpRequest) -> TokenClaims:
    """:func:`caller_of` with the token's expiry (a stream ends at ``exp``, as a socket).

    Raises:
        HttpError: 401 ``unauthorized`` (the message says why: missing, expired, ...).
    """
    try:
        return authenticator.verify_claims(token_from_headers(request.headers))
    except AuthError as exc:
        raise HttpError(401, "unauthorized", exc.reason) from None


def engine_unavailable() -> HttpError:
    """503 ``engine_unavailable`` with ``Retry-After``: the engine cannot serve now."""
    return HttpError(
        503, "engine_unavailable", "the event engine is unavailable; retry", (("retry-after", "1"),)
    )


def limit_refused(exc: LimitError) -> HttpError:
    """A bound that refused a run or a stream, as HTTP: 503 for the gateway's own
    (``busy``, ``shutting_down``), 429 for the user's (``too_many_runs``,
    ``too_many_connections``); ``Retry-After`` on both."""
    status = 503 if exc.code in ("busy", "shutting_down") else 429
    return HttpError(status, exc.code, exc.message, (("retry-after", "1"),))


class _Api:
    """``/api/*``: the caller's own run snapshots, from the shared store if any."""

    def __init__(
        self,
        settings: Settings,
        authenticator: Authenticator,
        runs: RunStore,
        snapshots: SnapshotReader,
    ) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.store = runs
        self.snapshots = snapshots

    async def _runs_of(self, user_id: UserId, thread_id: str | None) -> list[RunSnapshot]:
        try:
            return await self.snapshots.runs(user_id, thread_id)
        except EngineError:
            raise engine_unavailable() from None

    async def runs(self, request: HttpRequest) -> HttpResponse:
        user_id = caller_of(self.authenticator, request)
        limit_text = request.query_value("limit")
        try:
            limit = int(limit_text) if limit_text is not None else MAX_RUNS_PAGE
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_RUNS_PAGE:
            raise HttpError(400, "bad_request", f"limit must be 1-{MAX_RUNS_PAGE}")
        page = page_of(
            await self._runs_of(user_id, request.query_value("thread_id")),
            limit=limit,
            before=request.query_value("before"),
            max_bytes=self.settings.reply_size_limit,
        )
        return json_response(200, {"runs": page.runs, "more": page.more})

    async def run(self, request: HttpRequest) -> HttpResponse:
        user_id = caller_of(self.authenticator, request)
        try:
            snapshot = await self.snapshots.run(user_id, request.params["run_id"])
        except EngineError:
            raise engine_unavailable() from None
        if snapshot is None:
            raise HttpError(404, "not_found", "no such run")
        return json_response(200, snapshot)

    async def threads(self, request: HttpRequest) -> HttpResponse:
        user_id = caller_of(self.authenticator, request)
        await self._runs_of(user_id, None)  # brings this node's store up to date
        return json_response(200, {"threads": self.store.threads(user_id)})

    async def info(self, _: HttpRequest) -> HttpResponse:
        """How to sign in, for the page: always 200 (it must not probe routes that
        answer errors, which browsers log as console errors)."""
        dev = self.settings.mode is Mode.DEV
        return json_response(200, {"mode": self.settings.mode.value, "dev_sign_in": dev})

    async def dev_token(self, request: HttpRequest) -> HttpResponse:
        user = (request.query_value("user") or "").strip()
        try:
            token = issue_token(self.settings, user)
        except ValueError as exc:
            raise HttpError(400, "bad_request", str(exc)) from None
        return json_response(200, {"user_id": user, "token": token, "mode": "dev"})


_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _static(name: str) -> HttpResponse:
    """A file shipped in ``runwire/web`` (flat names only: no traversal)."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if not _ASSET_NAME.match(name) or suffix not in _CONTENT_TYPES:
        raise HttpError(404, "not_found")
    asset = resources.files("runwire.web").joinpath(name)
    if not asset.is_file():
        raise HttpError(404, "not_found")
    return HttpResponse(200, asset.read_bytes(), _CONTENT_TYPES[suffix])
