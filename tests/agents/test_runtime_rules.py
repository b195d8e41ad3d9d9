"""AgentRuntime's rules and bounds, through its public API with an in-memory publish.

No socket and no engine: ``publish`` records each event (or refuses it, or fails as
an unavailable engine would), so each test sees exactly the events a run produced,
its finish status and the runtime's bookkeeping. The socket-level guarantees are in
test_runtime.py; these were written against the mutants that survived ``make mutate``
(docs/architecture.md, "Mutation testing").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from runwire.agents.base import Agent, Run
from runwire.agents.runtime import AgentRuntime, RunLimits, StartedRun
from runwire.events import (
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
from runwire.exceptions import EngineError, EventRejected, LimitError
from runwire.ids import UserId

ALICE = UserId("alice")
BOB = UserId("bob")


def limits(**overrides: Any) -> RunLimits:
    values: dict[str, Any] = {"per_user": 3, "active": 10, "timeout_s": 5.0, "idempotency_keys": 8}
    values.update(overrides)
    return RunLimits(**values)


class Recorder:
    """A publish that records events per user; ``refuse`` or ``fail`` some of them."""

    def __init__(self) -> None:
        self.events: list[tuple[UserId, Event]] = []
        self.refuse: Callable[[EventData], str | None] = lambda data: None
        self.failures = 0
        """The next this many publishes raise EngineError (the engine is down)."""
        self.attempts = 0

    async def __call__(self, user_id: UserId, event: Event) -> object:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise EngineError("engine unavailable")
        reason = self.refuse(event.data)
        if reason is not None:
            raise EventRejected(reason)
        self.events.append((user_id, event))
        return None

    def of(self, run_id: str) -> list[Event]:
        return [event for _, event in self.events if event.run_id == run_id]

    def data(self, run_id: str) -> list[EventData]:
        return [event.data for event in self.of(run_id)]


class Finished:
    """``on_finished``: the status each run ended with, and a way to wait for it."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.changed = asyncio.Event()

    async def __call__(self, run: Run, status: str) -> None:
        self.status[run.run_id] = status
        self.changed.set()

    async def wait(self, run_id: str) -> str:
        async with asyncio.timeout(5):
            while run_id not in self.status:
                self.changed.clear()
                await self.changed.wait()
        return self.status[run_id]


def runtime(agent: Agent, **overrides: Any) -> tuple[AgentRuntime, Recorder, Finished]:
    recorder, finished = Recorder(), Finished()
    rt = AgentRuntime(agent, recorder, limits(**overrides), on_finished=finished)
    return rt, recorder, finished


async def echo(run: Run, message: str) -> str:
    await run.say(message)
    return message


class Gate:
    """An agent that opens a tool call and waits in it until released."""

    agent_name = "gate"

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, run: Run, message: str) -> str:
        async with run.tool("wait", {"for": message}) as call:
            self.entered.set()
            await self.release.wait()
            call.result = "released"
        return "released"


# -- starting: ids, idempotency, bounds ------------------------------------------------------


async def test_a_run_gets_fresh_ids_unless_given_and_starts_with_agent_started() -> None:
    rt, recorder, finished = runtime(echo)
    fresh = rt.start_run(ALICE, "hi", message_id="m1", thread_id=None)
    given = rt.start_run(ALICE, "yo", message_id="m2", thread_id="t_given", run_id="r_given")
    assert fresh.duplicate is False and given.duplicate is False
    assert fresh.run_id.startswith("r_") and fresh.thread_id.startswith("t_")
    assert (given.run_id, given.thread_id) == ("r_given", "t_given")
    assert await finished.wait(fresh.run_id) == "completed"
    assert await finished.wait(given.run_id) == "completed"
    events = recorder.of("r_given")
    assert [e.data for e in events] == [
        AgentStarted("echo", "yo"),
        AgentMessageDelta("yo"),
        AgentCompleted("yo", "completed"),
    ]
    assert all(e.thread_id == "t_given" for e in events)
    assert [e.seq for e in events] == [1, 2, 3]
    assert all(type(e.ts) is int and abs(e.ts - time.time() * 1000) < 60_000 for e in events)
    assert {user for user, _ in recorder.events} == {ALICE}
    assert rt.started_total == 2


async def test_the_agent_name_is_its_agent_name_attribute_or_function_name() -> None:
    gate = Gate()
    rt, recorder, finished = runtime(gate)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await asyncio.wait_for(gate.entered.wait(), 5)
    gate.release.set()
    await finished.wait(started.run_id)
    assert recorder.data(started.run_id)[0] == AgentStarted("gate", "x")
    assert rt.agent_name == "gate"
    assert AgentRuntime(echo, Recorder(), limits()).agent_name == "echo"


async def test_the_same_message_id_is_one_run_and_says_duplicate() -> None:
    gate = Gate()
    rt, recorder, finished = runtime(gate)
    first = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    again = rt.start_run(ALICE, "x", message_id="m1", thread_id="t_other")
    assert again == StartedRun(first.run_id, first.thread_id, duplicate=True)
    assert rt.active_runs() == 1 and rt.started_total == 1
    # The key is per user: bob's m1 is another run.
    other = rt.start_run(BOB, "x", message_id="m1", thread_id=None)
    assert other.duplicate is False and other.run_id != first.run_id
    gate.release.set()
    await finished.wait(first.run_id)
    await finished.wait(other.run_id)
    # Still known after the run ended: a retry does not start it again.
    assert rt.start_run(ALICE, "x", message_id="m1", thread_id=None).duplicate is True


async def test_idempotency_keys_are_bounded_oldest_first() -> None:
    rt, _, finished = runtime(echo, idempotency_keys=2)
    runs = [rt.start_run(ALICE, "x", message_id=f"m{i}", thread_id=None) for i in range(3)]
    for started in runs:
        await finished.wait(started.run_id)
    assert rt.stats()["idempotency_keys"] == 2
    assert rt.start_run(ALICE, "x", message_id="m2", thread_id=None).duplicate is True
    assert rt.start_run(ALICE, "x", message_id="m1", thread_id=None).duplicate is True
    assert rt.start_run(ALICE, "x", message_id="m0", thread_id=None).duplicate is False


async def test_runs_per_user_are_bounded_and_freed_when_a_run_ends() -> None:
    gate = Gate()
    rt, _, finished = runtime(gate, per_user=2)
    first = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    rt.start_run(ALICE, "x", message_id="m2", thread_id=None)
    with pytest.raises(LimitError) as refused:
        rt.start_run(ALICE, "x", message_id="m3", thread_id=None)
    assert refused.value.code == "too_many_runs"
    assert str(refused.value) == "at most 2 runs at once per user"
    rt.start_run(BOB, "x", message_id="m1", thread_id=None)  # another user is not limited
    assert rt.active_runs(ALICE) == 2 and rt.active_runs(BOB) == 1 and rt.active_runs() == 3
    assert rt.cancel(ALICE, first.run_id)
    await finished.wait(first.run_id)
    assert rt.active_runs(ALICE) == 1
    rt.start_run(ALICE, "x", message_id="m3", thread_id=None)  # room again
    gate.release.set()
    await rt.stop(grace_s=5)


async def test_active_runs_are_bounded_per_process() -> None:
    gate = Gate()
    rt, _, _ = runtime(gate, active=2)
    rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    rt.start_run(BOB, "x", message_id="m1", thread_id=None)
    with pytest.raises(LimitError) as refused:
        rt.start_run(UserId("cat"), "x", message_id="m1", thread_id=None)
    assert refused.value.code == "busy"
    assert refused.value.message == "too many runs on this gateway; retry later"
    gate.release.set()
    await rt.stop(grace_s=5)


async def test_nothing_starts_once_stopping_but_a_retry_is_still_answered() -> None:
    rt, _, finished = runtime(echo)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await finished.wait(started.run_id)
    await rt.stop(grace_s=1)
    with pytest.raises(LimitError) as refused:
        rt.start_run(ALICE, "x", message_id="m2", thread_id=None)
    assert refused.value.code == "shutting_down"
    assert refused.value.message == "the gateway is shutting down"
    assert rt.start_run(ALICE, "x", message_id="m1", thread_id=None).duplicate is True


# -- cancelling and stopping ----------------------------------------------------------------


async def test_cancel_is_for_the_owner_of_an_active_run_only() -> None:
    gate = Gate()
    rt, recorder, finished = runtime(gate)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await asyncio.wait_for(gate.entered.wait(), 5)
    assert rt.cancel(BOB, started.run_id) is False
    assert rt.cancel(ALICE, "r_unknown") is False
    assert rt.cancel(ALICE, started.run_id) is True
    assert await finished.wait(started.run_id) == "cancelled"
    assert rt.cancel(ALICE, started.run_id) is False  # it is over
    data = recorder.data(started.run_id)
    assert isinstance(data[2], ToolCompleted)
    assert (data[2].ok, data[2].error) == (False, "cancelled")
    assert data[-1] == AgentCompleted("", "cancelled")
    assert rt.finished_total == {"cancelled": 1}


async def test_a_run_cancelled_before_it_ran_still_ends_and_frees_its_slot() -> None:
    """A task cancelled before its first step never runs its body: the runtime must
    still give the run its two events and forget it (found by ``make mutate``)."""
    rt, recorder, finished = runtime(Gate(), per_user=1)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert rt.cancel(ALICE, started.run_id) is True  # in the same loop step
    assert await finished.wait(started.run_id) == "cancelled"
    data = recorder.data(started.run_id)
    assert data[0] == AgentStarted("gate", "x")
    assert data[-1] == AgentCompleted("", "cancelled")
    assert sum(isinstance(d, AgentCompleted | AgentError) for d in data) == 1
    executing = sum(isinstance(d, ToolExecuting) for d in data)
    assert executing == sum(isinstance(d, ToolCompleted) for d in data)
    assert rt.stats() == {"active_runs": 0, "users_with_runs": 0, "idempotency_keys": 1}
    again = rt.start_run(ALICE, "y", message_id="m2", thread_id=None)  # the slot is free
    rt.cancel_any(again.run_id)
    assert await finished.wait(again.run_id) == "cancelled"


async def test_cancel_any_cancels_whoever_owns_the_run() -> None:
    gate = Gate()
    rt, recorder, finished = runtime(gate)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await asyncio.wait_for(gate.entered.wait(), 5)
    assert rt.cancel_any("r_unknown") is False
    assert rt.cancel_any(started.run_id) is True
    assert await finished.wait(started.run_id) == "cancelled"
    assert rt.cancel_any(started.run_id) is False
    assert recorder.data(started.run_id)[-1] == AgentCompleted("", "cancelled")


async def test_a_cancelled_run_keeps_what_it_said() -> None:
    said = asyncio.Event()

    async def talker(run: Run, message: str) -> str:
        await run.say("half ")
        await run.say("an answer")
        said.set()
        await asyncio.Event().wait()
        return "never"

    rt, recorder, finished = runtime(talker)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await asyncio.wait_for(said.wait(), 5)
    rt.cancel(ALICE, started.run_id)
    await finished.wait(started.run_id)
    assert recorder.data(started.run_id)[-1] == AgentCompleted("half an answer", "cancelled")


async def test_the_first_stop_reason_wins() -> None:
    gate = Gate()
    rt, recorder, finished = runtime(gate)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await asyncio.wait_for(gate.entered.wait(), 5)
    rt.cancel(ALICE, started.run_id)
    await rt.stop(grace_s=0)  # shutdown comes after the cancel
    assert await finished.wait(started.run_id) == "cancelled"
    assert recorder.data(started.run_id)[-1] == AgentCompleted("", "cancelled")


async def test_stop_lets_runs_finish_within_the_grace_then_shuts_the_rest_down() -> None:
    stuck, quick = Gate(), Gate()

    async def agent(run: Run, message: str) -> str:
        return await (stuck if message == "stuck" else quick)(run, message)

    rt, recorder, finished = runtime(agent)
    slow_run = rt.start_run(ALICE, "stuck", message_id="m1", thread_id=None)
    quick_run = rt.start_run(BOB, "quick", message_id="m1", thread_id=None)
    await asyncio.wait_for(stuck.entered.wait(), 5)
    await asyncio.wait_for(quick.entered.wait(), 5)
    quick.release.set()
    await rt.stop(grace_s=0.2)
    assert finished.status == {quick_run.run_id: "completed", slow_run.run_id: "shutdown"}
    shut = recorder.data(slow_run.run_id)
    assert isinstance(shut[-2], ToolCompleted)
    assert (shut[-2].ok, shut[-2].error) == (False, "shutdown")
    assert shut[-1] == AgentError("shutdown", "the gateway is shutting down")
    assert rt.finished_total == {"completed": 1, "shutdown": 1}
    assert rt.stats() == {"active_runs": 0, "users_with_runs": 0, "idempotency_keys": 2}


async def test_stop_without_runs_returns_at_once() -> None:
    rt, _, _ = runtime(echo)
    async with asyncio.timeout(1):
        await rt.stop(grace_s=30)


# -- how runs end -----------------------------------------------------------------------------


async def test_a_non_string_answer_is_what_the_agent_said() -> None:
    async def agent(run: Run, message: str) -> Any:
        await run.say("a")
        await run.say("b")
        return None

    rt, recorder, finished = runtime(agent)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "completed"
    assert recorder.data(started.run_id)[-1] == AgentCompleted("ab", "completed")


async def test_a_run_over_its_timeout_ends_with_the_timeout_in_the_message() -> None:
    gate = Gate()
    rt, recorder, finished = runtime(gate, timeout_s=0.05)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "timeout"
    data = recorder.data(started.run_id)
    assert isinstance(data[-2], ToolCompleted) and data[-2].error == "timeout"
    assert data[-1] == AgentError("timeout", "the run exceeded 0.05 s")


async def test_an_agent_that_raises_closes_its_calls_and_fails_safely() -> None:
    async def agent(run: Run, message: str) -> str:
        call = run.tool("left_open", {})
        await call.__aenter__()
        raise RuntimeError("secret detail")

    rt, recorder, finished = runtime(agent)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "failed"
    data = recorder.data(started.run_id)
    assert isinstance(data[2], ToolCompleted) and data[2].error == "agent failed"
    assert data[-1] == AgentError("agent_failed", "the agent failed")
    assert "secret" not in repr(data)


async def test_a_call_left_open_by_a_finished_agent_is_closed_before_the_answer() -> None:
    async def agent(run: Run, message: str) -> str:
        call = run.tool("left_open", {"a": 1})
        await call.__aenter__()
        return "done"

    rt, recorder, finished = runtime(agent)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "completed"
    data = recorder.data(started.run_id)
    assert [type(d) for d in data] == [AgentStarted, ToolExecuting, ToolCompleted, AgentCompleted]
    assert isinstance(data[2], ToolCompleted)
    assert (data[2].ok, data[2].error) == (False, "not completed by the agent")
    assert data[-1] == AgentCompleted("done", "completed")


async def test_every_entry_of_a_run_is_forgotten_when_it_ends() -> None:
    rt, _, finished = runtime(echo)
    runs = [
        rt.start_run(ALICE, "x", message_id="m1", thread_id=None),
        rt.start_run(ALICE, "x", message_id="m2", thread_id=None),
        rt.start_run(BOB, "x", message_id="m1", thread_id=None),
    ]
    assert rt.stats() == {"active_runs": 3, "users_with_runs": 2, "idempotency_keys": 3}
    for started in runs:
        await finished.wait(started.run_id)
    assert rt.stats() == {"active_runs": 0, "users_with_runs": 0, "idempotency_keys": 3}
    assert rt.active_runs(ALICE) == 0 and rt.active_runs() == 0
    assert rt.finished_total == {"completed": 3}


async def test_a_failing_on_finished_is_logged_and_the_run_is_still_forgotten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = Finished()

    async def broken(run: Run, status: str) -> None:
        await done(run, status)
        raise RuntimeError("bookkeeping down")

    rt = AgentRuntime(echo, Recorder(), limits(), on_finished=broken)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await done.wait(started.run_id)
    await asyncio.sleep(0)  # the run task ends right after its on_finished raised
    assert rt.active_runs() == 0
    assert rt.finished_total == {"completed": 1}
    assert any(r.message == "run bookkeeping failed" for r in caplog.records)


async def test_a_step_that_holds_the_loop_is_reported_with_its_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reports: list[tuple[str, float]] = []

    async def blocking(run: Run, message: str) -> str:
        time.sleep(0.03)  # noqa: ASYNC251  # holds the loop: what the report is for
        return "done"

    finished = Finished()
    rt = AgentRuntime(
        blocking,
        Recorder(),
        limits(slow_step_s=0.01),
        on_finished=finished,
        on_slow_step=lambda run, held_s: reports.append((run.run_id, held_s)),
    )
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await finished.wait(started.run_id)
    assert [run_id for run_id, _ in reports] == [started.run_id]
    assert reports[0][1] >= 0.03
    [record] = [r for r in caplog.records if "held the event loop" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"run {started.run_id} held the event loop for {reports[0][1] * 1000:.0f} ms in one"
        " step; every user waited (move blocking work to a thread: docs/agents.md)"
    )
    assert record.run_id == started.run_id  # type: ignore[attr-defined]
    assert record.user_id == ALICE  # type: ignore[attr-defined]


# -- events the engine refuses or cannot take -------------------------------------------------


async def test_refused_tool_events_are_replaced_and_the_run_goes_on() -> None:
    async def agent(run: Run, message: str) -> str:
        async with run.tool("fetch", {"blob": "big"}) as call:
            call.result = "huge"
        return "ok"

    def refuse(data: EventData) -> str | None:
        """The agent's own tool events are too big; the runtime's replacements are not."""
        if isinstance(data, ToolExecuting) and "unencodable" not in data.args:
            return "too big"
        if isinstance(data, ToolCompleted) and data.ok:
            return "too big"
        return None

    rt, recorder, finished = runtime(agent)
    recorder.refuse = refuse
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "completed"
    events = recorder.of(started.run_id)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    executing, completed = events[1].data, events[2].data
    assert isinstance(executing, ToolExecuting) and isinstance(completed, ToolCompleted)
    assert executing.args == {"unencodable": "too big"} and executing.tool == "fetch"
    assert executing.call_id == completed.call_id
    assert completed.ok is False
    assert completed.error == "the tool's result could not be sent: too big"
    assert events[1].run_id == started.run_id and events[1].thread_id == started.thread_id
    assert type(events[1].ts) is int and abs(events[1].ts - time.time() * 1000) < 60_000
    assert events[-1].data == AgentCompleted("ok", "completed")


async def test_a_refused_failed_tool_keeps_its_own_error_cut_to_size() -> None:
    async def agent(run: Run, message: str) -> str:
        call = await run.tool("t", {}).__aenter__()
        await call.fail("e" * 5_000)
        return "ok"

    rt, recorder, finished = runtime(agent)
    seen: list[ToolCompleted] = []

    def refuse(data: EventData) -> str | None:
        if isinstance(data, ToolCompleted) and not seen:
            seen.append(data)
            return "too big"
        return None

    recorder.refuse = refuse
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await finished.wait(started.run_id)
    completed = recorder.data(started.run_id)[2]
    assert isinstance(completed, ToolCompleted)
    assert completed.ok is False and completed.error == "e" * 1_000
    assert completed.call_id == seen[0].call_id and completed.tool == "t"
    assert completed.duration_ms == seen[0].duration_ms


async def test_a_refused_answer_ends_the_run_with_agent_error() -> None:
    rt, recorder, finished = runtime(echo)
    recorder.refuse = lambda data: "answer too big" if isinstance(data, AgentCompleted) else None
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await finished.wait(started.run_id)
    events = recorder.of(started.run_id)
    assert events[-1].data == AgentError(
        "event_rejected", "the answer could not be sent: answer too big"
    )
    assert [e.seq for e in events] == [1, 2, 3]


async def test_a_refused_error_is_sent_with_safe_text() -> None:
    async def agent(run: Run, message: str) -> str:
        raise RuntimeError("x")

    rt, recorder, finished = runtime(agent)
    first: list[EventData] = []

    def refuse(data: EventData) -> str | None:
        if isinstance(data, AgentError) and not first:
            first.append(data)
            return "no"
        return None

    recorder.refuse = refuse
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await finished.wait(started.run_id)
    assert recorder.data(started.run_id)[-1] == AgentError("agent_failed", "the agent failed")


async def test_refused_text_raises_in_the_agent_and_takes_no_seq() -> None:
    caught: list[str] = []

    async def agent(run: Run, message: str) -> str:
        await run.think("first")
        try:
            await run.say("way too long")
        except EventRejected as exc:
            caught.append(exc.reason)
        await run.think("shorter then")
        return "fine"

    rt, recorder, finished = runtime(agent)
    recorder.refuse = lambda data: "too big" if isinstance(data, AgentMessageDelta) else None
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "completed"
    assert caught == ["too big"]
    events = recorder.of(started.run_id)
    assert [e.data for e in events][1:3] == [AgentThinking("first"), AgentThinking("shorter then")]
    assert [e.seq for e in events] == [1, 2, 3, 4]


async def test_refused_text_the_agent_does_not_catch_fails_the_run() -> None:
    rt, recorder, finished = runtime(echo)
    recorder.refuse = lambda data: "too big" if isinstance(data, AgentMessageDelta) else None
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "failed"
    assert recorder.data(started.run_id)[-1] == AgentError("event_rejected", "too big")


async def test_publishing_is_retried_while_the_engine_is_down_within_the_budget() -> None:
    rt, recorder, finished = runtime(echo, engine_retry_s=5.0)
    recorder.failures = 2  # agent_started fails twice (0.05 s, then 0.1 s later it works)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "completed"
    assert recorder.attempts == 2 + 3
    assert [type(d) for d in recorder.data(started.run_id)] == [
        AgentStarted,
        AgentMessageDelta,
        AgentCompleted,
    ]


async def test_a_run_that_cannot_publish_ends_unpublished() -> None:
    rt, recorder, finished = runtime(echo, engine_retry_s=0.0)
    recorder.failures = 1_000
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "unpublished"
    # No budget, no retry: agent_started fails once; the publisher has given up, so
    # the terminal event is not even tried (nothing is stored after a lost event).
    assert recorder.attempts == 1
    assert recorder.events == []
    assert rt.active_runs() == 0
    assert rt.finished_total == {"unpublished": 1}


async def test_retries_back_off_and_give_up_at_the_deadline() -> None:
    rt, recorder, finished = runtime(echo, engine_retry_s=0.2)
    recorder.failures = 1_000
    loop = asyncio.get_running_loop()
    begun = loop.time()
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "unpublished"
    elapsed = loop.time() - begun
    # 0.05 + 0.1 = 0.15 s of waits (the next, 0.2 s, would pass the deadline): three
    # attempts for agent_started; then the publisher has given up, so the terminal
    # event is not tried (it would be stored after the lost agent_started).
    assert recorder.attempts == 3
    assert 0.15 <= elapsed < 2.0


def _records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "runwire.agents" and r.getMessage() == message]


async def test_what_went_wrong_is_logged_with_the_run(caplog: pytest.LogCaptureFixture) -> None:
    async def raises(run: Run, message: str) -> str:
        raise RuntimeError("bug")

    rt, _, finished = runtime(raises)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await finished.wait(started.run_id)
    [record] = _records(caplog, "agent failed")
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.run_id == started.run_id  # type: ignore[attr-defined]

    down, recorder, done = runtime(echo)
    recorder.failures = 1_000
    lost = down.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await done.wait(lost.run_id)
    [record] = _records(caplog, "run could not publish")
    assert record.levelno == logging.ERROR
    assert record.run_id == lost.run_id  # type: ignore[attr-defined]


async def test_a_replaced_event_and_failed_bookkeeping_are_logged_with_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = Finished()

    async def broken(run: Run, status: str) -> None:
        await done(run, status)
        raise RuntimeError("bookkeeping down")

    async def agent(run: Run, message: str) -> str:
        async with run.tool("t", {}) as call:
            call.result = "big"
        return "ok"

    recorder = Recorder()
    recorder.refuse = lambda data: (
        "too big" if isinstance(data, ToolCompleted) and data.ok else None
    )
    rt = AgentRuntime(agent, recorder, limits(), on_finished=broken)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await done.wait(started.run_id)
    await asyncio.sleep(0)
    [replaced] = _records(caplog, "event replaced: too big")
    assert replaced.levelno == logging.WARNING
    assert replaced.run_id == started.run_id  # type: ignore[attr-defined]
    [bookkeeping] = _records(caplog, "run bookkeeping failed")
    assert bookkeeping.run_id == started.run_id  # type: ignore[attr-defined]


async def test_an_agent_without_a_name_is_called_agent() -> None:
    class Nameless:
        async def __call__(self, run: Run, message: str) -> str:
            return "ok"

    rt, recorder, finished = runtime(Nameless())
    started = rt.start_run(ALICE, "hi", message_id="m1", thread_id=None)
    await finished.wait(started.run_id)
    assert recorder.data(started.run_id)[0] == AgentStarted("agent", "hi")


async def test_refused_text_in_an_open_tool_call_closes_it_as_run_failed() -> None:
    async def agent(run: Run, message: str) -> str:
        call = run.tool("t", {})
        await call.__aenter__()
        await run.say("too long")
        return "unreachable"

    rt, recorder, finished = runtime(agent)
    recorder.refuse = lambda data: "too big" if isinstance(data, AgentMessageDelta) else None
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "failed"
    data = recorder.data(started.run_id)
    assert isinstance(data[2], ToolCompleted) and (data[2].ok, data[2].error) == (
        False,
        "run failed",
    )
    assert data[-1] == AgentError("event_rejected", "too big")


async def test_a_refused_error_text_that_cannot_be_encoded_is_made_safe() -> None:
    async def agent(run: Run, message: str) -> str:
        call = await run.tool("t\ud800", {}).__aenter__()
        await call.fail("bad \ud800 text")
        return "ok"

    def refuse(data: EventData) -> str | None:
        if isinstance(data, ToolCompleted) and data.error == "bad \ud800 text":
            return "not encodable"
        return None

    rt, recorder, finished = runtime(agent)
    recorder.refuse = refuse
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    assert await finished.wait(started.run_id) == "completed"
    completed = recorder.data(started.run_id)[2]
    assert isinstance(completed, ToolCompleted)
    assert (completed.tool, completed.error) == ("t?", "bad ? text")


async def test_stop_gives_a_run_that_ignores_cancellation_one_second_at_most() -> None:
    leave = asyncio.Event()

    async def stubborn(run: Run, message: str) -> str:
        while not leave.is_set():
            try:
                await leave.wait()
            except asyncio.CancelledError:
                continue  # swallows the shutdown
        return "left"

    rt, _, finished = runtime(stubborn)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    begun = loop.time()
    async with asyncio.timeout(5):
        await rt.stop(grace_s=0.05)
    assert 0.9 <= loop.time() - begun < 1.8  # the grace, then at most 1 s more
    leave.set()
    assert await finished.wait(started.run_id) == "completed"


# -- a stop that arrives while an event is being published -----------------------------


class HeldPublish(Recorder):
    """A publish that waits, for the first event of type ``kind``, until released (an
    engine slow to answer): a cancellation can arrive right then."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, user_id: UserId, event: Event) -> object:
        if event.type == self.kind and not self.release.is_set():
            self.waiting.set()
            await self.release.wait()
        return await super().__call__(user_id, event)


def held_runtime(
    agent: Agent, kind: str, **overrides: Any
) -> tuple[AgentRuntime, HeldPublish, Finished]:
    publish, finished = HeldPublish(kind), Finished()
    return (
        AgentRuntime(agent, publish, limits(**overrides), on_finished=finished),
        publish,
        finished,
    )


async def cancelled_while_held(rt: AgentRuntime, publish: HeldPublish) -> StartedRun:
    """Start a run, cancel it while its held event is being published, then let the
    publish finish."""
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await asyncio.wait_for(publish.waiting.wait(), 5)
    assert rt.cancel(ALICE, started.run_id)
    publish.release.set()
    return started


async def test_a_cancel_during_the_terminal_publish_still_ends_the_run() -> None:
    """The agent has returned and its ``agent_completed`` is on its way: a cancel then
    (the user pressed stop as the answer ended) used to cancel that publish, so the
    run had no terminal event, was reported completed, and its snapshot stayed
    running."""
    rt, publish, finished = held_runtime(echo, "agent_completed")
    started = await cancelled_while_held(rt, publish)
    assert await finished.wait(started.run_id) == "completed"
    assert [type(d).__name__ for d in publish.data(started.run_id)] == [
        "AgentStarted",
        "AgentMessageDelta",
        "AgentCompleted",
    ]


async def test_a_cancel_during_tool_completed_leaves_no_call_open() -> None:
    """A cancel while ``tool_completed`` is being published: it is published, then the
    run is cancelled (its ``tool_completed`` was lost and the call stayed unpaired, with
    a gap in ``seq``, before)."""
    gate = Gate()
    gate.release.set()
    rt, publish, finished = held_runtime(gate, "tool_completed")
    started = await cancelled_while_held(rt, publish)
    assert await finished.wait(started.run_id) == "cancelled"
    events = publish.of(started.run_id)
    assert [e.type for e in events] == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[2].data.ok is True  # type: ignore[union-attr]
    assert events[3].data.status == "cancelled"  # type: ignore[union-attr]


async def test_a_timeout_during_a_publish_lets_it_finish_then_ends_the_run() -> None:
    async def slow(run: Run, message: str) -> str:
        await run.say("a")
        await asyncio.sleep(10)
        return "never"

    rt, publish, finished = held_runtime(slow, "agent_message_delta", timeout_s=0.1)
    started = rt.start_run(ALICE, "x", message_id="m1", thread_id=None)
    await asyncio.wait_for(publish.waiting.wait(), 5)
    await asyncio.sleep(0.2)  # the run's time is up while its first delta is held
    publish.release.set()
    assert await finished.wait(started.run_id) == "timeout"
    events = publish.of(started.run_id)
    assert [e.type for e in events] == ["agent_started", "agent_message_delta", "agent_error"]
    assert [e.seq for e in events] == [1, 2, 3]
