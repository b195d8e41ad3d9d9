"""The agent runtime's guarantees, observed by a real client over a real socket."""

from __future__ import annotations

import asyncio

from runwire import Run, tool
from runwire.events import CRITICAL_EVENT_TYPES
from tests.helpers import (
    GatedAgent,
    assert_run_rules,
    collect_run,
    connect,
    failing_agent,
    running_gateway,
    scripted_agent,
    tool_error_agent,
)


async def test_an_agent_that_raises_ends_in_agent_error_with_a_safe_message() -> None:
    async with running_gateway(failing_agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("boom")
        frames = await collect_run(client, ack["run_id"])
    assert_run_rules(frames)
    assert [f["type"] for f in frames] == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        "agent_error",
    ]
    assert frames[2]["data"]["ok"] is False
    assert frames[2]["data"]["error"] == "tool failed (RuntimeError)"
    assert frames[-1]["data"] == {"code": "agent_failed", "message": "the agent failed"}
    assert "hunter2" not in str(frames)


async def test_a_tool_error_is_reported_and_the_agent_can_recover() -> None:
    async with running_gateway(tool_error_agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("missing")
        frames = await collect_run(client, ack["run_id"])
    assert_run_rules(frames)
    assert frames[2]["data"]["error"] == "no such key"
    assert frames[-1]["data"] == {"output": "not found", "status": "completed"}


async def test_a_run_over_its_timeout_ends_in_agent_error_timeout() -> None:
    agent = GatedAgent()  # never released
    async with (
        running_gateway(agent, run_timeout_s=0.3) as gateway,
        connect(gateway, "alice") as client,
    ):
        ack = await client.send_message("slow")
        frames = await collect_run(client, ack["run_id"])
        assert gateway.runtime.active_runs() == 0
    assert_run_rules(frames)
    assert frames[-2]["data"]["ok"] is False and frames[-2]["data"]["error"] == "timeout"
    assert frames[-1]["type"] == "agent_error" and frames[-1]["data"]["code"] == "timeout"


async def test_cancel_mid_tool_closes_the_tool_and_completes_as_cancelled() -> None:
    agent = GatedAgent()
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("cancel me")
        await asyncio.wait_for(agent.in_tool.wait(), 5)
        await client.cancel(ack["run_id"])
        frames = await collect_run(client, ack["run_id"])
        assert gateway.runtime.active_runs() == 0
    assert_run_rules(frames)
    assert [f["type"] for f in frames] == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert frames[3]["data"]["ok"] is False and frames[3]["data"]["error"] == "cancelled"
    assert frames[-1]["data"]["status"] == "cancelled"


async def test_nothing_is_emitted_after_the_terminal_event() -> None:
    leaked: list[Run] = []

    async def agent(run: Run, message: str) -> str:
        leaked.append(run)
        return "done"

    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("x")
        frames = await collect_run(client, ack["run_id"])
        try:
            await leaked[0].say("too late")
        except Exception as exc:
            assert type(exc).__name__ == "RunClosedError"
        else:
            raise AssertionError("emitting after the terminal event must raise")
        await client.ping()
        assert client._frames.empty()
    assert [f["type"] for f in frames] == ["agent_started", "agent_completed"]


async def test_concurrent_tool_calls_keep_seq_and_offset_in_the_same_order() -> None:
    @tool
    async def square(n: int) -> int:
        await asyncio.sleep(0.001 * (5 - n))
        return n * n

    async def agent(run: Run, message: str) -> str:
        results = await asyncio.gather(*(square(n=n) for n in range(5)))
        return str(sum(results))

    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("squares")
        frames = await collect_run(client, ack["run_id"])
    assert_run_rules(frames)
    offsets = [frame["offset"] for frame in frames]
    assert offsets == sorted(offsets) == list(range(offsets[0], offsets[0] + len(frames)))
    assert frames[-1]["data"]["output"] == "30"


async def test_the_demo_agent_uses_its_tools_and_streams_word_by_word() -> None:
    from runwire.agents.demo import DemoAgent

    async with (
        running_gateway(DemoAgent(word_delay_s=0)) as gateway,
        connect(gateway, "alice") as client,
    ):
        ack = await client.send_message("what is 17 * 23?")
        frames = await collect_run(client, ack["run_id"])
    assert_run_rules(frames)
    assert [t for t in (f["type"] for f in frames) if t in CRITICAL_EVENT_TYPES][:5] == [
        "agent_started",
        "agent_thinking",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
    ]
    tools = {f["data"]["tool"]: f["data"] for f in frames if f["type"] == "tool_completed"}
    assert tools["calculator"]["result"] == 391
    assert tools["text_stats"]["result"]["words"] == 4
    deltas = [f["data"]["text"] for f in frames if f["type"] == "agent_message_delta"]
    assert len(deltas) > 5
    assert "".join(deltas) == frames[-1]["data"]["output"]
    assert frames[-1]["data"]["output"].startswith("17 * 23 = 391.")


async def test_a_slow_agent_never_delays_other_users() -> None:
    slow = GatedAgent()

    async def agent(run: Run, message: str) -> str:
        if run.user_id == "alice":
            return await slow(run, message)
        return await scripted_agent(run, message)

    async with (
        running_gateway(agent) as gateway,
        connect(gateway, "alice") as alice,
        connect(gateway, "bob") as bob,
    ):
        alice_ack = await alice.send_message("long job")
        await asyncio.wait_for(slow.in_tool.wait(), 5)
        # While alice's run sits inside its tool, bob's whole run goes through.
        bob_ack = await bob.send_message("quick")
        bob_frames = await collect_run(bob, bob_ack["run_id"], timeout=5)
        assert gateway.runtime.active_runs() == 1  # alice's, still running
        await alice.ping()  # alice's socket is served too
        slow.release.set()
        alice_frames = await collect_run(alice, alice_ack["run_id"])
    assert bob_frames[-1]["data"]["status"] == "completed"
    assert alice_frames[-1]["data"]["status"] == "completed"
    assert bob_frames[-1]["ts"] <= alice_frames[-1]["ts"]
