"""Memory-engine edges test_memory.py leaves open: eviction of several streams at once,
eviction on the last unsubscribe, and history exactly ``history_ttl_s`` old.

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
