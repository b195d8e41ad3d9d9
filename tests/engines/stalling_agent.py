"""An agent for the node-loss test: streams inside an open tool call for as long as
the file named by ``RUNWIRE_TEST_STALL_FILE`` exists, then answers; ``quick`` messages
are answered at once."""

from __future__ import annotations

import asyncio
import os

from runwire import Run


async def agent(run: Run, message: str) -> str:
    if message == "quick":
        await run.say("quick answer")
        return "quick answer"
    stall = os.environ["RUNWIRE_TEST_STALL_FILE"]
    await run.think("streaming while the stall file exists")
    async with run.tool("stream", {"message": message}) as call:
        n = 0
        while await asyncio.to_thread(os.path.exists, stall):
            await run.say(f"{n} ")
            n += 1
            await asyncio.sleep(0.02)
        call.result = n
    await run.say("done")
    return "done"
