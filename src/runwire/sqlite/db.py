"""The SQLite database file: its schema, the start-up checks, and its one writer thread.

Contract:

* **One owner.** The file is opened with ``locking_mode=EXCLUSIVE`` and written at
  open, so a second process on the same file is refused (:class:`ConfigError`)
  instead of interleaving offsets with this one.
* **Never replaced.** A file that is not a runwire database, is corrupt or truncated
  (``PRAGMA quick_check``; also an empty, 0-byte file), or has another schema version
  is refused with a :class:`ConfigError` naming the file. runwire does not repair,
  move or overwrite it: the schema is only created in a file this open created.
* **No claim of a run that never started.** A message claim is committed before its
  run's first event, with a pending mark (a ``meta`` row, :func:`pending_key`) that
  the snapshots' write-behind deletes once the run has published. At open, a claim
  still marked whose run has no event and no snapshot in the file was cut off by a
  crash between the two commits: it is deleted (a retry of the message starts the
  run), and every mark is cleared (the other marked runs did start).
* **One writer, in order.** Every write runs on one thread, in submission order, in
  WAL mode with ``synchronous=FULL`` (or ``NORMAL``: no fsync per commit, see
  :attr:`Database.synchronous`). The writes queued while a commit is in progress
  are committed together (group commit: one fsync for many events).
* **Committed, then reported.** :meth:`Database.write` returns a future that is
  resolved on the event loop after the commit. Its ``on_commit`` callback runs on the
  loop first, in submission order, so whatever it hands on (an event to sockets) is
  already on disk.
* **No write after a failed one.** When a commit fails, that batch fails and so does
  every write submitted before the loop learned of the failure (they may follow the
  failed ones, for example the next offsets of a stream); the ``on_failure``
  callbacks then run on the loop, so callers can take back what they had reserved.

Blocking I/O never runs on the event loop: the writer thread does it, and
:meth:`Database.open` and :meth:`Database.close` wait for it in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runwire.config import SqliteSynchronous
from runwire.engines.base import StoredEvent
from runwire.events import event_from_frame
from runwire.exceptions import ConfigError, EngineError
from runwire.ids import Epoch, UserId

__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "Loaded",
    "LoadedStream",
    "Rows",
    "database_for",
    "path_of",
    "pending_key",
]

log = logging.getLogger("runwire.sqlite")

SCHEMA_VERSION = 1
"""Bumped whenever the tables change; a file of another version is refused."""

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE streams (user_id TEXT PRIMARY KEY, epoch TEXT NOT NULL,"
    " last_offset INTEGER NOT NULL, touched REAL NOT NULL)",
    "CREATE TABLE events (user_id TEXT NOT NULL, offset INTEGER NOT NULL,"
    " stored_at REAL NOT NULL, frame BLOB NOT NULL, PRIMARY KEY (user_id, offset))"
    " WITHOUT ROWID",
    "CREATE TABLE claims (user_id TEXT NOT NULL, message_id TEXT NOT NULL,"
    " run_id TEXT NOT NULL, thread_id TEXT NOT NULL, UNIQUE (user_id, message_id))",
    "CREATE TABLE snapshots (user_id TEXT NOT NULL, run_id TEXT NOT NULL,"
    " started_ts INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (user_id, run_id))",
)
_PENDING = "pending-run:"
"""Prefix of the ``meta`` keys marking a claimed run not known to have published."""
_MAX_BATCH = 4_096
WAL_CHECKPOINT_PAGES = 1_000
"""The WAL is copied into the database file once it holds this many pages (SQLite's
default). The checkpoint runs on the writer thread and holds every publish behind it
while it runs: 16,384 pages measured a 4x worse p99 (59.8 against 15.6 ms at 10,000
events/s, ``normal``), for no clear gain in rate (docs/benchmarks.md)."""


@dataclass(frozen=True, slots=True)
class Rows:
    """One statement run for many parameter rows (``executemany``: the rows of a batch
    of events cost one Python call, not one each)."""

    sql: str
    rows: Sequence[Sequence[Any]]


Statement = tuple[str, Sequence[Any]] | Rows


def pending_key(run_id: str) -> str:
    """The ``meta`` key marking ``run_id`` as claimed but not yet published (its value
    is the user id); see the module's contract."""
    return _PENDING + run_id


def path_of(url: str) -> Path:
    """The file of a ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` URL.

    Raises:
        ConfigError: not a ``sqlite:///`` URL with a path.
    """
    scheme, sep, rest = url.partition("://")
    if scheme != "sqlite" or not sep or not rest.startswith("/") or len(rest) < 2:
        raise ConfigError(
            f"RUNWIRE_ENGINE: {url!r} is not sqlite:///relative/path or sqlite:////absolute/path"
        )
    return Path(rest[1:])


@dataclass(slots=True)
class LoadedStream:
    """A user's stream as the file holds it."""

    user_id: UserId
    epoch: Epoch
    last_offset: int
    touched: float
    events: list[tuple[float, StoredEvent]] = field(default_factory=list)
    """``(stored_at, event)`` in offset order."""


@dataclass(slots=True)
class Loaded:
    """Everything read at open, least recently touched stream first."""

    streams: list[LoadedStream]
    claims: list[tuple[UserId, str, str, str]]
    """``(user_id, message_id, run_id, thread_id)``, oldest first."""
    snapshots: list[tuple[UserId, bytes]]
    """``(user_id, encoded RunSnapshot)``, oldest run first."""
    released: int = 0
    """Claims of runs that never started, deleted at open (see the contract)."""


@dataclass(slots=True)
class _Write:
    statements: list[Statement]
    on_commit: Callable[[], None] | None
    future: asyncio.Future[None] | None
    generation: int


class Database:
    """One SQLite file, written by one thread (see the module's contract)."""

    def __init__(self, path: Path, synchronous: SqliteSynchronous) -> None:
        self.path = path
        self.synchronous: SqliteSynchronous = synchronous
        """``full``: each commit is on disk (fsync) before it is reported; ``normal``:
        in the OS (WAL written, no fsync): it survives the process dying, not the
        machine losing power (see docs/operations.md, durability)."""
        self.loaded: Loaded | None = None
        """What :meth:`open` read (for the engine, the claims and the snapshots; each
        empties its lists once it took them, so nothing is held for the process's
        life)."""
        self.commits = 0
        self.writes = 0
        self._conn: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation = 0
        self._failed_through = -1  # writer thread only
        self._on_failure: list[Callable[[], None]] = []

    @property
    def is_open(self) -> bool:
        return self._thread is not None

    def on_failure(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop after a failed commit (see the contract)."""
        self._on_failure.append(callback)

    async def open(self) -> Loaded:
        """Open (or create) the file, check it, read it, and start the writer.

        Idempotent: a second call returns what the first read.

        Raises:
            ConfigError: the file cannot be used (corrupt, truncated, not runwire's,
                another schema version, in use by another process); it is left as is.
        """
        if self.loaded is not None:
            return self.loaded
        self._loop = asyncio.get_running_loop()
        self._conn, loaded = await asyncio.to_thread(self._open)
        self.loaded = loaded
        self._thread = threading.Thread(
            target=self._write_loop, name=f"runwire-sqlite:{self.path.name}", daemon=True
        )
        self._thread.start()
        return loaded

    def _refuse(self, why: str) -> ConfigError:
        return ConfigError(
            f"RUNWIRE_ENGINE: the database file {self.path} {why}; runwire does not replace"
            " it: restore it from a backup, or move it away to start with an empty history"
        )

    def _open(self) -> tuple[sqlite3.Connection, Loaded]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"RUNWIRE_ENGINE: cannot create {self.path.parent}: {exc}") from None
        try:  # a file runwire did not just create must have its schema already
            size: int | None = self.path.stat().st_size
        except FileNotFoundError:
            size = None
        except OSError as exc:
            raise self._refuse(f"cannot be opened ({exc})") from None
        if size == 0:  # runwire's own file has its header from the first open on
            raise self._refuse("is corrupt or truncated (empty: 0 bytes)")
        try:
            conn = sqlite3.connect(
                self.path, timeout=0.2, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._refuse(f"cannot be opened ({exc})") from None
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            check = [row[0] for row in conn.execute("PRAGMA quick_check")]
            if check != ["ok"]:
                raise self._refuse(f"is corrupt or truncated ({'; '.join(check[:3])})")
            conn.execute("BEGIN IMMEDIATE")  # takes the exclusive lock, held until exit
            self._check_schema(conn, size)
            conn.execute("COMMIT")
            loaded = _load(conn)
            if loaded.released:
                log.warning(
                    "sqlite: %d message claim(s) of runs that never started (the process"
                    " stopped between the claim and the run's first event) were released;"
                    " a retry of those messages starts them",
                    loaded.released,
                )
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" in str(exc):
                raise ConfigError(
                    f"RUNWIRE_ENGINE: the database file {self.path} is in use by another"
                    " process (one runwire process owns it)"
                ) from None
            raise self._refuse(f"cannot be read ({exc})") from None
        except (sqlite3.Error, ValueError) as exc:
            conn.close()
            raise self._refuse(f"is corrupt or truncated ({exc})") from None
        except ConfigError:
            conn.close()
            raise
        return conn, loaded

    def _check_schema(self, conn: sqlite3.Connection, size: int | None) -> None:
        """Create the schema in a file this open created (``size`` ``None``: there was
        none); else check it."""
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if not tables and size is not None:
            raise self._refuse("is not a runwire database (no tables)")
        if not tables:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return
        if "meta" not in tables:
            raise self._refuse("is not a runwire database (no meta table)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = row[0] if row is not None else "none"
            raise self._refuse(
                f"has schema version {found}, this runwire reads version {SCHEMA_VERSION}"
            )

    def write(
        self,
        statements: list[Statement],
        on_commit: Callable[[], None] | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> asyncio.Future[None]:
        """Queue ``statements`` (one transaction with the others of its batch).

        The future (``future``, or a new one) resolves after the commit; ``on_commit``
        runs on the loop just before, in submission order. Failure: the future raises
        :class:`EngineError` (a caller that does not await it loses nothing but the
        error, logged).

        Raises:
            EngineError: the database is not open.
        """
        if self._thread is None or self._loop is None:
            raise EngineError(f"the database {self.path} is not open")
        if future is None:
            future = self._loop.create_future()
        self._queue.put(_Write(statements, on_commit, future, self._generation))
        return future

    def write_behind(self, statements: list[Statement]) -> None:
        """:meth:`write` for what may be lost in a crash (it is redone at start-up)."""
        if self._thread is None:
            return
        self.write(statements).add_done_callback(_log_failure)

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the file; idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(thread.join)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self.loaded = None
        if _DATABASES.get(self.path.resolve()) is self:
            del _DATABASES[self.path.resolve()]

    # -- the writer thread ---------------------------------------------------------

    def _write_loop(self) -> None:
        conn, loop = self._conn, self._loop
        assert conn is not None and loop is not None
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            live = [w for w in batch if w.generation > self._failed_through]
            stale = [w for w in batch if w.generation <= self._failed_through]
            error: BaseException | None = None
            if live:
                try:
                    conn.execute("BEGIN")
                    for item in live:
                        for statement in item.statements:
                            if isinstance(statement, Rows):
                                conn.executemany(statement.sql, statement.rows)
                            else:
                                conn.execute(*statement)
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    error = exc
                    self._failed_through = max(w.generation for w in live)
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            try:
                loop.call_soon_threadsafe(self._settle, live, stale, error)
            except RuntimeError:
                break  # the loop is closed: nobody is waiting any more

    # -- back on the loop ----------------------------------------------------------

    def _settle(self, live: list[_Write], stale: list[_Write], error: BaseException | None) -> None:
        if error is None:
            self.commits += 1
            self.writes += len(live)
            for item in live:
                if item.on_commit is not None:
                    item.on_commit()
                if item.future is not None and not item.future.done():
                    item.future.set_result(None)
        else:
            log.error("sqlite: a commit to %s failed: %s", self.path, error)
            self._generation += 1
            for item in live:
                _fail(item, f"the write to {self.path} failed: {error}")
        for item in stale:
            _fail(item, f"an earlier write to {self.path} failed")
        if error is not None or stale:
            for callback in self._on_failure:
                callback()


def _fail(item: _Write, message: str) -> None:
    if item.future is not None and not item.future.done():
        item.future.set_exception(EngineError(message))


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("sqlite: a write-behind failed: %s", future.exception())


def _load(conn: sqlite3.Connection) -> Loaded:
    streams: dict[UserId, LoadedStream] = {}
    for user_id, epoch, last_offset, touched in conn.execute(
        "SELECT user_id, epoch, last_offset, touched FROM streams ORDER BY touched"
    ):
        streams[user_id] = LoadedStream(UserId(user_id), Epoch(epoch), last_offset, touched)
    for user_id, offset, stored_at, frame in conn.execute(
        "SELECT user_id, offset, stored_at, frame FROM events ORDER BY user_id, offset"
    ):
        stream = streams.get(user_id)
        if stream is None or offset > stream.last_offset:
            raise ValueError(f"event {offset} of {user_id!r} is not in its stream")
        decoded_offset, event = event_from_frame(bytes(frame))
        if decoded_offset != offset:
            raise ValueError(f"event {offset} of {user_id!r} names offset {decoded_offset}")
        stored = StoredEvent(stream.user_id, stream.epoch, offset, bytes(frame), event)
        stream.events.append((stored_at, stored))
    claims = [
        (UserId(u), m, r, t)
        for u, m, r, t in conn.execute(
            "SELECT user_id, message_id, run_id, thread_id FROM claims ORDER BY rowid"
        )
    ]
    snapshots: list[tuple[UserId, bytes]] = []
    started: set[tuple[str, str]] = set()  # (user_id, run_id) with a snapshot or an event
    for u, run_id, body in conn.execute(
        "SELECT user_id, run_id, body FROM snapshots ORDER BY started_ts"
    ):
        snapshots.append((UserId(u), bytes(body)))
        started.add((u, run_id))
    for stream in streams.values():
        started.update((stream.user_id, stored.event.run_id) for _, stored in stream.events)
    loaded = Loaded(list(streams.values()), claims, snapshots)
    _release_unstarted(conn, loaded, started)
    return loaded


def _release_unstarted(
    conn: sqlite3.Connection, loaded: Loaded, started: set[tuple[str, str]]
) -> None:
    """Delete the claims of runs that never started (see the module's contract), and
    every pending mark."""
    marks = {
        key[len(_PENDING) :]: user_id
        for key, user_id in conn.execute(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ?",
            (_PENDING, _PENDING + "\uffff"),
        )
    }
    if not marks:
        return
    never = {
        (user_id, run_id) for run_id, user_id in marks.items() if (user_id, run_id) not in started
    }
    kept = [claim for claim in loaded.claims if (claim[0], claim[2]) not in never]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "DELETE FROM claims WHERE user_id = ? AND run_id = ?", [(u, r) for u, r in never]
    )
    conn.executemany("DELETE FROM meta WHERE key = ?", [(_PENDING + r,) for r in marks])
    conn.execute("COMMIT")
    loaded.released = len(loaded.claims) - len(kept)
    loaded.claims = kept


_DATABASES: dict[Path, Database] = {}


def database_for(path: Path, synchronous: SqliteSynchronous) -> Database:
    """This process's :class:`Database` of ``path`` (the engine, the idempotency keys
    and the snapshots of one gateway share it; a closed one is replaced)."""
    key = path.resolve()
    database = _DATABASES.get(key)
    if database is None:
        database = _DATABASES[key] = Database(path, synchronous)
    return database
