"""Every way runwire is deployed, as one parametrized fixture for socket contract tests.

``deployment`` is an async context-manager factory: ``async with deployment(agent) as
gateway`` starts a gateway (and, for ``redis-workers``, a worker running the agent)
on free ports. Tests written against it hold on every deployment; adding a
deployment (SQLite, the ASGI front door) is adding a case here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from runwire import Gateway
from runwire.agents.base import Agent
from runwire.app import create_engine
from tests.helpers import make_settings, running_gateway, scripted_agent
from tests.redis_server import RedisServer

Deployment = Callable[..., AbstractAsyncContextManager[Gateway]]

DEPLOYMENTS = ("memory", "redis", "redis-workers")


def _memory() -> Deployment:
    return running_gateway


def _redis(url: str) -> Deployment:
    def deploy(
        agent: Agent | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[Gateway]:
        return running_gateway(agent, engine=url, **overrides)

    return deploy


def _redis_workers(url: str) -> Deployment:
    @asynccontextmanager
    async def deploy(agent: Agent | None = None, **overrides: Any) -> AsyncIterator[Gateway]:
        from runwire.redis.worker import Worker

        settings = make_settings(engine=url, runs="workers", worker_heartbeat_s=0.2)
        worker = Worker(settings, create_engine(settings), agent or scripted_agent)
        await worker.start()
        try:
            async with running_gateway(agent, engine=url, runs="workers", **overrides) as gateway:
                yield gateway
        finally:
            await worker.stop(1.0)

    return deploy


@pytest.fixture(params=DEPLOYMENTS)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """A way to start a gateway: in memory, on Redis, or on Redis with a worker."""
    if request.param == "memory":
        return _memory()
    server: RedisServer = request.getfixturevalue("redis_server")
    if request.param == "redis":
        return _redis(server.url)
    return _redis_workers(server.url)
