"""Run snapshots in Redis, so any node answers ``get_runs`` for any user.

The process that executes a run (a gateway in ``local`` mode, or a worker) folds its
events into its :class:`~runwire.runs.RunStore` and writes the run's snapshot to
Redis behind itself: at most every ``flush_interval_s`` while the run streams, and
at once when it ends. Any node reads them back with :meth:`RedisSnapshots.runs`,
merging them into its own store (its own copy wins when it is newer; it also
survives a Redis restart without persistence).

Keys: ``rw:{user}:snap:<run_id>`` (the snapshot, JSON) and ``rw:{user}:snaps`` (a
sorted set by start time, trimmed to ``snapshot_runs_per_user``), both expiring
``ttl_s`` after the last write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from redis.exceptions import RedisError

from runwire.events import Event
from runwire.exceptions import EngineError
from runwire.ids import UserId
from runwire.redis.client import map_redis_errors, redis_client
from runwire.redis.keys import snapshot_index_key, snapshot_key
from runwire.runs import RunSnapshot, RunStore

__all__ = ["RedisSnapshots"]

log = logging.getLogger("runwire.redis.engine")

_decode = msgspec.json.Decoder(RunSnapshot)


class RedisSnapshots:
    """Write-behind of the runs this process executes; reads for any user."""

    def __init__(
        self,
        url: str,
        store: RunStore,
        *,
        runs_per_user: int,
        ttl_s: int,
        flush_interval_s: float = 0.1,
    ) -> None:
        self._redis = redis_client(url, decode_responses=False)
        self.store = store
        self.runs_per_user = runs_per_user
        self.ttl_s = ttl_s
        self.flush_interval_s = flush_interval_s
        self._dirty: dict[tuple[UserId, str], None] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the write-behind task."""
        self._task = asyncio.get_running_loop().create_task(self._write_behind())

    async def close(self) -> None:
        """Write what is pending (best effort), then stop."""
        # The flag, not only the cancel: Python 3.11's wait_for swallows a cancel that
        # comes as its awaitable completes, and the loop would go on forever.
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(EngineError):
            await self._flush()
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    def executed(self, user_id: UserId, event: Event) -> None:
        """An event of a run this process executes was published (and observed)."""
        self._dirty[(user_id, event.run_id)] = None
        if event.is_terminal:
            self._wake.set()

    async def _write_behind(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            if self._closing:
                return
            self._wake.clear()
            try:
                await self._flush()
            except EngineError as exc:
                log.warning("snapshots not written yet: %s", exc)

    async def _flush(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        try:
            async with map_redis_errors("write snapshots"):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for user_id, run_id in dirty:
                        snapshot = self.store.run(user_id, run_id)
                        if snapshot is None:
                            continue
                        index = snapshot_index_key(user_id)
                        pipe.set(
                            snapshot_key(user_id, run_id),
                            msgspec.json.encode(snapshot),
                            ex=self.ttl_s,
                        )
                        pipe.zadd(index, {run_id: snapshot.started_ts})
                        pipe.zremrangebyrank(index, 0, -(self.runs_per_user + 1))
                        pipe.expire(index, self.ttl_s)
                    await pipe.execute()
        except EngineError:
            self._dirty.update(dirty)  # written on a later flush
            raise

    async def runs(self, user_id: UserId, thread_id: str | None = None) -> list[RunSnapshot]:
        async with map_redis_errors("read snapshots"):
            run_ids: list[bytes] = await self._redis.zrange(snapshot_index_key(user_id), 0, -1)  # type: ignore[assignment]
            values = (
                await self._redis.mget([snapshot_key(user_id, r.decode()) for r in run_ids])
                if run_ids
                else []
            )
        for value in values:
            if value is not None:
                self.store.merge(user_id, _decode.decode(value))
        return self.store.runs(user_id, thread_id)

    async def run(self, user_id: UserId, run_id: str) -> RunSnapshot | None:
        async with map_redis_errors("read snapshot"):
            value = await self._redis.get(snapshot_key(user_id, run_id))
        if value is not None:
            self.store.merge(user_id, _decode.decode(value))
        return self.store.run(user_id, run_id)
