"""A pydantic-ai agent behind runwire, with tools and per-thread memory.

    pip install 'runwire[pydantic-ai]'
    PYTHONPATH=examples RUNWIRE_AGENT=pydantic_ai_agent:agent runwire serve
    runwire chat --user alice "what is 17 * 23?"

``RUNWIRE_AGENT=pydantic_ai_agent:bot`` works too: runwire wraps the pydantic-ai
``Agent`` itself with the default options.

The model is a ``FunctionModel`` that streams deterministic answers, so the example
runs anywhere. With ``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` set (and
``pip install 'pydantic-ai-slim[openai]'``) it is a real OpenAI-compatible model
instead (``OPENAI_MODEL``, default ``gpt-4o-mini``; local OpenAI-compatible servers too).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from runwire.adapters.pydantic_ai import PydanticAIAgent


async def fake_model(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    """Multiplies ``a * b`` with the tool, then states the product; otherwise shows
    what it remembers of the thread."""
    results = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
    if results:
        for word in ("The ", "product ", "is ", f"{results[0].content}."):
            yield word
        return
    said = [
        str(part.content)
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart)
    ]
    match = re.search(r"(-?\d+(?:\.\d+)?)\s*[*x×]\s*(-?\d+(?:\.\d+)?)", said[-1])
    if match:
        yield f"Let me multiply {match[1]} by {match[2]}."
        arguments = json.dumps({"a": float(match[1]), "b": float(match[2])})
        yield {1: DeltaToolCall(name="multiply", json_args=arguments, tool_call_id="call_1")}
        return
    answer = (
        f"This thread has {len(said)} message(s) from you; the first was {said[0]!r}."
        " Ask me to multiply two numbers, like 17 * 23."
    )
    for word in re.split(r"(?<= )", answer):
        yield word


def model() -> Model:
    """A real OpenAI-compatible model when configured, else the fake."""
    if os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        provider = OpenAIProvider(
            base_url=os.environ.get("OPENAI_BASE_URL"),
            api_key=os.environ.get("OPENAI_API_KEY", "not-needed"),
        )
        return OpenAIChatModel(os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), provider=provider)
    return FunctionModel(stream_function=fake_model)


bot = Agent(
    model(),
    name="pydantic-ai-example",
    instructions="You are concise. Use the tools for arithmetic and counting.",
)
"""The pydantic-ai agent as its authors wrote it."""


@bot.tool_plain
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    product = a * b
    return int(product) if product.is_integer() else product


@bot.tool_plain
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


agent = PydanticAIAgent(bot)
"""The runwire agent, with memory per thread in this process:
``RUNWIRE_AGENT=pydantic_ai_agent:agent``."""
