"""The API an agent is written against: :class:`Run`, :class:`ToolCall` and :func:`tool`.

An agent is a plain async function::

    async def agent(run: Run, message: str) -> str:
        await run.think("I need to multiply")
        async with run.tool("calculator", {"expression": "17 * 23"}) as call:
            call.result = 17 * 23
        await run.say("It is 391.")
        return "It is 391."

Agents emit only through :class:`Run`; the runtime builds the events and the engine
the envelopes. Whatever the agent does, the runtime (``runwire.agents.runtime``)
guarantees ``agent_started`` first, each ``tool_executing`` followed by its
``tool_completed``, one terminal event last, and nothing after it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from runwire.events import (
    AgentMessageDelta,
    AgentThinking,
    EventData,
    ToolCompleted,
    ToolExecuting,
)
from runwire.exceptions import RunClosedError, RunwireError
from runwire.ids import RunId, ThreadId, UserId

__all__ = ["Agent", "Run", "ToolCall", "ToolError", "current_run", "tool"]

Agent = Callable[["Run", str], Awaitable[str]]
"""``async def agent(run, message) -> answer``."""

Emit = Callable[["Run", EventData], Awaitable[None]]

_current_run: ContextVar[Run | None] = ContextVar("runwire_current_run", default=None)


class ToolError(RunwireError):
    """Raise inside a tool for a failure whose message is safe to show the user."""


class ToolCall:
    """One tool call of a run; set :attr:`result` before the ``async with`` block ends."""

    def __init__(self, run: Run, call_id: str, name: str, args: dict[str, Any]) -> None:
        self.run = run
        self.call_id = call_id
        self.name = name
        self.args = args
        self.result: Any = None
        self.completed = False
        self._started = time.perf_counter()

    @property
    def duration_ms(self) -> float:
        """Milliseconds since ``tool_executing``, to 0.01 ms."""
        return round((time.perf_counter() - self._started) * 1000, 2)

    async def __aenter__(self) -> ToolCall:
        self.run._open_calls[self.call_id] = self
        self._started = time.perf_counter()
        await self.run._emit(ToolExecuting(self.call_id, self.name, self.args))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.complete(ok=True)
        elif isinstance(exc, ToolError):
            await self.complete(ok=False, error=str(exc))
        elif isinstance(exc, Exception):
            await self.complete(ok=False, error=f"tool failed ({type(exc).__name__})")
        # Cancellation: the runtime closes the call once the agent has unwound.

    async def complete(self, *, ok: bool, error: str | None = None) -> None:
        """Emit ``tool_completed`` once; later calls do nothing."""
        if self.completed:
            return
        self.completed = True
        self.run._open_calls.pop(self.call_id, None)
        if ok:
            data = ToolCompleted(
                self.call_id, self.name, True, self.duration_ms, result=self.result
            )
        else:
            data = ToolCompleted(
                self.call_id, self.name, False, self.duration_ms, error=error or "failed"
            )
        await self.run._emit(data)


class Run:
    """The handle an agent gets for one run: emit thinking, tool calls and answer text.

    Attributes:
        run_id, thread_id, user_id: where the run's events go (user id from the token).
        input: the user's message.
    """

    def __init__(
        self,
        *,
        run_id: RunId,
        thread_id: ThreadId,
        user_id: UserId,
        input: str,
        emit: Emit,
    ) -> None:
        self.run_id = run_id
        self.thread_id = thread_id
        self.user_id = user_id
        self.input = input
        self.closed = False
        self.said: list[str] = []
        self._emit_event = emit
        self._open_calls: dict[str, ToolCall] = {}
        self._calls = 0

    async def think(self, text: str) -> None:
        """Emit ``agent_thinking``."""
        await self._emit(AgentThinking(text))

    async def say(self, text: str) -> None:
        """Emit ``agent_message_delta``: the next piece of the answer."""
        self.said.append(text)
        await self._emit(AgentMessageDelta(text))

    def tool(self, name: str, args: dict[str, Any] | None = None) -> ToolCall:
        """A tool call, used as ``async with run.tool(name, args) as call``."""
        self._calls += 1
        return ToolCall(self, f"{self.run_id}.{self._calls}", name, dict(args or {}))

    @property
    def open_calls(self) -> list[ToolCall]:
        """Tool calls that began and have not completed."""
        return list(self._open_calls.values())

    async def _emit(self, data: EventData) -> None:
        if self.closed:
            raise RunClosedError(f"run {self.run_id} has ended")
        await self._emit_event(self, data)


def current_run() -> Run:
    """The run the calling agent code belongs to.

    Raises:
        RuntimeError: called outside an agent run.
    """
    run = _current_run.get()
    if run is None:
        raise RuntimeError("no runwire run is active in this context")
    return run


P = ParamSpec("P")
R = TypeVar("R")


@overload
def tool(fn: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...


@overload
def tool(fn: Callable[P, R], /) -> Callable[P, Awaitable[R]]: ...


def tool(fn: Callable[P, Any], /) -> Callable[P, Awaitable[Any]]:
    """Make a function a tool: each call inside a run emits its two events.

    The tool's name is the function's name; ``args`` in ``tool_executing`` are the
    keyword arguments (positional ones are recorded as ``arg0``, ``arg1``...).

    An ``async def`` tool runs on the event loop, so it must not block it. A plain
    ``def`` tool runs in a worker thread (:func:`asyncio.to_thread`), so blocking or
    CPU-heavy code there delays no other user; if its run is cancelled the call is
    closed at once (``ok: false``) while the thread finishes in the background.
    """
    tool_name = fn.__name__
    is_async = inspect.iscoroutinefunction(fn)

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        recorded = {f"arg{i}": value for i, value in enumerate(args)} | dict(kwargs)
        async with current_run().tool(tool_name, recorded) as call:
            if is_async:
                result = await fn(*args, **kwargs)
            else:
                result = await asyncio.to_thread(fn, *args, **kwargs)
            call.result = result
        return result

    return wrapper
