"""The ordered publisher (:class:`runwire.publisher.OrderedPublisher`) on the real
batcher, against a store that keeps each ``(run, seq)`` once, as the publish script
does: order, the window bound, failures resent in order, cancellation, the deadline."""

from __future__ import annotations

import asyncio

import pytest

from runwire.engines.base import StoredEvent
from runwire.events import AgentMessageDelta, Event
from runwire.exceptions import EngineError
from runwire.ids import Epoch, UserId
from runwire.publisher import OrderedPublisher
from runwire.redis.batching import Batcher

USER = UserId("u1")


def event(seq: int, run: str = "r1") -> Event:
    return Event.of(AgentMessageDelta(f"{run}:{seq}"), run_id=run, thread_id="t", seq=seq, ts=0)


class Store:
    """A batch ``send`` that stores like the publish script: a ``(run, seq)`` not newer
    than the run's last stored one is a duplicate (not stored again). ``fail_next``
    batches fail; with ``apply_failed`` a failing batch is stored first (the reply lost)."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, int]] = []
        self.last_seq: dict[str, int] = {}
        self.batches: list[int] = []
        self.fail_next = 0
        self.apply_failed = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, items: list[tuple[UserId, Event]]) -> list[StoredEvent]:
        await self.gate.wait()
        await asyncio.sleep(0)
        self.batches.append(len(items))
        failing = self.fail_next > 0
        if failing:
            self.fail_next -= 1
            if not self.apply_failed:
                raise EngineError("redis down")
        results = []
        for user_id, ev in items:
            if ev.seq > self.last_seq.get(ev.run_id, 0):
                self.last_seq[ev.run_id] = ev.seq
                self.stored.append((ev.run_id, ev.seq))
            results.append(StoredEvent(user_id, Epoch("e"), len(self.stored), b"", ev))
        if failing:
            raise EngineError("reply lost")
        return results


def publisher(store: Store, *, window: int = 8, retry_s: float = 5.0) -> OrderedPublisher:
    batcher: Batcher[tuple[UserId, Event], StoredEvent] = Batcher(
        store.send,
        key=lambda item: item[0],
        max_items=4,
        closed=lambda: EngineError("closed"),
        max_in_flight=4,
    )

    def submit(user_id: UserId, ev: Event) -> asyncio.Future[StoredEvent]:
        return batcher.submit((user_id, ev))

    async def publish(user_id: UserId, ev: Event) -> StoredEvent:
        return await submit(user_id, ev)

    return OrderedPublisher(publish, submit, window=window, retry_s=retry_s)


async def test_events_are_stored_in_order_and_publish_waits_only_on_a_full_window() -> None:
    store = Store()
    store.gate.clear()  # nothing is confirmed until the gate opens
    pub = publisher(store, window=8)
    for seq in range(1, 8):
        await asyncio.wait_for(pub.publish(USER, event(seq)), 1.0)  # returns unconfirmed
    assert pub.unconfirmed == 7 and store.stored == []
    eighth = asyncio.create_task(pub.publish(USER, event(8)))
    await asyncio.sleep(0.05)
    assert not eighth.done()  # the window is full: the 8th waits for the oldest
    store.gate.set()
    await asyncio.wait_for(eighth, 1.0)
    assert pub.unconfirmed < 8
    for seq in range(9, 41):
        await pub.publish(USER, event(seq))
    await asyncio.wait_for(pub.flush(), 2.0)
    assert store.stored == [("r1", seq) for seq in range(1, 41)]
    assert pub.unconfirmed == 0
    assert max(store.batches) > 1  # several events went in one round trip


@pytest.mark.parametrize("apply_failed", [False, True], ids=["not-stored", "reply-lost"])
async def test_a_failure_resends_the_window_in_order_and_stores_each_event_once(
    apply_failed: bool,
) -> None:
    """A batch fails with events queued behind it: all are resent in order. (With a
    batcher that still sent what was queued behind a failed batch, the resent events
    came after later ones and the (run, seq) check dropped them: events lost.)"""
    store = Store()
    store.apply_failed = apply_failed
    pub = publisher(store, window=16)
    for seq in range(1, 4):
        await pub.publish(USER, event(seq))
    store.fail_next = 1  # the next batch fails
    for seq in range(4, 30):
        await pub.publish(USER, event(seq))
    await asyncio.wait_for(pub.flush(), 5.0)
    assert store.stored == [("r1", seq) for seq in range(1, 30)]


async def test_cancelling_the_caller_never_withdraws_a_submitted_event() -> None:
    store = Store()
    store.gate.clear()
    pub = publisher(store, window=2)
    await pub.publish(USER, event(1))
    waiting = asyncio.create_task(pub.publish(USER, event(2)))  # waits: the window is full
    await asyncio.sleep(0.02)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    store.gate.set()
    await pub.publish(USER, event(3))
    await asyncio.wait_for(pub.flush(), 2.0)
    assert store.stored == [("r1", 1), ("r1", 2), ("r1", 3)]


async def test_past_retry_s_the_error_reaches_the_publisher() -> None:
    store = Store()
    store.fail_next = 10**6
    pub = publisher(store, window=4, retry_s=0.2)
    await pub.publish(USER, event(1))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(EngineError):
        await asyncio.wait_for(pub.flush(), 5.0)
    assert 0.1 <= loop.time() - started < 2.0
    assert pub.unconfirmed == 0 and store.stored == []


@pytest.mark.parametrize("pipelined", [True, False])
async def test_a_publisher_that_gave_up_stores_nothing_after_it(
    pipelined: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Past ``retry_s`` the events of the window are lost; a later publish (the run's
    terminal event, once the engine answers again) must not be stored after them: it
    was, with a ``seq`` gap before it."""
    store = Store()
    pub = publisher(store, window=4, retry_s=0.2)
    if not pipelined:
        pub = OrderedPublisher(pub._publish, None, window=1, retry_s=0.2)
    await pub.publish(USER, event(1))
    await pub.flush()
    store.fail_next = 10**6
    with pytest.raises(EngineError):
        for seq in range(2, 6):
            await pub.publish(USER, event(seq))
        await pub.flush()
    store.fail_next = 0  # the engine answers again
    refused: list[EngineError] = []
    for attempt in (pub.publish(USER, event(6)), pub.flush()):
        try:
            await attempt
        except EngineError as exc:
            refused.append(exc)
    await asyncio.sleep(0.05)
    assert store.stored == [("r1", 1)]
    assert len(refused) == 2
    assert "never retrieved" not in caplog.text


async def test_without_submit_each_publish_waits_for_its_event() -> None:
    stored: list[int] = []

    async def publish(user_id: UserId, ev: Event) -> None:
        await asyncio.sleep(0)
        stored.append(ev.seq)

    pub = OrderedPublisher(publish, None, window=32, retry_s=1.0)
    for seq in range(1, 6):
        await pub.publish(USER, event(seq))
        assert stored[-1] == seq  # stored before publish returned
    assert pub.unconfirmed == 0


def test_the_window_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        OrderedPublisher(lambda u, e: asyncio.sleep(0), None, window=0, retry_s=1.0)
