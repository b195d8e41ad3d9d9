"""The batcher of the Redis publish path (:class:`runwire.redis.batching.Batcher`):
order, one batch in flight, failures and cancellation (no server needed)."""

from __future__ import annotations

import asyncio

import pytest

from runwire.exceptions import EngineError
from runwire.redis.batching import Batcher


class Sink:
    """A ``send`` that records batches; each waits until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.fail: set[int] = set()

    async def send(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        if self.fail & set(items):
            raise EngineError("refused")
        return [item * 10 for item in items]


def batcher(sink: Sink, max_items: int = 100) -> Batcher[int, int]:
    return Batcher(sink.send, max_items=max_items, closed=lambda: EngineError("closed"))


async def test_one_iteration_is_one_batch_and_later_ones_wait_for_it() -> None:
    sink = Sink()
    b = batcher(sink)
    first = [b.submit(i) for i in range(5)]
    await asyncio.sleep(0)  # the batch is sent
    await asyncio.sleep(0)
    second = [b.submit(i) for i in range(5, 8)]  # while the first is in flight
    assert sink.batches == [[0, 1, 2, 3, 4]]
    sink.gate.set()
    assert await asyncio.gather(*first, *second) == [i * 10 for i in range(8)]
    assert sink.batches == [[0, 1, 2, 3, 4], [5, 6, 7]]
    assert sink.most_in_flight == 1


async def test_max_items_splits_in_order() -> None:
    sink = Sink()
    sink.gate.set()
    b = batcher(sink, max_items=3)
    assert await asyncio.gather(*(b.submit(i) for i in range(7))) == [i * 10 for i in range(7)]
    assert sink.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_failed_batch_fails_everything_queued_behind_it() -> None:
    """Nothing is sent after an item that failed: a pipelined publisher resubmits them
    in order (the old batcher sent 2 and 3 after 0 and 1 had failed, so a retry of 1
    came after 3 and the script's (run, seq) check dropped it)."""
    sink = Sink()
    sink.fail = {1}
    b = batcher(sink, max_items=2)
    futures = [b.submit(i) for i in range(4)]
    sink.gate.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(result, EngineError) for result in results)
    assert sink.batches == [[0, 1]]
    assert await b.submit(5) == 50  # what comes after the failure is sent
    assert sink.batches == [[0, 1], [5]]


async def test_an_item_given_up_before_its_batch_is_not_sent() -> None:
    sink = Sink()
    b = batcher(sink)
    futures = [b.submit(i) for i in range(3)]
    futures[1].cancel()
    sink.gate.set()
    assert await futures[0] == 0 and await futures[2] == 20
    assert sink.batches == [[0, 2]]


async def test_close_fails_what_is_in_flight_and_queued() -> None:
    sink = Sink()
    b = batcher(sink)
    sent = b.submit(1)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    queued = b.submit(2)
    await b.close()
    for future in (sent, queued):
        with pytest.raises(EngineError, match="closed"):
            await future
