"""The lean Redis publish path against a real Redis: batches, local delivery and the
echo, (run, seq) deduplication inside a batch, and a Redis restart mid-batch."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from runwire.engines.base import StoredEvent
from runwire.events import AgentMessageDelta, Event
from runwire.exceptions import EngineError
from runwire.ids import UserId
from runwire.redis.engine import RedisEngine
from tests.helpers import Listener, wait_until
from tests.redis_server import RedisServer, engine_on


def user(name: str) -> UserId:
    return UserId(f"{name}-{secrets.token_hex(4)}")


def event(seq: int, run_id: str = "r_1", text: str = "x") -> Event:
    return Event.of(AgentMessageDelta(text), run_id=run_id, thread_id="t", seq=seq, ts=seq)


class Node:
    """One engine, its deliveries, and a switch that holds its pub/sub echoes back."""

    def __init__(self, engine: RedisEngine) -> None:
        self.engine = engine
        self.delivered: list[StoredEvent] = []
        self.held: list[tuple[bytes, bytes]] = []
        self.holding = False
        self._on_message = engine.on_message
        engine.on_message = self._echo  # type: ignore[method-assign]

    def _echo(self, channel: bytes, data: bytes) -> None:
        if self.holding:
            self.held.append((channel, data))
        else:
            self._on_message(channel, data)

    def release(self, times: int = 1) -> None:
        """Let the held echoes arrive (``times`` over: duplicated)."""
        held, self.held, self.holding = self.held, [], False
        for _ in range(times):
            for channel, data in held:
                self._on_message(channel, data)

    def offsets(self, user_id: UserId) -> list[int]:
        return [s.offset for s in self.delivered if s.user_id == user_id]


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[Callable[[], asyncio.Future[Node]]]:
    made: list[Node] = []

    async def make(url: str = redis_server.url) -> Node:
        engine = engine_on(url)
        node = Node(engine)
        await engine.start(Listener(node.delivered.append))
        made.append(node)
        return node

    yield make  # type: ignore[misc]
    for node in made:
        await node.engine.close()


async def test_own_events_are_delivered_before_their_echo_and_the_echo_is_skipped(
    nodes: Callable[[], asyncio.Future[Node]],
) -> None:
    node = await nodes()
    alice = user("alice")
    await node.engine.subscribe(alice)
    await node.engine.publish(alice, event(1))
    await wait_until(lambda: node.offsets(alice) == [1], what="the first event's echo")
    node.holding = True  # every echo from now on arrives late
    for seq in range(2, 6):
        stored = await node.engine.publish(alice, event(seq))
        assert node.offsets(alice)[-1] == stored.offset  # delivered when publish returns
    assert node.offsets(alice) == [1, 2, 3, 4, 5]
    await wait_until(lambda: len(node.held) == 4, what="the late echoes")
    node.release(times=2)  # late and duplicated
    assert node.offsets(alice) == [1, 2, 3, 4, 5]
    assert node.engine.local_deliveries == 4 and node.engine.echoes_skipped == 8


async def test_a_local_event_after_another_nodes_unechoed_event_waits_for_it(
    nodes: Callable[[], asyncio.Future[Node]],
) -> None:
    here, there = await nodes(), await nodes()
    alice = user("alice")
    await here.engine.subscribe(alice)
    await here.engine.publish(alice, event(1))
    await wait_until(lambda: here.offsets(alice) == [1], what="the first echo")
    here.holding = True
    await there.engine.publish(alice, event(1, run_id="r_2"))  # offset 2, echo held
    await here.engine.publish(alice, event(2))  # offset 3: must not overtake offset 2
    assert here.offsets(alice) == [1]
    await wait_until(lambda: len(here.held) == 2, what="both echoes")
    here.release()
    assert here.offsets(alice) == [1, 2, 3]
    assert [s.event.run_id for s in here.delivered] == ["r_1", "r_2", "r_1"]


async def test_a_burst_is_one_batch_in_submission_order_across_users_and_runs(
    nodes: Callable[[], asyncio.Future[Node]],
) -> None:
    publisher, watcher = await nodes(), await nodes()
    users = [user(f"u{i}") for i in range(5)]
    for u in users:
        await publisher.engine.subscribe(u)  # local delivery for these...
        await watcher.engine.subscribe(u)  # ...and the echo everywhere else
    for u in users:  # one echo each, so local delivery applies from the next event
        await publisher.engine.publish(u, event(1, "r_a"))
    await wait_until(lambda: len(publisher.delivered) == 5, what="first echoes")
    before = publisher.engine._batcher.batches
    tasks = [  # interleaved: user by user, two runs per user, all in one iteration
        asyncio.ensure_future(publisher.engine.publish(u, event(seq, run)))
        for seq in range(2, 6)
        for u in users
        for run in ("r_a", "r_b")
    ]
    results = await asyncio.gather(*tasks)
    assert publisher.engine._batcher.batches == before + 1
    for u in users:
        mine = [r for r in results if r.user_id == u]
        assert [r.offset for r in mine] == list(range(2, 10))  # in submission order
        assert [(r.event.run_id, r.event.seq) for r in mine] == [
            (run, seq) for seq in range(2, 6) for run in ("r_a", "r_b")
        ]
        await wait_until(lambda u=u: len(watcher.offsets(u)) == 9, what="the echoes")
        assert watcher.offsets(u) == list(range(1, 10))
        assert publisher.offsets(u) == list(range(1, 10))
        assert [s.frame for s in watcher.delivered if s.user_id == u] == [
            s.frame for s in publisher.delivered if s.user_id == u
        ]
        history = await publisher.engine.read_after(u, mine[0].epoch, 0, 100)
        assert isinstance(history, list)
        assert [s.frame for s in history] == [s.frame for s in watcher.delivered if s.user_id == u]


async def test_a_repeated_run_seq_in_one_batch_is_stored_once(
    nodes: Callable[[], asyncio.Future[Node]],
) -> None:
    node = await nodes()
    alice = user("alice")
    first, again, nxt = await asyncio.gather(
        node.engine.publish(alice, event(1)),
        node.engine.publish(alice, event(1)),
        node.engine.publish(alice, event(2)),
    )
    assert (first.offset, again.offset, nxt.offset) == (1, 1, 2)
    history = await node.engine.read_after(alice, first.epoch, 0, 10)
    assert isinstance(history, list) and [s.offset for s in history] == [1, 2]


async def test_a_redis_restart_mid_batch_loses_and_repeats_nothing(
    tmp_path: Path, nodes: Callable[..., asyncio.Future[Node]]
) -> None:
    """A batch is in flight (Redis paused) when Redis restarts (with persistence): the
    batch is sent again or fails; retried like the runtime does, every (run, seq) ends
    up stored once, at gap-free offsets in one epoch."""
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    try:
        node = await nodes(server.url)
        alice = user("alice")
        await node.engine.subscribe(alice)
        first = await node.engine.publish(alice, event(1))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as admin:
            admin.sendall(b"CLIENT PAUSE 3000 WRITE\r\n")  # hold the next script call
            assert admin.recv(16).startswith(b"+OK")
        tasks = [asyncio.ensure_future(node.engine.publish(alice, event(s))) for s in range(2, 7)]
        await wait_until(lambda: node.engine._batcher.in_flight, what="the batch in flight")
        await asyncio.sleep(0.05)  # the script call is on the wire, held by the pause
        assert not any(task.done() for task in tasks)
        server.restart()

        async def retried(seq: int, task: asyncio.Future[StoredEvent]) -> StoredEvent:
            try:
                return await task
            except EngineError:
                pass
            for _ in range(100):
                try:
                    return await node.engine.publish(alice, event(seq))
                except EngineError:
                    await asyncio.sleep(0.05)
            raise AssertionError("redis did not come back")

        pairs = zip(range(2, 7), tasks, strict=True)
        stored = await asyncio.gather(*(retried(seq, task) for seq, task in pairs))
        assert {s.epoch for s in stored} == {first.epoch}
        assert [s.offset for s in stored] == [2, 3, 4, 5, 6]
        history = await node.engine.read_after(alice, first.epoch, 0, 100)
        assert isinstance(history, list)
        assert [(s.offset, s.event.seq) for s in history] == [(o, o) for o in range(1, 7)]
        await wait_until(lambda: node.engine.available, what="available again")
    finally:
        server.stop()


async def test_nothing_of_a_run_is_stored_after_its_terminal_event(
    nodes: Callable[[], asyncio.Future[Node]],
) -> None:
    """A node taken for dead whose agent goes on (another node ended its run with
    ``node_lost``) cannot add to the ended run: was stored after the terminal event."""
    from runwire.events import AgentError

    node = await nodes()
    alice = user("alice")
    await node.engine.publish(alice, event(1))
    ended = await node.engine.publish(
        alice,
        Event.of(AgentError("node_lost", "lost"), run_id="r_1", thread_id="t", seq=2, ts=2),
    )
    late = await asyncio.gather(  # in one batch, and in the next
        node.engine.publish(alice, event(3)), node.engine.publish(alice, event(4))
    )
    later = await node.engine.publish(alice, event(9))
    again = await node.engine.publish(  # the terminal event retried: a duplicate, as before
        alice,
        Event.of(AgentError("node_lost", "lost"), run_id="r_1", thread_id="t", seq=2, ts=2),
    )
    assert ended.offset == 2
    assert [s.offset for s in (*late, later, again)] == [2, 2, 2, 2]
    other = await node.engine.publish(alice, event(1, run_id="r_2"))  # other runs go on
    assert other.offset == 3
    history = await node.engine.read_after(alice, ended.epoch, 0, 10)
    assert isinstance(history, list)
    assert [(s.event.run_id, s.event.seq) for s in history] == [("r_1", 1), ("r_1", 2), ("r_2", 1)]


async def test_a_pipelined_run_keeps_order_through_a_redis_restart(
    tmp_path: Path, nodes: Callable[..., asyncio.Future[Node]]
) -> None:
    """A run publishing without waiting for each event (the runtime's
    :class:`~runwire.publisher.OrderedPublisher`) while Redis restarts under its window:
    every event is stored once, in seq order, at gap-free offsets; and a burst goes in
    fewer round trips than events."""
    from runwire.publisher import OrderedPublisher

    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    try:
        node = await nodes(server.url)
        engine = node.engine
        alice = user("alice")
        await engine.subscribe(alice)
        pub = OrderedPublisher(engine.publish, engine.submit, window=16, retry_s=20.0)
        batches = engine._batcher.batches
        for seq in range(1, 41):
            await pub.publish(alice, event(seq))
        await asyncio.wait_for(pub.flush(), 10)
        assert engine._batcher.batches - batches < 20  # 40 events, far fewer round trips
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as admin:
            admin.sendall(b"CLIENT PAUSE 3000 WRITE\r\n")  # hold the next script call
            assert admin.recv(16).startswith(b"+OK")
        for seq in range(41, 47):
            await pub.publish(alice, event(seq))
        await wait_until(lambda: engine._batcher.in_flight, what="the batch in flight")
        await asyncio.sleep(0.05)
        server.restart()
        for seq in range(47, 81):  # while Redis restarts: resent in order, or queued
            await asyncio.wait_for(pub.publish(alice, event(seq)), 20)
        await asyncio.wait_for(pub.flush(), 20)
        position = await engine.position(alice)
        history = await engine.read_after(alice, position.epoch, 0, 200)
        assert isinstance(history, list)
        assert [(s.offset, s.event.seq) for s in history] == [(o, o) for o in range(1, 81)]
    finally:
        server.stop()


@pytest.mark.parametrize("reply_lost", [False, True], ids=["not-sent", "reply-lost"])
async def test_a_failed_round_trip_under_a_pipelined_run_loses_nothing(
    reply_lost: bool, nodes: Callable[..., asyncio.Future[Node]]
) -> None:
    """One round trip fails (before it reached Redis, or after Redis stored it) while
    the run's next events wait behind it; Redis itself is fine. Everything is stored
    once, in order. (When the batcher still sent what was queued behind a failed batch,
    those later events took the offsets, the resent ones were dropped as already
    stored by the (run, seq) check: events lost.)"""
    from runwire.publisher import OrderedPublisher

    node = await nodes()
    engine = node.engine
    alice = user("alice")
    await engine.subscribe(alice)
    store = engine._batcher._send
    failures = [1]

    async def flaky(requests: list[Any]) -> list[StoredEvent]:
        if failures and any(r.event.seq == 5 for r in requests):
            failures.pop()
            await asyncio.sleep(0.05)  # the run queues more behind this round trip
            if reply_lost:
                await store(requests)
            raise EngineError("the connection broke")
        return await store(requests)

    engine._batcher._send = flaky
    pub = OrderedPublisher(engine.publish, engine.submit, window=16, retry_s=10.0)
    for seq in range(1, 31):
        await asyncio.wait_for(pub.publish(alice, event(seq)), 10)
    await asyncio.wait_for(pub.flush(), 10)
    assert not failures
    position = await engine.position(alice)
    history = await engine.read_after(alice, position.epoch, 0, 100)
    assert isinstance(history, list)
    assert [(s.offset, s.event.seq) for s in history] == [(o, o) for o in range(1, 31)]
    await wait_until(lambda: node.offsets(alice) == list(range(1, 31)), what="all delivered")


async def test_a_users_keys_live_key_ttl_after_its_last_event(redis_server: RedisServer) -> None:
    """Key expiry follows the last event, not the event that reached offset 1 (mod 64):
    a user with fewer than 64 events per ``key_ttl_s`` lost its stream (a new epoch)
    in the middle of a run before."""
    import redis.asyncio as aioredis

    from runwire.redis.keys import stream_keys

    now = [1_000_000.0]
    engine = RedisEngine(
        redis_server.url,
        max_events=1000,
        max_bytes=1 << 20,
        max_age_s=86_400,
        key_ttl_s=3600,
        max_event_bytes=65536,
        clock=lambda: now[0],
    )
    await engine.start(Listener())
    client = aioredis.from_url(redis_server.url)
    alice = user("alice")
    try:
        first = await engine.publish(alice, event(1))
        for step in range(1, 4):  # an event every 20 minutes: offsets 2..4
            now[0] += 1200
            stored = await engine.publish(alice, event(1 + step))
            assert stored.epoch == first.epoch
            for key in stream_keys(alice):
                assert await client.pttl(key) >= 3600 * 1000, f"{key} after offset {stored.offset}"
    finally:
        await client.aclose()
        await engine.close()


async def test_a_recovery_terminal_overtaken_by_a_zombie_still_ends_the_run(
    nodes: Callable[[], asyncio.Future[Node]],
) -> None:
    """The node that ends a lost run continues ``seq`` from the history it read; if the
    dead node's agent stored more events meanwhile, the terminal event's seq is no
    longer newer. It is stored anyway, renumbered after the run's last event (a
    terminal retried after being stored finds the run ended: still a duplicate), and
    nothing of the run is stored after it. It was taken for a duplicate before: the
    run never ended and the zombie went on."""
    from runwire.events import AgentError

    node = await nodes()
    alice = user("alice")
    for seq in range(1, 6):
        await node.engine.publish(alice, event(seq))
    zombie = [await node.engine.publish(alice, event(seq)) for seq in (6, 7)]
    terminal = Event.of(AgentError("node_lost", "lost"), run_id="r_1", thread_id="t", seq=6, ts=6)
    ended = await node.engine.publish(alice, terminal)  # the recovery read up to seq 5
    assert not ended.duplicate
    assert (ended.offset, ended.event.seq) == (8, 8)
    assert b'"seq":8,' in ended.frame
    late = await node.engine.publish(alice, event(8))  # the zombie goes on
    again = await node.engine.publish(alice, terminal)  # the recovery retries
    assert (late.duplicate, again.duplicate) == (True, True)
    assert [s.offset for s in zombie] == [6, 7]
    history = await node.engine.read_after(alice, ended.epoch, 0, 20)
    assert isinstance(history, list)
    assert [(s.event.type, s.event.seq) for s in history][-3:] == [
        ("agent_message_delta", 6),
        ("agent_message_delta", 7),
        ("agent_error", 8),
    ]
    assert history[-1].frame == ended.frame
