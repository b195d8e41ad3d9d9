"""What every framework adapter shares: a framework's stream of events, as Run calls.

:class:`RunBridge` takes the pieces a framework reports (answer text, reasoning text,
a tool's start and its end, keyed by the framework's id) in whatever order they come
and emits them through :class:`~runwire.agents.base.Run`, so the runtime's run rules
hold:

- answer text becomes ``agent_message_delta``; a piece too big for one event is
  split in halves until each half fits (``max_event_bytes``);
- reasoning is buffered and becomes one ``agent_thinking`` per paragraph (a blank
  line), at most :data:`MAX_THOUGHT_CHARS` characters; whatever is buffered is sent
  before the next answer text, tool call or step, and by :meth:`RunBridge.flush`;
- a tool's start becomes ``tool_executing`` with the framework's id as ``call_id``
  (a generated one when that id is unusable or already used in the run); its end
  ``tool_completed``. An end whose start was never reported is ignored (logged):
  it has no ``tool_executing`` to pair with.

Text with lone surrogates (which JSON cannot carry) has them replaced by ``?``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import BaseModel

from runwire.agents.base import Run, ToolCall
from runwire.exceptions import EventRejected, ToolCallError

__all__ = ["MAX_THOUGHT_CHARS", "RunBridge", "json_value", "thread_key"]

log = logging.getLogger("runwire.adapters")

MAX_THOUGHT_CHARS = 4_000
"""Reasoning longer than this without a paragraph break is sent in pieces."""


def thread_key(run: Run) -> str:
    """The key of a run's conversation in a framework's memory: ``<user_id>/<thread_id>``.

    Clients choose thread ids, so two users can send the same one; keying memory by
    the thread id alone would let one read the other's conversation. The key is
    unambiguous because thread ids never contain ``/`` (docs/protocol.md).
    """
    return f"{run.user_id}/{run.thread_id}"


def json_value(value: Any) -> Any:
    """``value`` as the runtime can send it: pydantic models as their JSON data, the
    rest as is (a value that is still not JSON ends its tool call ``ok: false``)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


async def _send_split(send: Callable[[str], Awaitable[None]], text: str) -> None:
    """``send(text)``; when the event would be too big, send each half instead."""
    try:
        await send(text)
    except EventRejected:
        if len(text) < 2:
            raise
        middle = len(text) // 2
        await _send_split(send, text[:middle])
        await _send_split(send, text[middle:])


class RunBridge:
    """One run's events from a framework's reports (see the module docstring)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._thought = ""
        self._calls: dict[str, ToolCall] = {}

    async def text(self, text: str) -> None:
        """A piece of the answer."""
        if text:
            await self.flush()
            await _send_split(self.run.say, _encodable(text))

    async def reasoning(self, text: str) -> None:
        """A piece of the model's reasoning (sent by paragraph)."""
        if not text:
            return
        self._thought += text
        done, separator, rest = self._thought.rpartition("\n\n")
        if separator:
            self._thought = rest
            for paragraph in done.split("\n\n"):
                await self._think(paragraph)
        if len(self._thought) > MAX_THOUGHT_CHARS:
            await self.flush()

    async def step(self, text: str) -> None:
        """A step of the agent (``agent_thinking`` at once)."""
        await self.flush()
        await self._think(text)

    async def flush(self) -> None:
        """Send the reasoning buffered so far."""
        thought, self._thought = self._thought, ""
        await self._think(thought)

    async def _think(self, text: str) -> None:
        text = text.strip()
        if text:
            await _send_split(self.run.think, _encodable(text))

    # -- tools ------------------------------------------------------------------

    async def tool_started(self, key: str, name: str, args: Any) -> None:
        """The framework started tool ``name`` under its id ``key``."""
        await self.flush()
        arguments = args if isinstance(args, dict) else {"input": args}
        arguments = {str(k): json_value(v) for k, v in arguments.items()}
        try:
            call = await self.run.start_tool(name, arguments, call_id=key)
        except ToolCallError:
            call = await self.run.start_tool(name, arguments)
        # A second start under a key still open replaces it here; the runtime closes
        # the first one (ok: false) when the run ends.
        self._calls[key] = call

    async def tool_completed(self, key: str, result: Any) -> None:
        """The tool started under ``key`` returned ``result``."""
        call = self._take(key)
        if call is not None:
            await call.complete(json_value(result))

    async def tool_failed(self, key: str, error: str) -> None:
        """The tool started under ``key`` failed; ``error`` is shown to the user."""
        call = self._take(key)
        if call is not None:
            await call.fail(_encodable(error))

    def in_tool(self, keys: Iterable[str]) -> bool:
        """Whether any of ``keys`` names a tool call still open."""
        return any(key in self._calls for key in keys)

    def _take(self, key: str) -> ToolCall | None:
        call = self._calls.pop(key, None)
        if call is None or call.completed:
            log.warning(
                "run %s: the framework ended tool call %r, which is not open; ignored",
                self.run.run_id,
                key,
                extra={"run_id": self.run.run_id},
            )
            return None
        return call
