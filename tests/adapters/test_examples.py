"""The examples run as a user runs them: ``runwire serve`` with RUNWIRE_AGENT naming the
example, and a client completing runs over a real socket. Also: RUNWIRE_AGENT may name
a framework's object itself (the graph, the pydantic-ai Agent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runwire.adapters.langgraph import LangGraphAgent
from runwire.adapters.pydantic_ai import PydanticAIAgent
from runwire.app import load_agent
from runwire.client import Client
from tests.helpers import assert_run_rules, collect_run, connect, running_gateway

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUNWIRE = [sys.executable, "-m", "runwire"]


@contextmanager
def serving(tmp_path: Path, agent: str) -> Iterator[tuple[str, str]]:
    """`runwire serve` with RUNWIRE_AGENT=agent (a fake model: no OPENAI_* variables);
    yields its WebSocket URL and a token for alice; stops it with SIGINT."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNWIRE_", "OPENAI_"))}
    env.update(
        RUNWIRE_STATE_DIR=str(tmp_path / "state"),
        RUNWIRE_PORT="0",
        RUNWIRE_AGENT=agent,
        PYTHONPATH=os.pathsep.join(filter(None, [str(EXAMPLES), env.get("PYTHONPATH")])),
    )
    process = subprocess.Popen(
        [*RUNWIRE, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        banner = process.stdout.readline()  # blocks until the gateway listens
        assert "gateway on http://127.0.0.1:" in banner, banner + process.stderr.read()
        url = banner.split(" on ")[1].strip().replace("http", "ws", 1) + "/ws"
        token = subprocess.run(
            [*RUNWIRE, "token", "alice"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        yield url, token
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err


@pytest.mark.parametrize("agent", ["langgraph_agent:agent", "pydantic_ai_agent:agent"])
async def test_an_example_served_by_runwire_serve_completes_runs(
    tmp_path: Path, agent: str
) -> None:
    with serving(tmp_path, agent) as (url, token):
        async with Client.connect(url, token) as client:
            first = await client.send_message("what is 17 * 23?")
            frames = await collect_run(client, first["run_id"], timeout=30)
            second = await client.send_message("and now?", thread_id=first["thread_id"])
            memory = await collect_run(client, second["run_id"], timeout=30)
    assert_run_rules(frames)
    types = [f["type"] for f in frames]
    assert types[0] == "agent_started" and types[-1] == "agent_completed"
    [completed] = [f["data"] for f in frames if f["type"] == "tool_completed"]
    assert completed["tool"] == "multiply" and completed["ok"] is True
    assert completed["result"] in (391, "391")
    assert frames[-1]["data"]["output"] == "The product is 391."
    deltas = "".join(f["data"]["text"] for f in frames if f["type"] == "agent_message_delta")
    assert deltas == "Let me multiply 17 by 23.The product is 391."
    assert "the first was 'what is 17 * 23?'" in memory[-1]["data"]["output"]


@pytest.mark.parametrize(
    ("target", "adapter"),
    [
        ("langgraph_agent:graph", LangGraphAgent),
        ("pydantic_ai_agent:bot", PydanticAIAgent),
    ],
)
async def test_runwire_agent_may_name_the_framework_object_itself(
    monkeypatch: pytest.MonkeyPatch, target: str, adapter: type
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    agent = load_agent(target)
    assert isinstance(agent, adapter)
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("what is 6 * 7?")
        frames = await collect_run(client, ack["run_id"])
    assert_run_rules(frames)
    assert frames[-1]["data"]["output"] == "The product is 42."
