"""The SQLite engine: one process, durable history in one file (``sqlite:///path``).

Streams, epochs, offsets and the bounded history survive a restart and a crash of
the process, so clients resume in the same epoch with nothing missing. The history
is also held in memory (the same bounds as :mod:`runwire.engines.memory`), so reads
never touch the disk; the file is the durable copy, written by one thread
(:mod:`runwire.sqlite.db`).

Contract, beyond the engine port's:

* **Committed before seen.** An event is handed to the listener (and so to sockets),
  readable with :meth:`SqliteEngine.read_after` and counted by
  :meth:`SqliteEngine.position` only once its commit is on disk: an event any
  client has seen is never lost by a crash. ``publish`` returns after the commit.
* **Group commit.** The publishes of one loop iteration are one write (a row insert
  for all their events, one stream update per user), and the writes queued while a
  commit is in progress share the next commit.
* **A failed commit** fails that publish (:class:`EngineError`) and every publish
  queued behind it; their offsets are taken back, so the stream has no gap. Any
  failed commit of the file (events, idempotency keys or snapshots: disk full, I/O
  error) makes the engine *unavailable* (``engine_state_changed(False)``: sockets get
  ``engine_status`` ``unavailable``, ``/healthz`` answers 503, publishes and new
  messages are refused) until a probe write of ``PROBE_BYTES`` commits again
  (tried every ``PROBE_MIN_S``, backing off to ``PROBE_MAX_S``); then it reports
  available.
* **Bounds** are the memory engine's: per user ``max_events``, ``max_bytes`` and
  ``ttl_s`` (wall-clock seconds, so ages count across restarts), and at most
  ``max_users`` streams, the least recently published-to unsubscribed one evicted
  first (from the file too; one with a publish not yet committed waits for the
  commit). Creating a stream at the bound costs O(1) amortised however many streams
  are subscribed (:class:`~runwire.engines.history.HeldStreams`, the memory engine's).
  ``max_event_bytes`` is refused before an offset is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runwire.engines.base import (
    EngineCapabilities,
    EngineListener,
    ResumeFailure,
    StoredEvent,
    StreamPosition,
)
from runwire.engines.history import HeldStreams, Window, held_stats
from runwire.engines.memory import HistoryBounds
from runwire.events import Event, encode_envelope_checked
from runwire.exceptions import EngineError
from runwire.ids import Epoch, UserId, new_epoch
from runwire.sqlite.db import Database, Rows, Statement

__all__ = ["PROBE_BYTES", "SqliteEngine"]

log = logging.getLogger("runwire.sqlite")

PROBE_BYTES = 60_000
"""Size of the probe write (about a large event): a disk that has room for it again
is taken as writable."""
PROBE_MIN_S = 0.05
PROBE_MAX_S = 2.0
_PROBE: list[Statement] = [
    (f"INSERT OR REPLACE INTO meta VALUES ('probe', zeroblob({PROBE_BYTES}))", ()),
    ("DELETE FROM meta WHERE key = 'probe'", ()),
]

_UPSERT_STREAM = (
    "INSERT INTO streams (user_id, epoch, last_offset, touched) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET last_offset = excluded.last_offset,"
    " touched = excluded.touched"
)
_INSERT_EVENT = "INSERT INTO events (user_id, offset, stored_at, frame) VALUES (?, ?, ?, ?)"
_TRIM_EVENTS = "DELETE FROM events WHERE user_id = ? AND offset <= ?"
_DROP_EVENTS = "DELETE FROM events WHERE user_id = ?"
_DROP_STREAM = "DELETE FROM streams WHERE user_id = ?"


@dataclass(slots=True)
class _Stream:
    epoch: Epoch
    last_offset: int = 0
    """The latest committed offset (what readers see)."""
    taken: int = 0
    """The latest offset given to a publish (committed or not)."""
    window: Window = field(default_factory=Window)
    subscribers: int = 0
    parked: int = 0
    """0 while in the engine's LRU order; else when the eviction parked it (its count)."""


def _unsettled(stream: _Stream) -> bool:
    """A publish of ``stream`` is not committed yet: it is not evicted until it is."""
    return stream.taken != stream.last_offset


class SqliteEngine:
    """Per-user streams in memory, committed to a SQLite file before delivery."""

    capabilities = EngineCapabilities(shared=False, durable=True, immediate=False)

    def __init__(
        self,
        database: Database,
        bounds: HistoryBounds,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.bounds = bounds
        self._clock = clock
        self._held: HeldStreams[_Stream] = HeldStreams(
            bounds.max_users, pinned=_unsettled, on_evict=self._evicted
        )
        self._streams = self._held.streams
        """Every stream held in memory (the held ones' own dict)."""
        self._reports: EngineListener | None = None
        self.available = False
        self.evicted_events = 0
        self.failed_commits = 0
        self._probe: asyncio.Task[None] | None = None
        self._batch: list[tuple[_Stream, StoredEvent, float]] = []
        """Publishes of this loop iteration, written together by :meth:`_flush`."""
        self._batch_done: asyncio.Future[None] | None = None
        database.on_failure(self._commit_failed)

    async def start(self, listener: EngineListener) -> None:
        """Open the file and load its streams.

        Raises:
            ConfigError: the file cannot be used (see :mod:`runwire.sqlite.db`).
        """
        loaded = await self.database.open()
        now = self._clock()
        for saved in loaded.streams:
            stream = _Stream(saved.epoch, saved.last_offset, saved.last_offset)
            for stored_at, stored in saved.events:
                stream.window.add(stored, stored_at)
            self._held.add(saved.user_id, stream, evict=False)
            self._trim(saved.user_id, stream, now)
        self._held.evict()
        self._reports = listener
        self.available = True

    async def close(self) -> None:
        self.available = False
        self._reports = None
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        await self.database.close()
        self._held.clear()

    def mark_unavailable(self) -> None:
        """Nothing to do: nothing else writes this file."""

    @property
    def evicted_streams(self) -> int:
        return self._held.evicted

    # -- streams -------------------------------------------------------------------

    def _stream(self, user_id: UserId) -> _Stream:
        stream = self._streams.get(user_id)
        if stream is None:
            stream = _Stream(epoch=new_epoch())
            # Kept at once, so a client told this epoch resumes in it after a crash.
            # Whatever the file still holds of the user is from a stream that left
            # memory and whose delete was lost in a failed commit: replaced.
            self.database.write_behind(
                [
                    (_DROP_EVENTS, (user_id,)),
                    (
                        "INSERT OR REPLACE INTO streams VALUES (?, ?, 0, ?)",
                        (user_id, stream.epoch, self._clock()),
                    ),
                ]
            )
            self._held.add(user_id, stream)
        else:
            self._held.touch(user_id, stream)
        return stream

    def _evicted(self, user_id: UserId, stream: _Stream) -> None:
        """``stream`` left memory: drop it from the file too."""
        self.database.write_behind([(_DROP_EVENTS, (user_id,)), (_DROP_STREAM, (user_id,))])

    def _trim(self, user_id: UserId, stream: _Stream, now: float) -> None:
        dropped, dropped_through = stream.window.trim(self.bounds, now)
        self.evicted_events += dropped
        if dropped_through and self.database.is_open:
            self.database.write_behind([(_TRIM_EVENTS, (user_id, dropped_through))])

    def _commit_failed(self) -> None:
        """A commit failed: offsets given to publishes that will not commit are free,
        and the engine is unavailable until a probe write commits. Publishes of this
        loop iteration not yet sent to the writer fail too: they took offsets after
        the failed ones, and written now they would leave a gap."""
        self._batch = []
        done, self._batch_done = self._batch_done, None
        if done is not None and not done.done():
            done.set_exception(EngineError("a commit to the file failed; not stored"))
        held = self._held
        for user_id, stream in self._streams.items():
            if stream.taken != stream.last_offset:
                stream.taken = stream.last_offset
                if stream.parked:
                    held.release(user_id, stream)
        self.failed_commits += 1
        if self._reports is None:
            return  # closing (or not started): nobody to tell
        if self.available:
            self.available = False
            log.warning("sqlite engine UNAVAILABLE: a commit to %s failed", self.database.path)
            self._reports.engine_state_changed(False)
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        """Probe the file until a write commits again, then report available."""
        delay = PROBE_MIN_S
        while True:
            await asyncio.sleep(delay)
            try:
                await self.database.write(list(_PROBE))
            except EngineError:
                delay = min(delay * 2, PROBE_MAX_S)
                continue
            break
        self._probe = None
        if self._reports is not None and not self.available:
            self.available = True
            log.warning("sqlite engine available: %s takes writes again", self.database.path)
            self._reports.engine_state_changed(True)

    # -- the port ------------------------------------------------------------------

    async def publish(self, user_id: UserId, event: Event) -> StoredEvent:
        """Take the next offset, commit the event, then deliver it and return.

        Raises:
            EventRejected: not encodable or too big (no offset taken).
            EngineError: the commit failed (the offset is taken back) or the engine
                is closed.
        """
        if not self.available:
            raise EngineError("the sqlite engine is unavailable (not started, or a write failed)")
        stream = self._stream(user_id)
        offset = stream.taken + 1
        frame = encode_envelope_checked(event, offset, self.bounds.max_event_bytes)
        stream.taken = offset
        stored = StoredEvent(user_id, stream.epoch, offset, frame, event)
        self._batch.append((stream, stored, self._clock()))
        done = self._batch_done
        if done is None:
            loop = asyncio.get_running_loop()
            done = self._batch_done = loop.create_future()
            loop.call_soon(self._flush)
        # Shielded: the iteration's publishes share this wait, and cancelling one
        # caller must not cancel it for the others (its event is written anyway).
        await asyncio.shield(done)
        return stored

    def _flush(self) -> None:
        """Write this iteration's publishes as one (see "Group commit")."""
        batch, self._batch = self._batch, []
        done, self._batch_done = self._batch_done, None
        if done is None:
            return  # failed with a commit before it was sent (_commit_failed)
        heads: dict[UserId, tuple[UserId, Epoch, int, float]] = {}
        for _, stored, now in batch:
            heads[stored.user_id] = (stored.user_id, stored.epoch, stored.offset, now)
        statements: list[Statement] = [
            Rows(_INSERT_EVENT, [(s.user_id, s.offset, now, s.frame) for _, s, now in batch]),
            Rows(_UPSERT_STREAM, list(heads.values())),
        ]

        def committed() -> None:
            for stream, stored, now in batch:
                self._committed(stream, stored, now)

        try:
            self.database.write(statements, committed, done)
        except EngineError as exc:  # closed meanwhile
            for stream, stored, _ in batch:
                stream.taken = stream.last_offset
                if stream.parked:
                    self._held.release(stored.user_id, stream)
            done.set_exception(exc)

    def _committed(self, stream: _Stream, stored: StoredEvent, now: float) -> None:
        """On the loop, in offset order: the event is on disk; show it."""
        stream.last_offset = stored.offset
        stream.window.add(stored, now)
        if stream.window.over(self.bounds, now):
            self._trim(stored.user_id, stream, now)
        if stream.subscribers and self._reports is not None:
            self._reports.deliver(stored)
        if stream.parked:  # passed by an eviction while unsettled: it may go now
            self._held.release(stored.user_id, stream)

    async def position(self, user_id: UserId) -> StreamPosition:
        stream = self._stream(user_id)
        return StreamPosition(stream.epoch, stream.last_offset)

    async def read_after(
        self, user_id: UserId, epoch: Epoch, offset: int, limit: int
    ) -> list[StoredEvent] | ResumeFailure:
        stream = self._stream(user_id)
        self._trim(user_id, stream, self._clock())  # never past the age bound
        return stream.window.read(
            StreamPosition(stream.epoch, stream.last_offset), epoch, offset, limit
        )

    async def subscribe(self, user_id: UserId) -> None:
        self._stream(user_id).subscribers += 1

    async def unsubscribe(self, user_id: UserId) -> None:
        stream = self._streams.get(user_id)
        if stream is not None and stream.subscribers > 0:
            stream.subscribers -= 1
            if stream.subscribers == 0:
                self._held.release(user_id, stream)
                self._held.evict()

    def stats(self) -> dict[str, int]:
        return held_stats(self._streams.values()) | {
            "evicted_streams": self.evicted_streams,
            "evicted_events": self.evicted_events,
            "commits": self.database.commits,
            "failed_commits": self.failed_commits,
            "committed_writes": self.database.writes,
        }
