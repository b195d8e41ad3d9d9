"""The AG-UI and AI SDK translators over realistic runs: mapping, the clients' rules,
determinism, and resume (from any event id: exactly the suffix)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ag_ui.core import BaseEvent

from runwire.events import AgentMessageDelta, AgentStarted, Event
from runwire.frontends import EventId, Frame, RunTranslator
from runwire.frontends.agui import AguiTranslator
from runwire.frontends.aisdk import DONE, UiMessageTranslator, message_id
from runwire.ids import Epoch
from tests.frontends.runs import FULL, RUNS, Run, run_of

EPOCH = Epoch("e0e0e0e0e0e0")
TRANSLATORS: dict[str, type[RunTranslator[Any]]] = {
    "agui": AguiTranslator,
    "aisdk": UiMessageTranslator,
}


def frames(kind: str, run: Run, after: EventId | None = None) -> list[Frame[Any]]:
    translator = TRANSLATORS[kind](EPOCH, after=after)
    out = [frame for offset, event in run for frame in translator.feed(offset, event)]
    assert translator.done is run[-1][1].is_terminal
    return out


def payload(frame: Frame[Any]) -> dict[str, Any]:
    """The JSON of a frame's ``data:`` line."""
    lines = frame.sse.split("\n")
    assert lines[0] == f"id: {frame.event_id.format()}"
    assert lines[1].startswith("data: ")
    parsed: dict[str, Any] = json.loads(lines[1].removeprefix("data: "))
    return parsed


def agui_types(run: Run) -> list[str]:
    return [payload(frame)["type"] for frame in frames("agui", run)]


def nulls(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v is None or nulls(v) for v in value.values())
    if isinstance(value, list):
        return any(nulls(v) for v in value)
    return False


def check_agui_rules(events: list[dict[str, Any]]) -> None:
    """The rules of @ag-ui/client's verifyEvents that a runwire stream can meet or break
    (the real verifier runs on the same streams in test_official_clients)."""
    assert events[0]["type"] == "RUN_STARTED"
    open_text: set[str] = set()
    open_reasoning: set[str] = set()
    open_tools: set[str] = set()
    for index, event in enumerate(events):
        kind = event["type"]
        if kind in ("RUN_FINISHED", "RUN_ERROR"):
            assert index == len(events) - 1, "events after the terminal event"
            if kind == "RUN_FINISHED":
                assert not (open_text or open_reasoning or open_tools)
        for prefix, opened, key in (
            ("TEXT_MESSAGE_", open_text, "messageId"),
            ("REASONING_MESSAGE_", open_reasoning, "messageId"),
            ("TOOL_CALL_", open_tools, "toolCallId"),
        ):
            if not kind.startswith(prefix) or kind == "TOOL_CALL_RESULT":
                continue
            ident = event[key]
            if kind.endswith("_START"):
                assert ident not in opened, f"{ident} opened twice"
                opened.add(ident)
            else:
                assert ident in opened, f"{kind} for {ident}, which is not open"
                if kind.endswith("_END"):
                    opened.remove(ident)


# ---------------------------------------------------------------------------
# AG-UI
# ---------------------------------------------------------------------------


def test_agui_maps_a_full_run_in_the_issue_s_order() -> None:
    assert agui_types(FULL) == [
        "RUN_STARTED",
        *["REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT", "REASONING_MESSAGE_END"] * 2,
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]


def test_agui_fields_are_camel_case_with_millisecond_timestamps_and_runwire_metadata() -> None:
    events = [payload(frame) for frame in frames("agui", FULL)]
    ts_of = {event.seq: event.ts for _, event in FULL}
    for event in events:
        assert event["timestamp"] == ts_of[event["metadata"]["runwire"]["seq"]]
        assert isinstance(event["timestamp"], int)
        assert not nulls(event), event
        assert not [key for key in event if "_" in key], event
    started, finished = events[0], events[-1]
    assert started == {
        "type": "RUN_STARTED",
        "timestamp": FULL[0][1].ts,
        "threadId": "t_1",
        "runId": "r_1",
        "metadata": {
            "runwire": {
                "seq": 1,
                "event": "agent_started",
                "agent": "researcher",
                "input": "how many orders shipped?",
            }
        },
    }
    assert finished["result"] == "Three orders shipped; the mail could not be sent."
    assert finished["outcome"] == {"type": "success"}
    args = next(e for e in events if e["type"] == "TOOL_CALL_ARGS")
    assert json.loads(args["delta"]) == {"query": "select count(*) from orders", "limit": 1}
    results = [e for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert [r["content"] for r in results] == ['{"rows":[[3]]}', "smtp unavailable"]
    assert results[1]["metadata"]["runwire"] == {
        "seq": 7,
        "event": "tool_completed",
        "ok": False,
        "durationMs": 3.0,
        "error": "smtp unavailable",
    }


def test_agui_a_string_result_is_the_content_as_is() -> None:
    events = [payload(f) for f in frames("agui", RUNS["answer only in agent_completed"])]
    (result,) = [e for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert result["content"] == "pong"


def test_agui_a_cancelled_run_finishes_with_the_cancelled_outcome_and_its_output() -> None:
    events = [payload(f) for f in frames("agui", RUNS["cancelled mid-answer"])]
    assert events[-2:] == [
        {**events[-2], "type": "TEXT_MESSAGE_END"},
        {
            **events[-1],
            "type": "RUN_FINISHED",
            "result": "The sea ",
            "outcome": {"type": "cancelled"},
        },
    ]
    assert events[-1]["metadata"]["runwire"]["status"] == "cancelled"


def test_agui_an_error_closes_the_open_text_message_then_run_error() -> None:
    events = [payload(f) for f in frames("agui", RUNS["error after text"])]
    assert [e["type"] for e in events][-2:] == ["TEXT_MESSAGE_END", "RUN_ERROR"]
    assert {k: events[-1][k] for k in ("message", "code")} == {
        "message": "the agent failed",
        "code": "agent_failed",
    }


def test_agui_an_answer_that_came_only_in_agent_completed_is_one_text_message() -> None:
    types = agui_types(RUNS["answer only in agent_completed"])
    assert types[-4:] == [
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    assert "REASONING_MESSAGE_CONTENT" not in types  # an empty thinking step has no content


@pytest.mark.parametrize("name", RUNS)
def test_every_agui_stream_keeps_the_client_s_rules(name: str) -> None:
    check_agui_rules([payload(frame) for frame in frames("agui", RUNS[name])])


def test_agui_items_are_ag_ui_protocol_models() -> None:
    assert all(isinstance(frame.item, BaseEvent) for frame in frames("agui", FULL))


# ---------------------------------------------------------------------------
# AI SDK
# ---------------------------------------------------------------------------


def test_aisdk_maps_a_full_run_to_ui_message_chunks() -> None:
    chunks = [payload(frame) for frame in frames("aisdk", FULL)]
    assert chunks == [
        {
            "type": "start",
            "messageId": "r_1.assistant",
            "messageMetadata": {
                "runwire": {"runId": "r_1", "threadId": "t_1", "agent": "researcher"}
            },
        },
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r_1.2.reasoning"},
        {
            "type": "reasoning-delta",
            "id": "r_1.2.reasoning",
            "delta": "The user asks about orders.",
        },
        {"type": "reasoning-end", "id": "r_1.2.reasoning"},
        {"type": "reasoning-start", "id": "r_1.3.reasoning"},
        {"type": "reasoning-delta", "id": "r_1.3.reasoning", "delta": "I will query the database."},
        {"type": "reasoning-end", "id": "r_1.3.reasoning"},
        {
            "type": "tool-input-available",
            "toolCallId": "call_a",
            "toolName": "sql",
            "input": {"query": "select count(*) from orders", "limit": 1},
            "dynamic": True,
        },
        {
            "type": "tool-output-available",
            "toolCallId": "call_a",
            "output": {"rows": [[3]]},
            "dynamic": True,
        },
        {
            "type": "tool-input-available",
            "toolCallId": "call_b",
            "toolName": "mail",
            "input": {"to": "ops"},
            "dynamic": True,
        },
        {
            "type": "tool-output-error",
            "toolCallId": "call_b",
            "errorText": "smtp unavailable",
            "dynamic": True,
        },
        {"type": "text-start", "id": "r_1.8.text"},
        {"type": "text-delta", "id": "r_1.8.text", "delta": "Three orders "},
        {"type": "text-delta", "id": "r_1.8.text", "delta": "shipped; the mail "},
        {"type": "text-delta", "id": "r_1.8.text", "delta": "could not be sent."},
        {"type": "text-end", "id": "r_1.8.text"},
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": "stop",
            "messageMetadata": {"runwire": {"status": "completed"}},
        },
    ]
    assert message_id("r_1") == chunks[0]["messageId"]


def test_aisdk_text_parts_follow_the_order_of_events() -> None:
    chunks = [payload(f)["type"] for f in frames("aisdk", RUNS["cancelled mid-answer"])]
    assert chunks[chunks.index("text-start") :] == [
        "text-start",
        "text-delta",
        "text-end",  # the tool call that follows ends the text part
        "tool-input-available",
        "tool-output-error",
        "finish-step",
        "abort",
        "finish",
    ]


def test_aisdk_error_and_the_done_line_only_after_the_terminal_event() -> None:
    out = frames("aisdk", RUNS["error after text"])
    assert [payload(f)["type"] for f in out][-4:] == ["text-end", "finish-step", "error", "finish"]
    assert payload(out[-2])["errorText"] == "the agent failed"
    assert out[-1].sse.endswith(DONE)
    assert all(DONE not in frame.sse for frame in out[:-1])
    unfinished = frames("aisdk", RUNS["error after text"][:-1])
    assert all(DONE not in frame.sse for frame in unfinished)


# ---------------------------------------------------------------------------
# Both: framing, determinism, replay, resume
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSLATORS)
@pytest.mark.parametrize("name", RUNS)
def test_the_stream_is_lf_framed_with_an_id_per_block(kind: str, name: str) -> None:
    text = "".join(frame.sse for frame in frames(kind, RUNS[name]))
    assert "\r" not in text
    blocks = text.removesuffix(DONE).split("\n\n")
    assert blocks.pop() == ""
    run = RUNS[name]
    offsets = {offset for offset, _ in run}
    for block in blocks:
        id_line, data_line = block.split("\n")
        event_id = EventId.parse(id_line.removeprefix("id: "))
        assert event_id.epoch == EPOCH and event_id.offset in offsets
        assert data_line.startswith("data: {")


@pytest.mark.parametrize("kind", TRANSLATORS)
def test_a_replay_is_byte_identical_to_the_live_stream(kind: str) -> None:
    first = "".join(f.sse for f in frames(kind, FULL))
    assert first == "".join(f.sse for f in frames(kind, FULL))


@pytest.mark.parametrize("kind", TRANSLATORS)
@pytest.mark.parametrize("name", RUNS)
def test_resuming_after_any_event_id_gives_exactly_the_rest(kind: str, name: str) -> None:
    run = RUNS[name]
    full = frames(kind, run)
    for index, frame in enumerate(full):
        after = EventId.parse(frame.event_id.format())
        assert frames(kind, run, after) == full[index + 1 :], frame.event_id


@pytest.mark.parametrize("kind", TRANSLATORS)
def test_resuming_before_the_run_gives_all_of_it_and_after_it_nothing(kind: str) -> None:
    full = frames(kind, FULL)
    assert frames(kind, FULL, EventId(EPOCH, 0)) == full
    assert frames(kind, FULL, EventId(EPOCH, FULL[-1][0])) == []


@pytest.mark.parametrize("kind", TRANSLATORS)
def test_a_duplicate_or_an_event_after_the_end_adds_nothing(kind: str) -> None:
    translator = TRANSLATORS[kind](EPOCH)
    for offset, event in FULL:
        assert translator.feed(offset, event)
        assert translator.feed(offset, event) == []  # live delivery overlapping the replay
    late = run_of(*(event.data for _, event in FULL), AgentMessageDelta("late"))[-1]
    assert translator.feed(*late) == []


@pytest.mark.parametrize("kind", TRANSLATORS)
def test_events_of_another_run_are_refused(kind: str) -> None:
    translator = TRANSLATORS[kind](EPOCH)
    translator.feed(*FULL[0])
    other = run_of(AgentStarted("demo", "x"), run_id="r_2")[0]
    with pytest.raises(ValueError, match="r_2"):
        translator.feed(*other)


@pytest.mark.parametrize("kind", TRANSLATORS)
def test_an_event_id_of_another_epoch_is_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="epoch"):
        TRANSLATORS[kind](EPOCH, after=EventId(Epoch("ffffffffffff"), 3))


def test_fed_from_an_offset_the_stream_still_opens_and_keeps_the_rules() -> None:
    suffix = FULL[6:]  # the run's start is out of the history window
    events = [payload(f) for f in frames("agui", suffix)]
    assert events[0]["type"] == "RUN_STARTED"
    assert events[0]["metadata"]["runwire"]["partial"] is True
    check_agui_rules(events)
    chunks = [payload(f) for f in frames("aisdk", suffix)]
    assert [c["type"] for c in chunks[:2]] == ["start", "start-step"]
    assert chunks[0]["messageMetadata"]["runwire"]["partial"] is True


def test_event_ids_parse_and_format() -> None:
    assert EventId.parse("abc123:42") == EventId(Epoch("abc123"), 42)
    assert EventId.parse(" abc123:42.2 ").format() == "abc123:42.2"
    assert EventId.parse("abc123:42.2").resume_request().offset == 41
    assert EventId.parse("abc123:42").resume_request().offset == 42
    for bad in ("", "abc", "abc:", ":4", "abc:-1", "abc:4.0", "abc:4.x", "a b:4"):
        with pytest.raises(ValueError):
            EventId.parse(bad)


def test_sse_helpers_refuse_line_breaks() -> None:
    from runwire.frontends.sse import HEARTBEAT, comment, data_block

    assert data_block('{"a":1}') == 'data: {"a":1}\n\n'
    assert HEARTBEAT.startswith(":") and HEARTBEAT.endswith("\n\n")
    assert comment("end: resume from e:4") == ": end: resume from e:4\n\n"
    for bad in ("a\nb", "a\rb"):
        with pytest.raises(ValueError):
            data_block(bad)
        with pytest.raises(ValueError):
            comment(bad)


def test_events_are_the_runwire_events_of_the_run() -> None:
    assert all(isinstance(event, Event) for _, event in FULL)
