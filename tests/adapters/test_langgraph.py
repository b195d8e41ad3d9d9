"""runwire.adapters.langgraph: a real StateGraph with a ToolNode and a fake streaming chat
model behind a real gateway, observed by real clients over real sockets."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool, ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver

from runwire import Run
from runwire.adapters.langgraph import LangGraphAgent
from runwire.events import CRITICAL_EVENT_TYPES, EventData, ToolExecuting
from runwire.ids import RunId, ThreadId, UserId
from tests.adapters.langchain_fakes import ScriptedChatModel, build_graph, calculator_script
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


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


async def test_a_graph_run_streams_the_five_events_in_order_with_paired_tool_calls() -> None:
    model = ScriptedChatModel(respond=calculator_script)
    frames = await one_run(LangGraphAgent(build_graph(model, [multiply])), "what is 17 * 23?")

    assert types_of(frames) == [
        "agent_started",
        "agent_thinking",
        *["agent_message_delta"] * 3,
        "tool_executing",
        "tool_completed",
        *["agent_message_delta"] * 3,
        "agent_completed",
    ]
    assert set(CRITICAL_EVENT_TYPES) <= set(types_of(frames))
    assert frames[0]["data"] == {"agent": "LangGraph", "input": "what is 17 * 23?"}
    assert data_of(frames, "agent_thinking") == [{"text": "I need to multiply 17 by 23."}]
    [executing] = data_of(frames, "tool_executing")
    [completed] = data_of(frames, "tool_completed")
    uuid.UUID(executing["call_id"])  # the LangChain run id of the tool run
    assert executing == {
        "call_id": executing["call_id"],
        "tool": "multiply",
        "args": {"a": 17, "b": 23},
    }
    assert completed["call_id"] == executing["call_id"]
    assert completed["ok"] is True and completed["result"] == "391"  # the ToolMessage content
    assert answer_of(frames) == "".join(str(reply.content) for reply in model.replies)
    assert answer_of(frames) == "Let me compute.It is 391."
    assert frames[-1]["data"] == {"output": "It is 391.", "status": "completed"}


@pytest.mark.parametrize(
    ("error", "text", "shown"),
    [
        (ValueError, "password=hunter2", "tool failed (ValueError)"),
        (ToolException, "no such account", "no such account"),
    ],
)
async def test_a_tool_that_raises_ends_ok_false_and_the_graph_goes_on(
    error: type[Exception], text: str, shown: str
) -> None:
    @tool
    def lookup() -> str:
        """Look something up."""
        raise error(text)  # a new exception each run: its traceback dies with the run

    model = ScriptedChatModel(respond=calculator_script)
    frames = await one_run(LangGraphAgent(build_graph(model, [lookup])), "call lookup")

    assert types_of(frames) == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        *["agent_message_delta"] * 4,
        "agent_completed",
    ]
    [completed] = data_of(frames, "tool_completed")
    assert completed["ok"] is False and completed["error"] == shown
    assert frames[-1]["data"] == {"output": "The tool failed, sorry.", "status": "completed"}
    assert "hunter2" not in str(frames)


async def test_a_graph_that_raises_ends_in_agent_error_with_a_safe_message() -> None:
    @tool
    def lookup() -> str:
        """Look something up."""
        raise RuntimeError("connection string postgres://admin:hunter2@db")

    model = ScriptedChatModel(respond=calculator_script)
    graph = build_graph(model, [lookup], handle_tool_errors=False)
    frames = await one_run(LangGraphAgent(graph), "call lookup")

    assert types_of(frames) == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        "agent_error",
    ]
    assert data_of(frames, "tool_completed")[0]["error"] == "tool failed (RuntimeError)"
    assert frames[-1]["data"] == {"code": "agent_failed", "message": "the agent failed"}
    assert "hunter2" not in str(frames)


async def test_cancel_mid_tool_cancels_the_graph_task_before_the_run_ends() -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    @tool
    async def approve() -> str:
        """Wait for a human approval."""
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "approved"  # pragma: no cover

    model = ScriptedChatModel(respond=calculator_script)
    agent = LangGraphAgent(build_graph(model, [approve]))
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("call approve")
        await asyncio.wait_for(entered.wait(), 5)
        await client.cancel(ack["run_id"])
        frames = await collect_run(client, ack["run_id"])
        assert cancelled.is_set()  # the graph's task was cancelled and awaited first
        assert gateway.runtime.active_runs() == 0
    assert_run_rules(frames)
    assert types_of(frames) == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert data_of(frames, "tool_completed")[0] | {"duration_ms": 0} == {
        "call_id": data_of(frames, "tool_executing")[0]["call_id"],
        "tool": "approve",
        "ok": False,
        "error": "cancelled",
        "duration_ms": 0,
    }
    assert frames[-1]["data"]["status"] == "cancelled"
    assert len(model.replies) == 1  # the model was never asked again


async def test_a_checkpointer_gives_each_thread_its_memory() -> None:
    model = ScriptedChatModel(respond=calculator_script)
    agent = LangGraphAgent(build_graph(model, [multiply], checkpointer=InMemorySaver()))
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        first = await client.send_message("my number is 42")
        await collect_run(client, first["run_id"])
        second = await client.send_message("what was my number?", thread_id=first["thread_id"])
        answer = (await collect_run(client, second["run_id"]))[-1]["data"]["output"]
        other = await client.send_message("hello")  # a new thread
        fresh = (await collect_run(client, other["run_id"]))[-1]["data"]["output"]
    assert answer == "You first said: my number is 42"
    assert fresh == "You first said: hello"


async def test_two_users_at_once_are_isolated_even_in_a_thread_of_the_same_name() -> None:
    model = ScriptedChatModel(respond=calculator_script)
    agent = LangGraphAgent(build_graph(model, [multiply], checkpointer=InMemorySaver()))

    async def conversation(client: Any, name: str) -> tuple[list[Frame], list[Frame]]:
        first = await client.send_message(f"I am {name}", thread_id="t_shared")
        one = await collect_run(client, first["run_id"])
        second = await client.send_message("6 * 7 and who am I?", thread_id="t_shared")
        two = await collect_run(client, second["run_id"])
        return one, two

    async with (
        running_gateway(agent) as gateway,
        connect(gateway, "alice") as alice,
        connect(gateway, "bob") as bob,
    ):
        (alice_runs, bob_runs) = await asyncio.gather(
            conversation(alice, "alice"), conversation(bob, "bob")
        )
        alice_ids = {f["run_id"] for run in alice_runs for f in run}
        bob_ids = {f["run_id"] for run in bob_runs for f in run}
        await alice.ping()
        await bob.ping()
        assert alice._frames.empty() and bob._frames.empty()  # nothing of the other's
    assert not alice_ids & bob_ids
    for name, (one, two) in (("alice", alice_runs), ("bob", bob_runs)):
        assert_run_rules(one)
        assert_run_rules(two)
        assert one[-1]["data"]["output"] == f"You first said: I am {name}"
        assert data_of(two, "tool_completed")[0]["result"] == "42"
        assert two[-1]["data"]["output"] == "It is 42."


async def test_nodes_filter_what_reaches_the_user_and_steps_become_thinking() -> None:
    model = ScriptedChatModel(respond=calculator_script)
    agent = LangGraphAgent(
        build_graph(model, [multiply]),
        name="calc",
        nodes={"tools"},
        steps={"agent": "Asking the model.", "tools": "Running the tools."},
    )
    frames = await one_run(agent, "what is 2 * 3?")
    assert types_of(frames) == [
        "agent_started",
        "agent_thinking",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_thinking",
        "agent_completed",
    ]
    assert frames[0]["data"]["agent"] == "calc"
    assert [t["text"] for t in data_of(frames, "agent_thinking")] == [
        "Asking the model.",
        "Running the tools.",
        "Asking the model.",
    ]
    assert frames[-1]["data"]["output"] == "It is 6."  # the final state, though not streamed


async def test_a_runnable_that_takes_messages_streams_its_reply() -> None:
    model = ScriptedChatModel(respond=calculator_script)
    frames = await one_run(LangGraphAgent(model), "hello there")
    assert types_of(frames) == [
        "agent_started",
        *["agent_message_delta"] * 5,
        "agent_completed",
    ]
    assert answer_of(frames) == "You first said: hello there"
    assert frames[-1]["data"]["output"] == "You first said: hello there"


async def test_model_output_inside_a_tool_is_not_streamed_as_the_answer() -> None:
    inner = ScriptedChatModel(respond=calculator_script)

    @tool
    async def ask_expert() -> str:
        """Ask another model."""
        reply = await inner.ainvoke("secret draft")
        return f"{len(str(reply.content))} characters"

    tools: list[BaseTool] = [ask_expert]
    model = ScriptedChatModel(respond=calculator_script)
    frames = await one_run(LangGraphAgent(build_graph(model, tools)), "call ask_expert")
    assert str(inner.replies[0].content) == "You first said: secret draft"
    assert data_of(frames, "tool_completed")[0]["result"] == "28 characters"
    assert answer_of(frames) == "It is 28 characters."


async def test_cancelled_while_publishing_the_graph_task_is_still_cancelled() -> None:
    """Cancellation that lands in runwire's own code (a slow publish, as to Redis), not
    in the graph's event stream, must still stop the graph before the agent returns."""
    entered, cancelled, publishing = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @tool
    async def approve() -> str:
        """Wait for a human approval."""
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "approved"  # pragma: no cover

    async def slow_publish(run: Run, data: EventData) -> None:
        if isinstance(data, ToolExecuting):
            publishing.set()
            await asyncio.Event().wait()

    model = ScriptedChatModel(respond=calculator_script)
    agent = LangGraphAgent(build_graph(model, [approve]))
    run = Run(
        run_id=RunId("r_1"),
        thread_id=ThreadId("t_1"),
        user_id=UserId("u"),
        input="call approve",
        emit=slow_publish,
    )
    task = asyncio.create_task(agent(run, "call approve"))
    await asyncio.wait_for(asyncio.gather(publishing.wait(), entered.wait()), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_text_too_big_for_one_event_is_split_and_reasoning_goes_by_paragraph() -> None:
    answer = "x" * 10_000  # one token, five times max_event_bytes

    def respond(messages: list[Any]) -> AIMessage:
        thoughts = "First idea.\n\nSecond idea."  # streamed as "First idea.\n", "\nSecond idea."
        return AIMessage(content=answer, additional_kwargs={"reasoning_content": thoughts})

    agent = LangGraphAgent(ScriptedChatModel(respond=respond))
    async with (
        running_gateway(agent, max_event_bytes=2048) as gateway,
        connect(gateway, "alice") as client,
    ):
        ack = await client.send_message("long answer please")
        frames = await collect_run(client, ack["run_id"])
    assert_run_rules(frames)
    assert [t["text"] for t in data_of(frames, "agent_thinking")] == ["First idea.", "Second idea."]
    deltas = data_of(frames, "agent_message_delta")
    assert len(deltas) > 5 and all(len(d["text"]) < 2048 for d in deltas)
    assert answer_of(frames) == answer
    # The whole answer cannot be one agent_completed either (docs/agents.md section 2).
    assert frames[-1]["type"] == "agent_error"
    assert frames[-1]["data"]["code"] == "event_rejected"
