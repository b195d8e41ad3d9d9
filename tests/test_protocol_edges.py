"""Session edges the main protocol tests leave open: delta coalescing, the exact queue
bounds, ``has_room``, the token bucket's arithmetic and the checks of inbound frames.

Each test names a rule of docs/protocol.md or of :class:`runwire.protocol.Session`;
they were written against the mutants that survived ``make mutate``
(docs/architecture.md, "Mutation testing").
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from runwire.events import (
    AgentMessageDelta,
    AgentStarted,
    Event,
    EventData,
    Ping,
    Pong,
    ToolExecuting,
    UserMessage,
    encode,
    encode_envelope,
)
from runwire.exceptions import CloseCode
from runwire.protocol import (
    CONTROL_RESERVE_BYTES,
    CONTROL_RESERVE_FRAMES,
    MAX_NESTING,
    EventAdmission,
    Session,
    State,
)
from tests import test_protocol

# The session of tests/test_protocol.py, with a queue of 4 frames and more bytes.
LIMITS = dataclasses.replace(test_protocol.LIMITS, queue_events=4, queue_bytes=65_536)
CONNECTED = test_protocol.CONNECTED


def opened(cursor: int = 0, **overrides: Any) -> Session:
    """An OPEN session whose ``connected`` frame was already taken."""
    session = Session(dataclasses.replace(LIMITS, **overrides), cursor=cursor, now=0.0)
    session.open(CONNECTED)
    session.data_to_send()
    return session


def event(data: EventData, seq: int, run_id: str = "r_1") -> Event:
    return Event.of(data, run_id=run_id, thread_id="t_1", seq=seq, ts=1_000 + seq)


def delta(text: str, seq: int, run_id: str = "r_1") -> Event:
    return event(AgentMessageDelta(text), seq, run_id)


def offer(session: Session, offset: int, ev: Event) -> EventAdmission:
    """Offer ``ev`` at ``offset`` as the manager does: encoded, and mergeable."""
    return session.send_event(offset, encode_envelope(ev, offset), ev)


def sent(session: Session) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in session.data_to_send()]


# -- coalescing of deltas when the queue is full -------------------------------------------


def test_a_full_queue_of_deltas_becomes_one_frame_that_says_what_it_stands_for() -> None:
    session = opened()
    for offset, text in enumerate("abcd", start=1):
        assert offer(session, offset, delta(text, offset)) is EventAdmission.QUEUED

    assert offer(session, 5, delta("e", 5)) is EventAdmission.COALESCED

    assert session.coalesced == 3  # four frames became one
    assert session.cursor == 5
    assert session.pending == 2
    frames = session.data_to_send()
    assert session.pending_bytes == 0
    merged, last = (json.loads(frame) for frame in frames)
    assert merged["offset"] == 4 and merged["seq"] == 4 and merged["ts"] == 1_004
    assert merged["data"] == {"text": "abcd", "coalesced_from": 1}
    assert merged["run_id"] == "r_1" and merged["type"] == "agent_message_delta"
    assert last["offset"] == 5 and last["data"] == {"text": "e"}


def test_the_byte_count_after_coalescing_is_the_size_of_what_is_queued() -> None:
    session = opened()
    for offset, text in enumerate("abcd", start=1):
        offer(session, offset, delta(text, offset))
    offer(session, 5, delta("e", 5))
    expected = session.pending_bytes
    assert expected == sum(len(frame) for frame in session.data_to_send())


def test_coalescing_again_keeps_the_first_offset_the_frame_stands_for() -> None:
    session = opened()
    offset = 0
    for text in "abcdefghijkl":
        offset += 1
        assert offer(session, offset, delta(text, offset)) in (
            EventAdmission.QUEUED,
            EventAdmission.COALESCED,
        )
    frames = sent(session)
    assert "".join(frame["data"]["text"] for frame in frames) == "abcdefghijkl"
    # Every merged frame stands for the offsets after the previous frame's, through its own.
    previous = 0
    for frame in frames:
        assert frame["data"].get("coalesced_from", frame["offset"]) == previous + 1
        previous = frame["offset"]
    assert frames[0]["data"]["coalesced_from"] == 1
    assert session.coalesced == 12 - len(frames)


def test_the_coalesced_counter_adds_up_over_many_merges() -> None:
    session = opened()
    for offset in range(1, 5):
        offer(session, offset, delta("x", offset))
    offer(session, 5, delta("x", 5))  # 4 -> 1 (3 merged away), then queued
    assert session.coalesced == 3
    for offset in range(6, 8):
        offer(session, offset, delta("x", offset))
    offer(session, 8, delta("x", 8))  # [merged, 5, 6, 7] -> 1 (3 more)
    assert session.coalesced == 6


def test_deltas_of_different_runs_are_never_merged() -> None:
    session = opened()
    for offset in range(1, 5):
        run_id = "r_a" if offset % 2 else "r_b"
        offer(session, offset, delta(str(offset), offset, run_id))
    assert offer(session, 5, delta("5", 5, "r_a")) is EventAdmission.OVERFLOW
    assert session.state is State.CLOSING
    assert session.close_code == CloseCode.SLOW_CONSUMER
    assert session.coalesced == 0


def test_only_adjacent_deltas_merge_and_other_events_keep_their_place() -> None:
    session = opened(queue_events=6)
    offer(session, 1, event(AgentStarted("demo", "hi"), 1))
    offer(session, 2, event(ToolExecuting("c1", "search", {"q": "x"}), 2))
    offer(session, 3, delta("a", 3))
    offer(session, 4, delta("b", 4))
    offer(session, 5, event(ToolExecuting("c2", "search", {"q": "y"}), 5))
    offer(session, 6, delta("c", 6))

    assert offer(session, 7, delta("d", 7)) is EventAdmission.COALESCED

    frames = sent(session)
    assert [(f["offset"], f["type"]) for f in frames] == [
        (1, "agent_started"),
        (2, "tool_executing"),
        (4, "agent_message_delta"),
        (5, "tool_executing"),
        (6, "agent_message_delta"),
        (7, "agent_message_delta"),
    ]
    assert frames[2]["data"] == {"text": "ab", "coalesced_from": 3}
    assert session.coalesced == 1


def test_a_queue_without_adjacent_deltas_overflows_whatever_the_events() -> None:
    session = opened()
    offer(session, 1, event(AgentStarted("demo", "hi"), 1))
    offer(session, 2, event(ToolExecuting("c1", "search", {}), 2))
    offer(session, 3, event(ToolExecuting("c2", "search", {}), 3))
    offer(session, 4, delta("a", 4))
    assert offer(session, 5, delta("b", 5)) is EventAdmission.OVERFLOW
    assert session.close_code == CloseCode.SLOW_CONSUMER


def test_frames_given_without_their_event_are_never_merged() -> None:
    session = opened()
    for offset in range(1, 5):
        assert session.send_event(offset, encode_envelope(delta("x", offset), offset)) is (
            EventAdmission.QUEUED
        )
    assert offer(session, 5, delta("x", 5)) is EventAdmission.OVERFLOW


def test_a_reply_between_deltas_keeps_them_apart() -> None:
    session = opened()
    offer(session, 1, delta("a", 1))
    assert session.send_frame(Pong("p1"))
    offer(session, 2, delta("b", 2))
    offer(session, 3, delta("c", 3))
    assert offer(session, 4, delta("d", 4)) is EventAdmission.COALESCED
    frames = sent(session)
    assert [f["type"] for f in frames] == [
        "agent_message_delta",
        "pong",
        "agent_message_delta",
        "agent_message_delta",
    ]
    assert frames[0]["data"] == {"text": "a"}
    assert frames[2]["data"] == {"text": "bc", "coalesced_from": 2}


def test_a_queue_full_in_bytes_coalesces_too() -> None:
    one = len(encode_envelope(delta("x" * 100, 1), 1))
    session = opened(queue_events=100, queue_bytes=3 * one + 10)
    for offset in range(1, 4):
        assert offer(session, offset, delta("x" * 100, offset)) is EventAdmission.QUEUED
    assert offer(session, 4, delta("x" * 100, 4)) is EventAdmission.COALESCED
    assert session.pending == 2
    assert session.state is State.OPEN


def test_a_reply_to_a_full_queue_of_deltas_coalesces_instead_of_closing() -> None:
    session = opened(queue_events=100, queue_bytes=1_000)
    frame_size = len(encode_envelope(delta("x" * 200, 1), 1))
    offset = 0
    while session.pending_bytes + frame_size <= 1_000:
        offset += 1
        assert offer(session, offset, delta("x" * 200, offset)) is EventAdmission.QUEUED
    # One byte over the reserve for replies: the queued deltas are merged to make room.
    room = 1_000 + CONTROL_RESERVE_BYTES - session.pending_bytes - len(encode(Pong("")))
    assert session.send_frame(Pong("p" * (room + 1)))
    assert session.state is State.OPEN
    assert session.coalesced == offset - 1


# -- the exact bounds ------------------------------------------------------------------------


def test_has_room_says_whether_the_next_frame_fits() -> None:
    session = opened(queue_events=3, queue_bytes=100)
    assert session.has_room(100)
    assert not session.has_room(101)
    session.send_frame(Pong("p"))  # 25 bytes
    size = session.pending_bytes
    assert session.has_room(100 - size)
    assert not session.has_room(101 - size)
    session.send_frame(Pong("q"))
    assert session.has_room(1)
    session.send_frame(Pong("r"))
    assert not session.has_room(1)  # three frames: the frame bound
    session.data_to_send()
    assert session.has_room(100)


def test_replies_fit_exactly_up_to_the_reserves() -> None:
    session = opened(queue_events=2, queue_bytes=10_000)
    for index in range(2 + CONTROL_RESERVE_FRAMES):
        assert session.send_frame(Pong(f"{index}")), index
    assert session.send_frame(Pong("one too many")) is False
    assert session.close_code == CloseCode.SLOW_CONSUMER


def test_a_reply_of_exactly_the_byte_reserve_fits() -> None:
    empty = len(encode(Pong("")))
    session = opened(queue_events=100, queue_bytes=100)
    assert session.send_frame(Pong("x" * (100 + CONTROL_RESERVE_BYTES - empty)))
    assert session.pending_bytes == 100 + CONTROL_RESERVE_BYTES
    assert session.state is State.OPEN
    assert session.send_frame(Pong("")) is False


def test_send_frame_returns_true_when_queued() -> None:
    session = opened()
    assert session.send_frame(Pong("p")) is True
    assert session.send_error("busy", "later", "m1") is True
    assert [f["type"] for f in sent(session)] == ["pong", "error"]


def test_nothing_is_queued_on_a_closing_session() -> None:
    session = opened()
    session.close(CloseCode.GOING_AWAY, "bye")
    assert session.send_frame(Pong("p")) is False
    assert session.send_error("x", "y") is False
    assert session.pending == 0


def test_replies_queued_while_connecting_follow_connected() -> None:
    session = Session(LIMITS, cursor=0, now=0.0)
    assert session.send_frame(Pong("early")) is True
    session.open(CONNECTED)
    assert session.pending_bytes == len(encode(CONNECTED)) + len(encode(Pong("early")))
    assert [f["type"] for f in sent(session)] == ["connected", "pong"]


def test_the_cursor_moves_only_for_queued_events() -> None:
    session = opened(cursor=10)
    assert session.send_event(11, b"{}") is EventAdmission.QUEUED
    assert session.cursor == 11
    assert session.send_event(13, b"{}") is EventAdmission.GAP
    assert session.send_event(11, b"{}") is EventAdmission.DUPLICATE
    assert session.send_event(10, b"{}") is EventAdmission.DUPLICATE
    assert session.cursor == 11
    assert session.pending_bytes == 2


# -- the token bucket ------------------------------------------------------------------------


def test_a_new_session_has_a_burst_of_twice_the_rate() -> None:
    session = opened(messages_per_s=3.0)
    for _ in range(6):
        session.receive_text(b'{"type":"ping","id":"p"}', 0.0)
    assert session.state is State.OPEN
    session.receive_text(b'{"type":"ping","id":"p"}', 0.0)
    assert session.close_code == CloseCode.RATE_LIMITED


def test_tokens_come_back_at_the_rate_per_second() -> None:
    session = opened(messages_per_s=2.0)
    for _ in range(4):
        session.receive_text(b'{"type":"ping","id":"p"}', 0.0)
    # 0.5 s at 2/s is one token, exactly.
    session.receive_text(b'{"type":"ping","id":"p"}', 0.5)
    assert session.state is State.OPEN
    session.receive_text(b'{"type":"ping","id":"p"}', 0.5)
    assert session.close_code == CloseCode.RATE_LIMITED


def test_less_than_one_token_is_not_enough() -> None:
    session = opened(messages_per_s=2.0)
    for _ in range(4):
        session.receive_text(b'{"type":"ping","id":"p"}', 0.0)
    session.receive_text(b'{"type":"ping","id":"p"}', 0.49)
    assert session.close_code == CloseCode.RATE_LIMITED


def test_the_refill_counts_from_the_last_frame_not_from_the_start() -> None:
    session = opened(messages_per_s=1.0)
    session.receive_text(b'{"type":"ping","id":"p"}', 10.0)  # full bucket (2), one left
    session.receive_text(b'{"type":"ping","id":"p"}', 10.0)  # none left
    session.receive_text(b'{"type":"ping","id":"p"}', 11.0)  # one second: one token
    assert session.state is State.OPEN
    session.receive_text(b'{"type":"ping","id":"p"}', 11.5)  # half a token since 11.0
    assert session.close_code == CloseCode.RATE_LIMITED


# -- inbound checks -------------------------------------------------------------------------


def test_a_valid_frame_is_handed_over_once() -> None:
    session = opened()
    session.receive_text('{"type":"ping","id":"p1"}', 0.0)
    assert session.frames_received() == [Ping("p1")]
    assert session.frames_received() == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[1, 2]", "frame is not an object with a type"),
        (b'{"type": 3}', "frame is not an object with a type"),
        (b'{"id": "x"}', "frame is not an object with a type"),
        (b"{", "frame is not valid JSON"),
    ],
)
def test_frames_that_are_not_typed_objects_close_4400_with_a_reason(
    payload: bytes, reason: str
) -> None:
    session = opened()
    session.receive_text(payload, 0.0)
    assert session.close_code == CloseCode.PROTOCOL_VIOLATION
    assert session.close_reason == reason


def test_an_oversized_frame_says_why() -> None:
    session = opened()
    session.receive_text(b" " * 1025, 0.0)
    assert session.close_code == CloseCode.MESSAGE_TOO_BIG
    assert session.close_reason == "frame larger than max_frame_bytes"


def test_too_many_messages_says_why() -> None:
    session = opened(messages_per_s=0.5)
    session.receive_text(b'{"type":"ping","id":"p"}', 0.0)
    session.receive_text(b'{"type":"ping","id":"p"}', 0.0)
    assert session.close_code == CloseCode.RATE_LIMITED
    assert session.close_reason == "too many messages"


def test_nesting_is_counted_in_objects_as_well_as_arrays() -> None:
    inner = MAX_NESTING - 1
    accepted = '{"type":"ping","id":"p","x":' + '{"a":' * inner + "1" + "}" * inner + "}"
    refused = '{"type":"ping","id":"p","x":' + '{"a":' * MAX_NESTING + "1" + "}" * MAX_NESTING + "}"
    session = opened(max_frame_bytes=65_536)
    session.receive_text(accepted, 0.0)
    assert session.frames_received() == [Ping("p")]
    session.receive_text(refused, 0.0)
    assert session.close_code == CloseCode.PROTOCOL_VIOLATION
    assert session.close_reason == f"frame nests deeper than {MAX_NESTING}"


def test_nesting_of_mixed_arrays_and_objects_at_the_limit_is_accepted() -> None:
    inner = MAX_NESTING - 1
    levels = ['{"a":' if level % 2 else "[" for level in range(inner)]
    closers = ["}" if level % 2 else "]" for level in reversed(range(inner))]
    payload = '{"type":"ping","id":"p","x":' + "".join(levels) + "".join(closers) + "}"
    session = opened(max_frame_bytes=65_536)
    session.receive_text(payload, 0.0)
    assert session.state is State.OPEN
    assert session.frames_received() == [Ping("p")]


def test_nesting_is_the_deepest_branch_not_the_first() -> None:
    deep = "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)
    payload = '{"type":"ping","id":"p","a":[],"b":{"c":1},"d":' + deep + "}"
    session = opened(max_frame_bytes=65_536)
    session.receive_text(payload, 0.0)
    assert session.state is State.OPEN
    deeper = "[" * MAX_NESTING + "]" * MAX_NESTING
    session.receive_text('{"type":"ping","id":"p","a":1,"d":' + deeper + "}", 0.0)
    assert session.close_code == CloseCode.PROTOCOL_VIOLATION


def test_errors_for_invalid_frames_carry_the_string_id_as_ref() -> None:
    session = opened()
    session.receive_text(b'{"type":"user_message","id":"m1"}', 0.0)
    session.receive_text(b'{"type":"user_message","id":7,"content":5}', 0.0)
    errors = sent(session)
    assert [(e["code"], e.get("ref")) for e in errors] == [
        ("invalid_message", "m1"),
        ("invalid_message", None),
    ]
    assert session.frames_received() == []
    assert session.state is State.OPEN


def test_message_length_is_counted_in_characters() -> None:
    session = opened(max_message_chars=3)
    session.receive_text('{"type":"user_message","id":"m1","content":"ééé"}', 0.0)
    session.receive_text('{"type":"user_message","id":"m2","content":"éééé"}', 0.0)
    assert session.frames_received() == [UserMessage("m1", "ééé")]
    [error] = sent(session)
    assert error == {
        "type": "error",
        "code": "message_too_long",
        "message": "content exceeds max_message_chars",
        "ref": "m2",
    }


def test_describe_reports_the_queue() -> None:
    session = opened(cursor=3)
    offer(session, 4, delta("a", 4))
    assert session.describe() == {"state": "OPEN", "cursor": 4, "pending": 1}


def test_deltas_that_fill_the_byte_bound_exactly_are_queued_unmerged() -> None:
    size = len(encode_envelope(delta("x", 1), 1))
    session = opened(queue_events=100, queue_bytes=4 * size)
    for offset in range(1, 5):
        assert offer(session, offset, delta("x", offset)) is EventAdmission.QUEUED
    assert session.pending_bytes == 4 * size
    assert session.coalesced == 0 and session.pending == 4


def test_an_overflow_says_to_resume_from_history() -> None:
    session = opened(queue_events=100, queue_bytes=100)
    assert session.send_event(1, b"x" * 101) is EventAdmission.OVERFLOW
    assert session.close_reason == "outbound queue full; resume from history"
    replies = opened(queue_events=100, queue_bytes=100)
    assert replies.send_frame(Pong("p" * (100 + CONTROL_RESERVE_BYTES))) is False
    assert replies.close_reason == "outbound queue full; resume from history"


def test_a_reply_that_does_not_fit_even_after_coalescing_closes_4409() -> None:
    session = opened(queue_events=100, queue_bytes=1_000)
    for offset in range(1, 4):
        offer(session, offset, delta("x" * 200, offset))
    # Merging the three deltas saves two envelopes, not the kilobytes this reply needs.
    assert session.send_frame(Pong("p" * (CONTROL_RESERVE_BYTES + 900))) is False
    assert session.close_code == CloseCode.SLOW_CONSUMER
    assert session.pending == 0
