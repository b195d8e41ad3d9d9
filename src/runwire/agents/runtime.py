"""The agent runtime: runs each agent as its own task and guarantees the run rules.

Per run, whatever the agent code does: ``agent_started`` first; each
``tool_executing`` followed by its ``tool_completed`` (``ok: false`` on exception,
cancel or timeout); exactly one terminal event (``agent_completed`` or
``agent_error``) last; nothing after it. Runs never execute inside a socket's read
loop: :meth:`AgentRuntime.start_run` only creates a task.

Bounds: ``max_concurrent_runs_per_user``, ``max_active_runs``, ``run_timeout_s``,
and ``idempotency_keys`` remembered ``user_message`` ids (oldest evicted first).
Every per-run and per-user entry is removed when its run ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runwire.agents.base import Agent, Run, _current_run
from runwire.events import (
    AgentCompleted,
    AgentError,
    AgentStarted,
    Event,
    EventData,
    ToolCompleted,
    ToolExecuting,
)
from runwire.exceptions import EventRejected, LimitError
from runwire.ids import RunId, ThreadId, UserId, new_run_id, new_thread_id
from runwire.loopwatch import timed_steps
from runwire.publisher import OrderedPublisher, Publish, Submit

if TYPE_CHECKING:
    from runwire.config import Settings

__all__ = ["AgentRuntime", "RunLimits", "StartedRun"]

log = logging.getLogger("runwire.agents")

UNPUBLISHED = "unpublished"
"""Finish status of a run whose events could not be published (the engine was down):
its terminal event is missing, and whoever owns the run must close it later."""


@dataclass(frozen=True, slots=True)
class RunLimits:
    """The runtime's bounds (from :class:`runwire.config.Settings`)."""

    per_user: int
    active: int
    timeout_s: float
    idempotency_keys: int
    engine_retry_s: float = 0.0
    slow_step_s: float = 0.1
    """A step of a run (code between two awaits) holding the loop longer is reported."""
    publish_window: int = 1
    """Events of one run unconfirmed at once on a pipelined engine
    (:class:`~runwire.publisher.OrderedPublisher`); 1 waits for each."""

    @classmethod
    def of(cls, settings: Settings, *, per_user: int) -> RunLimits:
        """The bounds ``settings`` set, with ``per_user`` runs per user (a worker
        leaves that bound to the gateways)."""
        return cls(
            per_user=per_user,
            active=settings.max_active_runs,
            timeout_s=settings.run_timeout_s,
            idempotency_keys=settings.idempotency_keys,
            engine_retry_s=settings.engine_retry_s,
            slow_step_s=settings.slow_step_warning_s,
            publish_window=settings.run_publish_window,
        )


@dataclass(frozen=True, slots=True)
class StartedRun:
    """The run a ``user_message`` started (or had already started, on a retry)."""

    run_id: RunId
    thread_id: ThreadId
    duplicate: bool


@dataclass(slots=True)
class _Active:
    run: Run
    task: asyncio.Task[None]
    lock: asyncio.Lock
    publisher: OrderedPublisher
    seq: int = 0
    stop_reason: str | None = None
    started: bool = False
    publishing: bool = False
    """An event of the run is being published: a stop waits for it (a cancellation
    there would leave it half done: stored or not, its call open or not)."""
    stop_deferred: bool = False
    """A stop came while publishing: the cancellation follows the publish."""
    finishing: bool = False
    """The agent's code is done: the runtime ends the run, and no stop cancels that."""


class AgentRuntime:
    """Starts, tracks, cancels and stops agent runs.

    Args:
        agent: the agent function.
        publish: stores and delivers one event (the pipeline's ``publish``).
        limits: the bounds.
        submit: queues one event without waiting (the pipeline's ``submit``, on a
            pipelined engine): each run then keeps up to ``limits.publish_window``
            events unconfirmed, and its terminal event waits for all of them.
    """

    def __init__(
        self,
        agent: Agent,
        publish: Publish,
        limits: RunLimits,
        on_finished: Callable[[Run, str], Awaitable[None]] | None = None,
        on_slow_step: Callable[[Run, float], None] | None = None,
        submit: Submit | None = None,
    ) -> None:
        self.agent = agent
        self._submit = submit
        self._on_finished = on_finished
        self._on_slow_step = on_slow_step
        self.agent_name = getattr(agent, "agent_name", getattr(agent, "__name__", "agent"))
        self.limits = limits
        self._publish = publish
        self._active: dict[RunId, _Active] = {}
        self._by_user: dict[UserId, set[RunId]] = {}
        self._idempotency: OrderedDict[tuple[UserId, str], StartedRun] = OrderedDict()
        self._stopping = False
        self.started_total = 0
        self.finished_total: dict[str, int] = {}

    # -- starting ---------------------------------------------------------------

    def find(self, user_id: UserId, message_id: str) -> StartedRun | None:
        """The run ``message_id`` started here, while its key is remembered."""
        known = self._idempotency.get((user_id, message_id))
        return StartedRun(known.run_id, known.thread_id, duplicate=True) if known else None

    def forget(self, user_id: UserId, message_id: str) -> bool:
        """Forget that ``message_id`` started a run, unless that run is still active
        (a worker restarting a run none of whose events was published). Whether the
        key is gone now."""
        known = self._idempotency.get((user_id, message_id))
        if known is not None and known.run_id in self._active:
            return False
        self._idempotency.pop((user_id, message_id), None)
        return True

    def start_run(
        self,
        user_id: UserId,
        content: str,
        *,
        message_id: str,
        thread_id: str | None,
        run_id: str | None = None,
    ) -> StartedRun:
        """Start a run for ``user_id`` (idempotent per ``message_id``).

        ``run_id`` is given when the run was created elsewhere (a worker runs what a
        gateway accepted); otherwise a fresh one is made.

        Raises:
            LimitError: ``too_many_runs`` (per user), ``busy`` (process) or
                ``shutting_down``.
        """
        key = (user_id, message_id)
        known = self._idempotency.get(key)
        if known is not None:
            return StartedRun(known.run_id, known.thread_id, duplicate=True)
        if self._stopping:
            raise LimitError("shutting_down", "the gateway is shutting down")
        user_runs = self._by_user.get(user_id, set())
        if len(user_runs) >= self.limits.per_user:
            raise LimitError(
                "too_many_runs", f"at most {self.limits.per_user} runs at once per user"
            )
        if len(self._active) >= self.limits.active:
            raise LimitError("busy", "too many runs on this gateway; retry later")
        run_id = RunId(run_id) if run_id else new_run_id()
        thread = ThreadId(thread_id) if thread_id else new_thread_id()
        run = Run(run_id=run_id, thread_id=thread, user_id=user_id, input=content, emit=self._emit)
        publisher = OrderedPublisher(
            self._publish,
            self._submit,
            window=self.limits.publish_window,
            retry_s=self.limits.engine_retry_s,
        )
        active = _Active(
            run,
            asyncio.get_running_loop().create_task(self._drive(run)),
            asyncio.Lock(),
            publisher,
        )
        self._active[run_id] = active
        self._by_user.setdefault(user_id, set()).add(run_id)
        started = StartedRun(run_id, thread, duplicate=False)
        self._idempotency[key] = started
        if len(self._idempotency) > self.limits.idempotency_keys:
            self._idempotency.popitem(last=False)
        self.started_total += 1
        return started

    # -- cancelling -------------------------------------------------------------

    def cancel(self, user_id: UserId, run_id: str) -> bool:
        """Cancel one of ``user_id``'s own active runs; ``False`` if there is none."""
        active = self._active.get(RunId(run_id))
        if active is None or active.run.user_id != user_id:
            return False
        self._stop(active, "cancelled")
        return True

    def cancel_any(self, run_id: str) -> bool:
        """Cancel an active run whoever it belongs to (the caller checked ownership)."""
        active = self._active.get(RunId(run_id))
        if active is None:
            return False
        self._stop(active, "cancelled")
        return True

    def _stop(self, active: _Active, reason: str) -> None:
        """Cancel the agent's code (``reason``: cancelled, timeout, shutdown), but never
        a publish under way (the cancellation follows it) nor the runtime's ending of
        the run (closing its tool calls, its terminal event)."""
        if active.stop_reason is None and not active.finishing:
            active.stop_reason = reason
            if active.started:
                self._cancel(active)
            else:
                # A task cancelled before its first step never runs its body: no terminal
                # event, and the run would never be forgotten. Cancel it once it runs.
                asyncio.get_running_loop().call_soon(self._cancel, active)

    @staticmethod
    def _cancel(active: _Active) -> None:
        if active.finishing:
            return
        if active.publishing:
            active.stop_deferred = True  # raised by _emit once the publish is done
        else:
            active.task.cancel()

    async def stop(self, grace_s: float) -> None:
        """Refuse new runs, give running ones ``grace_s``, then cancel them (``shutdown``)."""
        self._stopping = True
        tasks = [active.task for active in self._active.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for active in list(self._active.values()):
                self._stop(active, "shutdown")
            if pending:
                await asyncio.wait(pending, timeout=max(grace_s, 1.0))

    # -- introspection ----------------------------------------------------------

    def active_runs(self, user_id: UserId | None = None) -> int:
        """Runs in progress (of one user, or all)."""
        if user_id is None:
            return len(self._active)
        return len(self._by_user.get(user_id, ()))

    def stats(self) -> dict[str, int]:
        """Sizes of the runtime's structures, for metrics and leak tests."""
        return {
            "active_runs": len(self._active),
            "users_with_runs": len(self._by_user),
            "idempotency_keys": len(self._idempotency),
        }

    # -- the run task -----------------------------------------------------------

    async def _emit(self, run: Run, data: EventData) -> None:
        active = self._active[run.run_id]
        async with active.lock:
            # Sequence numbers and offsets are assigned under one lock, so that
            # concurrent tool calls of one run keep seq order equal to offset order.
            if run.closed:
                return
            active.seq += 1
            event = Event.of(
                data,
                run_id=run.run_id,
                thread_id=run.thread_id,
                seq=active.seq,
                ts=time.time_ns() // 1_000_000,
            )
            if event.is_terminal:
                run.closed = True
            active.publishing = True
            try:
                await self._publish_event(active, data, event)
            finally:
                active.publishing = False
                if active.stop_deferred:
                    # The stop that came meanwhile: the agent is cancelled now, with
                    # this event published (or refused) whole.
                    active.stop_deferred = False
                    if not active.finishing:
                        raise asyncio.CancelledError

    async def _publish_event(self, active: _Active, data: EventData, event: Event) -> None:
        run, publisher = active.run, active.publisher
        try:
            await publisher.publish(run.user_id, event)
        except EventRejected as exc:
            replacement = _replacement(data, exc.reason)
            if replacement is None:
                # Nothing stands in for a thought or a piece of the answer: the
                # agent gets the error (and the run ends if it does not catch it).
                active.seq -= 1
                run.closed = False
                raise
            log.warning("event replaced: %s", exc.reason, extra={"run_id": run.run_id})
            await publisher.publish(run.user_id, _with_data(event, replacement))
        if run.closed:
            # The terminal event counts as published once every event is stored
            # (a publish that fails within engine_retry_s raises here).
            await publisher.flush()

    async def _drive(self, run: Run) -> None:
        active = self._active[run.run_id]
        active.started = True
        _current_run.set(run)
        status = "completed"
        try:
            terminal: EventData
            try:
                timer: asyncio.TimerHandle | None = None
                try:
                    await run._emit(AgentStarted(self.agent_name, run.input))
                    # The run's time limit is a stop like a cancel: never in a publish.
                    timer = asyncio.get_running_loop().call_later(
                        self.limits.timeout_s, self._stop, active, "timeout"
                    )
                    output = await timed_steps(
                        self.agent(run, run.input),
                        self.limits.slow_step_s,
                        lambda held_s: self._slow_step(run, held_s),
                    )
                finally:
                    active.finishing = True  # from here on nothing cancels the run's ending
                    if timer is not None:
                        timer.cancel()
                if not isinstance(output, str):
                    output = "".join(run.said)
                terminal = AgentCompleted(output, "completed")
            except asyncio.CancelledError:
                reason = active.stop_reason or "shutdown"
                await self._close_calls(run, reason)
                if reason == "cancelled":
                    status = "cancelled"
                    terminal = AgentCompleted("".join(run.said), "cancelled")
                elif reason == "timeout":
                    status = "timeout"
                    terminal = AgentError(
                        "timeout", f"the run exceeded {self.limits.timeout_s:g} s"
                    )
                else:
                    status = "shutdown"
                    terminal = AgentError("shutdown", "the gateway is shutting down")
            except EventRejected as exc:
                status = "failed"
                await self._close_calls(run, "run failed")
                terminal = AgentError("event_rejected", exc.reason)
            except Exception:
                status = "failed"
                log.exception("agent failed", extra={"run_id": run.run_id})
                await self._close_calls(run, "agent failed")
                terminal = AgentError("agent_failed", "the agent failed")
            await self._close_calls(run, "not completed by the agent")
            await run._emit(terminal)
        except Exception:
            status = UNPUBLISHED
            # Publishing itself failed (engine down): nothing more can reach the user.
            log.exception("run could not publish", extra={"run_id": run.run_id})
        finally:
            run.closed = True
            self._forget(run)
            self.finished_total[status] = self.finished_total.get(status, 0) + 1
            if self._on_finished is not None:
                try:
                    await self._on_finished(run, status)
                except Exception:
                    log.exception("run bookkeeping failed", extra={"run_id": run.run_id})

    def _slow_step(self, run: Run, held_s: float) -> None:
        log.warning(
            "run %s held the event loop for %.0f ms in one step; every user waited"
            " (move blocking work to a thread: docs/agents.md)",
            run.run_id,
            held_s * 1000,
            extra={"run_id": run.run_id, "user_id": run.user_id},
        )
        if self._on_slow_step is not None:
            self._on_slow_step(run, held_s)

    async def _close_calls(self, run: Run, reason: str) -> None:
        for call in run.open_calls:
            await call._close(reason)

    def _forget(self, run: Run) -> None:
        self._active.pop(run.run_id, None)
        user_runs = self._by_user.get(run.user_id)
        if user_runs is not None:
            user_runs.discard(run.run_id)
            if not user_runs:
                del self._by_user[run.user_id]


_MAX_REPLACED_TEXT = 1_000


def _safe_text(text: str) -> str:
    """``text`` cut to a bounded length, with lone surrogates replaced: always encodable."""
    return text[:_MAX_REPLACED_TEXT].encode("utf-8", "replace").decode("utf-8")


def _replacement(data: EventData, reason: str) -> EventData | None:
    """What is published instead of an event the engine refused, or ``None`` when the
    agent must be told (a thought or answer text too big to send)."""
    if isinstance(data, ToolCompleted):
        if data.ok or not isinstance(data.error, str):
            error = f"the tool's result could not be sent: {reason}"
        else:
            error = _safe_text(data.error)
        return ToolCompleted(
            data.call_id, _safe_text(data.tool), False, data.duration_ms, error=error
        )
    if isinstance(data, ToolExecuting):
        return ToolExecuting(data.call_id, _safe_text(data.tool), {"unencodable": reason})
    if isinstance(data, AgentCompleted):
        return AgentError("event_rejected", f"the answer could not be sent: {reason}")
    if isinstance(data, AgentError):
        return AgentError(_safe_text(data.code)[:64], _safe_text(data.message))
    return None


def _with_data(event: Event, data: EventData) -> Event:
    """``event`` with other ``data`` (same run, seq and time)."""
    return Event.of(
        data, run_id=event.run_id, thread_id=event.thread_id, seq=event.seq, ts=event.ts
    )
