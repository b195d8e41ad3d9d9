"""What the gateway does with each valid client frame of an open connection."""

from __future__ import annotations

from runwire.agents.dispatch import RunDispatcher
from runwire.engines import Engine
from runwire.events import (
    Ack,
    Cancel,
    ClientFrame,
    GetRun,
    GetRuns,
    Ping,
    Pong,
    Runs,
    UserMessage,
)
from runwire.exceptions import EngineError, LimitError
from runwire.manager import Connection, WebSocketManager
from runwire.metrics import Metrics
from runwire.runs import SnapshotReader

__all__ = ["ClientFrameHandler"]


class ClientFrameHandler:
    """Routes ``user_message``, ``cancel``, ``ping``, ``get_runs`` and ``get_run``
    (``resume`` stays in the manager).

    The user id always comes from the connection (the verified token), never from
    the frame. Replies go to the sending connection only; run events go to every
    connection of the user through the engine. Starting and cancelling runs may need
    I/O (workers mode), so they run as tasks owned by the connection, one after the
    other: replies to a connection keep the order of its frames.
    """

    def __init__(
        self,
        manager: WebSocketManager,
        runs: RunDispatcher,
        engine: Engine,
        metrics: Metrics,
        snapshots: SnapshotReader,
    ) -> None:
        self.snapshots = snapshots
        self.manager = manager
        self.runs = runs
        self.engine = engine
        self.metrics = metrics

    def __call__(self, connection: Connection, frame: ClientFrame) -> None:
        if isinstance(frame, UserMessage):
            self.manager.spawn_in_order(connection, self._start(connection, frame))
        elif isinstance(frame, Cancel):
            self.manager.spawn_in_order(connection, self._cancel(connection, frame))
        elif isinstance(frame, Ping):
            self.manager.spawn_in_order(connection, self._pong(connection, frame))
        elif isinstance(frame, GetRuns | GetRun):
            self.manager.spawn_in_order(connection, self._runs(connection, frame))

    async def _runs(self, connection: Connection, frame: GetRuns | GetRun) -> None:
        try:
            if isinstance(frame, GetRuns):
                runs = await self.snapshots.runs(connection.user_id, frame.thread_id)
            else:
                run = await self.snapshots.run(connection.user_id, frame.run_id)
                runs = [run] if run is not None else []
        except EngineError:
            self._engine_failed(connection, frame.id)
            return
        self.manager.send(connection, Runs(frame.id, list(runs)))

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
