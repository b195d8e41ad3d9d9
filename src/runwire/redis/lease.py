"""Liveness in Redis: a key per live process, renewed every heartbeat, expiring after
``LEASE_PERIODS`` heartbeats of silence.

One implementation for every process that holds work others must take over when it
dies: ``runwire worker`` (its runs in the ``rw:runs`` stream, :mod:`runwire.redis.workers`)
and gateway nodes running agents locally (their runs, :mod:`runwire.redis.nodes`).
A holder whose key is gone is dead: a live process may claim its work. The key's
time to live is counted by the Redis server's clock, so the processes' clocks do not
matter.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from runwire.redis.client import Client, map_redis_errors

__all__ = ["LEASE_PERIODS", "Liveness", "lease_ttl_s"]

LEASE_PERIODS = 3
"""Heartbeats a holder may miss before it counts as dead."""


def lease_ttl_s(heartbeat_s: float) -> int:
    """The time to live of a liveness key renewed every ``heartbeat_s``: whole
    seconds (Redis ``EX``), at least ``LEASE_PERIODS`` heartbeats and at least 1 s."""
    return max(1, math.ceil(LEASE_PERIODS * heartbeat_s))


class Liveness:
    """The liveness keys of one kind of holder (``key_of(name)`` names each one)."""

    def __init__(self, redis: Client, key_of: Callable[[str], str], ttl_s: int) -> None:
        self._redis = redis
        self.key_of = key_of
        self.ttl_s = ttl_s

    async def renew(self, name: str) -> None:
        """Say ``name`` is alive for ``ttl_s`` more seconds.

        Raises:
            EngineError: Redis could not be reached.
        """
        async with map_redis_errors("heartbeat"):
            await self._redis.set(self.key_of(name), "1", ex=self.ttl_s)

    async def alive(self, name: str) -> bool:
        """Whether ``name`` renewed its key within ``ttl_s``.

        Raises:
            EngineError: Redis could not be reached.
        """
        async with map_redis_errors("check heartbeat"):
            return bool(await self._redis.exists(self.key_of(name)))

    async def end(self, name: str) -> None:
        """``name`` stops holding anything (a graceful stop): drop its key now.

        Raises:
            EngineError: Redis could not be reached.
        """
        async with map_redis_errors("end heartbeat"):
            await self._redis.delete(self.key_of(name))
