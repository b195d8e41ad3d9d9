"""runwire.adapters.pydantic_ai: a pydantic-ai Agent on FunctionModel / TestModel behind a
real gateway, observed by real clients over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models.test import TestModel

from runwire.adapters.pydantic_ai import InMemoryHistory, PydanticAIAgent
from runwire.events import CRITICAL_EVENT_TYPES
from tests.adapters.pydantic_ai_fakes import calculator_model
from tests.helpers import (
    Frame,
    answer_of,
    assert_run_rules,
    collect_run,
    connect,
    data_of,
    one_run,
    running_gateway,
    types_of,
)


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


async def test_a_run_streams_the_five_events_in_order_with_paired_tool_calls() -> None:
    agent = PydanticAIAgent(Agent(calculator_model(), tools=[multiply], name="calc"))
    frames = await one_run(agent, "what is 17 * 23?")

    assert types_of(frames) == [
        "agent_started",
        "agent_thinking",
        *["agent_message_delta"] * 3,
        "tool_executing",
        "tool_completed",
        *["agent_message_delta"] * 2,
        "agent_completed",
    ]
    assert set(CRITICAL_EVENT_TYPES) <= set(types_of(frames))
    assert frames[0]["data"] == {"agent": "calc", "input": "what is 17 * 23?"}
    assert data_of(frames, "agent_thinking") == [{"text": "I need to multiply 17 by 23."}]
    [executing] = data_of(frames, "tool_executing")
    [completed] = data_of(frames, "tool_completed")
    assert executing == {"call_id": "call_mul", "tool": "multiply", "args": {"a": 17, "b": 23}}
    assert completed["call_id"] == "call_mul"
    assert completed["ok"] is True and completed["result"] == 391
    assert answer_of(frames) == "Let me compute.It is 391."
    assert frames[-1]["data"] == {"output": "It is 391.", "status": "completed"}


async def test_test_model_calls_every_tool_and_its_text_is_streamed_as_is() -> None:
    model = TestModel()
    agent = PydanticAIAgent(Agent(model, tools=[multiply]))
    frames = await one_run(agent, "anything")

    [executing] = data_of(frames, "tool_executing")
    [completed] = data_of(frames, "tool_completed")
    assert executing["tool"] == "multiply" and set(executing["args"]) == {"a", "b"}
    assert completed["ok"] is True
    assert completed["result"] == executing["args"]["a"] * executing["args"]["b"]
    output = frames[-1]["data"]["output"]
    assert output and answer_of(frames) == output
    assert frames[0]["data"]["agent"] == "pydantic-ai"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("call lookup", "no such account"),
        ("call check", "the model was asked to retry the call"),
        ("call multiply", "invalid arguments: Field required; Field required"),
    ],
)
async def test_a_tool_that_raises_model_retry_ends_ok_false_and_the_run_goes_on(
    message: str, shown: str
) -> None:
    def lookup() -> str:
        """Look an account up."""
        raise ModelRetry("no such account")

    def check() -> str:
        """Check something."""
        raise ModelRetry("")

    agent = PydanticAIAgent(Agent(calculator_model(), tools=[lookup, check, multiply]))
    frames = await one_run(agent, message)

    assert types_of(frames) == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        *["agent_message_delta"] * 4,
        "agent_completed",
    ]
    [completed] = data_of(frames, "tool_completed")
    assert completed["ok"] is False
    assert completed["error"] == shown
    assert frames[-1]["data"] == {"output": "The tool failed, sorry.", "status": "completed"}


async def test_a_tool_that_crashes_ends_the_run_in_agent_error_with_a_safe_message() -> None:
    def lookup() -> str:
        """Look an account up."""
        raise RuntimeError("dsn=postgres://admin:hunter2@db")

    agent = PydanticAIAgent(Agent(calculator_model(), tools=[lookup]))
    frames = await one_run(agent, "call lookup")

    assert types_of(frames) == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        "agent_error",
    ]
    assert data_of(frames, "tool_completed")[0]["ok"] is False
    assert frames[-1]["data"] == {"code": "agent_failed", "message": "the agent failed"}
    assert "hunter2" not in str(frames)


async def test_cancel_mid_tool_cancels_the_agent_run() -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def approve() -> str:
        """Wait for a human approval."""
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "approved"  # pragma: no cover

    history = InMemoryHistory()
    agent = PydanticAIAgent(Agent(calculator_model(), tools=[approve]), history=history)
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("call approve")
        await asyncio.wait_for(entered.wait(), 5)
        await client.cancel(ack["run_id"])
        frames = await collect_run(client, ack["run_id"])
        assert cancelled.is_set()  # the tool was cancelled before the run ended
        assert gateway.runtime.active_runs() == 0
    assert_run_rules(frames)
    assert types_of(frames) == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    completed = data_of(frames, "tool_completed")[0]
    assert completed["call_id"] == "call_approve"
    assert completed["ok"] is False and completed["error"] == "cancelled"
    assert frames[-1]["data"]["status"] == "cancelled"
    assert len(history) == 0  # a cancelled run leaves no half conversation


async def test_each_thread_remembers_its_conversation() -> None:
    agent = PydanticAIAgent(Agent(calculator_model(), tools=[multiply]))
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        first = await client.send_message("my number is 42")
        await collect_run(client, first["run_id"])
        second = await client.send_message("what was my number?", thread_id=first["thread_id"])
        answer = (await collect_run(client, second["run_id"]))[-1]["data"]["output"]
        other = await client.send_message("hello")  # a new thread
        fresh = (await collect_run(client, other["run_id"]))[-1]["data"]["output"]
    assert answer == "You first said: my number is 42"
    assert fresh == "You first said: hello"


async def test_stateless_runs_remember_nothing() -> None:
    agent = PydanticAIAgent(Agent(calculator_model()), stateless=True)
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        first = await client.send_message("my number is 42")
        await collect_run(client, first["run_id"])
        second = await client.send_message("what was my number?", thread_id=first["thread_id"])
        answer = (await collect_run(client, second["run_id"]))[-1]["data"]["output"]
    assert answer == "You first said: what was my number?"


async def test_two_users_at_once_are_isolated_even_in_a_thread_of_the_same_name() -> None:
    agent = PydanticAIAgent(Agent(calculator_model(), tools=[multiply]))

    async def conversation(client: Any, name: str) -> tuple[list[Frame], list[Frame]]:
        first = await client.send_message(f"I am {name}", thread_id="t_shared")
        one = await collect_run(client, first["run_id"])
        second = await client.send_message("who am I?", thread_id="t_shared")
        two = await collect_run(client, second["run_id"])
        return one, two

    async with (
        running_gateway(agent) as gateway,
        connect(gateway, "alice") as alice,
        connect(gateway, "bob") as bob,
    ):
        alice_runs, bob_runs = await asyncio.gather(
            conversation(alice, "alice"), conversation(bob, "bob")
        )
        await alice.ping()
        await bob.ping()
        assert alice._frames.empty() and bob._frames.empty()
    alice_ids = {f["run_id"] for run in alice_runs for f in run}
    assert not alice_ids & {f["run_id"] for run in bob_runs for f in run}
    for name, (one, two) in (("alice", alice_runs), ("bob", bob_runs)):
        assert_run_rules(one)
        assert_run_rules(two)
        assert two[-1]["data"]["output"] == f"You first said: I am {name}"


def _firsts(messages: list[Any]) -> list[str]:
    return [message.parts[0].content for message in messages]


async def test_in_memory_history_is_bounded_and_keeps_whole_turns() -> None:
    history = InMemoryHistory(max_threads=2, max_messages=3)

    def turn(n: int) -> list[Any]:
        return [
            ModelRequest(parts=[UserPromptPart(content=f"q{n}")]),
            ModelResponse(parts=[TextPart(content=f"a{n}")]),
        ]

    await history.save("u/t1", turn(1) + turn(2))
    assert _firsts(await history.load("u/t1")) == ["q2", "a2"]
    await history.save("u/t2", turn(1))
    await history.save("u/t3", turn(1))
    assert len(history) == 2 and await history.load("u/t1") == []  # least recently used
    await history.save("u/t4", turn(1) + turn(2) + turn(3) + turn(4)[:1])
    assert _firsts(await history.load("u/t4")) == ["q3", "a3", "q4"]
    long_turn = turn(5) + turn(6)[1:] * 3  # one turn of 5 messages: kept whole
    await history.save("u/t4", long_turn)
    assert await history.load("u/t4") == long_turn
