"""The ``sqlite:///path`` backend: the engine, idempotency keys and run snapshots of one
process, all in one SQLite file."""

from __future__ import annotations

from runwire.backends import Backend, history_bounds
from runwire.config import Settings
from runwire.engines.base import Engine
from runwire.engines.sqlite import SqliteEngine
from runwire.runs import RunStore
from runwire.sqlite.claims import SqliteClaims
from runwire.sqlite.db import Database, database_for, path_of
from runwire.sqlite.snapshots import SqliteSnapshots

__all__ = ["BACKEND"]


def _database(settings: Settings) -> Database:
    return database_for(path_of(settings.engine), settings.sqlite_synchronous)


def _engine(settings: Settings) -> Engine:
    return SqliteEngine(_database(settings), history_bounds(settings))


def _claims(settings: Settings) -> SqliteClaims:
    return SqliteClaims(_database(settings), max_keys=settings.idempotency_keys)


def _snapshots(settings: Settings, store: RunStore) -> SqliteSnapshots:
    return SqliteSnapshots(_database(settings), store)


BACKEND = Backend(engine=_engine, message_claims=_claims, snapshots=_snapshots)
