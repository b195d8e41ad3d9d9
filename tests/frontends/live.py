"""A deterministic agent for the live front-end tests, and what they compare.

:class:`StepAgent` thinks, calls a tool that returns a result, then streams its answer
in deltas. A message containing ``gate`` makes it stop after the first delta until the
test sets :attr:`StepAgent.release`: a client aborted there is aborted mid-run, with no
sleep. :func:`normalized` replaces a run's own ids so the message two runs assemble can
be compared.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from runwire import Gateway, Run
from runwire.ids import UserId
from tests.helpers import wait_until

ANSWER = "The answer is 42."
DELTAS = ("The answer ", "is ", "42", ".")


class StepAgent:
    """Think, a tool with a result, deltas; ``gate`` in the message: wait after the first."""

    def __init__(self) -> None:
        self.at_gate = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, run: Run, message: str) -> str:
        await run.think(f"The user asks: {message}")
        async with run.tool("lookup", {"query": message, "limit": 1}) as call:
            call.result = {"answer": 42, "source": "table"}
        await run.say(DELTAS[0])
        if "gate" in message:
            self.at_gate.set()
            await self.release.wait()
        for delta in DELTAS[1:]:
            await run.say(delta)
        return ANSWER


MEASURED = frozenset({"durationMs", "duration_ms"})
"""Fields two runs of one agent differ in: measured, not decided by the agent."""


def normalized(value: Any, **ids: str) -> Any:
    """``value`` (JSON data) with each id of ``ids`` (name -> id) replaced by its name,
    and without the :data:`MEASURED` fields."""
    text = json.dumps(value, sort_keys=True)
    for name, actual in sorted(ids.items(), key=lambda item: -len(item[1])):
        text = text.replace(actual, name.upper())
    return _without_measured(json.loads(text))


def _without_measured(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_measured(v) for k, v in value.items() if k not in MEASURED}
    if isinstance(value, list):
        return [_without_measured(item) for item in value]
    return value


async def streams_of(gateway: Gateway, user: str, count: int, what: str) -> None:
    """Wait until ``user`` has exactly ``count`` connections on ``gateway`` (SSE streams
    are manager connections): a stream opened, or a closed one released."""
    await wait_until(
        lambda: len(gateway.manager.connections_of(UserId(user))) == count,
        timeout=10,
        what=what,
    )
