"""An agent for the kill -9 test: opens a tool call and streams deltas until killed."""

from __future__ import annotations

import asyncio

from runwire import Run


async def agent(run: Run, message: str) -> str:
    await run.think("streaming until the process dies")
    async with run.tool("stream", {"message": message}) as call:
        for n in range(100_000):
            await run.say(f"{n} ")
            await asyncio.sleep(0.01)
        call.result = "never"
    return "never"
