"""A producer publishing in a loop on the memory engine cannot hold the event loop.

The memory engine stores and queues an event without suspending, so before this
bound a producer that published without awaiting anything else (a run replaying a
burst, the bench's publisher catching up on missed ticks) held the loop until it
stopped: no socket was written, no other run or client frame was served, and every
event it published reached the wire at once, late. ``Pipeline.publish`` now yields
to the loop once per :data:`~runwire.pipeline.PUBLISHES_PER_TURN` publishes in one
turn.
"""

from __future__ import annotations

import asyncio
import collections

from runwire.engines.base import StoredEvent
from runwire.engines.memory import HistoryBounds, MemoryEngine
from runwire.events import AgentMessageDelta, Event
from runwire.ids import UserId
from runwire.pipeline import PUBLISHES_PER_TURN, Pipeline
from runwire.runs import RunStore
from tests.helpers import Listener, connect, running_gateway

ALICE = UserId("alice")


def _event(seq: int) -> Event:
    return Event.of(AgentMessageDelta(str(seq)), run_id="r_1", thread_id="t", seq=seq, ts=0)


async def _pipeline() -> tuple[Pipeline, MemoryEngine]:
    bounds = HistoryBounds(
        max_events=100_000, max_bytes=1 << 26, ttl_s=3600.0, max_users=10, max_event_bytes=65536
    )
    engine = MemoryEngine(bounds)
    pipeline = Pipeline(engine, RunStore(runs_per_user=4, max_users=10))
    await engine.start(Listener(lambda stored: None))
    return pipeline, engine


class _Turns:
    """Counts turns of the event loop: a callback that schedules itself again."""

    def __init__(self) -> None:
        self.count = 0
        self._handle: asyncio.Handle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def test_a_publishing_loop_gives_the_loop_a_turn_every_publishes_per_turn() -> None:
    """Ten bounds' worth of publishes in a loop that awaits nothing else: the loop
    turns between them, never more than PUBLISHES_PER_TURN publishes apart, and
    every event is stored in order."""
    pipeline, engine = await _pipeline()
    turns = _Turns()
    turns_at: list[int] = []
    total = 10 * PUBLISHES_PER_TURN
    turns.start()
    try:
        for seq in range(1, total + 1):
            await pipeline.publish(ALICE, _event(seq))
            turns_at.append(turns.count)
    finally:
        turns.stop()
    per_turn = collections.Counter(turns_at)  # publishes made in each turn
    assert max(per_turn.values()) <= PUBLISHES_PER_TURN
    assert len(per_turn) >= total // PUBLISHES_PER_TURN
    assert (await engine.position(ALICE)).offset == total


async def test_the_bound_holds_over_all_producers_of_a_turn() -> None:
    """Eight producers publishing in loops at once: still at most PUBLISHES_PER_TURN
    publishes between two turns of the loop (producers that yielded together share
    the next turn's budget), and each producer's events stay in its order."""
    pipeline, engine = await _pipeline()
    turns = _Turns()
    turns_at: list[int] = []
    users = [UserId(f"p{i}") for i in range(8)]
    per_producer = 4 * PUBLISHES_PER_TURN

    async def produce(user_id: UserId) -> None:
        for seq in range(1, per_producer + 1):
            await pipeline.publish(user_id, _event(seq))
            turns_at.append(turns.count)

    turns.start()
    try:
        await asyncio.gather(*(produce(user_id) for user_id in users))
    finally:
        turns.stop()
    assert max(collections.Counter(turns_at).values()) <= PUBLISHES_PER_TURN
    for user_id in users:
        assert (await engine.position(user_id)).offset == per_producer


async def test_publishes_below_the_bound_do_not_yield() -> None:
    """A producer publishing fewer events than the bound in a turn keeps its turn:
    no extra loop iteration, no added latency at a steady rate."""
    pipeline, _ = await _pipeline()
    turns = _Turns()
    await asyncio.sleep(0)  # a fresh turn: nothing published in it yet
    turns.start()
    try:
        before = turns.count
        for seq in range(1, PUBLISHES_PER_TURN + 1):
            await pipeline.publish(ALICE, _event(seq))
        assert turns.count == before
        await pipeline.publish(ALICE, _event(PUBLISHES_PER_TURN + 1))
        assert turns.count > before  # the one past the bound yielded first
    finally:
        turns.stop()


async def test_a_cancellation_at_the_yield_stores_nothing() -> None:
    """Cancelled while it yields, a publish raises before it takes an offset: what the
    producer saw stored is exactly what the stream holds."""
    pipeline, engine = await _pipeline()
    stored: list[StoredEvent] = []
    under_way = asyncio.Event()

    async def produce() -> None:
        for seq in range(1, 100 * PUBLISHES_PER_TURN):
            stored.append(await pipeline.publish(ALICE, _event(seq)))
            if len(stored) == 3 * PUBLISHES_PER_TURN:
                under_way.set()

    producer = asyncio.create_task(produce())
    await asyncio.wait_for(under_way.wait(), 5)
    assert not producer.done()
    producer.cancel()
    await asyncio.gather(producer, return_exceptions=True)
    assert producer.cancelled()
    position = await engine.position(ALICE)
    assert position.offset == len(stored)
    assert [s.offset for s in stored] == list(range(1, len(stored) + 1))


async def test_a_socket_receives_events_while_a_producer_is_still_publishing() -> None:
    """On a real socket: a client gets its first frame while a producer that never
    awaits anything but ``gateway.publish`` is still publishing (before the bound,
    the first frame was written only after the producer's last publish)."""
    total = 20 * PUBLISHES_PER_TURN
    async with running_gateway(outbound_queue_events=2 * total) as gateway:
        async with connect(gateway, "alice") as client:
            published = 0

            async def produce() -> None:
                nonlocal published
                for seq in range(1, total + 1):
                    await gateway.publish(ALICE, _event(seq))
                    published += 1

            producer = asyncio.create_task(produce())
            first = await client.recv(timeout=10)
            published_at_first_frame = published
            await producer
            frames = [first] + [await client.recv(timeout=10) for _ in range(total - 1)]
    assert published_at_first_frame < total
    assert [frame["offset"] for frame in frames] == list(range(1, total + 1))
