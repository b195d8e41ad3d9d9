"""What an idle connection leaves for the garbage collector on the server.

Every full collection walks every GC-tracked object, about 1 us each on the bench
machine: a gateway holding 20,000 sockets at 60 tracked objects each stops for over
a second per full collection. So the objects a connection keeps are counted here,
on the standalone server, with the sockets held by another process.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import sys
from pathlib import Path

import uvloop

from runwire import front
from tests.helpers import running_gateway, token_for, wait_until

ROOT = Path(__file__).resolve().parent.parent
SOCKETS = 200


def _kinds() -> collections.Counter[type]:
    gc.collect()
    return collections.Counter(type(o) for o in gc.get_objects())


def test_an_idle_connection_keeps_few_tracked_objects(tmp_path: Path) -> None:
    """On uvloop, as the standalone server runs."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        grown = runner.run(_grown_per_connection(tmp_path))
    per_connection = sum(grown.values()) / SOCKETS
    largest = ", ".join(f"{k.__qualname__} {n / SOCKETS:.1f}" for k, n in grown.most_common(8))
    # The upgrade's uvicorn protocol and runwire's handoff are gone once picows has
    # the socket (uvloop kept the handoff's data_received before: 3 objects more), and
    # the heartbeat is one heap entry (picows's ping task per socket was about 13
    # objects), and the token timer calls the manager's methods with the connection
    # instead of two closures per socket: 63 tracked objects per connection before,
    # 41 after. Then: the token timer shares one empty context instead of copying one,
    # the listener has slots (no __dict__), and an idle session keeps no empty lists
    # for received and queued frames: 37.
    assert grown[front._Handoff] == 0
    assert per_connection <= 38, f"{per_connection:.1f} tracked objects per connection: {largest}"


async def _grown_per_connection(tmp_path: Path) -> collections.Counter[type]:
    """The tracked objects that SOCKETS idle connections added, by type."""
    async with running_gateway(max_connections_per_user=SOCKETS) as gateway:
        tokens = tmp_path / "tokens"
        tokens.write_text("\n".join(token_for(gateway.settings, f"u{i}") for i in range(SOCKETS)))
        await asyncio.sleep(0.2)  # start-up work (timers, first collections) settles
        before = _kinds()
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.socket_holder",
            str(gateway.port),
            str(tokens),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None
            line = await asyncio.wait_for(holder.stdout.readline(), 60)
            assert line.decode().strip() == f"held {SOCKETS}"
            await wait_until(lambda: gateway.manager.connection_count == SOCKETS, 10)
            after = _kinds()
        finally:
            holder.kill()
            await holder.wait()
        await wait_until(lambda: gateway.manager.connection_count == 0, 10)
    return after - before
