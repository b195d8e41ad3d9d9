"""A LangGraph graph, or any LangChain Runnable that takes messages, as a runwire agent.

``pip install 'runwire[langgraph]'``, then::

    from runwire.adapters.langgraph import LangGraphAgent

    agent = LangGraphAgent(graph, steps={"retrieve": "Searching the documents"})

(or ``RUNWIRE_AGENT=myapp.graph:graph``: a Runnable named there is wrapped with the
default options). The agent drives ``astream_events(..., version="v2")`` and maps:

==========================================  ===========================================
LangGraph / LangChain event                 runwire
==========================================  ===========================================
``on_chat_model_stream`` text blocks        ``agent_message_delta``
``on_chat_model_stream`` reasoning blocks   ``agent_thinking``, one per paragraph
``on_tool_start`` (keyed by its ``run_id``) ``tool_executing``, ``call_id`` = that id
``on_tool_end``                             ``tool_completed`` ``ok: true``, ``result`` =
                                            the ``ToolMessage`` content (``ok: false``
                                            when its ``status`` is ``"error"``)
``on_tool_error``                           ``tool_completed`` ``ok: false``
a node named in ``steps`` starts            ``agent_thinking`` with its text
the graph raises                            ``agent_error`` ``agent_failed`` (safe text)
the graph's final state                     ``agent_completed``: the last AI message
==========================================  ===========================================

Conversation memory: the graph runs with ``configurable.thread_id`` =
``<user_id>/<thread_id>`` (:func:`~runwire.adapters._bridge.thread_key`), so a graph
compiled with a checkpointer remembers each runwire thread, and two users who send
the same thread id never share one. ``configurable.user_id`` is the verified user.

Cancelling the runwire run (or its timeout) cancels the graph's task and waits for
it to unwind before the run ends. Model output produced inside a tool (an agent used
as a tool, a summarising chain) is not streamed as the answer.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.schema import StreamEvent
from langchain_core.tools import ToolException

from runwire.adapters._bridge import RunBridge, thread_key
from runwire.agents.base import Run, ToolError

__all__ = ["LangGraphAgent"]


class LangGraphAgent:
    """Runs ``graph`` for each user message and streams what it does.

    Args:
        graph: a compiled LangGraph graph whose state has ``messages`` (it gets
            ``{"messages": [HumanMessage(message)]}``), or any Runnable that takes a
            list of messages (it gets ``[HumanMessage(message)]``).
        name: the ``agent`` of ``agent_started`` (default: the graph's name).
        nodes: only events from these nodes reach the user (model text, reasoning and
            tool calls; include your ``ToolNode``'s name to keep its tool calls).
            ``None``: every node.
        steps: node name -> ``agent_thinking`` text emitted each time that node starts
            (whether or not ``nodes`` lists it).
        config: a base ``RunnableConfig`` (``recursion_limit``, callbacks, your own
            ``configurable`` keys); ``thread_id`` and ``user_id`` are set per run.
        make_input: builds the graph's input from the user's message, instead of the
            defaults above.
        thread: the checkpointer thread id of a run (default ``<user_id>/<thread_id>``).
    """

    def __init__(
        self,
        graph: Runnable[Any, Any],
        *,
        name: str | None = None,
        nodes: Collection[str] | None = None,
        steps: Mapping[str, str] | None = None,
        config: RunnableConfig | None = None,
        make_input: Callable[[str], Any] | None = None,
        thread: Callable[[Run], str] = thread_key,
    ) -> None:
        self.graph = graph
        self.agent_name = name or graph.get_name()
        self.nodes = frozenset(nodes) if nodes is not None else None
        self.steps = dict(steps or {})
        self.config = config
        self.make_input = make_input or (_graph_input if _is_graph(graph) else _messages_input)
        self.thread = thread

    async def __call__(self, run: Run, message: str) -> str:
        bridge = RunBridge(run)
        final: list[Any] = []
        events = self.graph.astream_events(
            self.make_input(message), self._config(run), version="v2"
        )
        try:
            async for event in events:
                await self._handle(bridge, event, final)
        finally:
            # Cancelled (or failed) mid-stream: stop the graph's task and wait for it.
            await _aclose(events)
        await bridge.flush()
        answer = _answer(final[-1]) if final else None
        return answer or "".join(run.said)

    def _config(self, run: Run) -> RunnableConfig:
        config: RunnableConfig = {**self.config} if self.config else {}
        config["configurable"] = {
            **config.get("configurable", {}),
            "thread_id": self.thread(run),
            "user_id": run.user_id,
        }
        config["metadata"] = {**config.get("metadata", {}), "runwire_run_id": run.run_id}
        return config

    async def _handle(self, bridge: RunBridge, event: StreamEvent, final: list[Any]) -> None:
        kind = event["event"]
        data: Mapping[str, Any] = event.get("data", {})
        parents = event.get("parent_ids", [])
        node = event.get("metadata", {}).get("langgraph_node")
        if not parents and kind.endswith("_end"):
            final.append(data.get("output"))
        if kind == "on_chain_start" and node in self.steps and event.get("name") == node:
            await bridge.step(self.steps[node])
            return
        if self.nodes is not None and node not in self.nodes:
            return
        if kind == "on_chat_model_stream":
            if not bridge.in_tool(parents):
                await _stream_chunk(bridge, data.get("chunk"))
        elif kind == "on_llm_stream":
            if not bridge.in_tool(parents):
                await bridge.text(str(getattr(data.get("chunk"), "text", "") or ""))
        elif kind == "on_chat_model_end":
            await bridge.flush()
        elif kind == "on_tool_start":
            await bridge.tool_started(event["run_id"], event.get("name", "tool"), data.get("input"))
        elif kind == "on_tool_end":
            ok, value = _tool_outcome(data.get("output"))
            if ok:
                await bridge.tool_completed(event["run_id"], value)
            else:
                await bridge.tool_failed(event["run_id"], _as_text(value))
        elif kind == "on_tool_error":
            await bridge.tool_failed(event["run_id"], _tool_error(data.get("error")))


async def _stream_chunk(bridge: RunBridge, chunk: Any) -> None:
    """Answer text and reasoning of one streamed message chunk, in block order."""
    if not isinstance(chunk, BaseMessage):
        return
    for block in chunk.content_blocks:
        if block["type"] == "text":
            await bridge.text(block.get("text", ""))
        elif block["type"] == "reasoning":
            await bridge.reasoning(block.get("reasoning", ""))


def _is_graph(runnable: Runnable[Any, Any]) -> bool:
    pregel = sys.modules.get("langgraph.pregel")
    return pregel is not None and isinstance(runnable, pregel.Pregel)


def _graph_input(message: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(content=message)]}


def _messages_input(message: str) -> list[BaseMessage]:
    return [HumanMessage(content=message)]


async def _aclose(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def _tool_outcome(output: Any) -> tuple[bool, Any]:
    """(ok, result or error) of a tool's output: a ``ToolMessage`` (its content; not ok
    when its status is ``"error"``), a ``Command`` carrying one, or a plain value."""
    if isinstance(output, ToolMessage):
        return output.status != "error", output.content
    update = getattr(output, "update", None)
    types = sys.modules.get("langgraph.types")
    if types is not None and isinstance(output, types.Command) and isinstance(update, dict):
        for message in update.get("messages", ()):
            if isinstance(message, ToolMessage):
                return _tool_outcome(message)
        return True, None
    if isinstance(output, BaseMessage):
        return True, output.content
    return True, output


def _tool_error(error: Any) -> str:
    """What the user is told about a tool that raised: the message of the exceptions
    meant to be shown (LangChain's ``ToolException``, runwire's ``ToolError``), else
    only the exception's type (its text may hold secrets)."""
    if isinstance(error, ToolException | ToolError) and str(error):
        return str(error)
    return f"tool failed ({type(error).__name__})"


def _as_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part if isinstance(part, str) else str(part.get("text", ""))
            for part in content
            if isinstance(part, str | dict)
        )
    return str(content)


def _answer(output: Any) -> str | None:
    """The final answer in a graph's output: the text of its last message when that is
    an AI message (or of the message itself, or a string)."""
    if isinstance(output, dict):
        messages = output.get("messages")
        output = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(output, AIMessage):
        return str(output.text)
    if isinstance(output, str):
        return output
    return None
