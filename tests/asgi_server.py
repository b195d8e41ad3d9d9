"""A real uvicorn server on a free port, in the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from tests.helpers import wait_until


@asynccontextmanager
async def uvicorn_serving(app: Any, **options: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and a free port; yields its base URL.

    The port is bound before uvicorn starts (no race for it); the server runs its
    lifespan and is shut down (lifespan shutdown included) on exit.
    """
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", ws="websockets-sansio", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[listening]))
    try:
        await wait_until(lambda: server.started or task.done(), 10, "uvicorn to start")
        if task.done():
            task.result()
            raise AssertionError("uvicorn stopped during startup")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        listening.close()
