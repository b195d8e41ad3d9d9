"""The engine contract (see ``runwire.engines.base``), run against every engine.

To run it against another engine, add one async factory to ``ENGINE_FACTORIES``:
it takes the history bounds and a clock (seconds, monotonic) and returns an
unstarted engine. The suite starts it and closes it.
"""

from __future__ import annotations

import asyncio
import atexit
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from runwire.engines import (
    Engine,
    ResumeFailure,
    ResumeFailureReason,
    StoredEvent,
    StreamPosition,
)
from runwire.engines.memory import HistoryBounds, MemoryEngine
from runwire.events import (
    AgentMessageDelta,
    AgentStarted,
    Event,
    ToolCompleted,
    decode_envelope,
    encode_envelope,
)
from runwire.exceptions import EventRejected
from runwire.ids import Epoch, UserId
from tests.helpers import Listener, wait_until

Clock = Callable[[], float]
EngineFactory = Callable[[HistoryBounds, Clock], Awaitable[Engine]]

DEFAULT_BOUNDS = HistoryBounds(
    max_events=1_000, max_bytes=1_048_576, ttl_s=3_600.0, max_users=1_000, max_event_bytes=65_536
)


async def memory_engine(bounds: HistoryBounds, clock: Clock) -> Engine:
    return MemoryEngine(bounds, clock=clock)


def redis_engine(url: str) -> EngineFactory:
    async def make(bounds: HistoryBounds, clock: Clock) -> Engine:
        from runwire.redis.engine import RedisEngine

        return RedisEngine(
            url,
            max_events=bounds.max_events,
            max_bytes=bounds.max_bytes,
            max_age_s=bounds.ttl_s,
            key_ttl_s=3_600,
            max_event_bytes=bounds.max_event_bytes,
            clock=clock,
        )

    return make


async def sqlite_engine(bounds: HistoryBounds, clock: Clock) -> Engine:
    from runwire.engines.sqlite import SqliteEngine
    from runwire.sqlite.db import Database

    folder = Path(tempfile.mkdtemp(prefix="runwire-contract-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return SqliteEngine(Database(folder / "runwire.db", "full"), bounds, clock=clock)


ENGINE_FACTORIES: dict[str, EngineFactory] = {
    "memory": memory_engine,
    "sqlite": sqlite_engine,
}
"""Engines that need no server; ``redis`` and ``redis-cluster`` are added by the fixture
with its server's (cluster's) URL."""


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeEngine = Callable[..., Awaitable[Engine]]


@pytest.fixture(params=[*sorted(ENGINE_FACTORIES), "redis", "redis-cluster"])
def engine_factory(request: pytest.FixtureRequest) -> EngineFactory:
    if request.param == "redis":
        return redis_engine(request.getfixturevalue("redis_server").url)
    if request.param == "redis-cluster":
        return redis_engine(request.getfixturevalue("redis_cluster").url)
    return ENGINE_FACTORIES[request.param]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def delivered() -> list[StoredEvent]:
    """Every event the engine under test handed to its deliver callback, in order."""
    return []


@pytest.fixture
async def make_engine(
    engine_factory: EngineFactory, clock: FakeClock, delivered: list[StoredEvent]
) -> AsyncIterator[MakeEngine]:
    """Build and start an engine with given bounds; every one is closed after the test."""
    engines: list[Engine] = []

    async def make(bounds: HistoryBounds = DEFAULT_BOUNDS) -> Engine:
        engine = await engine_factory(bounds, clock)
        await engine.start(Listener(delivered.append))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


@pytest.fixture
async def engine(make_engine: MakeEngine) -> Engine:
    return await make_engine()


def user(name: str) -> UserId:
    """A user id unique to this test (engines backed by a shared server keep old data)."""
    return UserId(f"{name}-{secrets.token_hex(4)}")


def event(seq: int = 1, text: str = "x", run_id: str = "r_1") -> Event:
    return Event.of(
        AgentMessageDelta(text), run_id=run_id, thread_id="t_1", seq=seq, ts=1_000 + seq
    )


async def publish_n(
    engine: Engine, user_id: UserId, count: int, text: str = "x"
) -> list[StoredEvent]:
    return [await engine.publish(user_id, event(seq, text)) for seq in range(1, count + 1)]


def offsets(stored: list[StoredEvent] | ResumeFailure) -> list[int]:
    assert isinstance(stored, list), stored
    return [item.offset for item in stored]


def failure(result: list[StoredEvent] | ResumeFailure) -> ResumeFailure:
    assert isinstance(result, ResumeFailure), result
    return result


# -- order ---------------------------------------------------------------------------


async def test_offsets_start_at_one_and_have_no_gap(engine: Engine) -> None:
    alice = user("alice")
    stored = await publish_n(engine, alice, 10)
    assert [item.offset for item in stored] == list(range(1, 11))
    assert len({item.epoch for item in stored}) == 1
    assert all(item.user_id == alice for item in stored)


async def test_offsets_are_independent_per_user(engine: Engine) -> None:
    alice, bob = user("alice"), user("bob")
    got: dict[UserId, list[int]] = {alice: [], bob: []}
    for index in range(12):
        who = alice if index % 3 else bob
        got[who].append((await engine.publish(who, event(index + 1))).offset)
    assert got[alice] == list(range(1, 9))
    assert got[bob] == list(range(1, 5))
    assert (await engine.position(alice)).offset == 8
    assert (await engine.position(bob)).offset == 4


async def test_concurrent_publishes_get_distinct_consecutive_offsets(engine: Engine) -> None:
    alice = user("alice")
    # Concurrent publishers are different runs (a run publishes its events in order).
    stored = await asyncio.gather(
        *(engine.publish(alice, event(1, run_id=f"r_{n}")) for n in range(1, 51))
    )
    assert sorted(item.offset for item in stored) == list(range(1, 51))
    assert offsets(await engine.read_after(alice, stored[0].epoch, 0, 100)) == list(range(1, 51))


# -- stored frame ----------------------------------------------------------------------


async def test_stored_frame_is_the_encoded_envelope_with_the_assigned_offset(
    engine: Engine,
) -> None:
    alice = user("alice")
    await publish_n(engine, alice, 2)
    original = Event.of(
        AgentStarted(agent="demo", input="hello"), run_id="r_9", thread_id="t_9", seq=1, ts=123
    )

    stored = await engine.publish(alice, original)

    assert stored.offset == 3
    assert stored.event == original
    assert stored.user_id == alice
    assert stored.frame == encode_envelope(original, 3)
    envelope = decode_envelope(stored.frame)
    assert envelope.offset == 3
    assert envelope.type == "agent_started"
    assert envelope.run_id == "r_9"
    assert envelope.thread_id == "t_9"
    assert envelope.data == {"agent": "demo", "input": "hello"}


async def test_read_after_returns_the_same_stored_events(engine: Engine) -> None:
    alice = user("alice")
    published = await publish_n(engine, alice, 3)
    replay = await engine.read_after(alice, published[0].epoch, 0, 10)
    assert isinstance(replay, list)
    assert [(s.offset, s.frame, s.event, s.epoch) for s in replay] == [
        (s.offset, s.frame, s.event, s.epoch) for s in published
    ]


async def drain(engine: Engine, delivered: list[StoredEvent]) -> None:
    """Wait until every event published so far has been delivered (or never will be).

    Publishes to a probe user subscribed on this engine and waits for it: an engine
    delivers in publish order, so everything published before has arrived by then.
    """
    probe = user("probe")
    await engine.subscribe(probe)
    await engine.publish(probe, event(1))
    for _ in range(2_000):
        if any(item.user_id == probe for item in delivered):
            break
        await asyncio.sleep(0.005)
    else:
        raise AssertionError("the probe event was never delivered")
    delivered[:] = [item for item in delivered if item.user_id != probe]
    await engine.unsubscribe(probe)


# -- delivery and subscription ---------------------------------------------------------


async def test_deliver_receives_only_subscribed_users_in_order(
    engine: Engine, delivered: list[StoredEvent]
) -> None:
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    await engine.subscribe(alice)
    await engine.subscribe(carol)

    published = []
    for seq in range(1, 7):
        for who in (alice, bob, carol):
            published.append(await engine.publish(who, event(seq)))

    await drain(engine, delivered)
    # Order is per user: on a Redis Cluster two users' events come through different
    # shards' subscriptions, so how they interleave (and when each arrives next to
    # the probe's) is not fixed.
    for who in (alice, carol):
        await wait_until(
            lambda: sum(s.user_id == who for s in delivered) >= 6,  # noqa: B023
            10,
            what=f"the events of {who}",
        )
    assert {s.user_id for s in delivered} == {alice, carol}
    for who in (alice, carol):
        mine = [s for s in published if s.user_id == who]
        assert [(s.offset, s.frame) for s in delivered if s.user_id == who] == [
            (s.offset, s.frame) for s in mine
        ]
        assert [s.offset for s in mine] == list(range(1, 7))


async def test_unsubscribed_user_is_not_delivered(
    engine: Engine, delivered: list[StoredEvent]
) -> None:
    alice = user("alice")
    await engine.publish(alice, event(1))
    await drain(engine, delivered)
    assert delivered == []
    await engine.subscribe(alice)
    await engine.publish(alice, event(2))
    await drain(engine, delivered)
    assert [s.offset for s in delivered] == [2]


async def test_subscription_is_counted(engine: Engine, delivered: list[StoredEvent]) -> None:
    alice = user("alice")
    await engine.subscribe(alice)
    await engine.subscribe(alice)
    await engine.unsubscribe(alice)

    await engine.publish(alice, event(1))
    await drain(engine, delivered)
    assert [s.offset for s in delivered] == [1]  # still one subscription left

    await engine.unsubscribe(alice)
    await engine.publish(alice, event(2))
    await drain(engine, delivered)
    assert [s.offset for s in delivered] == [1]  # the last one is gone


async def test_each_event_is_delivered_once_whatever_the_subscription_count(
    engine: Engine, delivered: list[StoredEvent]
) -> None:
    alice = user("alice")
    for _ in range(3):
        await engine.subscribe(alice)
    await publish_n(engine, alice, 2)
    await drain(engine, delivered)
    assert [s.offset for s in delivered] == [1, 2]


async def test_extra_unsubscribe_is_harmless(engine: Engine, delivered: list[StoredEvent]) -> None:
    alice, never = user("alice"), user("never")
    await engine.unsubscribe(never)
    await engine.subscribe(alice)
    await engine.unsubscribe(alice)
    await engine.unsubscribe(alice)
    await engine.subscribe(alice)

    await engine.publish(alice, event(1))

    await drain(engine, delivered)
    assert [s.offset for s in delivered] == [1]


async def test_unsubscribe_keeps_history(engine: Engine) -> None:
    alice = user("alice")
    await engine.subscribe(alice)
    published = await publish_n(engine, alice, 3)
    await engine.unsubscribe(alice)
    position = await engine.position(alice)
    assert position == StreamPosition(published[0].epoch, 3)
    assert offsets(await engine.read_after(alice, position.epoch, 1, 10)) == [2, 3]


# -- history -------------------------------------------------------------------------


async def test_read_after_returns_later_events_in_order(engine: Engine) -> None:
    alice = user("alice")
    epoch = (await publish_n(engine, alice, 5))[0].epoch
    assert offsets(await engine.read_after(alice, epoch, 0, 100)) == [1, 2, 3, 4, 5]
    assert offsets(await engine.read_after(alice, epoch, 2, 100)) == [3, 4, 5]
    assert offsets(await engine.read_after(alice, epoch, 4, 100)) == [5]


@pytest.mark.parametrize(
    ("after", "limit", "expected"), [(0, 2, [1, 2]), (1, 3, [2, 3, 4]), (3, 5, [4, 5]), (0, 1, [1])]
)
async def test_read_after_respects_limit(
    engine: Engine, after: int, limit: int, expected: list[int]
) -> None:
    alice = user("alice")
    epoch = (await publish_n(engine, alice, 5))[0].epoch
    assert offsets(await engine.read_after(alice, epoch, after, limit)) == expected


async def test_read_after_pages_through_the_whole_history(engine: Engine) -> None:
    alice = user("alice")
    epoch = (await publish_n(engine, alice, 23))[0].epoch
    seen: list[int] = []
    cursor = 0
    while True:
        page = await engine.read_after(alice, epoch, cursor, 5)
        assert isinstance(page, list)
        if not page:
            break
        seen.extend(item.offset for item in page)
        cursor = page[-1].offset
    assert seen == list(range(1, 24))


async def test_read_after_at_head_is_empty(engine: Engine) -> None:
    alice = user("alice")
    epoch = (await publish_n(engine, alice, 3))[0].epoch
    assert await engine.read_after(alice, epoch, 3, 10) == []


async def test_read_after_on_an_empty_stream_at_zero_is_empty(engine: Engine) -> None:
    alice = user("alice")
    position = await engine.position(alice)
    assert position.offset == 0
    assert await engine.read_after(alice, position.epoch, 0, 10) == []


async def test_read_after_with_a_wrong_epoch_is_epoch_changed(engine: Engine) -> None:
    alice = user("alice")
    epoch = (await publish_n(engine, alice, 3))[0].epoch
    wrong = Epoch("not-" + epoch)

    result = failure(await engine.read_after(alice, wrong, 1, 10))

    assert result.reason is ResumeFailureReason.EPOCH_CHANGED
    assert result.position == StreamPosition(epoch, 3)


async def test_read_after_beyond_head_is_invalid_offset(engine: Engine) -> None:
    alice = user("alice")
    epoch = (await publish_n(engine, alice, 3))[0].epoch
    for beyond in (4, 100):
        result = failure(await engine.read_after(alice, epoch, beyond, 10))
        assert result.reason is ResumeFailureReason.INVALID_OFFSET
        assert result.position == StreamPosition(epoch, 3)


async def test_read_after_a_negative_offset_is_invalid_offset(engine: Engine) -> None:
    alice = user("alice")
    epoch = (await publish_n(engine, alice, 1))[0].epoch
    result = failure(await engine.read_after(alice, epoch, -1, 10))
    assert result.reason is ResumeFailureReason.INVALID_OFFSET


async def test_history_is_per_user(engine: Engine) -> None:
    alice, bob = user("alice"), user("bob")
    alice_events = await publish_n(engine, alice, 3, text="alice")
    bob_events = await publish_n(engine, bob, 2, text="bob")
    a = await engine.read_after(alice, alice_events[0].epoch, 0, 10)
    b = await engine.read_after(bob, bob_events[0].epoch, 0, 10)
    assert isinstance(a, list) and isinstance(b, list)
    assert {s.user_id for s in a} == {alice}
    assert {s.user_id for s in b} == {bob}
    assert [s.event.data for s in a] == [AgentMessageDelta("alice")] * 3
    assert [s.event.data for s in b] == [AgentMessageDelta("bob")] * 2


# -- bounds --------------------------------------------------------------------------


async def test_history_bounded_by_count(make_engine: MakeEngine) -> None:
    engine = await make_engine(
        HistoryBounds(
            max_events=3, max_bytes=1_048_576, ttl_s=3_600.0, max_users=100, max_event_bytes=65_536
        )
    )
    alice = user("alice")
    epoch = (await publish_n(engine, alice, 5))[0].epoch

    for gone in (0, 1):
        result = failure(await engine.read_after(alice, epoch, gone, 10))
        assert result.reason is ResumeFailureReason.OUT_OF_WINDOW
        assert result.position == StreamPosition(epoch, 5)
    assert offsets(await engine.read_after(alice, epoch, 2, 10)) == [3, 4, 5]
    assert offsets(await engine.read_after(alice, epoch, 4, 10)) == [5]
    assert await engine.read_after(alice, epoch, 5, 10) == []


async def test_history_bounded_by_bytes(make_engine: MakeEngine) -> None:
    text = "y" * 200
    size = len(encode_envelope(event(1, text), 1))
    assert size == len(encode_envelope(event(9, text), 9))  # every frame the same size
    engine = await make_engine(
        HistoryBounds(
            max_events=1_000,
            max_bytes=3 * size,
            ttl_s=3_600.0,
            max_users=100,
            max_event_bytes=65_536,
        )
    )
    alice = user("alice")
    epoch = (await publish_n(engine, alice, 5, text=text))[0].epoch

    result = failure(await engine.read_after(alice, epoch, 1, 10))
    assert result.reason is ResumeFailureReason.OUT_OF_WINDOW
    assert offsets(await engine.read_after(alice, epoch, 2, 10)) == [3, 4, 5]


async def test_history_bounded_by_bytes_keeps_what_fits(make_engine: MakeEngine) -> None:
    text = "y" * 200
    size = len(encode_envelope(event(1, text), 1))
    engine = await make_engine(
        HistoryBounds(
            max_events=1_000,
            max_bytes=3 * size - 1,
            ttl_s=3_600.0,
            max_users=100,
            max_event_bytes=65_536,
        )
    )
    alice = user("alice")
    epoch = (await publish_n(engine, alice, 5, text=text))[0].epoch

    assert failure(await engine.read_after(alice, epoch, 2, 10)).reason is (
        ResumeFailureReason.OUT_OF_WINDOW
    )
    assert offsets(await engine.read_after(alice, epoch, 3, 10)) == [4, 5]


async def test_history_bounded_by_age(make_engine: MakeEngine, clock: FakeClock) -> None:
    engine = await make_engine(
        HistoryBounds(
            max_events=1_000, max_bytes=1_048_576, ttl_s=10.0, max_users=100, max_event_bytes=65_536
        )
    )
    alice = user("alice")
    epoch = (await engine.publish(alice, event(1))).epoch  # t = 0
    clock.advance(6)
    await engine.publish(alice, event(2))  # t = 6
    assert offsets(await engine.read_after(alice, epoch, 0, 10)) == [1, 2]

    clock.advance(6)  # t = 12: event 1 is 12 s old, event 2 is 6 s old

    result = failure(await engine.read_after(alice, epoch, 0, 10))
    assert result.reason is ResumeFailureReason.OUT_OF_WINDOW
    assert result.position == StreamPosition(epoch, 2)
    assert offsets(await engine.read_after(alice, epoch, 1, 10)) == [2]

    clock.advance(5)  # t = 17: both are older than 10 s

    assert failure(await engine.read_after(alice, epoch, 1, 10)).reason is (
        ResumeFailureReason.OUT_OF_WINDOW
    )
    assert await engine.read_after(alice, epoch, 2, 10) == []  # head is still resumable
    assert await engine.position(alice) == StreamPosition(epoch, 2)


async def test_expired_history_does_not_reset_offsets(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    engine = await make_engine(
        HistoryBounds(
            max_events=1_000, max_bytes=1_048_576, ttl_s=10.0, max_users=100, max_event_bytes=65_536
        )
    )
    alice = user("alice")
    first = await engine.publish(alice, event(1))
    clock.advance(60)
    second = await engine.publish(alice, event(2))
    assert (second.epoch, second.offset) == (first.epoch, 2)
    assert offsets(await engine.read_after(alice, first.epoch, 1, 10)) == [2]


# -- position ------------------------------------------------------------------------


async def test_position_of_a_new_user_is_zero(engine: Engine) -> None:
    position = await engine.position(user("nobody"))
    assert position.offset == 0
    assert position.epoch


async def test_position_reports_epoch_and_latest_offset(engine: Engine) -> None:
    alice = user("alice")
    before = await engine.position(alice)
    published = await publish_n(engine, alice, 4)
    after = await engine.position(alice)
    assert after == StreamPosition(published[-1].epoch, 4)
    assert after.epoch == before.epoch  # the epoch changes only when history is lost
    assert {s.epoch for s in published} == {before.epoch}


async def test_epochs_differ_between_users(engine: Engine) -> None:
    first = await engine.position(user("alice"))
    second = await engine.position(user("bob"))
    assert first.epoch != second.epoch


# -- lifecycle -----------------------------------------------------------------------


async def test_close_is_idempotent(engine: Engine, delivered: list[StoredEvent]) -> None:
    alice = user("alice")
    await engine.subscribe(alice)
    await engine.publish(alice, event(1))
    await drain(engine, delivered)
    await engine.close()
    await engine.close()  # must not raise
    assert [s.offset for s in delivered] == [1]


async def test_stats_are_integers(engine: Engine) -> None:
    await publish_n(engine, user("alice"), 2)
    stats = engine.stats()
    assert stats
    assert all(isinstance(key, str) and isinstance(value, int) for key, value in stats.items())


# -- refused events ------------------------------------------------------------------


class _Opaque:
    """Not JSON-encodable."""


def _tool_result(value: object, seq: int) -> Event:
    return Event.of(
        ToolCompleted("c1", "calc", True, 0.1, result=value),
        run_id="r_1",
        thread_id="t_1",
        seq=seq,
        ts=1_000 + seq,
    )


def _cyclic() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


UNENCODABLE: dict[str, object] = {
    "huge int": ((9**64) ** 64) ** 64,
    "object": _Opaque(),
    "cycle": _cyclic(),
    "lone surrogate": "\ud800",
    "too big": "z" * 70_000,
}


@pytest.mark.parametrize("value", UNENCODABLE.values(), ids=list(UNENCODABLE))
async def test_a_refused_event_takes_no_offset(
    engine: Engine, delivered: list[StoredEvent], value: object
) -> None:
    """An event that cannot be encoded (or is over max_event_bytes) is refused before it
    takes an offset: the next event gets the next offset, history has no gap."""
    alice = user("alice")
    await engine.subscribe(alice)
    first = await engine.publish(alice, event(1))
    with pytest.raises(EventRejected) as refused:
        await engine.publish(alice, _tool_result(value, 2))
    assert "tool_completed" in refused.value.reason
    after = await engine.publish(alice, event(3))
    assert (first.offset, after.offset) == (1, 2)
    assert (await engine.position(alice)).offset == 2
    assert offsets(await engine.read_after(alice, first.epoch, 0, 10)) == [1, 2]
    await drain(engine, delivered)
    assert [s.offset for s in delivered if s.user_id == alice] == [1, 2]


async def test_an_event_of_exactly_max_event_bytes_is_stored(make_engine: MakeEngine) -> None:
    """The limit is inclusive and holds whatever the offset's width."""
    limit = 4_096
    engine = await make_engine(
        HistoryBounds(
            max_events=100, max_bytes=1_048_576, ttl_s=3_600.0, max_users=100, max_event_bytes=limit
        )
    )
    alice = user("alice")
    overhead = len(encode_envelope(event(1, ""), 1))
    stored = await engine.publish(alice, event(1, "a" * (limit - overhead - 18)))
    assert len(stored.frame) <= limit
    with pytest.raises(EventRejected):
        await engine.publish(alice, event(2, "a" * limit))
