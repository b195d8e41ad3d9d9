"""The README's agent example runs as written and obeys the run rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.helpers import collect_run, connect, running_gateway

README = Path(__file__).resolve().parents[1] / "README.md"


def _agent_example() -> dict[str, Any]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    [source] = [block for block in blocks if "async def agent(" in block]
    namespace: dict[str, Any] = {}
    exec(compile(source, str(README), "exec"), namespace)
    return namespace


async def test_the_readme_agent_example_runs() -> None:
    agent = _agent_example()["agent"]
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("how many people live in Paris?")
        frames = await collect_run(client, ack["run_id"])
    assert [f["type"] for f in frames] == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "tool_executing",
        "tool_completed",
        "agent_message_delta",
        "agent_message_delta",
        "agent_message_delta",
        "agent_completed",
    ]
    assert frames[2]["data"]["tool"] == "lookup"
    assert frames[2]["data"]["args"] == {"city": "Paris"}
    assert frames[-1]["data"]["output"] == "About 2,100,000 people."
