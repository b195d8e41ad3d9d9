"""Realistic runs for the front-end translators: ``(offset, Event)`` sequences of one run.

The golden runs of tests/golden/runs.json (shared with the page's run model), and a few
more: two thinking steps, a tool with a result and a failing one, coalesced deltas,
offsets with gaps (other runs of the user interleave), a cancelled run, an error, and an
answer that came only in ``agent_completed``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from runwire.events import (
    EVENT_TYPES,
    AgentCompleted,
    AgentError,
    AgentMessageDelta,
    AgentStarted,
    AgentThinking,
    Event,
    EventData,
    ToolCompleted,
    ToolExecuting,
)

GOLDEN = Path(__file__).parents[1] / "golden" / "runs.json"
_PAYLOADS: dict[str, type[Any]] = {name: cls for cls, name in EVENT_TYPES.items()}

Run = list[tuple[int, Event]]


def _golden() -> dict[str, Run]:
    runs: dict[str, Run] = {}
    for case in json.loads(GOLDEN.read_text())["cases"]:
        run: Run = []
        for envelope in case["events"]:
            data: EventData = msgspec.convert(envelope["data"], _PAYLOADS[envelope["type"]])
            event = Event.of(
                data,
                run_id=envelope["run_id"],
                thread_id=envelope["thread_id"],
                seq=envelope["seq"],
                ts=envelope["ts"],
            )
            run.append((envelope["offset"], event))
        runs[f"golden: {case['name']}"] = run
    return runs


def run_of(*payloads: EventData, run_id: str = "r_1", offsets: list[int] | None = None) -> Run:
    """A run of these payloads, ``seq`` from 1, ``ts`` 10 ms apart, and offsets (default:
    every third offset from 40, as if two other runs of the user interleaved)."""
    spots = offsets or [40 + 3 * index for index in range(len(payloads))]
    return [
        (
            offset,
            Event.of(
                data, run_id=run_id, thread_id="t_1", seq=seq, ts=1_700_000_000_000 + 10 * seq
            ),
        )
        for seq, (offset, data) in enumerate(zip(spots, payloads, strict=True), start=1)
    ]


FULL = run_of(
    AgentStarted("researcher", "how many orders shipped?"),
    AgentThinking("The user asks about orders."),
    AgentThinking("I will query the database."),
    ToolExecuting("call_a", "sql", {"query": "select count(*) from orders", "limit": 1}),
    ToolCompleted("call_a", "sql", True, 12.5, result={"rows": [[3]]}),
    ToolExecuting("call_b", "mail", {"to": "ops"}),
    ToolCompleted("call_b", "mail", False, 3.0, error="smtp unavailable"),
    AgentMessageDelta("Three orders "),
    AgentMessageDelta("shipped; the mail "),
    AgentMessageDelta("could not be sent.", coalesced_from=62),
    AgentCompleted("Three orders shipped; the mail could not be sent.", "completed"),
)

RUNS: dict[str, Run] = {
    "thinking, a tool, a failing tool, deltas": FULL,
    "cancelled mid-answer": run_of(
        AgentStarted("demo", "write a poem"),
        AgentThinking("A poem about the sea."),
        AgentMessageDelta("The sea "),
        ToolExecuting("call_1", "rhyme", {"word": "sea"}),
        ToolCompleted("call_1", "rhyme", False, 1.0, error="cancelled"),
        AgentCompleted("The sea ", "cancelled"),
    ),
    "error after text": run_of(
        AgentStarted("demo", "hello"),
        AgentMessageDelta("Hel"),
        AgentError("agent_failed", "the agent failed"),
    ),
    "answer only in agent_completed": run_of(
        AgentStarted("demo", "ping"),
        AgentThinking(""),
        ToolExecuting("call_1", "echo", {}),
        ToolCompleted("call_1", "echo", True, 0.1, result="pong"),
        AgentCompleted("pong", "completed"),
    ),
    **_golden(),
}
