"""Memory-engine specifics: LRU eviction of idle streams, epochs, stats."""

from __future__ import annotations

from runwire.engines.base import ResumeFailure, ResumeFailureReason, StoredEvent
from runwire.engines.memory import HistoryBounds, MemoryEngine
from runwire.events import AgentMessageDelta, Event, encode_envelope
from runwire.ids import UserId
from tests.helpers import Listener

ALICE, BOB, CAROL, DAVE = UserId("alice"), UserId("bob"), UserId("carol"), UserId("dave")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bounds(
    max_users: int = 100,
    max_events: int = 1_000,
    max_bytes: int = 1_048_576,
    ttl_s: float = 3_600.0,
) -> HistoryBounds:
    return HistoryBounds(
        max_events=max_events,
        max_bytes=max_bytes,
        ttl_s=ttl_s,
        max_users=max_users,
        max_event_bytes=65_536,
    )


def event(seq: int = 1) -> Event:
    return Event.of(AgentMessageDelta("x"), run_id="r_1", thread_id="t_1", seq=seq, ts=seq)


async def started(engine: MemoryEngine) -> list[StoredEvent]:
    delivered: list[StoredEvent] = []
    await engine.start(Listener(delivered.append))
    return delivered


async def test_lru_evicts_the_least_recently_used_stream() -> None:
    engine = MemoryEngine(bounds(max_users=2))
    await started(engine)
    await engine.publish(ALICE, event())
    await engine.publish(BOB, event())

    await engine.publish(CAROL, event())

    stats = engine.stats()
    assert stats["streams"] == 2
    assert stats["evicted_streams"] == 1
    assert ALICE not in engine._streams
    assert list(engine._streams) == [BOB, CAROL]


async def test_any_access_refreshes_recency() -> None:
    engine = MemoryEngine(bounds(max_users=2))
    await started(engine)
    alice_epoch = (await engine.publish(ALICE, event())).epoch
    await engine.publish(BOB, event())
    await engine.position(ALICE)  # alice is now the most recently used

    await engine.publish(CAROL, event())

    assert list(engine._streams) == [ALICE, CAROL]
    assert (await engine.position(ALICE)).epoch == alice_epoch


async def test_read_after_refreshes_recency() -> None:
    engine = MemoryEngine(bounds(max_users=2))
    await started(engine)
    alice_epoch = (await engine.publish(ALICE, event())).epoch
    await engine.publish(BOB, event())
    await engine.read_after(ALICE, alice_epoch, 0, 10)

    await engine.publish(CAROL, event())

    assert BOB not in engine._streams
    assert ALICE in engine._streams


async def test_subscribed_stream_is_never_evicted() -> None:
    engine = MemoryEngine(bounds(max_users=2))
    delivered = await started(engine)
    await engine.subscribe(ALICE)
    alice_epoch = (await engine.publish(ALICE, event(1))).epoch

    # Alice is the least recently used stream, yet subscribed: others go instead.
    for other in (BOB, CAROL, DAVE):
        await engine.publish(other, event())

    assert ALICE in engine._streams
    assert engine.stats()["streams"] == 2
    assert engine.stats()["evicted_streams"] == 2
    second = await engine.publish(ALICE, event(2))
    assert (second.epoch, second.offset) == (alice_epoch, 2)
    assert [s.offset for s in delivered] == [1, 2]


async def test_stream_can_be_evicted_after_its_last_unsubscribe() -> None:
    engine = MemoryEngine(bounds(max_users=2))
    await started(engine)
    await engine.subscribe(ALICE)
    await engine.subscribe(ALICE)
    await engine.publish(ALICE, event())
    await engine.publish(BOB, event())
    await engine.unsubscribe(ALICE)
    await engine.publish(CAROL, event())
    assert ALICE in engine._streams  # one subscription left
    assert BOB not in engine._streams

    await engine.unsubscribe(ALICE)
    await engine.publish(DAVE, event())

    assert ALICE not in engine._streams
    assert list(engine._streams) == [CAROL, DAVE]


async def test_evicted_then_recreated_stream_has_a_new_epoch_and_restarts_at_one() -> None:
    engine = MemoryEngine(bounds(max_users=1))
    await started(engine)
    old = [await engine.publish(ALICE, event(seq)) for seq in (1, 2, 3)]
    await engine.publish(BOB, event())  # evicts alice

    position = await engine.position(ALICE)  # recreates alice (evicting bob)

    assert position.epoch != old[0].epoch
    assert position.offset == 0
    fresh = await engine.publish(ALICE, event(1))
    assert (fresh.epoch, fresh.offset) == (position.epoch, 1)
    result = await engine.read_after(ALICE, old[0].epoch, 3, 10)
    assert isinstance(result, ResumeFailure)
    assert result.reason is ResumeFailureReason.EPOCH_CHANGED
    assert result.position.epoch == position.epoch
    assert result.position.offset == 1


COUNTERS = ("streams", "events", "bytes", "evicted_streams", "evicted_events")


def counters(engine: MemoryEngine) -> dict[str, int]:
    stats = engine.stats()
    return {name: stats[name] for name in COUNTERS}


async def test_stats_count_streams_events_and_bytes() -> None:
    clock = FakeClock()
    engine = MemoryEngine(bounds(max_users=2, max_events=3, ttl_s=10.0), clock=clock)
    await started(engine)
    assert counters(engine) == {
        "streams": 0,
        "events": 0,
        "bytes": 0,
        "evicted_streams": 0,
        "evicted_events": 0,
    }

    alice = [await engine.publish(ALICE, event(seq)) for seq in range(1, 6)]  # 2 trimmed
    bob = [await engine.publish(BOB, event(seq)) for seq in range(1, 3)]

    kept = alice[2:] + bob
    assert counters(engine) == {
        "streams": 2,
        "events": 5,
        "bytes": sum(len(s.frame) for s in kept),
        "evicted_streams": 0,
        "evicted_events": 2,
    }

    clock.now = 100.0
    await engine.read_after(ALICE, alice[0].epoch, 5, 10)  # trims alice by age
    await engine.publish(CAROL, event())  # evicts bob (least recently used)

    assert counters(engine) == {
        "streams": 2,
        "events": 1,
        "bytes": len(encode_envelope(event(), 1)),
        "evicted_streams": 1,
        "evicted_events": 5,
    }


async def test_stats_count_subscriptions() -> None:
    engine = MemoryEngine(bounds())
    await started(engine)
    await engine.subscribe(ALICE)
    await engine.subscribe(ALICE)
    await engine.subscribe(BOB)
    assert engine.stats()["subscriptions"] == 3
    await engine.unsubscribe(ALICE)
    await engine.unsubscribe(CAROL)
    assert engine.stats()["subscriptions"] == 2
    assert all(isinstance(value, int) for value in engine.stats().values())


async def test_an_oversized_event_is_stored_then_trimmed() -> None:
    engine = MemoryEngine(bounds(max_bytes=10))
    await started(engine)
    stored = await engine.publish(ALICE, event())
    assert stored.offset == 1
    assert engine.stats()["events"] == 0
    assert engine.stats()["bytes"] == 0
    assert await engine.read_after(ALICE, stored.epoch, 1, 10) == []
    result = await engine.read_after(ALICE, stored.epoch, 0, 10)
    assert isinstance(result, ResumeFailure)
    assert result.reason is ResumeFailureReason.OUT_OF_WINDOW


async def test_close_drops_every_stream_and_stops_delivery() -> None:
    engine = MemoryEngine(bounds())
    delivered = await started(engine)
    await engine.subscribe(ALICE)
    first = await engine.publish(ALICE, event())
    await engine.close()

    assert engine.stats()["streams"] == 0
    assert (await engine.position(ALICE)).epoch != first.epoch
    await engine.subscribe(ALICE)
    await engine.publish(ALICE, event())
    assert [s.offset for s in delivered] == [1]


async def test_publish_before_start_stores_without_delivering() -> None:
    engine = MemoryEngine(bounds())
    await engine.subscribe(ALICE)
    stored = await engine.publish(ALICE, event())
    delivered = await started(engine)
    await engine.publish(ALICE, event(2))
    assert stored.offset == 1
    assert [s.offset for s in delivered] == [2]


async def test_subscribing_a_new_user_at_capacity_keeps_the_subscription() -> None:
    engine = MemoryEngine(bounds(max_users=1))
    delivered = await started(engine)
    await engine.subscribe(ALICE)

    await engine.subscribe(BOB)
    first = await engine.publish(BOB, event(1))
    second = await engine.publish(BOB, event(2))

    assert (second.epoch, second.offset) == (first.epoch, 2)
    assert [(s.user_id, s.offset) for s in delivered] == [(BOB, 1), (BOB, 2)]


async def test_publishing_to_a_new_user_at_capacity_keeps_its_stream() -> None:
    engine = MemoryEngine(bounds(max_users=1))
    await started(engine)
    await engine.subscribe(ALICE)

    first = await engine.publish(BOB, event(1))
    second = await engine.publish(BOB, event(2))

    assert (second.epoch, second.offset) == (first.epoch, 2)
