"""The demo agent: deterministic, uses real tools, streams its answer word by word."""

from __future__ import annotations

import asyncio
import re

from runwire.agents.base import Run, ToolError
from runwire.agents.tools import calculator, text_stats

__all__ = ["DemoAgent", "demo_agent", "find_expression"]

# Runs of characters that can form arithmetic. Each character is looked at a bounded
# number of times (no backtracking), so the search is linear in the message length.
_ARITHMETIC_RUN = re.compile(r"[0-9\s.+\-*/%()]+")


def find_expression(message: str) -> str | None:
    """The first arithmetic expression in ``message`` that has an operator, or ``None``.

    An expression starts at its first digit (with the ``-``, ``+`` or ``(`` signs just
    before it) and ends at the last digit or ``)`` of its run of arithmetic characters.
    Linear time in ``len(message)``.
    """
    for run in _ARITHMETIC_RUN.finditer(message):
        text = run.group()
        first_digit = next((i for i, char in enumerate(text) if "0" <= char <= "9"), None)
        if first_digit is None:
            continue
        start = first_digit
        while start > 0 and text[start - 1] in "-+(":
            start -= 1
        end = max(text.rfind(char) for char in "0123456789)")
        expression = text[start : end + 1].strip()
        if end > first_digit and any(op in expression for op in "+-*/%"):
            return expression
    return None


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
        expression = find_expression(message)
        if expression is not None:
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
