"""runwire.js, the browser client, under Node against a real gateway (Node's own
WebSocket; ``--experimental-websocket`` on Node 20)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.helpers import running_gateway, token_for
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "src" / "runwire" / "web" / "runwire.js"
NODE = shutil.which("node")


@pytest.fixture(autouse=True)
def node_installed() -> None:
    """Without Node these tests fail, naming the fix (``make test`` installs Node)."""
    if NODE is None:
        pytest.fail("node is not installed: run `sudo apt-get install nodejs`", pytrace=False)


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    assert line, "the script ended early"
    return line.decode().strip()


async def test_a_message_refused_while_the_engine_is_down_is_sent_again_when_it_is_back(
    tmp_path: Path,
) -> None:
    """Was: ``send`` rejected with ``engine_unavailable`` (the Python client waited)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        async with running_gateway(engine=server.url) as gateway:
            assert NODE is not None
            process = await asyncio.create_subprocess_exec(
                NODE,
                "--experimental-websocket",
                "--no-warnings",
                str(ROOT / "tests" / "js" / "engine_wait.mjs"),
                gateway.ws_url,
                token_for(gateway.settings, "js-nora"),
                LIBRARY.as_uri(),
                stdout=asyncio.subprocess.PIPE,
            )
            try:
                assert await _line(process) == "connected"
                server.stop()
                assert await _line(process) == "engine unavailable"
                assert await _line(process) == "waiting user_message"
                server.start()  # same port, empty: the gateway reconnects
                assert await _line(process) == "engine available"
                assert await _line(process) == "ack m-engine"
                assert await _line(process) == "completed true"
                assert await asyncio.wait_for(process.wait(), 10) == 0
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    finally:
        server.stop()
