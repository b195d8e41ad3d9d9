"""Memory-engine edges test_memory.py leaves open: eviction of several streams at once,
eviction on the last unsubscribe, history exactly ``history_ttl_s`` old, and the cost
of creating a stream at the bound when many streams are subscribed.

Written against the mutants that survived ``make mutate`` (docs/architecture.md,
"Mutation testing").
"""

from __future__ import annotations

from runwire.engines.memory import HistoryBounds, MemoryEngine
from runwire.events import AgentMessageDelta, Event
from runwire.ids import UserId

A, B, C = UserId("a"), UserId("b"), UserId("c")


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def engine(
    max_users: int = 100, ttl_s: float = 3_600.0, clock: Clock | None = None
) -> MemoryEngine:
    bounds = HistoryBounds(
        max_events=1_000,
        max_bytes=1_048_576,
        ttl_s=ttl_s,
        max_users=max_users,
        max_event_bytes=65_536,
    )
    return MemoryEngine(bounds, clock or Clock())


def event(seq: int = 1) -> Event:
    return Event.of(AgentMessageDelta("x"), run_id="r_1", thread_id="t_1", seq=seq, ts=seq)


async def test_every_stream_beyond_the_bound_is_evicted_at_once() -> None:
    memory = engine(max_users=1)
    await memory.subscribe(A)
    await memory.subscribe(B)  # two streams over a bound of one: both subscribed
    await memory.publish(C, event())  # a third, unsubscribed
    assert memory.stats()["streams"] == 3
    await memory.unsubscribe(A)  # two evictable now: A and C
    assert memory.stats()["streams"] == 1
    assert memory.evicted_streams == 2
    assert (await memory.position(B)).offset == 0  # B, subscribed, kept


async def test_the_last_unsubscribe_evicts_at_once_an_earlier_one_does_not() -> None:
    memory = engine(max_users=1)
    await memory.subscribe(A)
    await memory.subscribe(A)
    await memory.publish(B, event())  # over the bound; A is subscribed, B is new
    assert memory.stats()["streams"] == 2
    await memory.unsubscribe(A)
    assert memory.stats()["streams"] == 2  # A is still subscribed once
    await memory.unsubscribe(A)
    assert memory.stats()["streams"] == 1
    assert memory.evicted_streams == 1


async def test_history_exactly_ttl_old_is_kept_and_older_is_dropped() -> None:
    clock = Clock()
    memory = engine(ttl_s=10.0, clock=clock)
    stored = await memory.publish(A, event())
    clock.now += 10.0
    assert await memory.read_after(A, stored.epoch, 0, 10) == [stored]
    clock.now += 0.001
    later = await memory.read_after(A, stored.epoch, 0, 10)
    assert not isinstance(later, list)  # out of window: offset 1 left
    assert memory.evicted_events == 1


class CountingId(str):
    """A user id that counts how often the engine hashes or compares it: the work an
    eviction does on the streams it examines."""

    __slots__ = ()
    uses = 0

    def __hash__(self) -> int:
        CountingId.uses += 1
        return str.__hash__(self)

    def __eq__(self, other: object) -> bool:
        CountingId.uses += 1
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        CountingId.uses += 1
        return str.__ne__(self, other)


async def test_a_stream_created_at_the_bound_does_not_walk_the_subscribed_ones() -> None:
    """20,000 subscribed streams, the oldest, then idle ones up to the bound: 100 new
    streams each evict one idle stream. The work (hashes and comparisons of ids) stays
    near one pass over the subscribed streams plus a constant per new stream; walking
    past every subscribed stream for each new one (the old scan) is 100 passes."""
    subscribed, idle, new = 20_000, 1_000, 100
    memory = engine(max_users=subscribed + idle)
    held = [UserId(CountingId(f"held-{i}")) for i in range(subscribed)]
    for user_id in held:
        await memory.subscribe(user_id)
    for i in range(idle):
        await memory.publish(UserId(CountingId(f"idle-{i}")), event())
    CountingId.uses = 0
    for i in range(new):
        await memory.publish(UserId(CountingId(f"new-{i}")), event())
    assert memory.evicted_streams == new
    assert CountingId.uses <= 2 * subscribed + 20 * new, CountingId.uses
    CountingId.uses = 0
    for i in range(new, 2 * new):  # the subscribed streams were passed once, for good
        await memory.publish(UserId(CountingId(f"new-{i}")), event())
    assert CountingId.uses <= 20 * new, CountingId.uses
    assert memory.stats()["streams"] == subscribed + idle
    assert memory.stats()["subscriptions"] == subscribed
    assert all(user_id in memory._streams for user_id in held)


async def test_eviction_stays_least_recently_used_first_and_spares_subscribed() -> None:
    """Streams a subscribed pass left behind keep their place when they are freed: the
    least recently used goes first whatever order the users left in; a touch makes a
    stream the newest again; a subscribed stream is never evicted."""
    d, e, f, g, h, i = (UserId(name) for name in "defghi")
    memory = engine(max_users=4)
    for user_id in (A, B, C):
        await memory.subscribe(user_id)  # oldest first: a, b, c
    await memory.publish(d, event())
    await memory.publish(e, event())  # over the bound: a, b, c passed, d evicted
    assert list(memory._streams) == [A, B, C, e]
    await memory.unsubscribe(C)
    await memory.unsubscribe(A)  # a left after c, yet a was used before c
    await memory.publish(f, event())
    assert A not in memory._streams and C in memory._streams
    await memory.publish(g, event())
    assert C not in memory._streams
    await memory.publish(B, event())  # b (subscribed) is now the newest
    await memory.publish(h, event())  # e is the oldest unsubscribed
    assert set(memory._streams) == {B, f, g, h}
    await memory.unsubscribe(B)
    await memory.publish(i, event())  # b was used after f: f goes
    assert set(memory._streams) == {B, g, h, i}
    assert memory.evicted_streams == 5
    assert (await memory.position(B)).offset == 1  # b's stream, never evicted
