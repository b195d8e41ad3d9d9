"""Both front doors of a gateway, for tests that must hold on each: the standalone
server and ``gateway.asgi_app()`` mounted under ``/runwire`` in a FastAPI app served
by a real uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from fastapi import FastAPI

from runwire import Gateway
from runwire.agents.base import Agent
from runwire.asgi import uvicorn_settings
from runwire.client import Client
from tests.asgi_server import uvicorn_serving
from tests.helpers import make_settings, scripted_agent, token_for

__all__ = ["PREFIX", "FrontDoor", "OpenDoor", "door", "fastapi_app", "front_door"]

PREFIX = "/runwire"


@dataclass(frozen=True)
class FrontDoor:
    """A running gateway and where it answers: ``url`` is the HTTP base (prefix included)."""

    gateway: Gateway
    url: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws"

    def token(self, user: str) -> str:
        return token_for(self.gateway.settings, user)

    def connect(self, user: str, **kwargs: Any) -> AbstractAsyncContextManager[Client]:
        return Client.connect(self.ws_url, self.token(user), **kwargs)


def fastapi_app(gateway: Gateway) -> FastAPI:
    """A host application with the gateway mounted under ``/runwire``."""
    app = FastAPI(lifespan=gateway.lifespan)

    @app.get("/")
    def home() -> dict[str, str]:
        return {"app": "host"}

    app.mount(PREFIX, gateway.asgi_app())
    return app


@asynccontextmanager
async def front_door(
    kind: str,
    agent: Agent | None = None,
    *,
    prepare: Callable[[Gateway], None] | None = None,
    **overrides: Any,
) -> AsyncIterator[FrontDoor]:
    """A gateway behind the ``standalone`` server or the ``asgi`` one (FastAPI mount);
    ``prepare`` runs before it starts (to add routes, say)."""
    gateway = Gateway(make_settings(**overrides), agent=agent or scripted_agent)
    if prepare is not None:
        prepare(gateway)
    if kind == "standalone":
        async with gateway:
            yield FrontDoor(gateway, gateway.url)
        return
    async with uvicorn_serving(fastapi_app(gateway), **uvicorn_settings(gateway.settings)) as url:
        assert gateway.started and gateway._server is None, "uvicorn alone serves it"
        yield FrontDoor(gateway, url + PREFIX)
    assert not gateway.started, "the lifespan stops the gateway"


OpenDoor = Callable[..., AbstractAsyncContextManager[FrontDoor]]


@pytest.fixture(params=["standalone", "asgi"])
def door(request: pytest.FixtureRequest) -> OpenDoor:
    """Opens a front door of the parametrized kind: ``async with door(**settings) as d``."""
    return partial(front_door, request.param)
