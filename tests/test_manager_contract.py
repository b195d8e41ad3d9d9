"""WebSocketManager's contract, through its public API (create_manager, open, receive,
deliver, closed, flush...), with fake sockets and a test engine: the registry and its
limits, routing and delivery counts, batched writes, slow consumers and the per-user
budget, closing, the frame handler and ordered replies.

Written against the mutants that survived ``make mutate`` (docs/architecture.md,
"Mutation testing"); only public behaviour is asserted, so these hold across a
rewrite of the manager's internals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runwire.events import PROTOCOL_VERSION, ClientFrame, Ping, Pong, UserMessage, encode_envelope
from runwire.exceptions import CloseCode, LimitError
from runwire.ids import UserId
from runwire.manager import Connection, Delivery
from runwire.protocol import State
from runwire.tokens import EXPIRED_REASON
from tests.helpers import wait_until
from tests.manager_fakes import Harness, delta


async def harness(**settings: Any) -> Harness:
    return await Harness(**settings).start()


@pytest.fixture(autouse=True)
def _no_failed_connection_task(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test here also checks that no connection task failed on the way."""
    yield
    failed = [r for r in caplog.get_records("call") if r.getMessage() == "connection task failed"]
    if failed and not getattr(failed[0], "expected", False):
        raise AssertionError(f"a connection task failed: {failed[0].exc_info}")


# -- opening: the connected frame and the limits ----------------------------------------------


async def test_connected_names_the_connection_the_user_the_stream_head_and_the_limits() -> None:
    h = await harness(max_frame_bytes=5_000, max_message_chars=300, client_messages_per_s=7.0)
    await h.publish("alice", "a", "b")
    connection, socket = await h.connect("alice")
    [connected] = socket.frames
    position = await h.engine.position(UserId("alice"))
    assert connected == {
        "type": "connected",
        "connection_id": connection.id,
        "user_id": "alice",
        "epoch": position.epoch,
        "offset": 2,
        "protocol": PROTOCOL_VERSION,
        "limits": {
            "max_frame_bytes": 5_000,
            "max_message_chars": 300,
            "messages_per_s": 7.0,
            "max_concurrent_runs": h.settings.max_concurrent_runs_per_user,
        },
    }
    # From the head on: the earlier events are not sent, later ones are.
    await h.publish("alice", "c")
    await h.settle()
    assert socket.offsets == [3] and socket.texts == ["c"]


async def test_connected_carries_the_tokens_expiry() -> None:
    h = await harness()
    expires_at = int(time.time()) + 3_600
    connection, socket = h.open("alice", expires_at=expires_at)
    await h.settle()
    assert socket.frames[0]["expires_at"] == expires_at
    h.manager.closed(connection)


async def test_connections_per_user_are_bounded() -> None:
    h = await harness(max_connections_per_user=2)
    first, _ = h.open("alice")
    h.open("alice")
    with pytest.raises(LimitError) as refused:
        h.open("alice")
    assert refused.value.code == "too_many_connections"
    assert refused.value.message == "too many connections for this user"
    h.open("bob")  # another user is not limited by alice's
    h.manager.closed(first)
    h.open("alice")  # room again
    assert h.manager.connection_count == 3
    await h.settle()


async def test_connections_per_process_are_bounded() -> None:
    h = await harness(max_connections=2)
    h.open("alice")
    second, _ = h.open("bob")
    with pytest.raises(LimitError) as refused:
        h.open("cat")
    assert refused.value.code == "too_many_connections"
    assert refused.value.message == "too many connections on this gateway"
    h.manager.closed(second)
    h.open("cat")
    await h.settle()


async def test_a_socket_whose_engine_is_unavailable_is_closed_1001(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = await harness()
    h.engine.fail_subscribe = True
    connection, socket = h.open("alice")
    await h.settle()
    assert socket.closed_with == (CloseCode.GOING_AWAY, "engine unavailable; retry")
    [record] = [r for r in caplog.records if r.name == "runwire.manager"]
    assert record.getMessage() == "connection not opened: engine unavailable"
    assert socket.frames == []
    assert h.manager.connection_count == 0


# -- the registry ---------------------------------------------------------------------------


async def test_the_registry_counts_connections_and_users_and_forgets_them() -> None:
    h = await harness()
    a1, _ = await h.connect("alice")
    a2, _ = await h.connect("alice")
    b1, _ = await h.connect("bob")
    assert (h.manager.connection_count, h.manager.user_count) == (3, 2)
    assert set(h.manager.connections_of(UserId("alice"))) == {a1, a2}
    assert h.manager.connections_of(UserId("nobody")) == []
    assert h.engine.stats()["subscriptions"] == 3

    h.manager.closed(a1, 1000)
    h.manager.closed(a1, 1000)  # idempotent
    assert (h.manager.connection_count, h.manager.user_count) == (2, 2)
    assert h.manager.connections_of(UserId("alice")) == [a2]
    h.manager.closed(a2)
    h.manager.closed(b1, 4409)
    await h.settle()
    assert h.manager.stats() == {
        "connections": 0,
        "users": 0,
        "dirty": 0,
        "tasks": 0,
        "queued_frames": 0,
    }
    assert h.engine.stats()["subscriptions"] == 0
    assert h.sample("runwire_connections_opened_total") == 3
    assert h.sample("runwire_connections_closed_total", code="1000") == 1
    assert h.sample("runwire_connections_closed_total", code="1006") == 1
    assert h.sample("runwire_connections_closed_total", code="4409") == 1


async def test_stats_count_queued_frames_and_connection_tasks() -> None:
    h = await harness()
    connection, socket = await h.connect("alice")
    socket.paused = True
    await h.publish("alice", "a", "b", "c")
    assert h.manager.stats()["queued_frames"] == 3
    assert h.manager.stats()["dirty"] == 1

    gate = asyncio.Event()
    h.manager.spawn_in_order(connection, gate.wait())
    assert h.manager.stats()["tasks"] == 1
    gate.set()
    socket.paused = False
    h.manager.writable_again(connection)
    await h.settle()
    assert h.manager.stats()["queued_frames"] == 0
    assert socket.texts == ["a", "b", "c"]


async def test_a_socket_closed_while_opening_is_never_opened() -> None:
    h = await harness()
    connection, socket = h.open("alice")
    h.manager.closed(connection)
    await h.settle()
    assert socket.frames == []
    assert h.engine.stats()["subscriptions"] == 0
    assert h.manager.stats()["connections"] == 0


# -- delivery -------------------------------------------------------------------------------


async def test_each_event_goes_to_every_connection_of_its_user_and_no_other() -> None:
    h = await harness()
    _, a1 = await h.connect("alice")
    _, a2 = await h.connect("alice")
    _, b1 = await h.connect("bob")
    await h.publish("alice", "a1", "a2")
    await h.publish("bob", "b1")
    await h.settle()
    assert a1.texts == a2.texts == ["a1", "a2"]
    assert b1.texts == ["b1"]
    assert h.deliveries == [
        Delivery(1, queued=2),
        Delivery(2, queued=2),
        Delivery(1, queued=1),
    ]
    assert [d.connections for d in h.deliveries] == [2, 2, 1]
    assert h.sample("runwire_events_delivered_total") == 5
    assert h.sample("runwire_frames_written_total") == 5 + 3  # and three `connected`


async def test_an_event_for_a_user_without_connections_is_delivered_to_nobody() -> None:
    h = await harness()
    h.engine.stream(UserId("ghost")).subscribers = 1  # subscribed elsewhere
    await h.publish("ghost", "x")
    assert h.deliveries == [Delivery(1)]
    assert h.deliveries[0].connections == 0


async def test_connections_not_open_yet_or_already_served_are_skipped() -> None:
    h = await harness()
    _, ready = await h.connect("alice")
    h.open("alice")  # still subscribing: not open
    h.engine.stream(UserId("alice")).subscribers += 1
    await h.publish("alice", "x")
    assert h.deliveries[-1] == Delivery(1, queued=1, skipped=1)
    [stored] = h.engine.stream(UserId("alice")).events
    again = h.manager.deliver(stored)  # a duplicate delivery
    assert again.queued == 0 and again.skipped == 2 and again.connections == 2
    await h.settle()
    assert ready.offsets == [1]


async def test_frames_queued_in_one_loop_step_are_written_in_one_write() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    writes = socket.writes
    await h.publish("alice", *[f"w{i}" for i in range(20)])
    await h.settle()
    assert socket.writes == writes + 1
    assert socket.texts == [f"w{i}" for i in range(20)]
    assert h.sample("runwire_transport_writes_total") == writes + 1


async def test_a_socket_over_its_high_water_mark_is_written_when_writable_again() -> None:
    h = await harness()
    connection, socket = await h.connect("alice")
    socket.paused = True
    await h.publish("alice", "a", "b")
    await h.settle()
    assert socket.texts == []
    socket.paused = False
    await h.settle()
    assert socket.texts == [], "nothing is written until the transport says it drained"
    h.manager.writable_again(connection)
    await h.settle()
    assert socket.texts == ["a", "b"]


async def test_a_slow_consumer_is_closed_4409_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="runwire.manager")
    h = await harness(outbound_queue_events=8)
    slow_connection, slow = await h.connect("alice")
    _, fast = await h.connect("alice")
    slow.paused = True
    for index in range(9):
        await h.publish("alice", f"{index}", run_id=f"r_{index}")  # nothing to coalesce
        await h.settle()  # `fast` reads every event
    assert h.deliveries[7] == Delivery(8, queued=2)
    assert h.deliveries[8] == Delivery(9, queued=1, overflowed=1)
    await h.settle()
    assert slow.closed_with is not None and slow.closed_with[0] == CloseCode.SLOW_CONSUMER
    assert slow.texts == []
    assert fast.offsets == list(range(1, 10))
    assert h.sample("runwire_slow_consumer_closes_total") == 1
    assert h.manager.connection_count == 1
    [record] = [r for r in caplog.records if r.getMessage() == "slow consumer closed"]
    assert record.levelname == "INFO"
    assert record.connection_id == slow_connection.id  # type: ignore[attr-defined]


async def test_deltas_of_a_slow_socket_are_coalesced_and_still_count_as_queued() -> None:
    h = await harness(outbound_queue_events=8)
    connection, socket = await h.connect("alice")
    socket.paused = True
    await h.publish("alice", *[f"{i} " for i in range(12)])
    assert all(d.queued == 1 and d.overflowed == 0 for d in h.deliveries)
    assert h.sample("runwire_deltas_coalesced_total") > 0
    socket.paused = False
    h.manager.writable_again(connection)
    await h.settle()
    assert "".join(socket.texts) == "".join(f"{i} " for i in range(12))
    assert socket.offsets[-1] == 12
    assert socket.closed_with is None


async def test_a_user_over_the_queue_budget_loses_the_biggest_queue() -> None:
    big = "x" * 1_000
    h = await harness(outbound_queue_bytes=65_536, user_queue_budget_bytes=8_192)
    _, biggest = await h.connect("alice")
    _, smaller = await h.connect("alice")
    biggest.paused = True
    for index in range(3):
        await h.publish("alice", big, run_id=f"r_a{index}")
        await h.settle()  # `smaller` reads these
    assert biggest.closed_with is None
    smaller.paused = True
    for index in range(3):
        await h.publish("alice", big, run_id=f"r_b{index}")
        await h.settle()
        if index < 2:
            assert biggest.closed_with is None  # 5.5 and 7.8 KB: within the budget
    # 6.7 KB queued for `biggest` and 3.3 KB for `smaller`: over 8 KB, the biggest goes.
    assert biggest.closed_with == (CloseCode.SLOW_CONSUMER, "user queue budget exceeded")
    assert smaller.closed_with is None
    assert h.sample("runwire_slow_consumer_closes_total") == 1


async def test_one_connection_is_bounded_by_its_own_queue_not_the_user_budget() -> None:
    h = await harness(outbound_queue_bytes=65_536, user_queue_budget_bytes=4_096)
    _, socket = await h.connect("alice")
    socket.paused = True
    for index in range(8):
        await h.publish("alice", "x" * 1_000, run_id=f"r_{index}")
    await h.settle()
    assert socket.closed_with is None
    assert h.manager.stats()["queued_frames"] == 8


# -- closing --------------------------------------------------------------------------------


async def test_close_connection_sends_the_code_and_reason_once() -> None:
    h = await harness()
    connection, socket = await h.connect("alice")
    h.manager.close_connection(connection, CloseCode.FORBIDDEN, "go away")
    h.manager.close_connection(connection, CloseCode.GOING_AWAY, "second")
    h.manager.flush()
    h.manager.writable_again(connection)
    h.manager.flush()
    assert socket.closed_with == (CloseCode.FORBIDDEN, "go away")


async def test_disconnect_user_closes_every_socket_of_that_user_only() -> None:
    h = await harness()
    await h.connect("alice")
    await h.connect("alice")
    _, bob = await h.connect("bob")
    count = h.manager.disconnect_user(UserId("alice"), CloseCode.UNAUTHORIZED, "revoked")
    assert count == 2
    assert h.manager.disconnect_user(UserId("nobody"), CloseCode.UNAUTHORIZED, "x") == 0
    await h.settle()
    closed = [s.closed_with for c, s in h.sockets.items() if c.user_id == "alice"]
    assert closed == [(CloseCode.UNAUTHORIZED, "revoked")] * 2
    assert bob.closed_with is None
    assert h.manager.user_count == 1


async def test_close_all_closes_every_socket_waits_for_them_and_refuses_new_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = await harness()
    await h.connect("alice")
    await h.connect("bob")

    async def server_reports_closes() -> None:
        await asyncio.sleep(0)
        for connection, socket in list(h.sockets.items()):
            if socket.closed_with is not None:
                h.manager.closed(connection, socket.closed_with[0])

    reporter = asyncio.create_task(server_reports_closes())
    caplog.set_level(logging.WARNING, logger="runwire.manager")
    async with asyncio.timeout(5):
        await h.manager.close_all(CloseCode.GOING_AWAY, "shutting down", timeout_s=30)
    await reporter
    assert not [r for r in caplog.records if r.name == "runwire.manager"]  # none left open
    assert [s.closed_with for s in h.sockets.values()] == [
        (CloseCode.GOING_AWAY, "shutting down")
    ] * 2
    assert h.manager.connection_count == 0
    assert h.sample("runwire_connections_closed_total", code="1001") == 2
    with pytest.raises(LimitError) as refused:
        h.open("cat")
    assert refused.value.code == "shutting_down"


async def test_close_all_forgets_sockets_that_never_report_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = await harness()
    await h.connect("alice")
    await h.connect("bob")
    async with asyncio.timeout(5):
        await h.manager.close_all(CloseCode.GOING_AWAY, "bye", timeout_s=0.01)
    assert h.manager.connection_count == 0
    assert h.manager.user_count == 0
    assert h.sample("runwire_connections_closed_total", code="1001") == 2
    [record] = [r for r in caplog.records if r.name == "runwire.manager"]
    assert record.getMessage() == "connections still open after 0.0 s; dropping them"
    assert record.levelname == "WARNING"


async def test_close_all_without_connections_returns_at_once() -> None:
    h = await harness()
    async with asyncio.timeout(1):
        await h.manager.close_all(CloseCode.GOING_AWAY, "bye", timeout_s=30)


# -- client frames, replies and their order ---------------------------------------------------


async def test_valid_frames_reach_the_handler_in_order_even_those_sent_while_connecting() -> None:
    h = await harness()
    handled: list[tuple[Connection, ClientFrame]] = []
    h.manager.set_frame_handler(lambda connection, frame: handled.append((connection, frame)))
    connection, socket = h.open("alice")
    h.manager.receive(connection, b'{"type":"ping","id":"early"}')
    assert handled == []  # not before `connected`
    await h.settle()
    h.manager.receive(connection, '{"type":"user_message","id":"m1","content":"hi"}')
    h.manager.receive(connection, b'{"type":"nope","id":"x"}')
    await h.settle()
    assert handled == [(connection, Ping("early")), (connection, UserMessage("m1", "hi"))]
    assert [f["type"] for f in socket.frames] == ["connected", "error"]
    assert socket.frames[1]["code"] == "unknown_type"


async def test_a_frame_that_breaks_the_protocol_closes_the_socket() -> None:
    h = await harness()
    connection, socket = await h.connect("alice")
    h.manager.receive(connection, b"not json")
    await h.settle()
    assert socket.closed_with is not None
    assert socket.closed_with[0] == CloseCode.PROTOCOL_VIOLATION
    assert h.manager.connection_count == 0


async def test_replies_keep_the_order_of_the_work_that_produced_them() -> None:
    h = await harness()
    connection, socket = await h.connect("alice")
    first_may_finish = asyncio.Event()

    async def reply(text: str, wait: asyncio.Event | None = None) -> None:
        if wait is not None:
            await wait.wait()
        h.manager.send(connection, Pong(text))

    h.manager.spawn_in_order(connection, reply("first", first_may_finish))
    h.manager.spawn_in_order(connection, reply("second"))
    h.manager.spawn_in_order(connection, reply("third"))
    for _ in range(10):
        await asyncio.sleep(0)
    assert socket.of_type("pong") == []  # the second waits for the first
    first_may_finish.set()
    await h.settle()
    assert [f["id"] for f in socket.of_type("pong")] == ["first", "second", "third"]


async def test_send_without_a_frame_flushes_what_is_queued() -> None:
    h = await harness()
    connection, socket = await h.connect("alice")
    connection.session.send_frame(Pong("queued"))
    h.manager.send(connection, None)
    await h.settle()
    assert [f["id"] for f in socket.of_type("pong")] == ["queued"]


async def test_work_of_a_closed_connection_is_cancelled() -> None:
    h = await harness()
    connection, _ = await h.connect("alice")
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    h.manager.spawn_in_order(connection, work())
    await asyncio.wait_for(started.wait(), 5)
    h.manager.closed(connection)
    await asyncio.wait_for(cancelled.wait(), 5)
    await h.settle()
    assert h.manager.stats()["tasks"] == 0


async def test_a_failing_connection_task_is_logged_and_harms_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = await harness()
    connection, socket = await h.connect("alice")

    async def broken() -> None:
        raise RuntimeError("handler bug")

    h.manager.spawn_in_order(connection, broken())
    h.manager.spawn_in_order(connection, asyncio.sleep(0))
    await h.settle()
    [record] = [r for r in caplog.records if r.getMessage() == "connection task failed"]
    record.expected = True  # for _no_failed_connection_task
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and "handler bug" in str(record.exc_info[1])
    await h.publish("alice", "still served")
    await h.settle()
    assert socket.texts == ["still served"]


async def test_engine_status_goes_to_open_sockets_only() -> None:
    h = await harness()
    _, ready = await h.connect("alice")
    connecting, waiting = h.open("bob")
    assert h.engine.on_state is not None
    h.engine.on_state(False)
    h.manager.flush()
    assert ready.of_type("engine_status") == [{"type": "engine_status", "state": "unavailable"}]
    assert waiting.frames == []
    h.engine.on_state(True)
    await h.settle()
    assert [f["state"] for f in ready.of_type("engine_status")] == ["unavailable", "available"]
    assert waiting.of_type("engine_status") == []
    assert ready.closed_with is None
    h.manager.closed(connecting)


# -- more edges -----------------------------------------------------------------------------


async def test_frames_without_a_handler_are_dropped_quietly() -> None:
    h = await harness()
    connection, socket = await h.connect("alice")
    h.manager.receive(connection, b'{"type":"ping","id":"p1"}')
    await h.settle()
    assert socket.closed_with is None
    assert [f["type"] for f in socket.frames] == ["connected"]


async def test_a_socket_still_opening_does_not_keep_others_of_its_user_from_an_event() -> None:
    h = await harness()
    h.engine.held_subscribes = 1
    h.open("alice")  # first in the registry, and stuck subscribing
    _, ready = h.open("alice")
    await wait_until(lambda: ready.of_type("connected"), what="connected")
    await h.publish("alice", "x")
    assert h.deliveries[-1] == Delivery(1, queued=1, skipped=1)
    h.engine.subscribe_gate.set()
    await h.settle()
    assert ready.offsets == [1]
    await h.settle()


async def test_delivery_counts_add_up_over_several_sockets_in_one_state() -> None:
    h = await harness(outbound_queue_events=8)
    sockets = [(await h.connect("alice"))[1] for _ in range(2)]
    for socket in sockets:
        socket.paused = True
    for index in range(8):
        await h.publish("alice", f"{index}")  # one run: mergeable
    await h.publish("alice", "8")
    assert h.deliveries[-1] == Delivery(9, queued=2)  # both coalesced
    [stored] = h.engine.stream(UserId("alice")).events[-1:]
    assert h.manager.deliver(stored) == Delivery(9, skipped=2)  # both already have it
    for index in range(9, 16):
        await h.publish("alice", f"{index}", run_id=f"r_{index}")
    await h.publish("alice", "16", run_id="r_16")
    assert h.deliveries[-1] == Delivery(17, overflowed=2)
    await h.settle()
    assert all(s.closed_with is not None for s in sockets)


async def test_every_socket_written_in_one_flush_counts_as_one_transport_write() -> None:
    h = await harness()
    await h.connect("alice")
    await h.connect("alice")
    await h.connect("bob")
    before = h.sample("runwire_transport_writes_total")
    await h.publish("alice", "a", "b")
    await h.publish("bob", "c")
    await h.settle()
    assert h.sample("runwire_transport_writes_total") == before + 3
    assert h.sample("runwire_frames_written_total") == 3 + 5


async def test_the_coalesced_metric_counts_each_merged_frame_once() -> None:
    h = await harness(outbound_queue_events=8)
    connection, socket = await h.connect("alice")
    socket.paused = True
    await h.publish("alice", *[f"{i} " for i in range(20)])  # two rounds of merging
    socket.paused = False
    h.manager.writable_again(connection)
    await h.settle()
    assert "".join(socket.texts) == "".join(f"{i} " for i in range(20))
    assert h.sample("runwire_deltas_coalesced_total") == 20 - len(socket.events)


async def test_a_budget_met_exactly_closes_nothing() -> None:
    h = await harness(outbound_queue_bytes=65_536, user_queue_budget_bytes=4_096)
    _, first = await h.connect("alice")
    _, second = await h.connect("alice")
    first.paused = second.paused = True
    overhead = len(encode_envelope(delta(""), 1))
    await h.publish("alice", "x" * (2_048 - overhead))  # 2 x 2048 bytes: the budget
    await h.settle()
    assert first.closed_with is None and second.closed_with is None
    await h.publish("alice", "y")
    await h.settle()
    assert [first.closed_with is None, second.closed_with is None].count(False) == 1


async def test_the_budget_closes_only_as_many_queues_as_needed() -> None:
    h = await harness(outbound_queue_bytes=65_536, user_queue_budget_bytes=8_192)
    _, biggest = await h.connect("alice")
    _, small = await h.connect("alice")
    biggest.paused = True
    for index in range(3):  # 3.3 KB for `biggest`; `small` reads them
        await h.publish("alice", "x" * 1_000, run_id=f"r_{index}")
        await h.settle()
    await h.publish("alice", "y" * 5_000, run_id="r_big")
    await h.settle()
    # 8.3 KB + 5 KB: closing `biggest` leaves 5 KB, within the budget: `small` stays.
    assert biggest.closed_with == (CloseCode.SLOW_CONSUMER, "user queue budget exceeded")
    assert small.closed_with is None
    assert small.texts[-1] == "y" * 5_000


async def test_close_all_waits_for_the_last_socket() -> None:
    h = await harness()
    first, first_socket = await h.connect("alice")
    second, second_socket = await h.connect("bob")
    closing = asyncio.create_task(h.manager.close_all(CloseCode.GOING_AWAY, "bye", timeout_s=30))
    for _ in range(5):
        await asyncio.sleep(0)
    assert first_socket.closed_with is not None and second_socket.closed_with is not None
    h.manager.closed(first, 1001)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not closing.done(), "one socket is still open"
    h.manager.closed(second, 1001)
    async with asyncio.timeout(5):
        await closing
    with pytest.raises(LimitError) as refused:
        h.open("cat")
    assert refused.value.message == "the gateway is shutting down"


async def test_closed_forgets_a_connection_that_had_frames_to_write() -> None:
    h = await harness()
    connection, _ = await h.connect("alice")
    await h.publish("alice", "a")
    assert h.manager.stats()["dirty"] == 1
    h.manager.closed(connection)
    assert h.manager.stats()["dirty"] == 0


async def test_closing_a_socket_while_it_subscribes_cancels_its_opening() -> None:
    h = await harness()
    h.engine.held_subscribes = 1
    connection, socket = h.open("alice")
    for _ in range(5):
        await asyncio.sleep(0)
    assert h.manager.stats()["tasks"] == 1  # waiting for the engine
    h.manager.closed(connection)
    for _ in range(3):
        await asyncio.sleep(0)
    assert h.manager.stats()["tasks"] == 0  # the opening was the connection's: cancelled
    h.engine.subscribe_gate.set()
    await h.settle()
    assert socket.frames == []
    assert h.engine.stats()["subscriptions"] == 0


async def test_a_token_about_to_expire_is_warned_then_closed_4401_at_exp() -> None:
    h = await harness()
    expires_at = int(time.time()) + 1
    connection, socket = h.open("alice", expires_at=expires_at)
    await h.settle()
    assert socket.of_type("token_expiring") == [
        {"type": "token_expiring", "expires_at": expires_at}
    ]
    await wait_until(lambda: socket.closed_with is not None, timeout=5, what="the 4401 close")
    assert socket.closed_with == (CloseCode.UNAUTHORIZED, EXPIRED_REASON)
    assert connection.session.state >= State.CLOSING


async def test_a_socket_whose_write_raises_is_dropped_and_the_others_are_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One broken writer in a flush: it is aborted, and every other dirty socket is
    still written (the exception escaped the flush before: the rest of the flush was
    skipped and the broken socket stayed open)."""
    h = await harness()
    _, broken = await h.connect("alice")
    others = [(await h.connect(f"user-{i}"))[1] for i in range(8)]
    await h.settle()

    def refuse(frames: list[bytes]) -> None:
        raise RuntimeError("the transport refused the bytes")

    broken.write_frames = refuse  # type: ignore[method-assign]
    await h.publish("alice", "lost")
    for i in range(8):
        await h.publish(f"user-{i}", f"for {i}")
    await h.settle()
    assert broken.aborted
    assert [socket.texts for socket in others] == [[f"for {i}"] for i in range(8)]
    assert any(r.getMessage() == "writing to a socket failed; dropping it" for r in caplog.records)
