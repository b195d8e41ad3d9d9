"""Run snapshots kept in the SQLite file, so ``get_runs`` survives a restart.

Written behind (every ``FLUSH_INTERVAL_S``, and at close) from the process's
:class:`~runwire.runs.RunStore`. At start-up the saved snapshots are loaded into the
store, then every retained history event is folded in again (``observe`` ignores
what a snapshot already has): whatever the last write-behind missed before a crash
is rebuilt from the history, which is committed before anyone sees it.

The file holds what the store holds, no more: a run the store dropped
(``runs_per_user``) and every run of a user it evicted (``max_users``, least recently
active first) are deleted by the next write-behind, and at start-up the rows beyond
the store's bounds (left by a crash or by larger bounds before) are deleted too.

The write-behind also deletes the pending mark of each run that published its first
event (``agent_started``), so that its message claim outlives its events and
snapshot (:mod:`runwire.sqlite.claims`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict

import msgspec

from runwire.events import Event
from runwire.ids import UserId
from runwire.runs import RunSnapshot, RunStore
from runwire.sqlite.db import Database, Rows, Statement, pending_key

__all__ = ["FLUSH_INTERVAL_S", "SqliteSnapshots"]

FLUSH_INTERVAL_S = 0.25

_UPSERT = (
    "INSERT INTO snapshots (user_id, run_id, started_ts, body) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (user_id, run_id) DO UPDATE SET body = excluded.body"
)
_PRUNE = (
    "DELETE FROM snapshots WHERE user_id = ? AND run_id NOT IN (SELECT value FROM json_each(?))"
)
_STARTED = "DELETE FROM meta WHERE key = ?"


class SqliteSnapshots:
    """The store's snapshots, persisted behind (a :class:`~runwire.backends.SharedSnapshots`
    that only this process reads)."""

    def __init__(self, database: Database, store: RunStore) -> None:
        self.database = database
        self.store = store
        self._dirty: set[tuple[UserId, str]] = set()
        self._prune: set[UserId] = set()
        """Users the store may have dropped runs of (evicted ones: all of them)."""
        self._started: list[str] = []
        """Runs whose ``agent_started`` was published since the last write-behind."""
        self._users: OrderedDict[UserId, None] = OrderedDict()
        """The store's users in its own LRU order (it evicts the first one past
        ``max_users``): every event it observes here goes through :meth:`executed`."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Load the saved snapshots and the history into the store; start writing behind.

        The engine has opened the file already (it starts first).
        """
        loaded = self.database.loaded
        if loaded is not None:
            saved: dict[UserId, set[str]] = {}
            for user_id, body in loaded.snapshots:
                snapshot = msgspec.json.decode(body, type=RunSnapshot)
                saved.setdefault(user_id, set()).add(snapshot.run_id)
                self.store.merge(user_id, snapshot)
                self._seen(user_id, touch=False)  # as merge: a known user keeps its place
            for stream in loaded.streams:
                for _, stored in stream.events:
                    self.store.observe(stream.user_id, stored.offset, stored.event)
                    self._seen(stream.user_id, touch=True)
            # Taken (the engine took the streams before): not held for the process's life.
            loaded.snapshots = []
            loaded.streams = []
            self._prune.clear()
            statements: list[Statement] = []
            for user_id, run_ids in saved.items():
                kept = [run.run_id for run in self.store.runs(user_id)]
                if not run_ids.issubset(kept):  # rows beyond the store's bounds
                    statements.append((_PRUNE, (user_id, json.dumps(kept))))
            if statements:
                self.database.write_behind(statements)
        self._task = asyncio.get_running_loop().create_task(self._write_behind())

    def _seen(self, user_id: UserId, *, touch: bool) -> None:
        """The store observed (or merged) ``user_id``: follow its LRU order and its
        eviction."""
        users = self._users
        if user_id in users:
            if touch:
                users.move_to_end(user_id)
            return
        users[user_id] = None
        while len(users) > self.store.max_users:
            self._prune.add(users.popitem(last=False)[0])

    def executed(self, user_id: UserId, event: Event) -> None:
        self._dirty.add((user_id, event.run_id))
        self._seen(user_id, touch=True)
        if event.type == "agent_started":
            self._started.append(event.run_id)

    async def _write_behind(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def flush(self) -> None:
        """Queue every changed snapshot (and drop the runs the store no longer keeps,
        and the pending marks of the runs that started)."""
        if not (self._dirty or self._prune) or not self.database.is_open:
            return
        dirty, self._dirty = self._dirty, set()
        users, self._prune = self._prune, set()
        started, self._started = self._started, []
        statements: list[Statement] = []
        for user_id, run_id in dirty:
            users.add(user_id)
            snapshot = self.store.run(user_id, run_id)
            if snapshot is not None:
                body = msgspec.json.encode(snapshot)
                statements.append((_UPSERT, (user_id, run_id, snapshot.started_ts, body)))
        for user_id in users:
            kept = [run.run_id for run in self.store.runs(user_id)]
            statements.append((_PRUNE, (user_id, json.dumps(kept))))
        if started:
            statements.append(Rows(_STARTED, [(pending_key(run_id),) for run_id in started]))
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
