"""Closing the runs a previous life of this process left open.

With a durable, node-local engine (sqlite) the snapshots and the history survive a
crash, but the runs that were executing did not. At start-up each such run is
ended the way a run ends when its agent fails, its ``seq`` continuing: every tool
call still open gets ``tool_completed`` with ``ok: false``, then the run gets
``agent_error`` with code ``interrupted``. Its snapshot is then terminal, and a
client that resumes receives the ending like any other event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from runwire.engines.base import StoredEvent
from runwire.events import AgentError, Event, EventData, ToolCompleted
from runwire.ids import UserId
from runwire.runs import RunStore

__all__ = ["INTERRUPTED", "close_interrupted"]

log = logging.getLogger("runwire")

INTERRUPTED = "interrupted"
"""The ``agent_error`` code of a run the process stopped executing without ending it."""

Publish = Callable[[UserId, Event], Awaitable[StoredEvent]]


async def close_interrupted(store: RunStore, publish: Publish) -> int:
    """End every run ``store`` holds as ``running``; returns how many were ended.

    Raises:
        EngineError: an ending could not be published (the start-up fails).
    """
    ended = 0
    for user_id, snapshot in store.open_runs():
        ts = time.time_ns() // 1_000_000
        endings: list[EventData] = [
            ToolCompleted(call.call_id, call.tool, False, 0.0, error="the run was interrupted")
            for call in snapshot.tools
            if call.status == "running"
        ]
        endings.append(AgentError(INTERRUPTED, "the server stopped while this run was executing"))
        seq = snapshot.last_seq
        for data in endings:
            seq += 1
            event = Event.of(
                data, run_id=snapshot.run_id, thread_id=snapshot.thread_id, seq=seq, ts=ts
            )
            await publish(user_id, event)
        ended += 1
    if ended:
        log.warning(
            "%d run(s) interrupted by the last stop were ended (agent_error interrupted)", ended
        )
    return ended
