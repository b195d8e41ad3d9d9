"""The gateway's HTTP routes: the page, its assets, health, metrics and ``/api/*``.

Each route is a plain function of an :class:`~runwire.server.HttpRequest`; the I/O
adapter (:mod:`runwire.server`) calls them. ``/api/*`` routes authenticate with
``Authorization: Bearer`` exactly as sockets do, and answer JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from typing import Any

import msgspec

from runwire.auth import Authenticator, issue_token, token_from_headers
from runwire.config import Mode, Settings
from runwire.events import MAX_RUNS_PAGE
from runwire.exceptions import AuthError
from runwire.ids import UserId
from runwire.metrics import Metrics
from runwire.runs import RunStore, page_of
from runwire.server import HttpRequest, HttpResponse, HttpRoute

__all__ = ["http_routes"]


def http_routes(
    *,
    settings: Settings,
    authenticator: Authenticator,
    runs: RunStore,
    metrics: Metrics,
    health: Callable[[], dict[str, Any]],
) -> dict[str, HttpRoute]:
    """Every HTTP route of a gateway, by path (a key ending in ``/`` is a prefix).

    ``health()`` gives the body of ``/healthz``; its ``engine_available`` decides
    200 or 503.
    """
    api = _Api(settings, authenticator, runs)

    def healthz(_: HttpRequest) -> HttpResponse:
        state = health()
        available = bool(state["engine_available"])
        return _json(
            200 if available else 503, {"status": "ok" if available else "degraded"} | state
        )

    routes: dict[str, HttpRoute] = {
        "/": lambda _: _static("index.html"),
        "/assets/": lambda request: _static(request.path.removeprefix("/assets/")),
        "/healthz": healthz,
        "/metrics": lambda _: HttpResponse(
            200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8"
        ),
        "/api/runs": api.runs,
        "/api/runs/": api.run,
        "/api/threads": api.threads,
        "/api/info": api.info,
    }
    if settings.mode is Mode.DEV:
        routes["/api/dev-token"] = api.dev_token
    return routes


class _Api:
    """``/api/*``: the caller's own run snapshots, from this node's store."""

    def __init__(self, settings: Settings, authenticator: Authenticator, runs: RunStore) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.store = runs

    def _caller(self, request: HttpRequest) -> UserId:
        """The verified user of an API request (``Authorization: Bearer``)."""
        return self.authenticator.verify(token_from_headers(request.headers))

    def runs(self, request: HttpRequest) -> HttpResponse:
        try:
            user_id = self._caller(request)
        except AuthError as exc:
            return _json(401, {"error": exc.reason})
        query = request.query
        thread_id = query["thread_id"][0] if "thread_id" in query else None
        before = query["before"][0] if "before" in query else None
        try:
            limit = int(query["limit"][0]) if "limit" in query else MAX_RUNS_PAGE
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_RUNS_PAGE:
            return _json(400, {"error": f"limit must be 1-{MAX_RUNS_PAGE}"})
        page = page_of(
            self.store.runs(user_id, thread_id),
            limit=limit,
            before=before,
            max_bytes=self.settings.reply_size_limit,
        )
        return _json(200, {"runs": page.runs, "more": page.more})

    def run(self, request: HttpRequest) -> HttpResponse:
        try:
            user_id = self._caller(request)
        except AuthError as exc:
            return _json(401, {"error": exc.reason})
        snapshot = self.store.run(user_id, request.path.removeprefix("/api/runs/"))
        if snapshot is None:
            return _json(404, {"error": "not_found"})
        return _json(200, snapshot)

    def threads(self, request: HttpRequest) -> HttpResponse:
        try:
            user_id = self._caller(request)
        except AuthError as exc:
            return _json(401, {"error": exc.reason})
        return _json(200, {"threads": self.store.threads(user_id)})

    def info(self, _: HttpRequest) -> HttpResponse:
        """How to sign in, for the page: always 200 (it must not probe routes that
        answer errors, which browsers log as console errors)."""
        dev = self.settings.mode is Mode.DEV
        return _json(200, {"mode": self.settings.mode.value, "dev_sign_in": dev})

    def dev_token(self, request: HttpRequest) -> HttpResponse:
        user = (request.query.get("user") or [""])[0].strip()
        try:
            token = issue_token(self.settings, user)
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, {"user_id": user, "token": token, "mode": "dev"})


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
        return HttpResponse(404, b"not found\n")
    asset = resources.files("runwire.web").joinpath(name)
    if not asset.is_file():
        return HttpResponse(404, b"not found\n")
    return HttpResponse(200, asset.read_bytes(), _CONTENT_TYPES[suffix])


def _json(status: int, body: object) -> HttpResponse:
    return HttpResponse(status, msgspec.json.encode(body), "application/json")
