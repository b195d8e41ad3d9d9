"""A pydantic-ai ``Agent`` as a runwire agent.

``pip install 'runwire[pydantic-ai]'`` (``pydantic-ai-slim`` and your model's extra),
then::

    from runwire.adapters.pydantic_ai import PydanticAIAgent

    agent = PydanticAIAgent(Agent("openai:gpt-4o-mini", instructions="Be concise."))

(or ``RUNWIRE_AGENT=myapp.bot:agent`` naming the pydantic-ai ``Agent`` itself). Each
user message is one ``agent.run(message, message_history=..., event_stream_handler=...)``
whose streamed events map to:

===================================================  ======================================
pydantic-ai event                                    runwire
===================================================  ======================================
``PartStartEvent`` / ``PartDeltaEvent``, text        ``agent_message_delta``
``PartStartEvent`` / ``PartDeltaEvent``, thinking    ``agent_thinking``, one per paragraph
``FunctionToolCallEvent``                            ``tool_executing``, ``call_id`` = the
                                                     model's ``tool_call_id``
``FunctionToolResultEvent``, outcome ``success``     ``tool_completed`` ``ok: true``,
                                                     ``result`` = the tool's return value
``FunctionToolResultEvent``, any other outcome       ``tool_completed`` ``ok: false``,
(``ModelRetry``, ``ToolFailed``, denied)             ``error`` = the message for the model
a tool or the model raises                           ``agent_error`` ``agent_failed``
the run's output                                     ``agent_completed`` (a structured
                                                     output as its JSON)
===================================================  ======================================

Conversation memory: the messages of each thread are kept in a :class:`ThreadHistory`
under ``<user_id>/<thread_id>`` (:func:`~runwire.adapters._bridge.thread_key`) and
passed back as ``message_history``; by default an :class:`InMemoryHistory` of this
process. A run that fails or is cancelled leaves its thread's history as it was.
Cancelling the runwire run cancels ``agent.run`` (it runs in the run's own task).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterable, Callable, Sequence
from typing import Any, Protocol

import pydantic_core
from pydantic import BaseModel
from pydantic_ai.agent import AbstractAgent
from pydantic_ai.messages import (
    AgentStreamEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelRequest,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    UserPromptPart,
)
from pydantic_ai.tools import RunContext

from runwire.adapters._bridge import RunBridge, thread_key
from runwire.agents.base import Run

__all__ = ["InMemoryHistory", "PydanticAIAgent", "ThreadHistory"]


class ThreadHistory(Protocol):
    """Where the messages of each conversation are kept between runs.

    Keys are ``<user_id>/<thread_id>``. To share memory between processes (several
    nodes or ``runwire worker``), store ``ModelMessagesTypeAdapter.dump_json(messages)``
    in your database.
    """

    async def load(self, key: str) -> list[ModelMessage]:
        """The thread's messages so far (``[]`` for a new thread)."""
        ...

    async def save(self, key: str, messages: list[ModelMessage]) -> None:
        """Keep ``messages`` (the whole conversation after a run) as the thread's."""
        ...


class InMemoryHistory:
    """A :class:`ThreadHistory` in this process, bounded: at most ``max_threads``
    threads (the least recently used is forgotten first) of at most ``max_messages``
    messages each (older turns are dropped whole, so no tool call loses its result).
    """

    def __init__(self, *, max_threads: int = 1_000, max_messages: int = 200) -> None:
        if max_threads < 1 or max_messages < 1:
            raise ValueError("max_threads and max_messages must be at least 1")
        self.max_threads = max_threads
        self.max_messages = max_messages
        self._threads: OrderedDict[str, list[ModelMessage]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._threads)

    async def load(self, key: str) -> list[ModelMessage]:
        messages = self._threads.get(key)
        if messages is None:
            return []
        self._threads.move_to_end(key)
        return list(messages)

    async def save(self, key: str, messages: list[ModelMessage]) -> None:
        self._threads[key] = _last_turns(messages, self.max_messages)
        self._threads.move_to_end(key)
        while len(self._threads) > self.max_threads:
            self._threads.popitem(last=False)


def _last_turns(messages: Sequence[ModelMessage], limit: int) -> list[ModelMessage]:
    """The newest whole turns of ``messages`` that fit in ``limit`` messages (a turn
    starts with a request holding the user's prompt); at least the last turn."""
    starts = [i for i, message in enumerate(messages) if _starts_turn(message)]
    keep = next((i for i in starts if len(messages) - i <= limit), starts[-1] if starts else 0)
    return list(messages[keep:])


def _starts_turn(message: ModelMessage) -> bool:
    return isinstance(message, ModelRequest) and any(
        isinstance(part, UserPromptPart) for part in message.parts
    )


class PydanticAIAgent:
    """Runs a pydantic-ai ``agent`` for each user message and streams what it does.

    Args:
        agent: the pydantic-ai agent (with its model, tools and instructions).
        name: the ``agent`` of ``agent_started`` (default: the agent's name, else
            ``pydantic-ai``).
        history: where each thread's messages are kept (default: a new
            :class:`InMemoryHistory`).
        stateless: every run starts a new conversation (no history).
        deps: builds the agent's ``deps`` for a run (``deps(run)``).
        thread: the history key of a run (default ``<user_id>/<thread_id>``).
    """

    def __init__(
        self,
        agent: AbstractAgent[Any, Any],
        *,
        name: str | None = None,
        history: ThreadHistory | None = None,
        stateless: bool = False,
        deps: Callable[[Run], Any] | None = None,
        thread: Callable[[Run], str] = thread_key,
    ) -> None:
        self.agent = agent
        self.agent_name = name or agent.name or "pydantic-ai"
        self.history: ThreadHistory | None = (
            None if stateless else history if history is not None else InMemoryHistory()
        )
        self.deps = deps
        self.thread = thread

    async def __call__(self, run: Run, message: str) -> str:
        bridge = RunBridge(run)
        key = self.thread(run)
        history = await self.history.load(key) if self.history is not None else []

        async def forward(_ctx: RunContext[Any], events: AsyncIterable[AgentStreamEvent]) -> None:
            async for event in events:
                await _handle(bridge, event)

        result = await self.agent.run(
            message,
            message_history=history or None,
            deps=self.deps(run) if self.deps is not None else None,
            event_stream_handler=forward,
        )
        await bridge.flush()
        if self.history is not None:
            await self.history.save(key, result.all_messages())
        return _output_text(result.output)


async def _handle(bridge: RunBridge, event: AgentStreamEvent) -> None:
    if isinstance(event, PartStartEvent):
        if isinstance(event.part, TextPart):
            await bridge.text(event.part.content)
        elif isinstance(event.part, ThinkingPart):
            await bridge.reasoning(event.part.content)
    elif isinstance(event, PartDeltaEvent):
        if isinstance(event.delta, TextPartDelta):
            await bridge.text(event.delta.content_delta)
        elif isinstance(event.delta, ThinkingPartDelta):
            await bridge.reasoning(event.delta.content_delta or "")
    elif isinstance(event, PartEndEvent):
        if isinstance(event.part, ThinkingPart):
            await bridge.flush()
    elif isinstance(event, FunctionToolCallEvent):
        call = event.part
        await bridge.tool_started(call.tool_call_id, call.tool_name, call.args_as_dict())
    elif isinstance(event, FunctionToolResultEvent):
        part = event.part
        # A deprecated RetryPromptPart (older releases) has no outcome: a retry.
        outcome = getattr(part, "outcome", "retried")
        if outcome == "success":
            await bridge.tool_completed(part.tool_call_id, part.content)
        else:
            await bridge.tool_failed(part.tool_call_id, _failure(part.content, outcome))


def _failure(content: Any, outcome: str) -> str:
    """The error shown for a tool call that did not succeed: the message written for
    the model (by ``ModelRetry``, ``ToolFailed`` or a denial), the argument validation
    errors, or else what happened."""
    if isinstance(content, str) and content:
        return content
    if isinstance(content, list):
        problems = [
            str(item["msg"]) for item in content if isinstance(item, dict) and item.get("msg")
        ]
        if problems:
            return "invalid arguments: " + "; ".join(problems)
    if outcome == "retried":
        return "the model was asked to retry the call"
    return f"tool call {outcome}"


def _output_text(output: Any) -> str:
    """``agent_completed.output``: a string as is, anything else as its JSON."""
    if isinstance(output, str):
        return output
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    return pydantic_core.to_json(output).decode()
