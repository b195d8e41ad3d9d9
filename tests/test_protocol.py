"""The sans-I/O Session: no sockets, no event loop, no clock (time is passed in)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from runwire.events import (
    Ack,
    Cancel,
    Connected,
    Limits,
    Ping,
    Pong,
    Resume,
    Resumed,
    UserMessage,
    encode,
)
from runwire.exceptions import CloseCode
from runwire.protocol import (
    CONTROL_RESERVE_BYTES,
    CONTROL_RESERVE_FRAMES,
    MAX_NESTING,
    EventAdmission,
    Session,
    SessionLimits,
    State,
)

LIMITS = SessionLimits(
    max_frame_bytes=1024,
    max_message_chars=100,
    messages_per_s=4.0,
    queue_events=8,
    queue_bytes=4096,
)
CONNECTED = Connected(
    connection_id="c_1",
    user_id="alice",
    epoch="ep",
    offset=0,
    protocol=1,
    limits=Limits(
        max_frame_bytes=1024, max_message_chars=100, messages_per_s=4.0, max_concurrent_runs=3
    ),
)
PING = b'{"type":"ping","id":"p1"}'


def make_session(cursor: int = 0, now: float = 0.0, **overrides: Any) -> Session:
    return Session(dataclasses.replace(LIMITS, **overrides), cursor=cursor, now=now)


def opened(cursor: int = 0, **overrides: Any) -> Session:
    """An OPEN session whose ``connected`` frame was already taken."""
    session = make_session(cursor=cursor, **overrides)
    session.open(CONNECTED)
    assert json.loads(session.data_to_send()[0])["type"] == "connected"
    return session


def sent(session: Session) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in session.data_to_send()]


def event_frame(offset: int, size: int = 0) -> bytes:
    """A fake encoded envelope, padded to ``size`` bytes when given."""
    frame = f'{{"type":"agent_message_delta","offset":{offset},"data":{{"text":""}}}}'.encode()
    if size:
        assert size >= len(frame)
        frame = frame[:-3] + b"x" * (size - len(frame)) + frame[-3:]
        assert len(frame) == size
    return frame


def assert_closed_with(session: Session, code: CloseCode) -> None:
    assert session.state is State.CLOSING
    assert session.close_code == code
    assert session.close_reason
    assert session.pending == 0
    assert session.pending_bytes == 0


# -- states ---------------------------------------------------------------------------


def test_new_session_is_connecting_and_silent() -> None:
    session = make_session(cursor=7)
    assert session.state is State.CONNECTING
    assert session.cursor == 7
    assert session.close_code is None
    assert session.close_reason == ""
    assert session.pending == 0
    assert session.data_to_send() == []
    assert session.frames_received() == []
    assert session.describe() == {"state": "CONNECTING", "cursor": 7, "pending": 0}


def test_open_queues_connected_and_moves_to_open() -> None:
    session = make_session()
    session.open(CONNECTED)
    assert session.state is State.OPEN
    assert session.pending == 1
    assert session.pending_bytes == len(encode(CONNECTED))
    assert session.data_to_send() == [encode(CONNECTED)]


def test_full_lifecycle_connecting_open_closing_closed() -> None:
    session = make_session()
    states = [session.state]
    session.open(CONNECTED)
    states.append(session.state)
    session.close(CloseCode.GOING_AWAY, "bye")
    states.append(session.state)
    session.connection_lost()
    states.append(session.state)
    assert states == [State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED]


def test_open_twice_is_refused() -> None:
    session = opened()
    with pytest.raises(RuntimeError, match="OPEN"):
        session.open(CONNECTED)
    assert session.state is State.OPEN
    assert session.data_to_send() == []


def test_open_after_close_is_refused() -> None:
    session = make_session()
    session.close(CloseCode.PROTOCOL_VIOLATION, "bad")
    with pytest.raises(RuntimeError, match="CLOSING"):
        session.open(CONNECTED)
    assert session.state is State.CLOSING
    assert session.data_to_send() == []


def test_open_after_connection_lost_is_refused() -> None:
    session = make_session()
    session.connection_lost()
    with pytest.raises(RuntimeError, match="CLOSED"):
        session.open(CONNECTED)
    assert session.state is State.CLOSED


def test_close_while_connecting() -> None:
    session = make_session()
    session.close(CloseCode.UNAUTHORIZED, "no token")
    assert_closed_with(session, CloseCode.UNAUTHORIZED)


def test_connection_lost_while_connecting() -> None:
    session = make_session()
    session.connection_lost()
    assert session.state is State.CLOSED
    assert session.close_code is None


def test_close_after_connection_lost_does_not_go_back() -> None:
    session = opened()
    session.connection_lost()
    session.close(CloseCode.GOING_AWAY, "late")
    assert session.state is State.CLOSED
    assert session.close_code is None


_OPS = st.lists(
    st.sampled_from(["open", "close", "lost", "ping", "garbage", "event", "drain", "error", "big"]),
    max_size=30,
)


@given(ops=_OPS)
def test_state_only_moves_forward(ops: list[str]) -> None:
    session = make_session()
    previous = session.state
    offset = 0
    now = 0.0
    for op in ops:
        now += 0.01
        if op == "open":
            if session.state is State.CONNECTING:
                session.open(CONNECTED)
            else:
                with pytest.raises(RuntimeError):
                    session.open(CONNECTED)
        elif op == "close":
            session.close(CloseCode.GOING_AWAY, "x")
        elif op == "lost":
            session.connection_lost()
        elif op == "ping":
            session.receive_text(PING, now)
        elif op == "garbage":
            session.receive_text(b"nope", now)
        elif op == "event":
            if session.send_event(offset + 1, event_frame(offset + 1)) is EventAdmission.QUEUED:
                offset += 1
        elif op == "drain":
            session.data_to_send()
        elif op == "error":
            session.send_error("oops", "x")
        elif op == "big":
            session.receive_text(b" " * 2000, now)
        assert session.state >= previous
        if session.state >= State.CLOSING:
            assert session.pending == 0
        previous = session.state
    assert session.cursor == offset


# -- early frames ------------------------------------------------------------------------


def test_frames_received_while_connecting_are_delivered_after_open() -> None:
    session = make_session()
    session.receive_text(b'{"type":"resume","epoch":"ep","offset":3}', 0.0)
    session.receive_text(PING, 0.0)
    session.open(CONNECTED)
    assert session.frames_received() == [Resume(epoch="ep", offset=3), Ping(id="p1")]
    assert session.frames_received() == []


def test_connected_is_first_even_if_an_error_was_queued_before_open() -> None:
    session = make_session()
    session.receive_text(b'{"type":"bogus","id":"m1"}', 0.0)
    session.send_frame(Pong("p0"))
    assert session.pending == 2
    session.open(CONNECTED)
    frames = sent(session)
    assert [frame["type"] for frame in frames] == ["connected", "error", "pong"]
    assert frames[1]["ref"] == "m1"


def test_events_are_not_accepted_before_open() -> None:
    session = make_session()
    assert session.send_event(1, event_frame(1)) is EventAdmission.CLOSED
    assert session.cursor == 0
    session.open(CONNECTED)
    assert session.send_event(1, event_frame(1)) is EventAdmission.QUEUED
    assert session.data_to_send() == [encode(CONNECTED), event_frame(1)]


# -- inbound validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            '{"type":"user_message","id":"m1","thread_id":"t_1","content":"hi"}',
            UserMessage(id="m1", content="hi", thread_id="t_1"),
        ),
        ('{"type":"resume","epoch":"ep","offset":2}', Resume(epoch="ep", offset=2)),
        ('{"type":"cancel","run_id":"r_1","id":"c1"}', Cancel(run_id="r_1", id="c1")),
        ('{"type":"ping","id":"p1"}', Ping(id="p1")),
    ],
)
def test_valid_frames_are_parsed(payload: str, expected: object) -> None:
    session = opened()
    session.receive_text(payload, 0.0)
    session.receive_text(payload.encode(), 0.0)
    assert session.frames_received() == [expected, expected]
    assert session.data_to_send() == []
    assert session.state is State.OPEN


def test_frames_received_keeps_order_and_drains() -> None:
    session = opened()
    for index in range(5):
        session.receive_text(f'{{"type":"ping","id":"p{index}"}}', 0.0)
    assert session.frames_received() == [Ping(id=f"p{index}") for index in range(5)]
    assert session.frames_received() == []


def test_oversized_frame_closes_1009() -> None:
    session = opened()
    payload = b'{"type":"ping","id":"p1"}'.ljust(LIMITS.max_frame_bytes + 1)
    session.receive_text(payload, 0.0)
    assert_closed_with(session, CloseCode.MESSAGE_TOO_BIG)
    assert session.frames_received() == []


def test_frame_of_exactly_max_frame_bytes_is_accepted() -> None:
    session = opened()
    payload = b'{"type":"ping","id":"p1"}'.ljust(LIMITS.max_frame_bytes)
    session.receive_text(payload, 0.0)
    assert session.state is State.OPEN
    assert session.frames_received() == [Ping(id="p1")]


def test_oversized_frame_while_connecting_closes_1009() -> None:
    session = make_session()
    session.receive_text(b"x" * 5000, 0.0)
    assert_closed_with(session, CloseCode.MESSAGE_TOO_BIG)


def test_oversized_frame_is_measured_in_bytes_for_str_payloads() -> None:
    session = opened()
    # Under 1024 characters but over 1024 UTF-8 bytes.
    payload = '{"type":"ping","id":"p1","pad":"' + "\u00e9" * 560 + '"}'
    assert len(payload) <= LIMITS.max_frame_bytes < len(payload.encode())
    session.receive_text(payload, 0.0)
    assert session.close_code == CloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"{",
        b"",
        b'{"type":"ping",}',
        b"[]",
        b'["ping"]',
        b'"ping"',
        b"42",
        b"null",
        b"{}",
        b'{"id":"m1"}',
        b'{"type":5,"id":"m1"}',
        b'{"type":null}',
        b'{"type":{"name":"ping"}}',
    ],
)
def test_protocol_violation_closes_4400(payload: bytes) -> None:
    session = opened()
    session.receive_text(payload, 0.0)
    assert_closed_with(session, CloseCode.PROTOCOL_VIOLATION)
    assert session.frames_received() == []


def test_unknown_type_is_an_error_frame_and_keeps_the_connection() -> None:
    session = opened()
    session.receive_text(b'{"type":"launch","id":"m7"}', 0.0)
    assert session.state is State.OPEN
    assert session.close_code is None
    [frame] = sent(session)
    assert frame["type"] == "error"
    assert frame["code"] == "unknown_type"
    assert frame["ref"] == "m7"
    assert "launch" in frame["message"]
    assert session.frames_received() == []
    session.receive_text(PING, 0.0)
    assert session.frames_received() == [Ping(id="p1")]


@pytest.mark.parametrize(
    ("payload", "ref"),
    [
        (b'{"type":"launch"}', None),
        (b'{"type":"launch","id":42}', None),
        (b'{"type":"launch","id":"abc"}', "abc"),
    ],
)
def test_unknown_type_ref_is_the_string_id_only(payload: bytes, ref: str | None) -> None:
    session = opened()
    session.receive_text(payload, 0.0)
    [frame] = sent(session)
    assert frame["code"] == "unknown_type"
    assert frame["ref"] == ref


def test_unknown_type_message_is_truncated() -> None:
    session = opened()
    session.receive_text(json.dumps({"type": "z" * 500, "id": "m1"}), 0.0)
    [frame] = sent(session)
    assert frame["code"] == "unknown_type"
    assert "z" * 64 in frame["message"]
    assert "z" * 65 not in frame["message"]


@pytest.mark.parametrize(
    ("payload", "ref", "field"),
    [
        (b'{"type":"user_message","id":"m2"}', "m2", "content"),
        (b'{"type":"user_message","content":"hi"}', None, "id"),
        (b'{"type":"user_message","id":"m3","content":"x","thread_id":"a b"}', "m3", "thread_id"),
        (b'{"type":"resume","epoch":"ep","offset":-1,"id":"m4"}', "m4", "offset"),
        (b'{"type":"resume","offset":1}', None, "epoch"),
        (b'{"type":"cancel","id":"m5"}', "m5", "run_id"),
        (b'{"type":"ping"}', None, "id"),
        (b'{"type":"ping","id":""}', "", "id"),
    ],
)
def test_missing_or_invalid_field_is_invalid_message_with_ref(
    payload: bytes, ref: str | None, field: str
) -> None:
    session = opened()
    session.receive_text(payload, 0.0)
    assert session.state is State.OPEN
    [frame] = sent(session)
    assert frame["type"] == "error"
    assert frame["code"] == "invalid_message"
    assert frame["ref"] == ref
    assert field in frame["message"]
    assert session.frames_received() == []


def test_content_over_max_message_chars_is_message_too_long() -> None:
    session = opened()
    content = "x" * (LIMITS.max_message_chars + 1)
    session.receive_text(json.dumps({"type": "user_message", "id": "m9", "content": content}), 0.0)
    assert session.state is State.OPEN
    [frame] = sent(session)
    assert frame["code"] == "message_too_long"
    assert frame["ref"] == "m9"
    assert session.frames_received() == []


def test_content_of_exactly_max_message_chars_is_accepted() -> None:
    session = opened()
    content = "\u00e9" * LIMITS.max_message_chars  # characters, not bytes
    session.receive_text(json.dumps({"type": "user_message", "id": "m9", "content": content}), 0.0)
    assert session.frames_received() == [UserMessage(id="m9", content=content)]
    assert session.data_to_send() == []


# -- rate limit --------------------------------------------------------------------------


def test_burst_of_twice_the_rate_is_allowed_then_4429() -> None:
    session = opened()
    burst = int(2 * LIMITS.messages_per_s)
    for _ in range(burst):
        session.receive_text(PING, 0.0)
    assert session.state is State.OPEN
    assert len(session.frames_received()) == burst
    session.receive_text(PING, 0.0)
    assert_closed_with(session, CloseCode.RATE_LIMITED)
    assert session.frames_received() == []


def test_tokens_refill_with_time() -> None:
    session = opened()
    for _ in range(8):
        session.receive_text(PING, 0.0)
    # 0.5 s at 4/s refills exactly two tokens.
    session.receive_text(PING, 0.5)
    session.receive_text(PING, 0.5)
    assert session.state is State.OPEN
    assert len(session.frames_received()) == 10
    session.receive_text(PING, 0.5)
    assert_closed_with(session, CloseCode.RATE_LIMITED)


def test_sustained_rate_is_allowed_forever() -> None:
    session = opened()
    for index in range(200):
        session.receive_text(PING, index * 0.25)  # exactly 4 per second
    assert session.state is State.OPEN
    assert len(session.frames_received()) == 200


def test_bucket_caps_at_twice_the_rate_after_idling() -> None:
    session = opened()
    for _ in range(8):
        session.receive_text(PING, 1000.0)
    assert session.state is State.OPEN
    session.receive_text(PING, 1000.0)
    assert_closed_with(session, CloseCode.RATE_LIMITED)


def test_invalid_frames_count_against_the_rate() -> None:
    session = opened()
    for _ in range(8):
        session.receive_text(b'{"type":"launch"}', 0.0)
    assert session.state is State.OPEN
    session.receive_text(PING, 0.0)
    assert session.close_code == CloseCode.RATE_LIMITED


def test_rate_limit_starts_at_the_creation_time() -> None:
    session = make_session(now=100.0)
    session.open(CONNECTED)
    for _ in range(8):
        session.receive_text(PING, 100.0)
    session.receive_text(PING, 100.0)
    assert session.close_code == CloseCode.RATE_LIMITED


# -- outbound events ---------------------------------------------------------------------


def test_send_event_in_order_is_queued() -> None:
    session = opened()
    for offset in (1, 2, 3):
        assert session.send_event(offset, event_frame(offset)) is EventAdmission.QUEUED
    assert session.cursor == 3
    assert session.pending == 3
    assert session.pending_bytes == sum(len(event_frame(o)) for o in (1, 2, 3))
    assert session.data_to_send() == [event_frame(1), event_frame(2), event_frame(3)]


def test_send_event_starts_after_the_initial_cursor() -> None:
    session = opened(cursor=5)
    assert session.send_event(5, event_frame(5)) is EventAdmission.DUPLICATE
    assert session.send_event(7, event_frame(7)) is EventAdmission.GAP
    assert session.send_event(6, event_frame(6)) is EventAdmission.QUEUED
    assert session.cursor == 6
    assert session.data_to_send() == [event_frame(6)]


@pytest.mark.parametrize("offset", [1, 2, 3, 0])
def test_duplicate_event_is_dropped(offset: int) -> None:
    session = opened()
    for queued in (1, 2, 3):
        session.send_event(queued, event_frame(queued))
    session.data_to_send()
    assert session.send_event(offset, event_frame(offset)) is EventAdmission.DUPLICATE
    assert session.cursor == 3
    assert session.data_to_send() == []


@pytest.mark.parametrize("offset", [3, 4, 100])
def test_gap_is_refused_without_moving_the_cursor(offset: int) -> None:
    session = opened()
    session.send_event(1, event_frame(1))
    assert session.send_event(offset, event_frame(offset)) is EventAdmission.GAP
    assert session.cursor == 1
    assert session.data_to_send() == [event_frame(1)]
    assert session.send_event(2, event_frame(2)) is EventAdmission.QUEUED


def test_queue_bound_in_events_overflows_and_closes_4409() -> None:
    session = opened()
    for offset in range(1, LIMITS.queue_events + 1):
        assert session.send_event(offset, event_frame(offset)) is EventAdmission.QUEUED
    assert session.pending == LIMITS.queue_events
    overflow = LIMITS.queue_events + 1
    assert session.send_event(overflow, event_frame(overflow)) is EventAdmission.OVERFLOW
    assert_closed_with(session, CloseCode.SLOW_CONSUMER)
    assert session.cursor == LIMITS.queue_events
    assert session.data_to_send() == []
    assert session.send_event(overflow, event_frame(overflow)) is EventAdmission.CLOSED


def test_control_frames_count_towards_the_event_bound() -> None:
    session = opened()
    for index in range(LIMITS.queue_events):
        session.send_frame(Pong(f"p{index}"))
    assert session.send_event(1, event_frame(1)) is EventAdmission.OVERFLOW
    assert session.close_code == CloseCode.SLOW_CONSUMER


def test_queue_bound_in_bytes_overflows_and_closes_4409() -> None:
    session = opened()
    for offset in range(1, 5):
        assert session.send_event(offset, event_frame(offset, 1000)) is EventAdmission.QUEUED
    assert session.pending_bytes == 4000
    assert session.send_event(5, event_frame(5, 200)) is EventAdmission.OVERFLOW
    assert_closed_with(session, CloseCode.SLOW_CONSUMER)
    assert session.data_to_send() == []


def test_queue_bound_in_bytes_is_inclusive() -> None:
    session = opened()
    for offset in range(1, 5):
        session.send_event(offset, event_frame(offset, 1000))
    assert session.send_event(5, event_frame(5, 96)) is EventAdmission.QUEUED
    assert session.pending_bytes == LIMITS.queue_bytes
    assert session.send_event(6, event_frame(6, 60)) is EventAdmission.OVERFLOW


def test_single_event_larger_than_the_byte_bound_overflows() -> None:
    session = opened()
    assert session.send_event(1, event_frame(1, 5000)) is EventAdmission.OVERFLOW
    assert session.close_code == CloseCode.SLOW_CONSUMER


def test_draining_makes_room_again() -> None:
    session = opened()
    for offset in range(1, 100):
        assert session.send_event(offset, event_frame(offset)) is EventAdmission.QUEUED
        if offset % LIMITS.queue_events == 0:
            assert len(session.data_to_send()) == LIMITS.queue_events
    assert session.state is State.OPEN
    assert session.cursor == 99


# -- outbound control frames and draining ------------------------------------------------


def test_data_to_send_drains_in_order() -> None:
    session = make_session()
    session.open(CONNECTED)
    session.send_frame(Ack("m1", "r_1", "t_1"))
    session.send_event(1, event_frame(1))
    session.send_error("busy", "try later", "m2")
    session.send_event(2, event_frame(2))
    session.send_frame(Pong("p1"))

    frames = session.data_to_send()

    assert frames == [
        encode(CONNECTED),
        encode(Ack("m1", "r_1", "t_1")),
        event_frame(1),
        b'{"type":"error","code":"busy","message":"try later","ref":"m2"}',
        event_frame(2),
        encode(Pong("p1")),
    ]
    assert session.pending == 0
    assert session.pending_bytes == 0
    assert session.data_to_send() == []


def test_pending_counters_follow_the_queue() -> None:
    session = opened()
    session.send_frame(Pong("p1"))
    session.send_event(1, event_frame(1))
    assert session.pending == 2
    assert session.pending_bytes == len(encode(Pong("p1"))) + len(event_frame(1))
    assert session.describe() == {"state": "OPEN", "cursor": 1, "pending": 2}


# -- closing -----------------------------------------------------------------------------


def test_close_first_request_wins() -> None:
    session = opened()
    session.close(CloseCode.PROTOCOL_VIOLATION, "first")
    session.close(CloseCode.MESSAGE_TOO_BIG, "second")
    assert session.close_code == CloseCode.PROTOCOL_VIOLATION
    assert session.close_reason == "first"


def test_close_from_overflow_wins_over_later_rate_limit() -> None:
    session = opened()
    for offset in range(1, LIMITS.queue_events + 2):
        session.send_event(offset, event_frame(offset))
    for _ in range(20):
        session.receive_text(PING, 0.0)
    assert session.close_code == CloseCode.SLOW_CONSUMER
    assert session.frames_received() == []


def test_close_discards_queued_frames_and_refuses_new_ones() -> None:
    session = opened()
    session.send_event(1, event_frame(1))
    session.send_frame(Pong("p"))
    session.close(CloseCode.GOING_AWAY, "shutdown")
    assert session.data_to_send() == []
    session.send_frame(Pong("p2"))
    session.send_error("x", "y")
    assert session.send_event(2, event_frame(2)) is EventAdmission.CLOSED
    assert session.pending == 0
    assert session.data_to_send() == []
    assert session.cursor == 1


def test_nothing_is_received_while_closing() -> None:
    session = opened()
    session.receive_text(PING, 0.0)
    session.close(CloseCode.GOING_AWAY, "shutdown")
    session.receive_text(b'{"type":"ping","id":"p2"}', 0.0)
    session.receive_text(b"x" * 5000, 0.0)
    assert session.close_code == CloseCode.GOING_AWAY
    # A frame taken before the close is still handed over; later ones are not.
    assert session.frames_received() == [Ping(id="p1")]


def test_after_connection_lost_nothing_is_accepted() -> None:
    session = opened()
    session.send_event(1, event_frame(1))
    session.receive_text(PING, 0.0)

    session.connection_lost()

    assert session.state is State.CLOSED
    assert session.data_to_send() == []
    assert session.frames_received() == []
    session.receive_text(b'{"type":"ping","id":"p2"}', 0.0)
    session.send_frame(Pong("p"))
    session.send_error("x", "y")
    assert session.send_event(2, event_frame(2)) is EventAdmission.CLOSED
    assert session.frames_received() == []
    assert session.data_to_send() == []
    assert session.pending == 0
    assert session.pending_bytes == 0
    assert session.close_code is None
    assert session.describe() == {"state": "CLOSED", "cursor": 1, "pending": 0}


def test_connection_lost_is_idempotent() -> None:
    session = opened()
    session.close(CloseCode.GOING_AWAY, "bye")
    session.connection_lost()
    session.connection_lost()
    assert session.state is State.CLOSED
    assert session.close_code == CloseCode.GOING_AWAY


# -- replies count against the outbound queue -----------------------------------------


def test_replies_to_a_client_that_does_not_read_close_it_4409() -> None:
    """cd924f8 queued replies without bound: a non-reader grew the server by 577 MB."""
    session = opened()
    sent_ok = 0
    while session.state is State.OPEN:
        if session.send_frame(Pong("p" * 100)):
            sent_ok += 1
        assert sent_ok < 1_000, "replies are never refused"
    assert_closed_with(session, CloseCode.SLOW_CONSUMER)
    assert sent_ok == LIMITS.queue_events + CONTROL_RESERVE_FRAMES
    assert session.send_frame(Pong("late")) is False


def test_replies_close_on_bytes_as_well_as_frames() -> None:
    session = opened()
    big = "x" * (LIMITS.queue_bytes // 2)
    assert session.send_frame(Pong(big))
    assert session.send_frame(Pong(big))  # over queue_bytes, within the reserve
    assert session.send_frame(Pong("y" * CONTROL_RESERVE_BYTES)) is False
    assert_closed_with(session, CloseCode.SLOW_CONSUMER)


def test_a_reply_fits_after_events_filled_the_queue() -> None:
    """The reserve: ``resumed`` after a replay that filled the queue is still sent."""
    session = opened()
    offset = 0
    while session.has_room(len(event_frame(offset + 1))):
        offset += 1
        assert session.send_event(offset, event_frame(offset)) is EventAdmission.QUEUED
    assert session.send_frame(Resumed("ep", from_=0, to=offset))
    assert session.state is State.OPEN
    assert sent(session)[-1]["type"] == "resumed"


def test_a_reading_client_is_never_closed_for_replies() -> None:
    session = opened()
    for index in range(10 * LIMITS.queue_events):
        assert session.send_frame(Pong(f"p{index}"))
        if index % 4 == 3:
            session.data_to_send()
    assert session.state is State.OPEN


# -- nesting ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_NESTING, MAX_NESTING + 1, 989, 5_000])
def test_nesting_beyond_the_limit_closes_4400(depth: int) -> None:
    session = opened(max_frame_bytes=65_536)
    inner = depth - 1  # the frame object is the first level
    session.receive_text('{"type":"ping","id":"p","x":' + "[" * inner + "]" * inner + "}", 0.0)
    if depth <= MAX_NESTING:
        assert session.state is State.OPEN
        assert session.frames_received() == [Ping("p")]
    else:
        assert_closed_with(session, CloseCode.PROTOCOL_VIOLATION)
        assert "nests deeper" in session.close_reason
