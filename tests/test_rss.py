"""Bounded memory: 1,000 users x 10 connect/disconnect cycles return to baseline."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import struct
from collections.abc import Callable

from runwire import Gateway
from tests.helpers import publish_texts, running_gateway, token_for, wait_until

USERS = 1_000
CYCLES = 10


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def raw_session(gateway: Gateway, user: str, token: str, clean: bool) -> None:
    """A minimal WebSocket client: upgrade, read `connected`, then close or drop."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101"), status[:40]
    header = await reader.readexactly(2)
    length = header[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    payload = await reader.readexactly(length)
    assert payload.startswith(b'{"type":"connected"'), payload[:40]
    if clean:
        mask = os.urandom(4)
        body = struct.pack("!H", 1000)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
        writer.write(bytes((0x88, 0x80 | len(body))) + mask + masked)
        await reader.read()  # the server's close frame, then EOF
        writer.close()
    else:
        writer.transport.abort()


async def test_rss_returns_to_baseline_after_1000_users_x_10_cycles(
    report: Callable[[str], None],
) -> None:
    async with running_gateway(max_connections=5_000) as gateway:
        tokens = {f"user{i}": token_for(gateway.settings, f"user{i}") for i in range(USERS)}
        for user in list(tokens)[:50]:  # some users also have history
            await publish_texts(gateway, user, ["x" * 100] * 20)

        async def cycle(round_index: int) -> None:
            semaphore = asyncio.Semaphore(250)

            async def one(index: int, user: str) -> None:
                async with semaphore:
                    await raw_session(
                        gateway, user, tokens[user], clean=(index + round_index) % 2 == 0
                    )

            await asyncio.gather(*(one(i, user) for i, user in enumerate(tokens)))
            await wait_until(lambda: gateway.manager.connection_count == 0, 10)

        await cycle(0)  # warm-up: allocator pools, caches, first-time imports
        gc.collect()
        baseline = rss_bytes()
        samples = [baseline]
        for round_index in range(1, CYCLES):
            await cycle(round_index)
            gc.collect()
            samples.append(rss_bytes())
        peak = max(samples)
        # The last sockets' engine unsubscribes run as tasks just after they close
        # (the server now closes at the client's FIN, so later than it used to).
        await wait_until(lambda: gateway.manager.stats()["tasks"] == 0, 10, "unsubscribes")
        gc.collect()
        after = rss_bytes()
        manager_stats = gateway.manager.stats()
        engine_stats = gateway.engine.stats()
        opened = gateway.metrics.connections_opened._value.get()
    growth = after - baseline
    report(
        f"memory: {int(opened)} connections over {CYCLES} cycles of {USERS} users; "
        f"RSS baseline {baseline / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, "
        f"after {after / 2**20:.1f} MiB (growth {growth / 2**10:.0f} KiB)"
    )
    assert opened == USERS * CYCLES
    assert manager_stats == {
        "connections": 0,
        "users": 0,
        "dirty": 0,
        "tasks": 0,
        "queued_frames": 0,
    }
    assert engine_stats["subscriptions"] == 0
    assert engine_stats["streams"] <= gateway.settings.history_max_users
    # 9,000 connections after the warm-up: a leak of even 1 KiB each would be ~9 MiB.
    assert growth < 3 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    # And no trend: the last half of the cycles (4,500 connections) adds almost nothing.
    late_growth = samples[-1] - samples[len(samples) // 2]
    assert late_growth < 2**20, f"RSS still growing: {late_growth / 2**10:.0f} KiB"
