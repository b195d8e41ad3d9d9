"""Run snapshots kept in the SQLite file, so ``get_runs`` survives a restart.

Written behind (every ``FLUSH_INTERVAL_S``, and at close) from the process's
:class:`~runwire.runs.RunStore`. At start-up the saved snapshots are loaded into the
store, then every retained history event is folded in again (``observe`` ignores
what a snapshot already has): whatever the last write-behind missed before a crash
is rebuilt from the history, which is committed before anyone sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import msgspec

from runwire.events import Event
from runwire.ids import UserId
from runwire.runs import RunSnapshot, RunStore
from runwire.sqlite.db import Database, Statement

__all__ = ["FLUSH_INTERVAL_S", "SqliteSnapshots"]

FLUSH_INTERVAL_S = 0.25

_UPSERT = (
    "INSERT INTO snapshots (user_id, run_id, started_ts, body) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (user_id, run_id) DO UPDATE SET body = excluded.body"
)
_PRUNE = (
    "DELETE FROM snapshots WHERE user_id = ? AND run_id NOT IN (SELECT value FROM json_each(?))"
)


class SqliteSnapshots:
    """The store's snapshots, persisted behind (a :class:`~runwire.backends.SharedSnapshots`
    that only this process reads)."""

    def __init__(self, database: Database, store: RunStore) -> None:
        self.database = database
        self.store = store
        self._dirty: set[tuple[UserId, str]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Load the saved snapshots and the history into the store; start writing behind.

        The engine has opened the file already (it starts first).
        """
        loaded = self.database.loaded
        if loaded is not None:
            for user_id, body in loaded.snapshots:
                self.store.merge(user_id, msgspec.json.decode(body, type=RunSnapshot))
            for stream in loaded.streams:
                for _, stored in stream.events:
                    self.store.observe(stream.user_id, stored.offset, stored.event)
            loaded.snapshots.clear()
        self._task = asyncio.get_running_loop().create_task(self._write_behind())

    def executed(self, user_id: UserId, event: Event) -> None:
        self._dirty.add((user_id, event.run_id))

    async def _write_behind(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def flush(self) -> None:
        """Queue every changed snapshot (and drop the runs the store no longer keeps)."""
        if not self._dirty or not self.database.is_open:
            return
        dirty, self._dirty = self._dirty, set()
        statements: list[Statement] = []
        users: set[UserId] = set()
        for user_id, run_id in dirty:
            users.add(user_id)
            snapshot = self.store.run(user_id, run_id)
            if snapshot is not None:
                body = msgspec.json.encode(snapshot)
                statements.append((_UPSERT, (user_id, run_id, snapshot.started_ts, body)))
        for user_id in users:
            kept = [run.run_id for run in self.store.runs(user_id)]
            statements.append((_PRUNE, (user_id, json.dumps(kept))))
        self.database.write_behind(statements)

    async def close(self) -> None:
        """Stop writing behind, after queueing what changed (the engine then commits it)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.flush()

    async def runs(self, user_id: UserId, thread_id: str | None = None) -> list[RunSnapshot]:
        return self.store.runs(user_id, thread_id)

    async def run(self, user_id: UserId, run_id: str) -> RunSnapshot | None:
        return self.store.run(user_id, run_id)
