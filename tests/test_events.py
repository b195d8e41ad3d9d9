"""Wire protocol v1 as types: the one envelope, its payloads, the client frames."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, strategies as st

from runwire.events import (
    CRITICAL_EVENT_TYPES,
    EVENT_TYPES,
    PROTOCOL_VERSION,
    TERMINAL_EVENT_TYPES,
    Ack,
    AgentCompleted,
    AgentError,
    AgentMessageDelta,
    AgentStarted,
    AgentThinking,
    Cancel,
    Connected,
    ErrorFrame,
    Event,
    EventData,
    Limits,
    Ping,
    Pong,
    Refresh,
    Refreshed,
    Resume,
    Resumed,
    ResumeFailed,
    TokenExpiring,
    ToolCompleted,
    ToolExecuting,
    UserMessage,
    decode_client_frame,
    decode_envelope,
    encode,
    encode_envelope,
)

ENVELOPE_KEYS = ["type", "offset", "run_id", "thread_id", "seq", "ts", "data"]
TS = 1_700_000_000_123


def make_event(data: EventData, seq: int = 1) -> Event:
    return Event.of(data, run_id="r_1", thread_id="t_1", seq=seq, ts=TS)


def decoded(payload: bytes) -> dict[str, Any]:
    value = json.loads(payload)
    assert isinstance(value, dict)
    return value


# -- the envelope ------------------------------------------------------------------


def test_envelope_key_order_is_exact() -> None:
    frame = decoded(encode_envelope(make_event(AgentThinking("hmm"), seq=4), 17))
    assert list(frame) == ENVELOPE_KEYS
    assert frame == {
        "type": "agent_thinking",
        "offset": 17,
        "run_id": "r_1",
        "thread_id": "t_1",
        "seq": 4,
        "ts": TS,
        "data": {"text": "hmm"},
    }


def test_envelope_offset_comes_from_the_argument_not_the_event() -> None:
    event = make_event(AgentMessageDelta("a"))
    assert decoded(encode_envelope(event, 1))["offset"] == 1
    assert decoded(encode_envelope(event, 99))["offset"] == 99


def test_envelope_is_compact_json_text() -> None:
    payload = encode_envelope(make_event(AgentMessageDelta("ü")), 1)
    assert isinstance(payload, bytes)
    assert payload.startswith(b'{"type":"agent_message_delta",')
    assert b" " not in payload
    assert payload.decode("utf-8")  # valid UTF-8 text frame


DATA_SHAPES: list[tuple[EventData, str, dict[str, Any]]] = [
    (AgentStarted(agent="demo", input="hi"), "agent_started", {"agent": "demo", "input": "hi"}),
    (AgentThinking(text="pondering"), "agent_thinking", {"text": "pondering"}),
    (
        ToolExecuting(call_id="c1", tool="search", args={"q": "x", "n": 3}),
        "tool_executing",
        {"call_id": "c1", "tool": "search", "args": {"q": "x", "n": 3}},
    ),
    (
        ToolCompleted(call_id="c1", tool="search", ok=True, duration_ms=1.5, result=[1, 2]),
        "tool_completed",
        {"call_id": "c1", "tool": "search", "ok": True, "duration_ms": 1.5, "result": [1, 2]},
    ),
    (
        ToolCompleted(call_id="c1", tool="search", ok=False, duration_ms=2.0, error="boom"),
        "tool_completed",
        {"call_id": "c1", "tool": "search", "ok": False, "duration_ms": 2.0, "error": "boom"},
    ),
    (AgentMessageDelta(text="Hel"), "agent_message_delta", {"text": "Hel"}),
    (
        AgentCompleted(output="done", status="completed"),
        "agent_completed",
        {"output": "done", "status": "completed"},
    ),
    (
        AgentCompleted(output="", status="cancelled"),
        "agent_completed",
        {"output": "", "status": "cancelled"},
    ),
    (
        AgentError(code="timeout", message="run timed out"),
        "agent_error",
        {"code": "timeout", "message": "run timed out"},
    ),
]


@pytest.mark.parametrize(
    ("data", "type_", "shape"),
    DATA_SHAPES,
    ids=[f"{t}-{i}" for i, (_, t, _) in enumerate(DATA_SHAPES)],
)
def test_payload_data_shape(data: EventData, type_: str, shape: dict[str, Any]) -> None:
    frame = decoded(encode_envelope(make_event(data), 1))
    assert frame["type"] == type_
    assert frame["data"] == shape
    assert list(frame["data"]) == list(shape)  # field order is part of the wire format


def test_tool_completed_ok_has_result_and_no_error() -> None:
    data = decoded(encode(ToolCompleted("c", "t", True, 0.1, result={"k": "v"})))
    assert data["result"] == {"k": "v"}
    assert "error" not in data


def test_tool_completed_ok_with_none_result_still_has_result_key() -> None:
    data = decoded(encode(ToolCompleted("c", "t", True, 0.1, result=None)))
    assert "result" in data
    assert data["result"] is None
    assert "error" not in data


def test_tool_completed_failure_has_error_and_no_result() -> None:
    data = decoded(encode(ToolCompleted("c", "t", False, 0.1, error="no such key")))
    assert data["error"] == "no such key"
    assert "result" not in data


def test_every_payload_class_has_one_wire_type() -> None:
    assert set(EVENT_TYPES.values()) == {
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_message_delta",
        "agent_completed",
        "agent_error",
    }
    assert len(set(EVENT_TYPES.values())) == len(EVENT_TYPES)
    assert {type(data) for data, _, _ in DATA_SHAPES} == set(EVENT_TYPES)


# -- Event ---------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "type_"), [(d, t) for d, t, _ in DATA_SHAPES])
def test_event_of_derives_the_type(data: EventData, type_: str) -> None:
    event = Event.of(data, run_id="r_9", thread_id="t_9", seq=3, ts=5)
    assert event.type == type_
    assert (event.run_id, event.thread_id, event.seq, event.ts) == ("r_9", "t_9", 3, 5)
    assert event.data is data


@pytest.mark.parametrize(("data", "type_"), [(d, t) for d, t, _ in DATA_SHAPES])
def test_event_is_terminal_only_for_completed_and_error(data: EventData, type_: str) -> None:
    assert make_event(data).is_terminal is (type_ in {"agent_completed", "agent_error"})


def test_critical_event_types_are_the_five_names() -> None:
    assert CRITICAL_EVENT_TYPES == (
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    )
    assert set(CRITICAL_EVENT_TYPES) <= set(EVENT_TYPES.values())
    assert TERMINAL_EVENT_TYPES == {"agent_completed", "agent_error"}
    assert PROTOCOL_VERSION == 1


def test_event_is_immutable() -> None:
    event = make_event(AgentThinking("x"))
    with pytest.raises(AttributeError):
        event.seq = 2  # type: ignore[misc]


# -- round trip ---------------------------------------------------------------------


@pytest.mark.parametrize(("data", "shape"), [(d, s) for d, _, s in DATA_SHAPES])
def test_envelope_round_trip(data: EventData, shape: dict[str, Any]) -> None:
    event = make_event(data, seq=7)
    envelope = decode_envelope(encode_envelope(event, 42))
    assert envelope.type == event.type
    assert envelope.offset == 42
    assert envelope.run_id == "r_1"
    assert envelope.thread_id == "t_1"
    assert envelope.seq == 7
    assert envelope.ts == TS
    assert envelope.data == shape


def test_decode_envelope_accepts_str() -> None:
    payload = encode_envelope(make_event(AgentThinking("x")), 3).decode()
    assert decode_envelope(payload).offset == 3


def test_decode_envelope_rejects_a_missing_field() -> None:
    frame = decoded(encode_envelope(make_event(AgentThinking("x")), 3))
    del frame["offset"]
    with pytest.raises(msgspec.ValidationError, match="offset"):
        decode_envelope(json.dumps(frame))


@given(
    text=st.text(max_size=200),
    offset=st.integers(min_value=1, max_value=2**53),
    seq=st.integers(min_value=1, max_value=2**31),
    ts=st.integers(min_value=0, max_value=2**50),
)
def test_envelope_round_trip_any_text(text: str, offset: int, seq: int, ts: int) -> None:
    event = Event.of(AgentMessageDelta(text), run_id="r", thread_id="t", seq=seq, ts=ts)
    payload = encode_envelope(event, offset)
    envelope = decode_envelope(payload)
    assert (envelope.offset, envelope.seq, envelope.ts) == (offset, seq, ts)
    assert envelope.data == {"text": text}
    assert list(json.loads(payload)) == ENVELOPE_KEYS


# -- server frames ---------------------------------------------------------------------

LIMITS = Limits(
    max_frame_bytes=65536, max_message_chars=16000, messages_per_s=20.0, max_concurrent_runs=3
)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            Connected("c_1", "alice", "ep", 5, PROTOCOL_VERSION, LIMITS),
            {
                "type": "connected",
                "connection_id": "c_1",
                "user_id": "alice",
                "epoch": "ep",
                "offset": 5,
                "protocol": 1,
                "limits": {
                    "max_frame_bytes": 65536,
                    "max_message_chars": 16000,
                    "messages_per_s": 20.0,
                    "max_concurrent_runs": 3,
                },
            },
        ),
        (
            Connected("c_1", "alice", "ep", 5, PROTOCOL_VERSION, LIMITS, expires_at=1_900_000_000),
            {
                "type": "connected",
                "connection_id": "c_1",
                "user_id": "alice",
                "epoch": "ep",
                "offset": 5,
                "protocol": 1,
                "limits": {
                    "max_frame_bytes": 65536,
                    "max_message_chars": 16000,
                    "messages_per_s": 20.0,
                    "max_concurrent_runs": 3,
                },
                "expires_at": 1_900_000_000,
            },
        ),
        (TokenExpiring(1_900_000_000), {"type": "token_expiring", "expires_at": 1_900_000_000}),
        (
            Refreshed("r1", 1_900_000_000),
            {"type": "refreshed", "id": "r1", "expires_at": 1_900_000_000},
        ),
        (Ack("m1", "r_1", "t_1"), {"type": "ack", "id": "m1", "run_id": "r_1", "thread_id": "t_1"}),
        (Resumed("ep", 3, 9), {"type": "resumed", "epoch": "ep", "from": 3, "to": 9}),
        (
            ResumeFailed("out_of_window", "ep", 9),
            {"type": "resume_failed", "reason": "out_of_window", "epoch": "ep", "offset": 9},
        ),
        (Pong("p1"), {"type": "pong", "id": "p1"}),
        (
            ErrorFrame("not_found", "no such run", "m2"),
            {"type": "error", "code": "not_found", "message": "no such run", "ref": "m2"},
        ),
        (
            ErrorFrame("busy", "try later"),
            {"type": "error", "code": "busy", "message": "try later", "ref": None},
        ),
    ],
)
def test_server_frames_put_type_first(frame: msgspec.Struct, expected: dict[str, Any]) -> None:
    value = decoded(encode(frame))
    assert value == expected
    assert list(value)[0] == "type"


# -- client frames ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            b'{"type":"user_message","id":"m1","thread_id":"t_1","content":"hi"}',
            UserMessage(id="m1", content="hi", thread_id="t_1"),
        ),
        (
            b'{"type":"user_message","id":"m1","content":"hi"}',
            UserMessage(id="m1", content="hi", thread_id=None),
        ),
        (b'{"type":"resume","epoch":"ep","offset":0}', Resume(epoch="ep", offset=0)),
        (b'{"type":"resume","offset":12,"epoch":"ep"}', Resume(epoch="ep", offset=12)),
        (b'{"type":"cancel","run_id":"r_1"}', Cancel(run_id="r_1", id=None)),
        (b'{"type":"cancel","run_id":"r_1","id":"c1"}', Cancel(run_id="r_1", id="c1")),
        (b'{"type":"ping","id":"p1"}', Ping(id="p1")),
        ('{"type":"ping","id":"p\u00e9"}', Ping(id="p\u00e9")),
        (b'{"type":"refresh","token":"a.b.c"}', Refresh(token="a.b.c", id=None)),
        (b'{"type":"refresh","token":"a.b.c","id":"f1"}', Refresh(token="a.b.c", id="f1")),
    ],
)
def test_decode_client_frame_accepts_each_frame(payload: bytes | str, expected: object) -> None:
    frame = decode_client_frame(payload)
    assert type(frame) is type(expected)
    assert frame == expected


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ('{"type":"launch_missiles"}', "type"),
        ('{"id":"m1","content":"hi"}', "type"),
        ('{"type":"user_message","content":"hi"}', "id"),
        ('{"type":"user_message","id":"m1"}', "content"),
        ('{"type":"user_message","id":"","content":"hi"}', "id"),
        ('{"type":"user_message","id":"' + "m" * 129 + '","content":"hi"}', "id"),
        ('{"type":"user_message","id":"m1","content":5}', "content"),
        ('{"type":"user_message","id":"m1","content":"x","thread_id":"has space"}', "thread_id"),
        ('{"type":"user_message","id":"m1","content":"x","thread_id":""}', "thread_id"),
        ('{"type":"user_message","id":5,"content":"x"}', "id"),
        ('{"type":"resume","epoch":"ep"}', "offset"),
        ('{"type":"resume","offset":1}', "epoch"),
        ('{"type":"resume","epoch":"ep","offset":-1}', "offset"),
        ('{"type":"resume","epoch":"ep","offset":"3"}', "offset"),
        ('{"type":"cancel"}', "run_id"),
        ('{"type":"cancel","run_id":"' + "r" * 129 + '"}', "run_id"),
        ('{"type":"ping"}', "id"),
        ('{"type":"ping","id":null}', "id"),
        ('["ping"]', ""),
        ('"ping"', ""),
    ],
)
def test_decode_client_frame_rejects_invalid_frames(payload: str, field: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        decode_client_frame(payload)
    assert field in str(info.value)


@pytest.mark.parametrize("payload", ["", "{", "not json", '{"type":"ping",}'])
def test_decode_client_frame_rejects_non_json(payload: str) -> None:
    with pytest.raises(msgspec.DecodeError) as info:
        decode_client_frame(payload)
    assert not isinstance(info.value, msgspec.ValidationError)


def test_client_frame_types_cannot_be_server_frames() -> None:
    for server_type in ("connected", "ack", "pong", "error", "agent_started"):
        with pytest.raises(msgspec.ValidationError):
            decode_client_frame(json.dumps({"type": server_type, "id": "x"}))


def test_a_refresh_frame_never_shows_its_token() -> None:
    frame = decode_client_frame(b'{"type":"refresh","token":"secret.jwt.value","id":"f1"}')
    assert "secret" not in repr(frame) and "secret" not in str(frame)
