"""What the front-end routes share: start a run or find one, and follow it as SSE.

Both front-end route modules (:mod:`runwire.http.agui_routes`,
:mod:`runwire.http.chat_routes`) authenticate, parse their body, then ask
:class:`RunStreams` for an :class:`~runwire.http.sse_follower.SseFollower` that
follows the run, and answer its :meth:`~SseFollower.chunks`. Every refusal is an
:class:`~runwire.http.message.HttpError` raised *before* the stream: 401, 400, 404,
413 ``message_too_long`` (over ``max_message_chars``), 429 (``too_many_runs``,
``too_many_connections``) and 503 (``engine_unavailable``, ``busy``,
``shutting_down``).

A new run: the follower's connection opens live and is ``connected`` *before* the run
starts, so no event is missed. A retried request (the idempotency key names a run
already started) and the resume routes replay the run from its ``first_offset``
(:class:`~runwire.runs.RunSnapshot`), or from the client's ``Last-Event-ID``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from runwire.agents.dispatch import RunDispatcher
from runwire.agents.runtime import StartedRun
from runwire.auth import Authenticator, TokenClaims
from runwire.config import Settings
from runwire.engines.base import Engine
from runwire.exceptions import EngineError, LimitError
from runwire.frontends.base import InvalidRequest
from runwire.frontends.sse import EventId
from runwire.http.message import HttpError, HttpRequest, StreamResponse
from runwire.http.routes import claims_of, engine_unavailable, limit_refused
from runwire.http.sse_follower import SseFollower, TranslatorFactory
from runwire.manager import WebSocketManager
from runwire.metrics import Metrics
from runwire.resume import ResumeRequest
from runwire.runs import RunSnapshot, SnapshotReader

__all__ = ["STREAM_HEADERS", "RunStreams", "TranslatorMaker", "last_event_id", "stream_response"]

TranslatorMaker = Callable[[EventId | None], TranslatorFactory]
"""A front-end's translator for a client position (``None``: the whole run)."""


STREAM_HEADERS = (("cache-control", "no-cache"), ("x-accel-buffering", "no"))
"""Headers of every front-end stream: not cached, not buffered by proxies (nginx)."""


Body = TypeVar("Body")


def parsed(parse: Callable[[bytes], Body], request: HttpRequest) -> Body:
    """``parse(request.body)``; a front-end's :class:`InvalidRequest` becomes the
    ``400`` JSON answer (before any stream)."""
    try:
        return parse(request.body)
    except InvalidRequest as exc:
        raise HttpError(400, exc.code, exc.message) from None


def last_event_id(request: HttpRequest) -> EventId | None:
    """The client's position: ``Last-Event-ID``, else ``?after=``; ``None`` if neither.

    Raises:
        HttpError: 400 ``invalid_request`` when it is not ``epoch:offset[.k]``.
    """
    text = request.headers.get("last-event-id") or request.query_value("after")
    if not text:
        return None
    try:
        return EventId.parse(text)
    except ValueError as exc:
        raise HttpError(400, "invalid_request", str(exc)) from None


def stream_response(
    follower: SseFollower, content_type: str, headers: tuple[tuple[str, str], ...] = ()
) -> StreamResponse:
    """The SSE answer of a front-end route: :data:`STREAM_HEADERS` and ``headers``."""
    return StreamResponse(200, follower.chunks(), content_type, STREAM_HEADERS + headers)


@dataclass(frozen=True, slots=True)
class RunStreams:
    """The gateway parts the front-end routes use (wired by :class:`~runwire.app.Gateway`)."""

    settings: Settings
    authenticator: Authenticator
    manager: WebSocketManager
    dispatcher: RunDispatcher
    engine: Engine
    snapshots: SnapshotReader
    metrics: Metrics

    def claims(self, request: HttpRequest) -> TokenClaims:
        """The caller, as ``/api/*`` authenticates it. Raises HttpError 401."""
        return claims_of(self.authenticator, request)

    async def start(
        self,
        claims: TokenClaims,
        text: str,
        *,
        key: str,
        thread_id: str | None,
        translator: TranslatorMaker,
    ) -> SseFollower:
        """Start the run of ``text`` (idempotency key ``key``) and follow it from its start.

        Raises:
            HttpError: 413, 429 or 503 (see the module); nothing is left open.
        """
        if len(text) > self.settings.max_message_chars:
            raise HttpError(413, "message_too_long", "content exceeds max_message_chars")
        if not self.engine.available:
            raise engine_unavailable()
        follower = self._follower(claims, translator(None), run_id=None)
        await self._open(follower, claims, None)
        user_id = claims.user_id
        try:
            started = await self.dispatcher.start_run(
                user_id, text, message_id=key, thread_id=thread_id
            )
        except LimitError as exc:
            follower.release()
            raise limit_refused(exc) from None
        except EngineError:
            follower.release()
            raise engine_unavailable() from None
        except BaseException:
            follower.release()
            raise
        if not started.duplicate:
            self.metrics.runs_started.inc()
            follower.follow(started.run_id)
            return follower
        # A retry: the run may be well under way; replay it from its start instead.
        snapshot = await self._snapshot(claims, started.run_id, release=follower)
        if snapshot is None:
            follower.follow(started.run_id)  # its start is not known here yet: live is all
            return follower
        follower.release()
        return await self.replay(claims, snapshot, None, translator)

    async def find(self, claims: TokenClaims, run_id: str) -> RunSnapshot:
        """The caller's run ``run_id``: runwire's run id, or the idempotency key the
        run was started with (an AG-UI client's own ``runId``).

        Raises:
            HttpError: 404 ``not_found`` (also for another user's run), 503.
        """
        snapshot = await self._snapshot(claims, run_id)
        if snapshot is None:
            started = await self.run_of_key(claims, run_id)
            if started is not None:
                snapshot = await self._snapshot(claims, started.run_id)
        if snapshot is None:
            raise HttpError(404, "not_found", "no such run")
        return snapshot

    async def cancel(self, claims: TokenClaims, run_id: str) -> str:
        """Cancel the caller's active run ``run_id`` (runwire's run id, or the key it was
        started with); runwire's run id of the run cancelled.

        Raises:
            HttpError: 404 ``not_found`` when no such run is active, 503.
        """
        dispatcher = self.dispatcher
        try:
            if await dispatcher.cancel(claims.user_id, run_id):
                return run_id
            started = await dispatcher.find(claims.user_id, run_id)  # the client's own id?
            if started is not None and await dispatcher.cancel(claims.user_id, started.run_id):
                return started.run_id
        except EngineError:
            raise engine_unavailable() from None
        raise HttpError(404, "not_found", "no active run with this id")

    async def run_of_key(self, claims: TokenClaims, key: str) -> StartedRun | None:
        """The caller's run started with idempotency key ``key``, if still known.

        Raises:
            HttpError: 503 when the shared store cannot be read.
        """
        try:
            return await self.dispatcher.find(claims.user_id, key)
        except EngineError:
            raise engine_unavailable() from None

    async def active_in_thread(self, claims: TokenClaims, thread_id: str) -> RunSnapshot | None:
        """The caller's newest ``running`` run of ``thread_id``, if any. Raises HttpError 503."""
        try:
            runs = await self.snapshots.runs(claims.user_id, thread_id)
        except EngineError:
            raise engine_unavailable() from None
        return next((run for run in reversed(runs) if run.status == "running"), None)

    async def replay(
        self,
        claims: TokenClaims,
        snapshot: RunSnapshot,
        after: EventId | None,
        translator: TranslatorMaker,
    ) -> SseFollower:
        """Follow the run of ``snapshot`` after ``after`` (``None``: from its start),
        replayed from history and then live to its end.

        The connection replays the run from its ``first_offset`` either way; with
        ``after`` the translator withholds what the client has. ``after`` of another
        epoch than the stream's: 409 ``resume_failed`` (``epoch_changed``).

        Raises:
            HttpError: 429, 503 (see the module).
        """
        # Always from the run's start: the translator numbers an event's blocks from
        # the run's first event and withholds what ``after`` covers (its contract).
        if after is not None:
            epoch = after.epoch
        else:
            try:
                epoch = (await self.engine.position(claims.user_id)).epoch
            except EngineError:
                raise engine_unavailable() from None
        resume = ResumeRequest(epoch, max(snapshot.first_offset - 1, 0))
        follower = self._follower(claims, translator(after), run_id=snapshot.run_id)
        await self._open(follower, claims, resume)
        return follower

    def _follower(
        self, claims: TokenClaims, translator: TranslatorFactory, *, run_id: str | None
    ) -> SseFollower:
        return SseFollower(
            self.manager,
            claims.user_id,
            translator,
            run_id=run_id,
            high_water_bytes=self.settings.sse_high_water_bytes,
            heartbeat_s=self.settings.sse_heartbeat_s,
        )

    async def _open(
        self, follower: SseFollower, claims: TokenClaims, resume: ResumeRequest | None
    ) -> None:
        try:
            follower.open(resume, claims.expires_at)
        except LimitError as exc:
            raise limit_refused(exc) from None
        if not await follower.connected(self.settings.handshake_timeout_s):
            cut = follower.end_reason or "no connected frame in time"
            follower.release()
            if cut.startswith("resume_failed"):
                raise HttpError(409, "resume_failed", cut.partition(" ")[2]) from None
            raise engine_unavailable()

    async def _snapshot(
        self, claims: TokenClaims, run_id: str, *, release: SseFollower | None = None
    ) -> RunSnapshot | None:
        try:
            return await self.snapshots.run(claims.user_id, run_id)
        except EngineError:
            if release is not None:
                release.release()
            raise engine_unavailable() from None
