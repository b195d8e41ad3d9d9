"""What the gateway does with each valid client frame of an open connection."""

from __future__ import annotations

import logging

from runwire.agents.dispatch import RunDispatcher
from runwire.auth import Authenticator
from runwire.engines import Engine
from runwire.events import (
    Ack,
    Cancel,
    ClientFrame,
    GetRun,
    GetRuns,
    Ping,
    Pong,
    Refresh,
    Refreshed,
    Runs,
    UserMessage,
)
from runwire.exceptions import AuthError, CloseCode, EngineError, LimitError
from runwire.manager import Connection, WebSocketManager
from runwire.metrics import Metrics
from runwire.protocol import State
from runwire.runs import SnapshotReader, page_of
from runwire.tokens import EXPIRED_REASON, verify_refresh

__all__ = ["ClientFrameHandler"]

log = logging.getLogger("runwire.handlers")


class ClientFrameHandler:
    """Routes ``user_message``, ``cancel``, ``ping``, ``get_runs``, ``get_run`` and
    ``refresh`` (``resume`` stays in the manager).

    The user id always comes from the connection (the verified token), never from
    the frame. No frame is acted on once the connection's token has run out (the
    socket closes with 4401 ``token expired`` instead, even if its timer has not
    fired yet), and no run starts on a connection that is closing.

    Replies go to the sending connection only; run events go to every connection of
    the user through the engine. Starting and cancelling runs may need I/O (workers
    mode), so they run as tasks owned by the connection, one after the other:
    replies to a connection keep the order of its frames (``refreshed`` included).
    """

    def __init__(
        self,
        manager: WebSocketManager,
        runs: RunDispatcher,
        engine: Engine,
        metrics: Metrics,
        snapshots: SnapshotReader,
        authenticator: Authenticator,
        reply_max_bytes: int,
    ) -> None:
        self.snapshots = snapshots
        self.authenticator = authenticator
        self.reply_max_bytes = reply_max_bytes
        self.manager = manager
        self.runs = runs
        self.engine = engine
        self.metrics = metrics

    def __call__(self, connection: Connection, frame: ClientFrame) -> None:
        if connection.token is not None and connection.token.expired():
            self.manager.close_connection(connection, CloseCode.UNAUTHORIZED, EXPIRED_REASON)
            return
        if isinstance(frame, UserMessage):
            self.manager.spawn_in_order(connection, self._start(connection, frame))
        elif isinstance(frame, Cancel):
            self.manager.spawn_in_order(connection, self._cancel(connection, frame))
        elif isinstance(frame, Ping):
            self.manager.spawn_in_order(connection, self._pong(connection, frame))
        elif isinstance(frame, GetRuns | GetRun):
            self.manager.spawn_in_order(connection, self._runs(connection, frame))
        elif isinstance(frame, Refresh):
            self.manager.spawn_in_order(connection, self._refresh(connection, frame))

    async def _refresh(self, connection: Connection, frame: Refresh) -> None:
        """Replace the token (verified like the upgrade, same ``sub``), or close 4401."""
        try:
            claims = verify_refresh(self.authenticator, connection.user_id, frame.token)
        except AuthError as exc:
            self.metrics.token_refreshes.labels("refused").inc()
            log.info(
                "token refresh refused: %s", exc.reason, extra={"connection_id": connection.id}
            )
            self.manager.close_connection(connection, CloseCode.UNAUTHORIZED, exc.reason)
            return
        self.metrics.token_refreshes.labels("ok").inc()
        if connection.token is not None:
            connection.token.refresh(claims.expires_at)
        self.manager.send(connection, Refreshed(frame.id, claims.expires_at))

    async def _runs(self, connection: Connection, frame: GetRuns | GetRun) -> None:
        try:
            if isinstance(frame, GetRuns):
                runs = await self.snapshots.runs(connection.user_id, frame.thread_id)
                page = page_of(
                    runs, limit=frame.limit, before=frame.before, max_bytes=self.reply_max_bytes
                )
            else:
                run = await self.snapshots.run(connection.user_id, frame.run_id)
                page = page_of(
                    [run] if run is not None else [],
                    limit=1,
                    before=None,
                    max_bytes=self.reply_max_bytes,
                )
        except EngineError:
            self._engine_failed(connection, frame.id)
            return
        self.manager.send(connection, Runs(frame.id, list(page.runs), page.more))

    async def _pong(self, connection: Connection, frame: Ping) -> None:
        self.manager.send(connection, Pong(frame.id))

    def _error(self, connection: Connection, code: str, message: str, ref: str | None) -> None:
        self.metrics.client_errors.labels(code).inc()
        connection.session.send_error(code, message, ref)
        self.manager.send(connection, None)

    def _engine_failed(self, connection: Connection, ref: str | None) -> None:
        """A frame failed on the engine's store: ``error`` ``engine_unavailable``, and
        the engine re-checks itself, so an ``engine_status`` ``available`` follows once
        the store answers again (the signal protocol.md tells clients to retry on)."""
        self.engine.mark_unavailable()
        self._error(connection, "engine_unavailable", "the event engine is unavailable; retry", ref)

    async def _start(self, connection: Connection, frame: UserMessage) -> None:
        if connection.session.state is not State.OPEN:
            return  # closing (4401 token expired, 4429...): start nothing, answer nothing
        if not self.engine.available:
            self._error(
                connection, "engine_unavailable", "the event engine is unavailable; retry", frame.id
            )
            return
        try:
            started = await self.runs.start_run(
                connection.user_id, frame.content, message_id=frame.id, thread_id=frame.thread_id
            )
        except LimitError as exc:
            self._error(connection, exc.code, exc.message, frame.id)
            return
        except EngineError:
            self._engine_failed(connection, frame.id)
            return
        if not started.duplicate:
            self.metrics.runs_started.inc()
        self.manager.send(connection, Ack(frame.id, started.run_id, started.thread_id))

    async def _cancel(self, connection: Connection, frame: Cancel) -> None:
        try:
            cancelled = await self.runs.cancel(connection.user_id, frame.run_id)
        except EngineError:
            self._engine_failed(connection, frame.id or frame.run_id)
            return
        if not cancelled:
            self._error(
                connection, "not_found", "no active run with this id", frame.id or frame.run_id
            )
