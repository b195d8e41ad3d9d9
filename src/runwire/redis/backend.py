"""The ``redis://`` and ``redis+cluster://`` backend: every shared part, configured
from :class:`Settings`.

One backend for both schemes: each part takes the URL and gets its clients from
:mod:`runwire.redis.client`, which alone (with :mod:`runwire.redis.topology`) knows
whether the URL names one server or a cluster."""

from __future__ import annotations

from runwire.backends import Backend, NodeHandlers, Publish
from runwire.config import Settings
from runwire.engines.base import Engine
from runwire.redis.control import RedisControl
from runwire.redis.engine import RedisEngine
from runwire.redis.nodes import NodeLease
from runwire.redis.snapshots import RedisSnapshots
from runwire.redis.workers import RedisDispatcher, RedisMessageClaims
from runwire.runs import RunStore, SnapshotReader

__all__ = ["BACKEND"]


def _engine(settings: Settings) -> RedisEngine:
    return RedisEngine(
        settings.engine,
        max_events=settings.history_max_events,
        max_bytes=settings.history_max_bytes,
        max_age_s=settings.history_ttl_s,
        key_ttl_s=settings.redis_key_ttl_s,
        max_event_bytes=settings.event_size_limit,
    )


def _claims(settings: Settings) -> RedisMessageClaims:
    return RedisMessageClaims(settings.engine, ttl_s=settings.idempotency_ttl_s)


def _workers(settings: Settings) -> RedisDispatcher:
    return RedisDispatcher(
        settings.engine,
        per_user=settings.max_concurrent_runs_per_user,
        ttl_s=settings.idempotency_ttl_s,
        stream_max=settings.runs_stream_max,
    )


def _snapshots(settings: Settings, store: RunStore) -> RedisSnapshots:
    return RedisSnapshots(
        settings.engine,
        store,
        runs_per_user=settings.snapshot_runs_per_user,
        ttl_s=settings.idempotency_ttl_s,
    )


def _control(settings: Settings, node: NodeHandlers) -> RedisControl:
    return RedisControl(settings.engine, node)


def _run_lease(
    settings: Settings,
    node_id: str,
    engine: Engine,
    publish: Publish,
    store: RunStore,
    snapshots: SnapshotReader,
) -> NodeLease:
    return NodeLease(
        settings.engine,
        node_id,
        heartbeat_s=settings.node_heartbeat_s,
        keep_s=settings.idempotency_ttl_s,
        engine=engine,
        publish=publish,
        store=store,
        snapshots=snapshots,
    )


BACKEND = Backend(
    engine=_engine,
    message_claims=_claims,
    workers=_workers,
    snapshots=_snapshots,
    control=_control,
    run_lease=_run_lease,
)
