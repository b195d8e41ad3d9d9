"""A deterministic streaming pydantic-ai model for the adapter tests (no network)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import (
    AgentInfo,
    DeltaThinkingCalls,
    DeltaThinkingPart,
    DeltaToolCall,
    DeltaToolCalls,
    FunctionModel,
)

Chunk = str | DeltaToolCalls | DeltaThinkingCalls


def _prompts(messages: list[ModelMessage]) -> list[str]:
    return [
        str(part.content)
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart)
    ]


async def calculator_stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Chunk]:
    """Multiplies with the ``multiply`` tool (thinking first); after a tool result,
    states it; ``call <tool>`` calls that tool; otherwise answers with the first thing
    the user said in the conversation (to show memory)."""
    # Tool results: ToolReturnParts, or (pydantic-ai before 2.x's outcome 'retried')
    # RetryPromptParts, told apart by part_kind so the deprecated class is not touched.
    results = [p for p in messages[-1].parts if p.part_kind in ("tool-return", "retry-prompt")]
    if results:
        first = results[0]
        if not isinstance(first, ToolReturnPart) or first.outcome != "success":
            for word in ("The ", "tool ", "failed, ", "sorry."):
                yield word
            return
        yield "It is "
        yield f"{first.content}."
        return
    question = _prompts(messages)[-1]
    numbers = re.findall(r"\d+", question)
    if "*" in question and len(numbers) == 2:
        yield {0: DeltaThinkingPart(content=f"I need to multiply {numbers[0]} ")}
        yield {0: DeltaThinkingPart(content=f"by {numbers[1]}.")}
        for word in ("Let ", "me ", "compute."):
            yield word
        args = json.dumps({"a": int(numbers[0]), "b": int(numbers[1])})
        yield {1: DeltaToolCall(name="multiply", json_args=args, tool_call_id="call_mul")}
        return
    if question.startswith("call "):
        name = question.removeprefix("call ")
        yield {0: DeltaToolCall(name=name, json_args="{}", tool_call_id=f"call_{name}")}
        return
    for word in re.split(r"(?<=\s)", f"You first said: {_prompts(messages)[0]}"):
        yield word


def calculator_model() -> FunctionModel:
    return FunctionModel(stream_function=calculator_stream)
