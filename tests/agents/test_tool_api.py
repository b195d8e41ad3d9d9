"""The imperative tool API (``Run.start_tool``, ``ToolCall.complete`` / ``fail``), as a
framework adapter uses it, observed by a real client over a real socket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from runwire import Run, ToolCallError
from runwire.exceptions import EventRejected
from tests.helpers import Frame, assert_run_rules, collect_run, connect, running_gateway


async def _run(agent: Any, message: str = "go") -> list[Frame]:
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message(message)
        frames = await collect_run(client, ack["run_id"])
        assert gateway.runtime.active_runs() == 0
    assert_run_rules(frames)
    return frames


def _tools(frames: list[Frame]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (f["type"], f["data"]["call_id"], f["data"])
        for f in frames
        if f["type"] in ("tool_executing", "tool_completed")
    ]


async def test_calls_keep_the_framework_ids_and_end_in_any_order() -> None:
    async def agent(run: Run, message: str) -> str:
        first = await run.start_tool("search", {"q": "a"}, call_id="call_A")
        second = await run.start_tool("fetch", {"url": "b"}, call_id="call_B")
        await second.complete({"status": 200})
        await first.fail("no results")
        return "done"

    frames = await _run(agent)
    assert [(kind, call_id) for kind, call_id, _ in _tools(frames)] == [
        ("tool_executing", "call_A"),
        ("tool_executing", "call_B"),
        ("tool_completed", "call_B"),
        ("tool_completed", "call_A"),
    ]
    _, _, executing = _tools(frames)[0]
    assert executing == {"call_id": "call_A", "tool": "search", "args": {"q": "a"}}
    completed = {call_id: data for kind, call_id, data in _tools(frames) if kind.endswith("ed")}
    assert completed["call_B"]["ok"] is True and completed["call_B"]["result"] == {"status": 200}
    assert completed["call_A"]["ok"] is False and completed["call_A"]["error"] == "no results"
    assert "result" not in completed["call_A"]


async def test_without_an_id_a_call_is_numbered_in_its_run() -> None:
    async def agent(run: Run, message: str) -> str:
        call = await run.start_tool("clock")
        await call.complete("12:00")
        return "done"

    frames = await _run(agent)
    [(_, call_id, data), _] = _tools(frames)
    assert call_id == f"{frames[0]['run_id']}.1" and data["args"] == {}


async def test_an_end_for_an_unknown_or_ended_call_is_refused_and_nothing_is_sent() -> None:
    refusals: list[str] = []

    async def agent(run: Run, message: str) -> str:
        call = await run.start_tool("once", call_id="c1")
        assert run.tool_call("c1") is call
        await call.complete(1)
        attempts: list[Callable[[], Awaitable[None]]] = [
            lambda: call.complete(2),
            lambda: call.fail("again"),
            lambda: run.tool_call("c1").complete(3),
            lambda: run.tool_call("never-started").fail("x"),
        ]
        for attempt in attempts:
            with pytest.raises(ToolCallError) as refused:
                await attempt()
            refusals.append(str(refused.value))
        return "done"

    frames = await _run(agent)
    assert [f["type"] for f in frames] == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert frames[2]["data"]["result"] == 1
    run_id = frames[0]["run_id"]
    assert refusals[0] == f"tool call 'c1' of run {run_id} has already ended"
    assert refusals[2] == (
        f"no open tool call 'c1' in run {run_id}: it never started or has already ended"
    )
    assert "'never-started'" in refusals[3]


@pytest.mark.parametrize("call_id", ["", "x" * 129, "dup"])
async def test_a_call_id_that_is_empty_too_long_or_reused_is_refused(call_id: str) -> None:
    refused: list[ToolCallError] = []

    async def agent(run: Run, message: str) -> str:
        await (await run.start_tool("first", call_id="dup")).complete(None)
        try:
            await run.start_tool("second", call_id=call_id)
        except ToolCallError as exc:
            refused.append(exc)
        return "done"

    frames = await _run(agent)
    assert len(refused) == 1
    assert [data["tool"] for _, _, data in _tools(frames)] == ["first", "first"]


async def test_calls_still_open_at_the_end_are_closed_not_ok() -> None:
    async def agent(run: Run, message: str) -> str:
        await run.start_tool("forgotten", call_id="f1")
        done = await run.start_tool("finished", call_id="f2")
        await done.complete("ok")
        await run.start_tool("forgotten_too", call_id="f3")
        return "done"

    frames = await _run(agent)
    ends = {call_id: data for kind, call_id, data in _tools(frames) if kind == "tool_completed"}
    assert ends["f2"]["ok"] is True
    for call_id in ("f1", "f3"):
        assert ends[call_id]["ok"] is False
        assert ends[call_id]["error"] == "not completed by the agent"
    assert frames[-1]["data"] == {"output": "done", "status": "completed"}


async def test_a_call_open_when_the_agent_raises_is_closed_agent_failed() -> None:
    async def agent(run: Run, message: str) -> str:
        await run.start_tool("boom", call_id="b1")
        raise RuntimeError("secret detail")

    frames = await _run(agent)
    assert frames[-2]["data"]["call_id"] == "b1" and frames[-2]["data"]["ok"] is False
    assert frames[-2]["data"]["error"] == "agent failed"
    assert frames[-1]["data"]["code"] == "agent_failed"
    assert "secret" not in str(frames)


async def test_async_with_ends_once_even_when_the_block_ended_the_call() -> None:
    async def agent(run: Run, message: str) -> str:
        async with run.tool("explicit", {"n": 1}, call_id="e1") as call:
            await call.fail("chose to fail")
        async with run.tool("implicit", {"n": 2}) as call:
            call.result = 4
        return "done"

    frames = await _run(agent)
    kinds = [(kind, data["tool"]) for kind, _, data in _tools(frames)]
    assert kinds == [
        ("tool_executing", "explicit"),
        ("tool_completed", "explicit"),
        ("tool_executing", "implicit"),
        ("tool_completed", "implicit"),
    ]
    assert frames[2]["data"]["error"] == "chose to fail"
    assert frames[4]["data"]["result"] == 4


async def test_a_refused_say_is_not_part_of_the_answer() -> None:
    async def agent(run: Run, message: str) -> None:
        await run.say("kept ")
        try:
            await run.say("x" * 5_000)  # over max_event_bytes: refused, nothing sent
        except EventRejected:
            await run.say("and this.")

    async with (
        running_gateway(agent, max_event_bytes=2048) as gateway,  # type: ignore[arg-type]
        connect(gateway, "alice") as client,
    ):
        ack = await client.send_message("go")
        frames = await collect_run(client, ack["run_id"])
    assert [f["data"]["text"] for f in frames if f["type"] == "agent_message_delta"] == [
        "kept ",
        "and this.",
    ]
    assert frames[-1]["data"] == {"output": "kept and this.", "status": "completed"}
