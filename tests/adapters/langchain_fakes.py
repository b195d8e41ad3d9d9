"""Deterministic LangChain models and LangGraph graphs for the adapter tests (no network)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import Field

Respond = Callable[[list[BaseMessage]], AIMessage]


class ScriptedChatModel(GenericFakeChatModel):
    """A fake chat model whose reply is computed from the conversation it is given.

    It streams like a real one: the reply's ``reasoning_content`` in two pieces, then
    its text word by word (whitespace kept), then its tool calls as chunks. Every reply
    is kept in ``replies``. ``bind_tools`` returns the model itself.
    """

    respond: Respond
    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))
    replies: list[AIMessage] = Field(default_factory=list)

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        reply = self.respond(messages)
        self.replies.append(reply)
        return reply

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        reply = self._reply(messages)
        reasoning = reply.additional_kwargs.get("reasoning_content", "")
        if reasoning:
            half = len(reasoning) // 2
            for piece in (reasoning[:half], reasoning[half:]):
                yield _chunk(content="", additional_kwargs={"reasoning_content": piece})
        for word in re.split(r"(?<=\s)", str(reply.content)):
            if word:
                yield _chunk(content=word)
        for index, call in enumerate(reply.tool_calls):
            yield _chunk(
                content="",
                tool_call_chunks=[
                    {
                        "name": call["name"],
                        "args": json.dumps(call["args"]),
                        "id": call["id"],
                        "index": index,
                    }
                ],
            )

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self


def _chunk(**fields: Any) -> ChatGenerationChunk:
    return ChatGenerationChunk(message=AIMessageChunk(**fields))


def text_of(messages: list[BaseMessage], kind: type[BaseMessage]) -> list[str]:
    return [str(m.content) for m in messages if isinstance(m, kind)]


def calculator_script(messages: list[BaseMessage]) -> AIMessage:
    """Multiplies with the ``multiply`` tool; after a tool result, states it; otherwise
    answers with the first thing the user said in the thread (to show memory)."""
    last = messages[-1]
    if isinstance(last, ToolMessage):
        if last.status == "error":
            return AIMessage(content="The tool failed, sorry.")
        return AIMessage(content=f"It is {last.content}.")
    question = str(last.content)
    numbers = [int(n) for n in re.findall(r"\d+", question)]
    if "*" in question and len(numbers) == 2:
        return AIMessage(
            content="Let me compute.",
            additional_kwargs={
                "reasoning_content": f"I need to multiply {numbers[0]} by {numbers[1]}."
            },
            tool_calls=[
                {
                    "name": "multiply",
                    "args": {"a": numbers[0], "b": numbers[1]},
                    "id": f"call_{len(messages)}",
                }
            ],
        )
    if question.startswith("call "):
        name = question.removeprefix("call ")
        return AIMessage(content="", tool_calls=[{"name": name, "args": {}, "id": "call_x"}])
    first = text_of(messages, HumanMessage)[0]
    return AIMessage(content=f"You first said: {first}")


def build_graph(
    model: ScriptedChatModel,
    tools: Sequence[BaseTool],
    *,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    handle_tool_errors: bool = True,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The classic tool loop: ``agent`` (the model) <-> ``tools`` (a ToolNode)."""

    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(list(tools), handle_tool_errors=handle_tool_errors))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)
