"""Idempotency keys (``user_message.id`` -> run) kept in the SQLite file.

A message retried after a restart (or a crash) maps to the run it started before,
instead of starting a second one. At most ``max_keys`` are kept, oldest dropped
first (the memory runtime's bound). A key is on disk before its run starts.

Exactly once for a run that started, never a run that does not exist: the key is
committed with a pending mark (:func:`~runwire.sqlite.db.pending_key`), which the
snapshots' write-behind deletes once the run has published (in the commit that
writes its snapshot). When the process dies between the key's commit and the run's
first event, the next open finds the mark, and neither an event nor a snapshot of
the run: it deletes the key, so the user's retry of the message starts the run
(with a new run id; the acknowledged one never produced anything). A run that did
publish keeps its key for as long as the bound does, even once its events and
snapshot are gone: its mark was deleted, so a retry is answered ``duplicate``.
"""

from __future__ import annotations

from collections import OrderedDict

from runwire.agents.runtime import StartedRun
from runwire.ids import RunId, ThreadId, UserId
from runwire.sqlite.db import Database, Statement, pending_key

__all__ = ["SqliteClaims"]


class SqliteClaims:
    """:class:`~runwire.agents.dispatch.MessageClaims` in one process's SQLite file."""

    def __init__(self, database: Database, *, max_keys: int) -> None:
        self.database = database
        self.max_keys = max_keys
        self._keys: OrderedDict[tuple[UserId, str], tuple[RunId, ThreadId]] | None = None

    def _loaded(self) -> OrderedDict[tuple[UserId, str], tuple[RunId, ThreadId]]:
        if self._keys is None:
            self._keys = OrderedDict()
            loaded = self.database.loaded
            for user_id, message_id, run_id, thread_id in loaded.claims if loaded else []:
                self._keys[(user_id, message_id)] = (RunId(run_id), ThreadId(thread_id))
            if loaded is not None:
                loaded.claims = []  # taken: not held twice for the process's life
        return self._keys

    async def claim(
        self, user_id: UserId, message_id: str, run_id: RunId, thread_id: ThreadId
    ) -> StartedRun:
        """The run recorded for ``message_id``, recording this one first if none is.

        Raises:
            EngineError: the key could not be written (no run is recorded).
        """
        keys = self._loaded()
        known = keys.get((user_id, message_id))
        if known is not None:
            return StartedRun(known[0], known[1], duplicate=True)
        keys[(user_id, message_id)] = (run_id, thread_id)
        statements: list[Statement] = [
            (
                "INSERT OR IGNORE INTO claims (user_id, message_id, run_id, thread_id)"
                " VALUES (?, ?, ?, ?)",
                (user_id, message_id, run_id, thread_id),
            ),
            ("INSERT OR REPLACE INTO meta VALUES (?, ?)", (pending_key(run_id), user_id)),
        ]
        while len(keys) > self.max_keys:
            (old_user, old_message), (old_run, _) = keys.popitem(last=False)
            statements.append(
                (
                    "DELETE FROM claims WHERE user_id = ? AND message_id = ?",
                    (old_user, old_message),
                )
            )
            statements.append(("DELETE FROM meta WHERE key = ?", (pending_key(old_run),)))
        try:
            await self.database.write(statements)
        except BaseException:
            keys.pop((user_id, message_id), None)
            raise
        return StartedRun(run_id, thread_id, duplicate=False)

    async def find(self, user_id: UserId, message_id: str) -> StartedRun | None:
        """The run recorded for ``message_id``, if any (from memory: no file read)."""
        known = self._loaded().get((user_id, message_id))
        return StartedRun(known[0], known[1], duplicate=True) if known is not None else None

    async def release(self, user_id: UserId, message_id: str, run_id: RunId) -> None:
        """Drop the claim of ``message_id`` if it still names ``run_id``.

        Raises:
            EngineError: the file could not be written (the claim stays).
        """
        keys = self._loaded()
        known = keys.get((user_id, message_id))
        if known is None or known[0] != run_id:
            return
        del keys[(user_id, message_id)]
        await self.database.write(
            [
                (
                    "DELETE FROM claims WHERE user_id = ? AND message_id = ? AND run_id = ?",
                    (user_id, message_id, run_id),
                ),
                ("DELETE FROM meta WHERE key = ?", (pending_key(run_id),)),
            ]
        )

    async def close(self) -> None:
        """Nothing to release: the engine closes the file."""
