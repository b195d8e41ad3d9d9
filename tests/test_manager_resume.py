"""WebSocketManager's resume and catch-up, through its public API with a test engine:
the handshake replay and its failures, in-band ``resume``, flow-controlled replay,
gaps filled from history, resync after a lost subscription, a stream that restarts
under a connection (epoch change), and the 1011 close when history cannot fill a gap.

Written against the mutants that survived ``make mutate`` (docs/architecture.md,
"Mutation testing"); only frames on the wire and public counters are asserted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from runwire.events import ClientFrame, Ping, Pong
from runwire.exceptions import CloseCode
from runwire.ids import Epoch, UserId
from runwire.manager import Connection
from runwire.resume import ResumeRequest
from tests.helpers import wait_until
from tests.manager_fakes import FakeSocket, Harness

ALICE = UserId("alice")


async def harness(**settings: Any) -> Harness:
    return await Harness(**settings).start()


@pytest.fixture(autouse=True)
def _no_failed_connection_task(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test here also checks that no connection task failed on the way."""
    yield
    failed = [r for r in caplog.get_records("call") if r.getMessage() == "connection task failed"]
    assert not failed, f"a connection task failed: {failed[0].exc_info}"


def resume_frame(epoch: str, offset: int) -> str:
    return f'{{"type":"resume","epoch":"{epoch}","offset":{offset}}}'


def kinds(socket: FakeSocket) -> list[tuple[str, int | None]]:
    return [(frame["type"], frame.get("offset")) for frame in socket.frames]


# -- the handshake resume -------------------------------------------------------------------


async def test_a_handshake_resume_replays_the_missed_events_then_says_resumed() -> None:
    h = await harness()
    await h.publish("alice", "a", "b", "c", "d")
    epoch = h.engine.stream(ALICE).epoch
    _, socket = await h.connect("alice", ResumeRequest(epoch, 1))
    await h.publish("alice", "e")
    await h.settle()
    assert kinds(socket) == [
        ("connected", 4),
        ("agent_message_delta", 2),
        ("agent_message_delta", 3),
        ("agent_message_delta", 4),
        ("resumed", None),
        ("agent_message_delta", 5),
    ]
    resumed = socket.of_type("resumed")[0]
    assert resumed == {"type": "resumed", "epoch": epoch, "from": 1, "to": 4}


async def test_a_resume_at_the_head_replays_nothing() -> None:
    h = await harness()
    await h.publish("alice", "a", "b")
    epoch = h.engine.stream(ALICE).epoch
    _, socket = await h.connect("alice", ResumeRequest(epoch, 2))
    assert kinds(socket) == [("connected", 2), ("resumed", None)]
    assert socket.of_type("resumed")[0]["to"] == 2


@pytest.mark.parametrize(
    ("reason", "setup"),
    [
        ("epoch_changed", "other-epoch"),
        ("out_of_window", "trimmed"),
        ("invalid_offset", "ahead"),
    ],
)
async def test_a_resume_that_cannot_be_served_says_why_and_goes_on_live(
    reason: str, setup: str
) -> None:
    h = await harness()
    await h.publish("alice", "a", "b", "c", "d")
    stream = h.engine.stream(ALICE)
    request = ResumeRequest(stream.epoch, 1)
    if setup == "other-epoch":
        request = ResumeRequest(Epoch("gone"), 1)
    elif setup == "trimmed":
        h.engine.trim(ALICE, keep=2)  # offsets 3 and 4 are left
    else:
        request = ResumeRequest(stream.epoch, 9)
    _, socket = await h.connect("alice", request)
    await h.publish("alice", "e")
    await h.settle()
    assert kinds(socket) == [("connected", 4), ("resume_failed", 4), ("agent_message_delta", 5)]
    assert socket.of_type("resume_failed")[0] == {
        "type": "resume_failed",
        "reason": reason,
        "epoch": stream.epoch,
        "offset": 4,
    }


async def test_a_long_replay_is_flow_controlled_and_never_trips_4409() -> None:
    h = await harness(outbound_queue_events=8)
    for index in range(300):  # more than one history read; one run each: nothing merges
        await h.publish("alice", f"{index}", run_id=f"r_{index}")
    epoch = h.engine.stream(ALICE).epoch
    connection, socket = h.open("alice", ResumeRequest(epoch, 0))
    await h.settle()
    assert socket.closed_with is None
    assert socket.offsets == list(range(1, 301))
    assert socket.frames[-1] == {"type": "resumed", "epoch": epoch, "from": 0, "to": 300}
    # Queued as far as the queue allows, then written: about 8 frames a write, not one.
    assert 300 // 8 <= socket.writes < 300 // 4
    h.manager.closed(connection)


async def test_a_replay_to_a_paused_socket_waits_for_it() -> None:
    h = await harness(outbound_queue_events=8)
    await h.publish("alice", *[f"{i}" for i in range(20)])
    epoch = h.engine.stream(ALICE).epoch
    connection, socket = h.open("alice", ResumeRequest(epoch, 0))
    socket.paused = True
    for _ in range(50):
        await asyncio.sleep(0)
    assert socket.frames == [] and socket.closed_with is None
    socket.paused = False
    h.manager.writable_again(connection)
    await h.settle()
    assert socket.offsets == list(range(1, 21))
    assert socket.frames[-1]["type"] == "resumed"


async def test_a_socket_closed_during_a_replay_stops_it() -> None:
    h = await harness(outbound_queue_events=8)
    await h.publish("alice", *[f"{i}" for i in range(40)])
    epoch = h.engine.stream(ALICE).epoch
    connection, socket = h.open("alice", ResumeRequest(epoch, 0))
    socket.paused = True
    for _ in range(20):
        await asyncio.sleep(0)
    h.manager.closed(connection)
    await h.settle()
    assert socket.frames == []
    assert h.manager.stats()["tasks"] == 0


async def test_frames_sent_during_the_handshake_replay_are_answered_after_resumed() -> None:
    h = await harness()

    def answer(connection: Connection, frame: ClientFrame) -> None:
        assert isinstance(frame, Ping)
        h.manager.send(connection, Pong(frame.id))

    h.manager.set_frame_handler(answer)
    await h.publish("alice", "a", "b")
    epoch = h.engine.stream(ALICE).epoch
    connection, socket = h.open("alice", ResumeRequest(epoch, 0))
    h.manager.receive(connection, b'{"type":"ping","id":"p1"}')  # while connecting
    for _ in range(1_000):
        if socket.of_type("connected"):
            break
        await asyncio.sleep(0)
    else:
        raise AssertionError("never connected")
    h.manager.receive(connection, b'{"type":"ping","id":"p2"}')  # during the replay
    await h.settle()
    assert kinds(socket) == [
        ("connected", 2),
        ("agent_message_delta", 1),
        ("agent_message_delta", 2),
        ("resumed", None),
        ("pong", None),
        ("pong", None),
    ]
    assert [f["id"] for f in socket.of_type("pong")] == ["p1", "p2"]


# -- in-band resume -------------------------------------------------------------------------


async def test_an_in_band_resume_before_any_live_event_replays() -> None:
    h = await harness()
    await h.publish("alice", "a", "b", "c")
    connection, socket = await h.connect("alice")
    epoch = h.engine.stream(ALICE).epoch
    h.manager.receive(connection, resume_frame(epoch, 1))
    await h.settle()
    assert kinds(socket)[1:] == [
        ("agent_message_delta", 2),
        ("agent_message_delta", 3),
        ("resumed", None),
    ]


async def test_an_in_band_resume_after_live_events_is_refused_with_live_started() -> None:
    h = await harness()
    await h.publish("alice", "a", "b")
    connection, socket = await h.connect("alice")
    await h.publish("alice", "c")
    await h.settle()
    epoch = h.engine.stream(ALICE).epoch
    h.manager.receive(connection, resume_frame(epoch, 1))
    h.manager.receive(connection, resume_frame("other", 3))
    await h.settle()
    assert (
        socket.of_type("resume_failed")
        == [{"type": "resume_failed", "reason": "live_started", "epoch": epoch, "offset": 3}] * 2
    )
    assert socket.offsets == [3]


async def test_an_in_band_resume_asking_for_nothing_new_is_answered_after_live_events() -> None:
    h = await harness()
    connection, socket = await h.connect("alice")
    await h.publish("alice", "a", "b")
    await h.settle()
    epoch = h.engine.stream(ALICE).epoch
    h.manager.receive(connection, resume_frame(epoch, 2))
    await h.settle()
    assert socket.of_type("resumed") == [{"type": "resumed", "epoch": epoch, "from": 2, "to": 2}]
    assert socket.offsets == [1, 2]


async def test_in_band_resume_frames_never_reach_the_frame_handler() -> None:
    h = await harness()
    seen: list[ClientFrame] = []
    h.manager.set_frame_handler(lambda connection, frame: seen.append(frame))
    connection, _ = await h.connect("alice")
    h.manager.receive(connection, resume_frame(h.engine.stream(ALICE).epoch, 0))
    await h.settle()
    assert seen == []


# -- gaps, resync and lost subscriptions ------------------------------------------------------


async def test_a_live_event_past_a_gap_is_filled_from_history_in_order() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    h.engine.live = False
    await h.publish("alice", "a", "b")  # stored, not delivered
    h.engine.live = True
    await h.publish("alice", "c")  # offset 3: two ahead of the connection
    await h.settle()
    assert socket.offsets == [1, 2, 3]
    assert socket.texts == ["a", "b", "c"]


async def test_resync_catches_every_socket_of_the_user_up() -> None:
    h = await harness()
    _, first = await h.connect("alice")
    _, second = await h.connect("alice")
    _, other = await h.connect("bob")
    h.engine.live = False
    await h.publish("alice", "a", "b")
    await h.publish("bob", "x")
    await h.settle()
    assert first.offsets == second.offsets == []
    assert h.engine.resync is not None
    h.engine.resync(ALICE)
    await h.settle()
    assert first.offsets == second.offsets == [1, 2]
    assert other.offsets == []  # only the user named


async def test_resync_skips_sockets_that_are_not_open_and_serves_the_others() -> None:
    h = await harness()
    h.engine.held_subscribes = 1
    opening, waiting = h.open("alice")  # first in the registry, still opening
    _, ready = h.open("alice")
    await wait_until(lambda: ready.of_type("connected"), what="connected")
    h.engine.live = False
    await h.publish("alice", "a")
    h.manager.resync(ALICE)
    h.manager.resync(UserId("nobody"))  # no socket: nothing to do
    for _ in range(20):
        await asyncio.sleep(0)
    assert ready.offsets == [1]
    assert waiting.frames == []
    h.engine.subscribe_gate.set()
    await h.settle()
    assert kinds(waiting) == [("connected", 1)]
    h.manager.closed(opening)


async def test_a_resync_while_catching_up_reads_history_once_more() -> None:
    h = await harness()
    await h.publish("alice", "a")
    epoch = h.engine.stream(ALICE).epoch
    h.engine.read_gate = asyncio.Event()
    connection, socket = h.open("alice", ResumeRequest(epoch, 0))
    await wait_until(lambda: h.engine.reads == 1, what="the replay's read")
    # While that read is out (it will answer offset 1 only): two events the live path
    # misses, and the engine's resync.
    h.engine.live = False
    await h.publish("alice", "b", "c")
    h.manager.resync(ALICE)
    h.engine.read_gate.set()
    await h.settle()
    assert socket.offsets == [1, 2, 3]
    assert socket.frames[-1]["type"] == "resumed"
    h.manager.closed(connection)


async def test_a_catch_up_that_fails_on_the_engine_waits_for_the_next_resync(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    h.engine.live = False
    await h.publish("alice", "a")
    h.engine.fail_reads = True
    h.manager.resync(ALICE)
    await h.settle()
    assert socket.offsets == [] and socket.closed_with is None
    [record] = [r for r in caplog.records if r.name == "runwire.manager"]
    assert record.getMessage() == "catch-up failed: history unavailable"
    assert record.levelname == "WARNING"
    h.engine.fail_reads = False
    h.manager.resync(ALICE)
    await h.settle()
    assert socket.offsets == [1]


async def test_history_that_cannot_fill_a_gap_closes_1011_instead_of_spinning() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    await h.publish("alice", "a")
    await h.settle()
    h.engine.stale_history = True  # every read: a full batch of what it already has
    h.engine.live = False
    await h.publish("alice", "b")
    h.engine.live = True
    reads = h.engine.reads
    await h.publish("alice", "c")  # a gap at 2
    await h.settle()
    assert socket.closed_with == (CloseCode.INTERNAL_ERROR, "stream inconsistent; reconnect")
    assert h.engine.reads - reads == 3  # gives up after three reads that bring nothing
    assert socket.offsets == [1]


# -- history that no longer covers a live tab's position -------------------------------------


async def test_a_replay_overtaken_by_eviction_goes_on_from_the_head_it_announces() -> None:
    """A slow replay whose next events left history meanwhile: the tab is told
    ``out_of_window`` and gets every later event (it was left at its old cursor,
    open and sent nothing again, before)."""
    h = await harness(outbound_queue_events=10)
    await h.publish("alice", *(f"e{i}" for i in range(40)))
    epoch = h.engine.stream(ALICE).epoch
    connection, socket = h.open("alice", ResumeRequest(epoch, 0))
    socket.paused = True  # the client reads slowly: the replay waits for it
    await wait_until(lambda: connection.session.pending >= 10, what="a full queue")
    await h.publish("alice", *(f"x{i}" for i in range(100)))  # 41..140
    h.engine.trim(ALICE, keep=50)  # history now holds 91..140: the replay is overtaken
    socket.paused = False
    h.manager.writable_again(connection)
    await h.settle()
    assert socket.of_type("resume_failed") == [
        {"type": "resume_failed", "reason": "out_of_window", "epoch": epoch, "offset": 140}
    ]
    replayed = len(socket.offsets)
    await h.publish("alice", "live-1", "live-2")
    await h.settle()
    assert socket.offsets[replayed:] == [141, 142]
    assert socket.closed_with is None


async def test_a_resync_past_the_history_window_says_out_of_window_and_goes_on() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    h.engine.live = False  # the engine misses the events live (a long outage)
    await h.publish("alice", *(f"e{i}" for i in range(10)))
    h.engine.trim(ALICE, keep=3)  # 8..10 are left
    h.engine.live = True
    assert h.engine.resync is not None
    h.engine.resync(ALICE)
    await h.settle()
    epoch = h.engine.stream(ALICE).epoch
    assert socket.of_type("resume_failed") == [
        {"type": "resume_failed", "reason": "out_of_window", "epoch": epoch, "offset": 10}
    ]
    await h.publish("alice", "after")
    await h.settle()
    assert socket.offsets == [11]


async def test_a_live_gap_whose_events_left_history_goes_on_after_the_head() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    await h.publish("alice", "a")
    await h.settle()
    h.engine.live = False
    await h.publish("alice", "b", "c")
    h.engine.trim(ALICE, keep=0)
    h.engine.live = True
    await h.publish("alice", "d")  # offset 4 reveals the gap; 2..4 are not in history
    await h.settle()
    assert [f["reason"] for f in socket.of_type("resume_failed")] == ["out_of_window"]
    await h.publish("alice", "e")
    await h.settle()
    assert socket.offsets == [1, 5]


async def test_a_stream_that_lost_its_last_events_is_followed_from_its_head() -> None:
    """The engine's head went back in the same epoch (Redis lost its last writes):
    ``invalid_offset``, and the new events at the reused offsets are delivered."""
    h = await harness()
    _, socket = await h.connect("alice")
    await h.publish("alice", "a", "b", "c", "d", "e")
    await h.settle()
    stream = h.engine.stream(ALICE)
    stream.events, stream.last = stream.events[:3], 3  # 4 and 5 are lost
    assert h.engine.resync is not None
    h.engine.resync(ALICE)
    await h.settle()
    assert socket.of_type("resume_failed") == [
        {"type": "resume_failed", "reason": "invalid_offset", "epoch": stream.epoch, "offset": 3}
    ]
    await h.publish("alice", "new-4")
    await h.settle()
    assert socket.offsets == [1, 2, 3, 4, 5, 4]
    assert socket.texts[-1] == "new-4"


# -- the stream restarts under a connection (epoch change) ------------------------------------


async def test_a_new_epoch_is_followed_from_its_start_while_history_holds_it() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    await h.publish("alice", "a", "b")
    await h.settle()
    new = h.engine.lose(ALICE)
    h.engine.live = False
    await h.publish("alice", "c")
    h.engine.live = True
    await h.publish("alice", "d")  # a live event of the new epoch
    await h.settle()
    assert socket.of_type("resume_failed") == [
        {"type": "resume_failed", "reason": "epoch_changed", "epoch": new, "offset": 0}
    ]
    assert socket.offsets == [1, 2, 1, 2]
    assert socket.texts == ["a", "b", "c", "d"]
    await h.publish("alice", "e")
    await h.settle()
    assert socket.offsets[-1] == 3


async def test_two_live_events_of_a_new_epoch_follow_it_once() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    await h.publish("alice", "a")
    await h.settle()
    new = h.engine.lose(ALICE)
    await h.publish("alice", "b", "c")  # both arrive before the follow has read anything
    await h.settle()
    assert socket.of_type("resume_failed") == [
        {"type": "resume_failed", "reason": "epoch_changed", "epoch": new, "offset": 0}
    ]
    assert socket.offsets == [1, 1, 2]


async def test_a_new_epoch_whose_start_is_gone_is_followed_from_its_head() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    new = h.engine.lose(ALICE)
    h.engine.live = False
    await h.publish("alice", "a", "b", "c")
    h.engine.trim(ALICE, keep=0)
    assert h.engine.resync is not None
    h.engine.resync(ALICE)  # the catch-up finds the epoch changed
    await h.settle()
    assert socket.of_type("resume_failed") == [
        {"type": "resume_failed", "reason": "epoch_changed", "epoch": new, "offset": 3}
    ]
    h.engine.live = True
    await h.publish("alice", "d")
    await h.settle()
    assert socket.offsets == [4]


async def test_a_resync_in_the_same_epoch_sends_no_resume_failed() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    await h.publish("alice", "a")
    await h.settle()
    h.manager.resync(ALICE)
    await h.settle()
    assert socket.of_type("resume_failed") == []
    assert socket.offsets == [1]


async def test_events_of_another_epoch_before_connected_are_not_sent() -> None:
    h = await harness()
    connection, socket = h.open("alice")  # subscribing: no epoch yet
    h.engine.stream(ALICE).subscribers += 1
    await h.publish("alice", "early")
    await h.settle()
    # `connected` names offset 1: the event is before this connection's start.
    assert kinds(socket) == [("connected", 1)]
    h.manager.closed(connection)


async def test_a_hole_in_history_is_read_again_then_closed_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = await harness()
    connection, socket = await h.connect("alice")
    await h.publish("alice", "a")
    await h.settle()
    h.engine.live = False
    await h.publish("alice", "b")
    h.engine.holes = {2}  # history lost offset 2 but has 3
    h.engine.live = True
    reads = h.engine.reads
    await h.publish("alice", "c")
    await h.settle()
    assert socket.closed_with == (CloseCode.INTERNAL_ERROR, "stream inconsistent; reconnect")
    assert h.engine.reads - reads == 3
    assert socket.offsets == [1]
    [record] = [r for r in caplog.records if r.name == "runwire.manager"]
    assert record.getMessage() == "stream has a gap after offset 1; closing the connection"
    assert record.levelname == "ERROR"
    assert record.connection_id == connection.id  # type: ignore[attr-defined]


async def _start_work(h: Harness, kind: str) -> tuple[Connection, FakeSocket]:
    """A connection with history work in flight that waits on the engine."""
    await h.publish("alice", "a", "b")
    epoch = h.engine.stream(ALICE).epoch
    connection, socket = await h.connect("alice")
    h.engine.read_gate = asyncio.Event()
    if kind == "in-band replay":
        h.manager.receive(connection, resume_frame(epoch, 0))
    elif kind == "gap":
        h.engine.live = False
        await h.publish("alice", "c")
        h.engine.live = True
        await h.publish("alice", "d")
    elif kind == "resync":
        h.manager.resync(ALICE)
    else:  # an event of a new epoch
        h.engine.lose(ALICE)
        await h.publish("alice", "x")
    return connection, socket


@pytest.mark.parametrize("kind", ["in-band replay", "gap", "resync", "new epoch"])
async def test_history_work_of_a_closed_connection_is_cancelled_at_once(kind: str) -> None:
    h = await harness()
    connection, _ = await _start_work(h, kind)
    for _ in range(10):
        await asyncio.sleep(0)
    assert h.manager.stats()["tasks"] >= 1, "the work waits for the engine"
    h.manager.closed(connection)
    for _ in range(5):
        await asyncio.sleep(0)
    # Owned by the connection, so cancelled with it (not left waiting on the engine).
    assert h.manager.stats()["tasks"] == 0
    assert h.engine.read_gate is not None
    h.engine.read_gate.set()
    await h.settle()


async def test_events_delivered_live_during_a_history_read_are_not_sent_twice_nor_lost() -> None:
    h = await harness()
    h.engine.live = False
    await h.publish("alice", "a", "b", "c", "d")
    epoch = h.engine.stream(ALICE).epoch
    h.engine.read_gate = asyncio.Event()
    connection, socket = h.open("alice", ResumeRequest(epoch, 1))
    await wait_until(lambda: h.engine.reads == 1, what="the replay's read")
    for _ in range(5):
        await asyncio.sleep(0)
    second = h.engine.stream(ALICE).events[1]
    h.engine.deliver(second)  # offset 2 arrives live while the read is out
    h.engine.read_gate.set()  # the read answers 2, 3, 4
    await h.settle()
    assert socket.offsets == [2, 3, 4]
    assert socket.frames[-1] == {"type": "resumed", "epoch": epoch, "from": 1, "to": 4}
    h.manager.closed(connection)


async def test_a_replay_of_many_full_batches_is_not_taken_for_a_stall() -> None:
    h = await harness(outbound_queue_events=1_000, outbound_queue_bytes=1_048_576)
    for index in range(800):  # four history reads of up to 256
        await h.publish("alice", "x", run_id=f"r_{index}")
    epoch = h.engine.stream(ALICE).epoch
    connection, socket = h.open("alice", ResumeRequest(epoch, 0))
    await h.settle()
    assert socket.closed_with is None
    assert socket.offsets == list(range(1, 801))
    h.manager.closed(connection)


async def test_only_reads_in_a_row_that_bring_nothing_count_as_a_stall() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    h.engine.live = False
    await h.publish("alice", "a", "b", "c")
    h.engine.holes = {2}
    h.engine.live = True
    reads = h.engine.reads
    await h.publish("alice", "d")  # a gap: history brings 1, then never 2
    await h.settle()
    assert socket.offsets == [1]
    # One read that moved the cursor, then three that did not.
    assert h.engine.reads - reads == 4
    assert socket.closed_with == (CloseCode.INTERNAL_ERROR, "stream inconsistent; reconnect")


async def test_a_new_epoch_whose_first_event_is_gone_is_followed_from_its_head() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    new = h.engine.lose(ALICE)
    h.engine.live = False
    await h.publish("alice", "a", "b", "c")
    h.engine.trim(ALICE, keep=2)  # history starts at offset 2
    h.manager.resync(ALICE)
    await h.settle()
    assert socket.of_type("resume_failed") == [
        {"type": "resume_failed", "reason": "epoch_changed", "epoch": new, "offset": 3}
    ]
    assert socket.offsets == []


async def test_a_late_event_of_the_old_epoch_changes_nothing() -> None:
    h = await harness()
    _, socket = await h.connect("alice")
    await h.publish("alice", "a")
    await h.settle()
    old = h.engine.stream(ALICE).events[0]
    h.engine.lose(ALICE)
    await h.publish("alice", "b")  # the new epoch: followed
    await h.settle()
    assert len(socket.of_type("resume_failed")) == 1
    h.engine.deliver(old)  # a straggler of the old epoch
    await h.settle()
    assert len(socket.of_type("resume_failed")) == 1
    assert socket.texts == ["a", "b"]


async def test_frames_sent_while_the_replay_waits_on_the_engine_are_answered_after_it() -> None:
    h = await harness()
    h.manager.set_frame_handler(
        lambda connection, frame: h.manager.send(connection, Pong(getattr(frame, "id", "")))
    )
    await h.publish("alice", "a", "b")
    epoch = h.engine.stream(ALICE).epoch
    h.engine.read_gate = asyncio.Event()
    connection, socket = h.open("alice", ResumeRequest(epoch, 0))
    await wait_until(lambda: socket.of_type("connected"), what="connected")
    h.manager.receive(connection, b'{"type":"ping","id":"p1"}')
    for _ in range(5):
        await asyncio.sleep(0)
    assert socket.of_type("pong") == []
    h.engine.read_gate.set()
    await h.settle()
    assert [t for t, _ in kinds(socket)] == [
        "connected",
        "agent_message_delta",
        "agent_message_delta",
        "resumed",
        "pong",
    ]
    h.manager.closed(connection)
