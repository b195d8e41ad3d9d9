"""Holds idle authenticated WebSockets open from another process, for footprint tests.

``python -m tests.socket_holder PORT TOKENS_FILE``: one connection per token (one per
line), then prints ``held N`` and keeps them open, answering pings, until killed.
Another process, so that the server's object counts hold only the server's objects.
"""

from __future__ import annotations

import asyncio
import sys

import websockets


async def hold(port: int, tokens: list[str]) -> None:
    connections = [
        await websockets.connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": f"Bearer {token}"}
        )
        for token in tokens
    ]
    sys.stdout.write(f"held {len(connections)}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    with open(sys.argv[2]) as file:
        asyncio.run(hold(int(sys.argv[1]), file.read().split()))
