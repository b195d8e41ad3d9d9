"""Where a Redis deployment's data lives: one server (``redis://``) or a Redis Cluster
(``redis+cluster://host:port,host:port,...``, Redis 7+ or Valkey).

The one place that knows the difference between the two URL schemes. Everything else
in :mod:`runwire.redis` asks a :class:`Topology`:

* :attr:`Topology.sharded`: whether keys are spread over slots (the publish script
  then runs once per slot, and live channels use sharded pub/sub);
* :meth:`Topology.slot`: the cluster slot of a key (``0`` for one server);
* :meth:`Topology.shards`: the shards as they are now, each a set of slot ranges and
  the address of the master serving them (refreshed from the cluster on every call,
  so a caller reconnecting after a failover finds the promoted replica). Told of a
  slot that moved (:class:`Moved`: a node answered ``MOVED``, or dropped the slot's
  channels), it looks past nodes that have not heard of the move yet.

A shard is named by its slot ranges (:attr:`Shard.key`), not by its master: a replica
promoted after a failover serves the same ranges, so it is the same shard at a new
address. Only a resharding changes the names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import RedisError

from runwire.config import redacted_url
from runwire.exceptions import ConfigError, EngineError

__all__ = [
    "CLUSTER_SCHEME",
    "Address",
    "Moved",
    "Shard",
    "Topology",
    "cluster_seeds",
    "is_cluster",
    "topology_for",
]

CLUSTER_SCHEME = "redis+cluster"
_ALL_SLOTS = ((0, 16383),)
_PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Shard:
    """Slot ranges (inclusive) and the master serving them."""

    ranges: tuple[tuple[int, int], ...]
    master: Address

    @property
    def key(self) -> tuple[tuple[int, int], ...]:
        """The shard's name: its slot ranges (stable across a failover)."""
        return self.ranges


@dataclass(frozen=True, slots=True)
class Moved:
    """What a node said of a slot that left it: ``slot`` is no longer served by
    ``source`` (``None``: not known), and is served by ``target`` when the node said so
    (``MOVED <slot> <target>``; ``None`` after a dropped channel)."""

    slot: int
    source: Address | None
    target: Address | None

    def shown_by(self, shards: list[Shard]) -> bool:
        """Whether a slot map has heard of the move (the slot is served, not by
        ``source``, and by ``target`` if known)."""
        master = _master_of(shards, self.slot)
        if master is None or (self.source is not None and master == self.source):
            return False
        return self.target is None or master == self.target


def _master_of(shards: list[Shard], slot: int) -> Address | None:
    for shard in shards:
        if any(start <= slot <= end for start, end in shard.ranges):
            return shard.master
    return None


def is_cluster(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``)."""
    return url.startswith(f"{CLUSTER_SCHEME}://")


def cluster_seeds(url: str) -> tuple[list[Address], dict[str, Any]]:
    """The seed nodes of a ``redis+cluster://[user:password@]host:port,host:port/`` URL,
    and the connection options it names (``username``, ``password``).

    Raises:
        ConfigError: no seed, or a seed without a valid port.
    """
    rest = url[len(CLUSTER_SCHEME) + 3 :]
    credentials, _, hosts = rest.rpartition("@")
    hosts = hosts.split("/", 1)[0].split("?", 1)[0]
    seeds: list[Address] = []
    for part in filter(None, hosts.split(",")):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"RUNWIRE_ENGINE: {part!r} is not host:port in {redacted_url(url)!r}")
        seeds.append(Address(host.strip("[]"), int(port)))
    if not seeds:
        raise ConfigError(f"RUNWIRE_ENGINE: no seed node in {redacted_url(url)!r}")
    options: dict[str, Any] = {}
    if credentials:
        user, _, password = credentials.partition(":")
        if user:
            options["username"] = unquote(user)
        if password:
            options["password"] = unquote(password)
    return seeds, options


class Topology:
    """One server (``sharded`` false) or a cluster; see the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sharded = is_cluster(url)
        if self.sharded:
            self._known, self.options = cluster_seeds(url)
        else:
            parts = urlsplit(url)
            self._known = [Address(parts.hostname or "localhost", parts.port or 6379)]
            self.options = {}

    def slot(self, key: str) -> int:
        """The slot of ``key`` (its hash tag's, when it has one); ``0`` on one server."""
        return key_slot(key.encode()) if self.sharded else 0

    async def shards(self, moved: Moved | None = None) -> list[Shard]:
        """The shards now, asking the nodes known so far in turn: seeds first, except
        that the node whose answer last showed a move is asked first (it is known to be
        up to date).

        With ``moved``, its ``target`` is asked first, and an answer that has not heard
        of the move (a node the cluster's gossip has not reached yet) is passed over
        for the next node's. If no node has heard of it, the first answer is returned:
        the caller finds the move again and asks later (it backs off).

        Raises:
            EngineError: no known node answered ``CLUSTER SLOTS``.
        """
        if not self.sharded:
            return [Shard(_ALL_SLOTS, self._known[0])]
        errors: list[str] = []
        order = list(self._known)
        if moved is not None and moved.target is not None:
            if moved.target in order:
                order.remove(moved.target)
            order.insert(0, moved.target)
        stale: list[Shard] | None = None
        for address in order:
            try:
                reply = await _cluster_slots(address, self.options)
            except (RedisError, OSError, TimeoutError) as exc:
                errors.append(f"{address.host}:{address.port}: {exc}")
                continue
            shards = _shards_of(reply)
            if not shards:
                continue
            for shard in shards:
                if shard.master not in self._known:
                    self._known.append(shard.master)
            if moved is None:
                return shards
            if moved.shown_by(shards):
                if address in self._known:
                    self._known.remove(address)
                self._known.insert(0, address)  # up to date: ask it first from now on
                return shards
            if stale is None:
                stale = shards
        if stale is not None:
            return stale
        raise EngineError(f"no cluster node answered CLUSTER SLOTS ({'; '.join(errors)})")


async def _cluster_slots(address: Address, options: dict[str, Any]) -> Any:
    client = aioredis.Redis(
        host=address.host,
        port=address.port,
        socket_timeout=_PROBE_TIMEOUT_S,
        socket_connect_timeout=_PROBE_TIMEOUT_S,
        protocol=2,
        **options,
    )
    try:
        return await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
    finally:
        with contextlib.suppress(RedisError, OSError):
            await client.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _shards_of(reply: Any) -> list[Shard]:
    """``CLUSTER SLOTS`` (raw or as redis-py parses it) as shards, ranges sorted."""
    by_master: dict[Address, list[tuple[int, int]]] = {}
    rows: Sequence[Any]
    if isinstance(reply, dict):  # redis-py's parsed form: {(start, end): {"primary": ...}}
        rows = [(start, end, value["primary"]) for (start, end), value in reply.items()]
    else:
        rows = [(row[0], row[1], row[2]) for row in reply]
    for start, end, master in rows:
        address = Address(_text(master[0]), int(master[1]))
        by_master.setdefault(address, []).append((int(start), int(end)))
    return sorted(
        (Shard(tuple(sorted(ranges)), master) for master, ranges in by_master.items()),
        key=lambda shard: shard.ranges,
    )


def topology_for(url: str) -> Topology:
    """The topology of an engine URL (``redis://`` or ``redis+cluster://``)."""
    return Topology(url)
