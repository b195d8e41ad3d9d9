"""The batcher of the Redis publish path (:class:`runwire.redis.batching.Batcher`):
order per key, a key in one batch in flight, batches spread over slots, failures and
cancellation (no server needed)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Hashable

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


def batcher(
    sink: Sink,
    max_items: int = 100,
    *,
    key: Callable[[int], Hashable] = lambda item: 0,
    max_in_flight: int = 1,
    min_items: int = 1,
) -> Batcher[int, int]:
    return Batcher(
        sink.send,
        key=key,
        max_items=max_items,
        closed=lambda: EngineError("closed"),
        max_in_flight=max_in_flight,
        min_items=min_items,
    )


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


async def sent() -> None:
    """Let the batcher pump (one loop iteration) and its batches start (one more)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_other_keys_go_in_flight_at_once_a_key_never_twice() -> None:
    sink = Sink()
    b = batcher(sink, max_items=2, key=lambda item: item // 10, max_in_flight=3)
    first = [b.submit(i) for i in (0, 1, 10, 11, 20, 21, 30)]  # keys 0, 1, 2, 3
    await sent()
    assert sink.batches == [[0, 1], [10, 11], [20, 21]] and sink.in_flight == 3
    later = b.submit(2)  # key 0 is in flight: waits for its batch
    sink.gate.set()
    assert await asyncio.gather(*first, later) == [0, 10, 100, 110, 200, 210, 300, 20]
    assert sink.batches[3:] == [[30], [2]] or sink.batches[3:] == [[30, 2]]
    assert sink.most_in_flight == 3


async def test_ready_items_are_spread_over_free_slots_but_not_into_small_batches() -> None:
    sink = Sink()
    b = batcher(sink, max_items=256, key=lambda item: item, max_in_flight=4, min_items=32)
    few = [b.submit(i) for i in range(40)]  # 40 // 32: one batch
    await sent()
    assert [len(batch) for batch in sink.batches] == [40]
    sink.gate.set()
    await asyncio.gather(*few)
    sink.gate.clear()
    many = [b.submit(i) for i in range(100, 300)]  # 200 users: four batches of 50
    await sent()
    assert [len(batch) for batch in sink.batches[1:]] == [50, 50, 50, 50]
    sink.gate.set()
    assert await asyncio.gather(*many) == [i * 10 for i in range(100, 300)]


async def test_a_failure_fails_the_keys_queue_behind_it_not_other_keys() -> None:
    sink = Sink()
    sink.fail = {1}
    b = batcher(sink, max_items=2, key=lambda item: item // 10, max_in_flight=1)
    futures = {i: b.submit(i) for i in (0, 1, 2, 3, 10, 11)}
    sink.gate.set()
    answers = await asyncio.gather(*futures.values(), return_exceptions=True)
    results = dict(zip(futures, answers, strict=True))
    assert all(isinstance(results[i], EngineError) for i in (0, 1, 2, 3))
    assert (results[10], results[11]) == (100, 110)
    assert [0, 1] in sink.batches and [2, 3] not in sink.batches


async def test_random_interleavings_keep_each_keys_order_and_exclusivity() -> None:
    """Random keys, sizes, answer delays and failures: per key, the items sent are in
    submission order, never two batches of a key in flight, each answered once."""
    rng = random.Random(7)
    sent: list[tuple[int, int]] = []
    in_flight: set[int] = set()

    async def send(items: list[tuple[int, int]]) -> list[int]:
        keys = {key for key, _ in items}
        assert not keys & in_flight, "a key in two batches in flight"
        in_flight.update(keys)
        try:
            await asyncio.sleep(rng.random() / 500)
            if rng.random() < 0.1:
                raise EngineError("flaky")
            sent.extend(items)
            return [n for _, n in items]
        finally:
            in_flight.difference_update(keys)

    b: Batcher[tuple[int, int], int] = Batcher(
        send,
        key=lambda item: item[0],
        max_items=16,
        closed=lambda: EngineError("closed"),
        max_in_flight=4,
        min_items=4,
    )
    answered: dict[tuple[int, int], int | BaseException] = {}
    futures = []
    for n in range(2000):
        item = (rng.randrange(12), n)
        future = b.submit(item)

        def record(f: asyncio.Future[int], item: tuple[int, int] = item) -> None:
            answered.setdefault(item, f.exception() or f.result())

        future.add_done_callback(record)
        futures.append(future)
        if rng.random() < 0.05:
            await asyncio.sleep(rng.random() / 1000)
    await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 30)
    assert len(answered) == 2000
    for key in range(12):
        mine = [n for k, n in sent if k == key]
        assert mine == sorted(mine), f"key {key} out of order"
    assert sorted(item for item, r in answered.items() if not isinstance(r, BaseException)) == (
        sorted(sent)
    )
    assert b.pending == 0 and b.in_flight == 0
