"""The demo agent: deterministic, uses real tools, streams its answer word by word."""

from __future__ import annotations

import asyncio
import re

from runwire.agents.base import Run, ToolError
from runwire.agents.tools import calculator, text_stats

__all__ = ["DemoAgent", "demo_agent"]

_EXPRESSION = re.compile(r"[-+(]*\d[\d\s.+\-*/%()]*[\d)]")


class DemoAgent:
    """Answers arithmetic with the calculator and describes the message with text_stats.

    Args:
        word_delay_s: pause between streamed words (makes the stream visible).
    """

    agent_name = "demo"

    def __init__(self, word_delay_s: float = 0.03) -> None:
        self.word_delay_s = word_delay_s

    async def __call__(self, run: Run, message: str) -> str:
        await run.think("Reading the message and choosing tools.")
        parts: list[str] = []
        match = _EXPRESSION.search(message)
        if match and any(op in match.group() for op in "+-*/%"):
            expression = match.group().strip()
            await run.think(f"This needs arithmetic: {expression}.")
            try:
                value = await calculator(expression=expression)
                parts.append(f"{expression} = {value}.")
            except ToolError as exc:
                parts.append(f"I could not compute {expression}: {exc}.")
        stats = await text_stats(text=message)
        parts.append(
            f"Your message has {stats['words']} words and {stats['characters']} characters."
        )
        answer = " ".join(parts)
        words = answer.split(" ")
        for index, word in enumerate(words):
            await run.say(word if index == len(words) - 1 else word + " ")
            if self.word_delay_s:
                await asyncio.sleep(self.word_delay_s)
        return answer


demo_agent = DemoAgent()
"""The default agent (``RUNWIRE_AGENT=runwire.agents.demo:demo_agent``)."""
