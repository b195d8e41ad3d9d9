"""Redis clients whose connections survive a Redis restart, and error mapping.

Every pooled connection runwire opens comes from :func:`redis_client`; redis-py
errors become :class:`~runwire.exceptions.EngineError` in :func:`map_redis_errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
    NoScriptError,
    RedisError,
    TimeoutError as RedisTimeoutError,
)

from runwire.exceptions import EngineError
from runwire.redis.topology import cluster_seeds, is_cluster
from runwire.redis.wire import WireConnection

__all__ = [
    "CONNECT_TIMEOUT_S",
    "PackedConnection",
    "POOL_CONNECTIONS",
    "Client",
    "listener_client",
    "pubsub_of",
    "call_script_on",
    "map_redis_errors",
    "open_wire",
    "redis_client",
    "run_script",
    "wire_address",
]

Client = aioredis.Redis | RedisCluster
"""A client of one server (``redis://``) or of a cluster (``redis+cluster://``): the
same commands; a cluster client routes each by its key's slot (and follows
``MOVED`` / ``ASK``, refreshing its slot map)."""

POOL_CONNECTIONS = 32
_POOL_TIMEOUT_S = 10.0
_RETRY_BACKOFF_S = 0.05
_HEALTH_CHECK_S = 1.0
CONNECT_TIMEOUT_S = 5.0
_COMMAND_TIMEOUT_S = 10.0


_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # the redis extra installs hiredis; without it, redis-py's packer
    _hiredis_pack = None


class PackedConnection(aioredis.Connection):
    """redis-py's asyncio connection, with commands packed by hiredis (C) when it is
    installed. redis-py's asyncio packer is pure Python: ~5 us per argument, which made
    packing a batch of publishes (a few hundred arguments) the publishing node's
    largest cost. Same bytes on the wire; anything hiredis cannot pack (a memoryview)
    goes to redis-py's packer."""

    async def _send_packed_command(self, command: Any) -> None:
        """redis-py's write, with a write to a transport the loop already closed reported
        as the broken connection it is: an ``OSError``, which redis-py turns into its
        ``ConnectionError`` and retries once on a new connection. uvloop raises
        ``RuntimeError`` there ("the handler is closed"), for instance when Redis
        restarts between connect and ``HELLO``; any other ``RuntimeError`` stays one.
        (Every pooled connection has a reply timeout, so every write comes here.)"""
        writer = self._writer
        try:
            await super()._send_packed_command(command)
        except RuntimeError as exc:
            if writer is None or not writer.transport.is_closing():
                raise
            raise ConnectionResetError(f"redis connection closed while writing: {exc}") from exc

    def pack_command(self, *args: Any) -> list[bytes]:
        if _hiredis_pack is not None:
            head = args[0]
            if isinstance(head, str) and " " in head:  # "SCRIPT LOAD": separate words
                args = (*head.split(), *args[1:])
            try:
                return [_hiredis_pack(args)]
            except TypeError:
                pass
        return super().pack_command(*args)


def _connection_options() -> dict[str, Any]:
    """How every pooled Redis connection of runwire behaves: the one place that decides.

    * **Retry once.** A command whose connection breaks (redis-py's ``ConnectionError``
      or ``TimeoutError``: Redis restarted, closed the connection, is still loading its
      data, or stopped answering) is sent once more on a new connection, 50 ms later.
      Only commands that are safe to send twice go through these clients: reads; writes
      that set a value (``SET``, ``EXPIRE``, ``ZADD``, ``XACK``...); the publish script,
      which stores a repeated ``(run_id, seq)`` once; the run start script and the
      message claims, which return the run already recorded for the message id (and
      compare it with their own); ``PUBLISH`` of a cancel request (cancelling twice is
      cancelling). ``XREADGROUP`` and ``XCLAIM`` are not, but
      :class:`~runwire.redis.workers.WorkQueue` makes them so: a worker takes
      up the entries pending for it that it does not hold (a lost reply).
    * **Health checks.** A connection idle for more than ``_HEALTH_CHECK_S`` is checked
      with ``PING`` before its next command, so a connection Redis dropped while it was
      idle (a restart) is replaced before use instead of failing that command.
    * **Packing.** Commands are packed in C (:class:`PackedConnection`).
    * **Bounded waits.** A connect gives up after ``CONNECT_TIMEOUT_S`` and a reply after
      ``_COMMAND_TIMEOUT_S``, so a Redis that stopped answering fails commands (which
      then map to :class:`EngineError`) instead of hanging them.

    The engine's subscription connection is the one exception: it is never retried nor
    re-subscribed behind the engine's back (see :meth:`runwire.redis.engine.RedisEngine._listen`).
    """
    return {
        "connection_class": PackedConnection,
        "retry": Retry(ConstantBackoff(_RETRY_BACKOFF_S), 1),
        "health_check_interval": _HEALTH_CHECK_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": _COMMAND_TIMEOUT_S,
        "socket_keepalive": True,
    }


def redis_client(
    url: str,
    *,
    decode_responses: bool,
    blocking: bool = True,
    max_connections: int = POOL_CONNECTIONS,
) -> Client:
    """A client whose connections survive a Redis restart (:func:`_connection_options`).

    ``blocking``: a burst of commands waits for a free connection (up to
    ``_POOL_TIMEOUT_S``) instead of failing with "too many connections"; the engine's
    hot path uses a plain pool capped by its own semaphore instead. The client owns its
    pool: ``aclose()`` closes both.

    A ``redis+cluster://`` URL gives a cluster client with the same options, and up to
    ``max_connections`` per node (its pools do not block: callers that burst cap
    themselves, as the engine does). Its one retry also refreshes the slot map, so a
    command that failed on a master that just died goes to the promoted replica when
    the promotion is already known.
    """
    options = _connection_options()
    if is_cluster(url):
        return _cluster_client(url, decode_responses, max_connections, options)
    pool: aioredis.ConnectionPool
    if blocking:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=_POOL_TIMEOUT_S,
            decode_responses=decode_responses,
            **options,
        )
    else:
        pool = aioredis.ConnectionPool.from_url(
            url, max_connections=max_connections, decode_responses=decode_responses, **options
        )
    return aioredis.Redis.from_pool(pool)


class BoundedCluster(RedisCluster):
    """A cluster client whose commands wait for a free connection instead of failing.

    redis-py's cluster pools do not block: a command past ``max_connections`` on a
    node fails with ``MaxConnectionsError`` (a ``ConnectionError``, so the engine would
    report itself unavailable under a burst). Here at most ``max_connections``
    commands and pipelines are in flight at once, over all nodes, so no node's pool
    runs out. Its nodes' connections pack with hiredis (:class:`PackedConnection`). The
    first command initializes the client (the slot map) before any other is sent:
    redis-py's own initialization, raced by concurrent first commands, closes
    connections the others are using.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        connection_class: type[aioredis.Connection] = PackedConnection,
        **kwargs: Any,
    ) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        # redis-py's cluster client takes no connection class, but makes every node it
        # discovers with these options: the nodes' connections pack with hiredis too.
        self.nodes_manager.connection_kwargs["connection_class"] = connection_class
        self._bound = asyncio.Semaphore(max_connections)
        self._first = asyncio.Lock()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self._initialized()
        async with self._bound:
            return await super().execute_command(*args, **kwargs)

    async def _initialized(self) -> None:
        if self._initialize:
            async with self._first:
                await self.initialize()

    async def refresh_slots(self) -> None:
        """Read the slot map again (after a call routed by it failed: a failover or a
        resharding may have moved slots), one refresh at a time.

        Raises:
            RedisError, OSError: no node answered.
        """
        async with self._first:
            await self.nodes_manager.initialize()

    async def node_of_slot(self, slot: int) -> ClusterNode:
        """The master serving ``slot`` in the client's slot map (refreshed by redis-py
        on ``MOVED`` and broken connections).

        Raises:
            RedisError: the slot is not covered (or the map cannot be read).
        """
        await self._initialized()
        return self.nodes_manager.get_node_from_slot(slot)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        """A pipeline bounded like a command (it holds one connection per node it
        touches while it runs)."""
        return _BoundedPipeline(self, transaction)  # type: ignore[abstract]


class _BoundedPipeline(ClusterPipeline):
    """A :class:`BoundedCluster`'s pipeline: waits for the client's bound to run."""

    def __init__(self, client: BoundedCluster, transaction: Any | None) -> None:
        super().__init__(client, transaction)
        self._bounded = client

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        await self._bounded._initialized()
        async with self._bounded._bound:
            return await super().execute(raise_on_error, allow_redirections)


def _cluster_client(
    url: str, decode_responses: bool, max_connections: int, options: dict[str, Any]
) -> RedisCluster:
    seeds, credentials = cluster_seeds(url)
    return BoundedCluster(
        startup_nodes=[ClusterNode(seed.host, seed.port) for seed in seeds],
        decode_responses=decode_responses,
        max_connections=max_connections,
        **options,
        **credentials,
    )


def wire_address(url: str) -> dict[str, Any]:
    """Where a ``redis://`` URL points, as :func:`open_wire` takes it (host, port,
    username, password, db), parsed by redis-py."""
    parsed = parse_url(url)
    return {
        "host": parsed.get("host", "localhost"),
        "port": int(parsed.get("port", 6379)),
        "username": parsed.get("username"),
        "password": parsed.get("password"),
        "db": int(parsed.get("db", 0)),
    }


async def open_wire(
    host: str,
    port: int,
    *,
    subscriber: bool = False,
    username: str | None = None,
    password: str | None = None,
    db: int = 0,
) -> WireConnection:
    """A :class:`~runwire.redis.wire.WireConnection` for a hot path: the publish calls
    (replies bounded by ``_COMMAND_TIMEOUT_S``) or, with ``subscriber``, a subscription
    (no reply timeout: the connection is idle between events; PINGs check it).
    Connects within ``CONNECT_TIMEOUT_S``. It is never retried nor reconnected behind
    its owner's back: the engine opens a new one (see :func:`call_script_on`).

    Raises:
        redis.exceptions.ConnectionError: not connected; ``ResponseError``: AUTH refused.
    """
    connection = await WireConnection.open(
        host,
        port,
        username=username,
        password=password,
        db=db,
        connect_timeout_s=CONNECT_TIMEOUT_S,
        command_timeout_s=None if subscriber else _COMMAND_TIMEOUT_S,
    )
    if subscriber:
        connection.listen()
    return connection


async def call_script_on(
    connect: Callable[[], Awaitable[WireConnection]],
    script: AsyncScript,
    keys: list[Any],
    args: list[Any],
) -> Any:
    """Run ``script`` on the connection ``connect`` gives (a lean hot path), as
    :func:`run_script` does on a pool: loaded when the server answers ``NOSCRIPT``, and
    sent once more, ``_RETRY_BACKOFF_S`` later on a fresh connection, when the
    connection broke or timed out (runwire's scripts are safe to run twice, see
    :func:`_connection_options`).
    """
    for attempt in range(2):
        try:
            connection = await connect()
            for _ in range(2):
                try:
                    return await connection.call("EVALSHA", script.sha, len(keys), *keys, *args)
                except NoScriptError:
                    await connection.call("SCRIPT", "LOAD", script.script)
            return await connection.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except (RedisConnectionError, RedisTimeoutError):
            if attempt:
                raise
            await asyncio.sleep(_RETRY_BACKOFF_S)
    raise AssertionError("unreachable")


def listener_client(url: str) -> Client:
    """A client with redis-py's own defaults and no read timeout, for pub/sub listeners
    that wait for messages indefinitely (the control channel)."""
    if is_cluster(url):
        seeds, credentials = cluster_seeds(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(seed.host, seed.port) for seed in seeds],
            socket_timeout=None,
            **credentials,
        )
    return aioredis.Redis.from_url(url)


async def pubsub_of(client: Client, **options: Any) -> Any:
    """A pub/sub object of ``client`` for plain (cluster-wide) channels.

    A cluster client first refreshes its slot map (its pub/sub picks the node of the
    channel's slot from it, and an empty or stale map would pick none or a dead one);
    any node then delivers a plain ``PUBLISH`` from any other.

    Raises:
        RedisError, OSError: no cluster node answered.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
        await client.nodes_manager.initialize()
    return client.pubsub(**options)


async def run_script(script: AsyncScript, *, keys: list[Any], args: list[Any]) -> Any:
    """Run a registered script.

    redis-py loads a script the server does not know (``NOSCRIPT``) and runs it again,
    once; when the connection's retry crosses a Redis restart between that load and
    that run, the restarted server answers ``NOSCRIPT`` once more: load and run again.
    (Running a runwire script twice is safe, see :func:`_connection_options`.)
    """
    try:
        return await script(keys=keys, args=args)
    except NoScriptError:
        return await script(keys=keys, args=args)


_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""Errors that say Redis could not be reached (rather than that it refused a command)."""


@asynccontextmanager
async def map_redis_errors(
    action: str, on_unreachable: Callable[[], None] | None = None
) -> AsyncIterator[None]:
    """Translate redis-py errors into :class:`EngineError` at the adapter boundary.

    The one retry already happened in the connection (:func:`_connection_options`): an
    error here is final for this call. ``on_unreachable`` is called first when the
    error says Redis could not be reached.
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        if on_unreachable is not None and isinstance(exc, _UNREACHABLE):
            on_unreachable()
        raise EngineError(f"redis unavailable during {action}: {exc!r}") from exc
