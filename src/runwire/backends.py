"""Backends: what each ``RUNWIRE_ENGINE`` URL scheme provides, in one registry.

An engine alone is enough for one process. A *shared* store also brings the parts
that make several processes act as one: idempotency keys every node sees, a run
queue for workers, run snapshots any node can read, and a control channel. A
:class:`Backend` names them; a part left ``None`` means "node-local" (or, for
workers, "not supported"). The composition root (:mod:`runwire.app`) and the
worker ask the backend, never the URL scheme.

Adding an engine: one module implementing :class:`~runwire.engines.base.Engine`
(passing ``tests/engines/test_contract.py``), and one :class:`Backend` registered
here under its scheme.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from runwire.config import Settings
from runwire.engines.base import Engine
from runwire.engines.memory import HistoryBounds, MemoryEngine
from runwire.exceptions import ConfigError
from runwire.ids import UserId
from runwire.runs import LocalSnapshots, RunStore, SnapshotReader

if TYPE_CHECKING:
    from runwire.agents.dispatch import MessageClaims, RunDispatcher, RunLease
    from runwire.engines.base import StoredEvent
    from runwire.events import Event

Publish = Callable[[UserId, "Event"], Awaitable["StoredEvent"]]

__all__ = [
    "BACKENDS",
    "Backend",
    "Control",
    "SharedSnapshots",
    "backend_for",
    "history_bounds",
]


class SharedSnapshots(SnapshotReader, Protocol):
    """Run snapshots in the shared store: written behind runs executed here, read by
    any node."""

    def start(self) -> None:
        """Start writing behind."""

    async def close(self) -> None:
        """Write what is pending and release the connection."""

    def executed(self, user_id: UserId, event: Event) -> None:
        """``event`` of a run executed in this process was published."""


class Control(Protocol):
    """Commands to every node of a shared store."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def disconnect(self, user_id: UserId, code: int, reason: str) -> None: ...

    async def presence(self, user_id: UserId) -> tuple[dict[str, int], bool]:
        """The user's sockets on every *other* node, by node id, and whether every
        node answered."""
        ...


@dataclass(frozen=True, slots=True)
class NodeHandlers:
    """What a node does for the control channel: its id, closing a user's local
    sockets, and counting them."""

    node_id: str
    disconnect: Callable[[UserId, int, str], object]
    count: Callable[[UserId], int]


@dataclass(frozen=True, slots=True)
class Backend:
    """The parts one URL scheme provides. ``None``: node-local (or unsupported)."""

    engine: Callable[[Settings], Engine]
    message_claims: Callable[[Settings], MessageClaims] | None = None
    workers: Callable[[Settings], RunDispatcher] | None = None
    """The dispatcher that hands runs to ``runwire worker`` (``RUNWIRE_RUNS=workers``)."""
    snapshots: Callable[[Settings, RunStore], SharedSnapshots] | None = None
    control: Callable[[Settings, NodeHandlers], Control] | None = None
    run_lease: (
        Callable[[Settings, str, Engine, Publish, RunStore, SnapshotReader], RunLease] | None
    ) = None
    """The lease of a node running agents locally, so that a live node ends its runs
    when it dies (``node_id, engine, publish, store, snapshots``: the node's own)."""

    def snapshot_reader(self, shared: SharedSnapshots | None, store: RunStore) -> SnapshotReader:
        """Where ``get_runs`` reads: the shared copy when there is one, else this node."""
        return shared if shared is not None else LocalSnapshots(store)


def history_bounds(settings: Settings) -> HistoryBounds:
    """The history bounds of a node-local engine (memory, sqlite)."""
    return HistoryBounds(
        max_events=settings.history_max_events,
        max_bytes=settings.history_max_bytes,
        ttl_s=settings.history_ttl_s,
        max_users=settings.history_max_users,
        max_event_bytes=settings.event_size_limit,
    )


def _memory_engine(settings: Settings) -> Engine:
    return MemoryEngine(history_bounds(settings))


MEMORY = Backend(engine=_memory_engine)
"""One process: streams, idempotency and snapshots in this process's memory."""

BACKENDS: dict[str, Backend | str] = {
    "memory": MEMORY,
    "redis": "runwire.redis.backend:BACKEND",
    "redis+cluster": "runwire.redis.backend:BACKEND",
    "sqlite": "runwire.sqlite.backend:BACKEND",
}
"""URL scheme to its backend (or the ``module:attribute`` that defines it, imported
on first use so the core install does not need the extra)."""


def backend_for(settings: Settings) -> Backend:
    """The backend of ``settings.engine``.

    Raises:
        ConfigError: unknown scheme, or its extra is not installed.
    """
    scheme = settings.engine.partition("://")[0]
    backend = BACKENDS.get(scheme)
    if backend is None:
        known = ", ".join(f"{name}://" for name in BACKENDS)
        raise ConfigError(f"RUNWIRE_ENGINE: unknown engine {scheme!r} (known: {known})")
    if isinstance(backend, str):
        module, _, attribute = backend.partition(":")
        try:
            backend = getattr(importlib.import_module(module), attribute)
        except ImportError as exc:
            extra = scheme.partition("+")[0]  # redis+cluster: the redis extra
            raise ConfigError(
                f"RUNWIRE_ENGINE: the {scheme} engine needs the {extra} extra"
                f" (pip install 'runwire[{extra}]'): {exc}"
            ) from None
        assert isinstance(backend, Backend)
    return backend
