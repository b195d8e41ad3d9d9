"""Ending runs whose executor died: the one way a run is closed from outside it.

A run normally ends inside :class:`~runwire.agents.runtime.AgentRuntime`, which
guarantees its terminal event. When the process executing it dies, someone else
must end it, and every such path ends it the same way (:func:`end_run`), its
``seq`` continuing: every tool call still open gets ``tool_completed`` with
``ok: false``, then the run gets ``agent_error`` with a code naming what died:

* ``interrupted``: a previous life of this process (durable node-local engine,
  :func:`close_interrupted` at start-up, from the saved snapshots);
* ``worker_lost``: a ``runwire worker`` whose heartbeat expired
  (:mod:`runwire.redis.worker`, from the run's history);
* ``node_lost``: a gateway node running agents locally whose lease expired
  (:mod:`runwire.redis.nodes`, from the run's history).

The events go through the caller's ``publish`` (the process's pipeline), so every
tab of the user receives them and the snapshots become terminal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from runwire.engines.base import Engine, ResumeFailure, StoredEvent
from runwire.events import AgentError, Event, EventData, ToolCompleted
from runwire.ids import UserId
from runwire.runs import RunStore

__all__ = [
    "INTERRUPTED",
    "NODE_LOST",
    "WORKER_LOST",
    "close_interrupted",
    "end_run",
    "open_calls_of",
    "run_events",
]

log = logging.getLogger("runwire")

INTERRUPTED = "interrupted"
"""The ``agent_error`` code of a run the process stopped executing without ending it."""
WORKER_LOST = "worker_lost"
"""The ``agent_error`` code of a started run whose worker's heartbeat expired."""
NODE_LOST = "node_lost"
"""The ``agent_error`` code of a started run whose gateway node's lease expired."""

Publish = Callable[[UserId, Event], Awaitable[StoredEvent]]

_READ_BATCH = 256


async def end_run(
    publish: Publish,
    user_id: UserId,
    *,
    run_id: str,
    thread_id: str,
    last_seq: int,
    open_calls: Iterable[tuple[str, str]],
    code: str,
    message: str,
    tool_error: str,
) -> int:
    """Publish the ending of a run whose last stored event has ``last_seq``: one
    ``tool_completed`` (``ok: false``, ``error: tool_error``) per ``(call_id, tool)``
    in ``open_calls``, then ``agent_error`` ``code``. Returns the terminal ``seq``.

    Raises:
        EngineError: an ending could not be published (the caller retries later;
            ``seq`` dedupe in the engine keeps a retry from storing an event twice).
    """
    ts = time.time_ns() // 1_000_000
    endings: list[EventData] = [
        ToolCompleted(call_id, tool, False, 0.0, error=tool_error) for call_id, tool in open_calls
    ]
    endings.append(AgentError(code, message))
    seq = last_seq
    for data in endings:
        seq += 1
        await publish(user_id, Event.of(data, run_id=run_id, thread_id=thread_id, seq=seq, ts=ts))
    return seq


def open_calls_of(events: Iterable[Event]) -> list[tuple[str, str]]:
    """``(call_id, tool)`` of every ``tool_executing`` in ``events`` (one run, in
    order) without its ``tool_completed``."""
    open_calls: dict[str, str] = {}
    for event in events:
        data = event.data
        if event.type == "tool_executing":
            open_calls[data.call_id] = data.tool  # type: ignore[union-attr]
        elif event.type == "tool_completed":
            open_calls.pop(data.call_id, None)  # type: ignore[union-attr]
    return list(open_calls.items())


async def run_events(engine: Engine, user_id: UserId, run_id: str) -> list[StoredEvent]:
    """The run's events still in its user's history, in order (what the stream, the
    authority on ``seq``, holds; events trimmed out of the window are missing)."""
    position = await engine.position(user_id)
    after = 0
    found: list[StoredEvent] = []
    while after < position.offset:
        batch = await engine.read_after(user_id, position.epoch, after, _READ_BATCH)
        if isinstance(batch, ResumeFailure):
            # The oldest events are gone: move towards the head until the window.
            after += max(1, (position.offset - after) // 2)
            continue
        if not batch:
            break
        found.extend(s for s in batch if s.event.run_id == run_id)
        after = batch[-1].offset
    return found


async def close_interrupted(store: RunStore, publish: Publish) -> int:
    """End every run ``store`` holds as ``running``; returns how many were ended.

    Raises:
        EngineError: an ending could not be published (the start-up fails).
    """
    ended = 0
    for user_id, snapshot in store.open_runs():
        await end_run(
            publish,
            user_id,
            run_id=snapshot.run_id,
            thread_id=snapshot.thread_id,
            last_seq=snapshot.last_seq,
            open_calls=[(c.call_id, c.tool) for c in snapshot.tools if c.status == "running"],
            code=INTERRUPTED,
            message="the server stopped while this run was executing",
            tool_error="the run was interrupted",
        )
        ended += 1
    if ended:
        log.warning(
            "%d run(s) interrupted by the last stop were ended (agent_error interrupted)", ended
        )
    return ended
