"""Order as the clients receive it, under concurrent runs: per run, per connection, per user."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from runwire import CRITICAL_EVENT_TYPES, Run
from runwire.client import Client
from tests.helpers import connect, running_gateway
from tests.ssot._support import Frame, frames_until_terminal, settle

TERMINAL = ("agent_completed", "agent_error")


class InterleavingAgent:
    """Runs of one user start together (a barrier) and yield between steps, so their
    events interleave in the user's stream."""

    def __init__(self, runs_per_user: int) -> None:
        self.runs_per_user = runs_per_user
        self.barriers: dict[str, asyncio.Barrier] = {}

    async def __call__(self, run: Run, message: str) -> str:
        barrier = self.barriers.setdefault(run.user_id, asyncio.Barrier(self.runs_per_user))
        await barrier.wait()
        for step in range(2):
            await run.think(f"{message}: step {step}")
            await asyncio.sleep(0)
        async with run.tool("echo", {"text": message}) as call:
            await asyncio.sleep(0)
            call.result = message
        for word in message.split():
            await run.say(word)
            await asyncio.sleep(0)
        return message


def run_rule_problems(events: list[Frame]) -> list[str]:
    """Breaks of the run rules in one run's events, as received."""
    problems = []
    run_id = events[0]["run_id"]
    if [e["seq"] for e in events] != list(range(1, len(events) + 1)):
        problems.append(f"{run_id}: seq {[e['seq'] for e in events]}")
    types = [e["type"] for e in events]
    critical = list(dict.fromkeys(t for t in types if t in CRITICAL_EVENT_TYPES))
    if critical != list(CRITICAL_EVENT_TYPES):  # each present, first seen in the rule order
        problems.append(f"{run_id}: critical events {critical}")
    if types[0] != "agent_started" or types[-1] not in TERMINAL:
        problems.append(f"{run_id}: starts with {types[0]}, ends with {types[-1]}")
    if sum(t in TERMINAL for t in types) != 1:
        problems.append(f"{run_id}: {sum(t in TERMINAL for t in types)} terminal events")
    open_calls: list[str] = []
    for event in events:
        if event["type"] == "tool_executing":
            open_calls.append(event["data"]["call_id"])
        elif event["type"] == "tool_completed":
            if not open_calls or open_calls.pop() != event["data"]["call_id"]:
                problems.append(f"{run_id}: tool_completed without its tool_executing")
    if open_calls:
        problems.append(f"{run_id}: tool calls never completed: {open_calls}")
    return problems


def stream_problems(client: Client, frames: list[Frame], run_ids: set[str]) -> list[str]:
    """Breaks of per-connection order: offsets +1 from `connected`, only this user's runs."""
    problems = []
    start = client.connected["offset"]
    offsets = [f["offset"] for f in frames]
    if offsets != list(range(start + 1, start + len(frames) + 1)):
        problems.append(f"offsets {offsets}")
    foreign = {f["run_id"] for f in frames} - run_ids
    if foreign:
        problems.append(f"foreign runs {foreign}")
    if client.duplicates_dropped:
        problems.append(f"{client.duplicates_dropped} duplicates dropped by the client")
    for run_id in sorted(run_ids):
        problems += run_rule_problems([f for f in frames if f["run_id"] == run_id])
    return problems


USERS = 8
TABS = 2
RUNS = 4


async def test_critical_event_ordering_consistency() -> None:
    agent = InterleavingAgent(RUNS)
    users = [f"order{i}" for i in range(USERS)]
    async with (
        running_gateway(agent, max_concurrent_runs_per_user=RUNS) as gateway,
        AsyncExitStack() as stack,
    ):
        tabs = {
            u: [await stack.enter_async_context(connect(gateway, u)) for _ in range(TABS)]
            for u in users
        }
        acks = await asyncio.gather(
            *(
                tabs[u][r % TABS].send_message(f"{u} run {r} says hello")
                for u in users
                for r in range(RUNS)
            )
        )
        runs: dict[str, set[str]] = {u: set() for u in users}
        for index, ack in enumerate(acks):
            runs[users[index // RUNS]].add(ack["run_id"])
        clients = [(u, c) for u in users for c in tabs[u]]
        received = await asyncio.gather(*(frames_until_terminal(c, runs[u]) for u, c in clients))
        late = await asyncio.gather(*(settle(c) for _, c in clients))
    interleaved = 0
    for (user, client), frames, extra in zip(clients, received, late, strict=True):
        assert extra == []
        assert stream_problems(client, frames, runs[user]) == []
        order = [f["run_id"] for f in frames]
        switches = sum(a != b for a, b in zip(order, order[1:], strict=False))
        interleaved += switches > RUNS - 1  # more than one contiguous block per run
    assert interleaved == USERS * TABS  # the runs really were concurrent


def test_ordering_check_fails_on_reordered_events() -> None:
    frames: list[Frame] = [
        {"type": t, "offset": i + 1, "run_id": "r1", "seq": i + 1, "data": {"call_id": "c"}}
        for i, t in enumerate(
            ["agent_started", "agent_thinking", "tool_executing", "tool_completed"]
            + ["agent_completed"]
        )
    ]
    assert run_rule_problems(frames) == []
    swapped = [frames[0], frames[1], frames[3], frames[2], frames[4]]
    assert run_rule_problems(swapped) == [
        "r1: seq [1, 2, 4, 3, 5]",
        "r1: critical events ['agent_started', 'agent_thinking', 'tool_completed',"
        " 'tool_executing', 'agent_completed']",
        "r1: tool_completed without its tool_executing",
        "r1: tool calls never completed: ['c']",
    ]
    after_terminal = [*frames, {**frames[1], "offset": 6, "seq": 6}]
    assert run_rule_problems(after_terminal) == [
        "r1: starts with agent_started, ends with agent_thinking"
    ]
    no_terminal = frames[:4]
    assert run_rule_problems(no_terminal) == [
        "r1: critical events ['agent_started', 'agent_thinking', 'tool_executing',"
        " 'tool_completed']",
        "r1: starts with agent_started, ends with tool_completed",
        "r1: 0 terminal events",
    ]


async def test_concurrent_event_delivery_consistency() -> None:
    users = [f"tabs{i:03d}" for i in range(100)]
    async with running_gateway() as gateway, AsyncExitStack() as stack:
        tabs = {
            u: list(
                await asyncio.gather(
                    stack.enter_async_context(connect(gateway, u)),
                    stack.enter_async_context(connect(gateway, u)),
                )
            )
            for u in users
        }
        acks = await asyncio.gather(
            *(tabs[u][r].send_message(f"{u} message {r}") for u in users for r in range(2))
        )
        runs = {u: {acks[2 * i]["run_id"], acks[2 * i + 1]["run_id"]} for i, u in enumerate(users)}
        clients = [(u, c) for u in users for c in tabs[u]]
        received = await asyncio.gather(*(frames_until_terminal(c, runs[u]) for u, c in clients))
        late = await asyncio.gather(*(settle(c) for _, c in clients))
    assert all(extra == [] for extra in late)
    by_user: dict[str, list[list[Frame]]] = {}
    for (user, client), frames in zip(clients, received, strict=True):
        assert stream_problems(client, frames, runs[user]) == []
        by_user.setdefault(user, []).append(frames)
    for user, (first, second) in by_user.items():
        assert [f["offset"] for f in first] == [f["offset"] for f in second], user
        assert first == second, user  # the same events, in the same order, on every tab
        inputs = {f["data"]["input"] for f in first if f["type"] == "agent_started"}
        assert inputs == {f"{user} message 0", f"{user} message 1"}
