"""A LangGraph agent behind runwire: the classic model <-> tools loop, with memory.

    pip install 'runwire[langgraph]'
    PYTHONPATH=examples RUNWIRE_AGENT=langgraph_agent:agent runwire serve
    runwire chat --user alice "what is 17 * 23?"

``RUNWIRE_AGENT=langgraph_agent:graph`` works too: runwire wraps the compiled graph
itself with the default options.

The model is a fake that streams deterministic answers, so the example runs anywhere.
With ``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` set (and ``pip install langchain-openai``)
it is a real OpenAI-compatible chat model instead (``OPENAI_MODEL``, default
``gpt-4o-mini``; any server that speaks the OpenAI API, local ones included).
"""

from __future__ import annotations

import os
import re
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import Field

from runwire.adapters.langgraph import LangGraphAgent


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    product = a * b
    return int(product) if product.is_integer() else product


@tool
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


TOOLS = [multiply, word_count]


class FakeChatModel(GenericFakeChatModel):
    """Answers from the conversation it is given; streams word by word (its base class
    streams the text, then the tool calls given in OpenAI's format)."""

    messages: Any = Field(default_factory=lambda: iter(()))

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=reply_to(messages))])

    def bind_tools(self, tools: Any, **kwargs: Any) -> FakeChatModel:
        return self


def reply_to(messages: list[BaseMessage]) -> AIMessage:
    """Multiplies ``a * b`` with the tool, then states the product; otherwise shows
    what it remembers of the thread."""
    last = messages[-1]
    if isinstance(last, ToolMessage):
        return AIMessage(content=f"The product is {last.content}.")
    said = [str(m.content) for m in messages if isinstance(m, HumanMessage)]
    match = re.search(r"(-?\d+(?:\.\d+)?)\s*[*x×]\s*(-?\d+(?:\.\d+)?)", said[-1])
    if match:
        arguments = f'{{"a": {match[1]}, "b": {match[2]}}}'
        call: dict[str, Any] = {"id": f"call_{len(messages)}", "type": "function"}
        call["function"] = {"name": "multiply", "arguments": arguments}
        return AIMessage(
            content=f"Let me multiply {match[1]} by {match[2]}.",
            additional_kwargs={"tool_calls": [call]},
        )
    return AIMessage(
        content=f"This thread has {len(said)} message(s) from you; the first was {said[0]!r}."
        " Ask me to multiply two numbers, like 17 * 23."
    )


def chat_model() -> BaseChatModel:
    """A real OpenAI-compatible model when configured, else the fake."""
    if os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
        from langchain_openai import ChatOpenAI

        real: BaseChatModel = ChatOpenAI(
            model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
            api_key=os.environ.get("OPENAI_API_KEY", "not-needed"),
            streaming=True,
        )
        return real
    return FakeChatModel()


model = chat_model().bind_tools(TOOLS)


async def call_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
    system = SystemMessage("You are concise. Use the tools for arithmetic and counting.")
    return {"messages": [await model.ainvoke([system, *state["messages"]])]}


builder = StateGraph(MessagesState)
builder.add_node("agent", call_model)
builder.add_node("tools", ToolNode(TOOLS, handle_tool_errors=True))
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", tools_condition)
builder.add_edge("tools", "agent")
graph = builder.compile(checkpointer=InMemorySaver())
"""The graph as its authors wrote it; the checkpointer remembers each runwire thread."""

agent = LangGraphAgent(graph, name="langgraph-example", steps={"tools": "Running the tools."})
"""The runwire agent: ``RUNWIRE_AGENT=langgraph_agent:agent``."""
