"""What a pipelined publish leaves for the garbage collector while it is in flight.

Under load a Redis node holds tens of thousands of publishes between submission and
confirmation (every run's window). Each one lives a few milliseconds: long enough to
survive two young collections and be promoted, so every GC-tracked object it holds
brings the next full collection closer, and a full collection of a busy node's heap
stopped it for 100-300 ms (the bench's Redis cells). The publish path therefore keeps
two tracked objects per publish in flight (its future and the publisher's window
entry, which holds the future and so must stay visible to the collector); everything
else on it is untracked (``gc=False``) or shared.
"""

from __future__ import annotations

import gc
import secrets

import pytest

from runwire.events import AgentMessageDelta, Event
from runwire.ids import UserId
from runwire.pipeline import Pipeline
from runwire.publisher import OrderedPublisher
from runwire.runs import RunStore
from tests.helpers import Listener
from tests.redis_server import RedisServer, engine_on

USERS, PER_USER = 100, 20


def _tracked() -> int:
    return len(gc.get_objects())


@pytest.mark.parametrize("tracked_per_publish", [2.2])
async def test_a_publish_in_flight_holds_two_tracked_objects(
    redis_server: RedisServer, tracked_per_publish: float
) -> None:
    """2,000 events submitted through the runtime's path (``OrderedPublisher`` over
    ``Pipeline.submit`` over the Redis engine's batcher) without confirming any: the
    GC-tracked objects they add, per event, stay at about two (the future and the
    window entry; six before). Then all
    of them are stored, in order."""
    engine = engine_on(redis_server.url, max_bytes=1 << 22)
    store = RunStore(runs_per_user=4, max_users=USERS * 2)
    pipeline = Pipeline(engine, store)
    await engine.start(Listener(lambda stored: None))
    try:
        users = [UserId(f"gc-{i}-{secrets.token_hex(3)}") for i in range(USERS)]
        publishers = [
            OrderedPublisher(pipeline.publish, pipeline.submitter, window=64, retry_s=5.0)
            for _ in users
        ]
        events = [
            [
                Event.of(
                    AgentMessageDelta(f"w{seq}"), run_id=f"r-{i}", thread_id="t", seq=seq, ts=seq
                )
                for seq in range(1, PER_USER + 1)
            ]
            for i in range(USERS)
        ]
        gc.collect()
        gc.disable()  # nothing is freed or promoted while counting
        try:
            before = _tracked()
            for seq in range(PER_USER):  # no await suspends: the windows are not full
                for user_id, publisher, own in zip(users, publishers, events, strict=True):
                    await publisher.publish(user_id, own[seq])
            added = _tracked() - before
        finally:
            gc.enable()
        assert sum(p.unconfirmed for p in publishers) == USERS * PER_USER  # none confirmed
        assert added / (USERS * PER_USER) <= tracked_per_publish, added
        for publisher in publishers:
            await publisher.flush()
        for user_id in users:
            position = await engine.position(user_id)
            history = await engine.read_after(user_id, position.epoch, 0, 100)
            assert isinstance(history, list)
            assert [s.event.seq for s in history] == list(range(1, PER_USER + 1))
    finally:
        await engine.close()
