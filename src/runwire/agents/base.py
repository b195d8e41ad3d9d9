"""The API an agent is written against: :class:`Run`, :class:`ToolCall` and :func:`tool`.

An agent is a plain async function::

    async def agent(run: Run, message: str) -> str:
        await run.think("I need to multiply")
        async with run.tool("calculator", {"expression": "17 * 23"}) as call:
            call.result = 17 * 23
        await run.say("It is 391.")
        return "It is 391."

Frameworks that report a tool's start and end as separate events use the same calls
imperatively::

    call = await run.start_tool("calculator", {"expression": "17 * 23"}, call_id="call_7")
    ...
    await call.complete(391)        # or: await call.fail("division by zero")

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
from runwire.exceptions import EventRejected, RunClosedError, RunwireError, ToolCallError
from runwire.ids import RunId, ThreadId, UserId

__all__ = ["Agent", "Run", "ToolCall", "ToolError", "ToolScope", "current_run", "tool"]

Agent = Callable[["Run", str], Awaitable[str]]
"""``async def agent(run, message) -> answer``."""

Emit = Callable[["Run", EventData], Awaitable[None]]

_current_run: ContextVar[Run | None] = ContextVar("runwire_current_run", default=None)


class ToolError(RunwireError):
    """Raise inside a tool for a failure whose message is safe to show the user."""


class ToolCall:
    """One tool call of a run, open from its ``tool_executing`` until it ends.

    Made by :meth:`Run.start_tool` (or ``async with run.tool(...)``). It ends exactly
    once, with :meth:`complete` (``tool_completed`` ``ok: true``) or :meth:`fail`
    (``ok: false``); a call still open when the agent returns, raises or is
    cancelled is closed ``ok: false`` by the runtime.
    """

    def __init__(self, run: Run, call_id: str, name: str, args: dict[str, Any]) -> None:
        self.run = run
        self.call_id = call_id
        self.name = name
        self.args = args
        self.result: Any = None
        """What ``async with run.tool(...) as call`` completes the call with."""
        self.completed = False
        """Whether the call has ended (its ``tool_completed`` was emitted)."""
        self._started = time.perf_counter()

    @property
    def duration_ms(self) -> float:
        """Milliseconds since ``tool_executing``, to 0.01 ms."""
        return round((time.perf_counter() - self._started) * 1000, 2)

    async def complete(self, result: Any = None) -> None:
        """End the call ``ok: true`` with ``result`` (JSON: a result that cannot be
        sent ends the call ``ok: false`` instead; docs/agents.md).

        Raises:
            ToolCallError: the call has already ended.
        """
        self._check_open()
        await self._end(True, result=result)

    async def fail(self, error: str) -> None:
        """End the call ``ok: false``; ``error`` is shown to the user, so keep it safe.

        Raises:
            ToolCallError: the call has already ended.
        """
        self._check_open()
        await self._end(False, error=str(error))

    async def _close(self, error: str) -> None:
        """End the call ``ok: false`` unless it has ended (the runtime's closing)."""
        if not self.completed:
            await self._end(False, error=error)

    def _check_open(self) -> None:
        if self.completed:
            raise ToolCallError(
                f"tool call {self.call_id!r} of run {self.run.run_id} has already ended"
            )

    async def _end(self, ok: bool, *, result: Any = None, error: str = "") -> None:
        self.completed = True
        self.run._open_calls.pop(self.call_id, None)
        if ok:
            data = ToolCompleted(self.call_id, self.name, True, self.duration_ms, result=result)
        else:
            data = ToolCompleted(
                self.call_id, self.name, False, self.duration_ms, error=error or "failed"
            )
        await self.run._emit(data)


class ToolScope:
    """``async with run.tool(name, args) as call``: a call started on entry and ended on
    exit: ``complete(call.result)``, ``fail`` with the message of a :class:`ToolError`,
    or ``fail`` with ``tool failed (ExceptionType)`` for any other exception (whose
    text may hold secrets). A call the block ended itself is left as it is; on
    cancellation the runtime closes it."""

    def __init__(self, run: Run, name: str, args: dict[str, Any], call_id: str | None) -> None:
        self._run = run
        self._name = name
        self._args = args
        self._call_id = call_id
        self._call: ToolCall | None = None

    async def __aenter__(self) -> ToolCall:
        self._call = await self._run.start_tool(self._name, self._args, call_id=self._call_id)
        return self._call

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        call = self._call
        if call is None or call.completed:
            return
        if exc is None:
            await call.complete(call.result)
        elif isinstance(exc, ToolError):
            await call.fail(str(exc))
        elif isinstance(exc, Exception):
            await call.fail(f"tool failed ({type(exc).__name__})")
        # Cancellation: the runtime closes the call once the agent has unwound.


MAX_CALL_ID = 128
"""Longest tool call id, in characters."""


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
        self._call_ids: set[str] = set()
        self._calls = 0

    async def think(self, text: str) -> None:
        """Emit ``agent_thinking``."""
        await self._emit(AgentThinking(text))

    async def say(self, text: str) -> None:
        """Emit ``agent_message_delta``: the next piece of the answer.

        Raises:
            EventRejected: ``text`` is too big for one event or not encodable; nothing
                was sent (split it and say the pieces).
        """
        self.said.append(text)
        try:
            await self._emit(AgentMessageDelta(text))
        except EventRejected:
            self.said.pop()
            raise

    async def start_tool(
        self, name: str, args: dict[str, Any] | None = None, *, call_id: str | None = None
    ) -> ToolCall:
        """Emit ``tool_executing`` and return the open call; end it with
        :meth:`ToolCall.complete` or :meth:`ToolCall.fail`.

        For frameworks that report a tool's start and end as separate events: pass
        the framework's own id as ``call_id`` (it becomes ``call_id`` on the wire), or
        ``None`` for ``<run_id>.<n>``. Calls may end in any order.

        Raises:
            ToolCallError: ``call_id`` is not a string of 1 to 128 characters, or was
                already used in this run (nothing is emitted).
        """
        if call_id is None:
            call_id = self._next_call_id()
        elif not isinstance(call_id, str) or not 0 < len(call_id) <= MAX_CALL_ID:
            raise ToolCallError(f"a tool call id is a string of 1 to {MAX_CALL_ID} characters")
        elif call_id in self._call_ids:
            raise ToolCallError(f"tool call id {call_id!r} is already used in run {self.run_id}")
        call = ToolCall(self, call_id, name, dict(args or {}))
        self._call_ids.add(call_id)
        self._open_calls[call_id] = call
        await self._emit(ToolExecuting(call_id, name, call.args))
        return call

    def tool(
        self, name: str, args: dict[str, Any] | None = None, *, call_id: str | None = None
    ) -> ToolScope:
        """A tool call, used as ``async with run.tool(name, args) as call``."""
        return ToolScope(self, name, dict(args or {}), call_id)

    def tool_call(self, call_id: str) -> ToolCall:
        """The open call ``call_id``, for frameworks that report a tool's end by id.

        Raises:
            ToolCallError: no call of that id is open in this run (it never started,
                or it has ended).
        """
        call = self._open_calls.get(call_id)
        if call is None:
            raise ToolCallError(
                f"no open tool call {call_id!r} in run {self.run_id}:"
                " it never started or has already ended"
            )
        return call

    @property
    def open_calls(self) -> list[ToolCall]:
        """Tool calls that began and have not ended."""
        return list(self._open_calls.values())

    def _next_call_id(self) -> str:
        while True:
            self._calls += 1
            call_id = f"{self.run_id}.{self._calls}"
            if call_id not in self._call_ids:
                return call_id

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
