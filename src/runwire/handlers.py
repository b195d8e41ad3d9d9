"""What the gateway does with each valid client frame of an open connection."""

from __future__ import annotations

from runwire.agents.runtime import AgentRuntime
from runwire.engines import Engine
from runwire.events import Ack, Cancel, ClientFrame, Ping, Pong, UserMessage
from runwire.exceptions import LimitError
from runwire.manager import Connection
from runwire.metrics import Metrics

__all__ = ["ClientFrameHandler"]


class ClientFrameHandler:
    """Routes ``user_message``, ``cancel`` and ``ping`` (``resume`` stays in the manager).

    The user id always comes from the connection (the verified token), never from
    the frame. Replies go to the sending connection only; run events go to every
    connection of the user through the engine.
    """

    def __init__(self, runtime: AgentRuntime, engine: Engine, metrics: Metrics) -> None:
        self.runtime = runtime
        self.engine = engine
        self.metrics = metrics

    def __call__(self, connection: Connection, frame: ClientFrame) -> None:
        session = connection.session
        if isinstance(frame, UserMessage):
            if not self.engine.available:
                self.metrics.client_errors.labels("engine_unavailable").inc()
                session.send_error(
                    "engine_unavailable", "the event engine is unavailable; retry", frame.id
                )
                return
            try:
                started = self.runtime.start_run(
                    connection.user_id,
                    frame.content,
                    message_id=frame.id,
                    thread_id=frame.thread_id,
                )
            except LimitError as exc:
                self.metrics.client_errors.labels(exc.code).inc()
                session.send_error(exc.code, exc.message, frame.id)
                return
            if not started.duplicate:
                self.metrics.runs_started.inc()
            session.send_frame(Ack(frame.id, started.run_id, started.thread_id))
        elif isinstance(frame, Cancel):
            if not self.runtime.cancel(connection.user_id, frame.run_id):
                self.metrics.client_errors.labels("not_found").inc()
                session.send_error(
                    "not_found", "no active run with this id", frame.id or frame.run_id
                )
        elif isinstance(frame, Ping):
            session.send_frame(Pong(frame.id))
