"""Where runs execute: the port between the gateway and the agent runtime.

A :class:`RunDispatcher` accepts a ``user_message`` (returning the run it started,
idempotently per message id) and cancels runs. :class:`LocalDispatcher` runs agents
in the gateway process; ``runwire.redis.workers.RedisDispatcher`` hands them
to ``runwire worker`` processes through Redis.
"""

from __future__ import annotations

from typing import Protocol

from runwire.agents.runtime import AgentRuntime, StartedRun
from runwire.ids import RunId, ThreadId, UserId, new_run_id, new_thread_id

__all__ = ["LocalDispatcher", "MessageClaims", "RunDispatcher", "RunLease"]


class RunDispatcher(Protocol):
    """Starts and cancels runs for users."""

    async def start_run(
        self, user_id: UserId, content: str, *, message_id: str, thread_id: str | None
    ) -> StartedRun:
        """Start (or, for a known ``message_id``, find) the run of a user message.

        Raises:
            LimitError: a bound refused it (``too_many_runs``, ``busy``...).
            EngineError: the run could not be handed over (Redis down).
        """
        ...

    async def cancel(self, user_id: UserId, run_id: str) -> bool:
        """Cancel one of the user's own active runs; ``False`` when there is none."""
        ...

    async def find(self, user_id: UserId, message_id: str) -> StartedRun | None:
        """The run ``message_id`` started, if it is still known; never starts one.

        Raises:
            EngineError: the shared store could not be read.
        """
        ...

    def active_runs(self) -> int:
        """Runs executing in this process."""
        ...

    async def stop(self, grace_s: float) -> None:
        """Refuse new runs; give running ones ``grace_s`` to finish."""


class MessageClaims(Protocol):
    """Idempotency keys shared by every gateway node (``user_message.id`` → run)."""

    async def claim(
        self, user_id: UserId, message_id: str, run_id: RunId, thread_id: ThreadId
    ) -> StartedRun:
        """Record ``message_id`` → (``run_id``, ``thread_id``) unless already recorded;
        returns the recorded run (``duplicate=True`` when it was already there)."""
        ...

    async def release(self, user_id: UserId, message_id: str, run_id: RunId) -> None:
        """Forget ``message_id``'s claim if it still names ``run_id`` (a run that was
        refused before it started, so that a retry of the message may start it)."""
        ...

    async def find(self, user_id: UserId, message_id: str) -> StartedRun | None:
        """The run recorded for ``message_id`` (``duplicate=True``), if any."""
        ...

    async def close(self) -> None:
        """Release the connection to the shared store."""


class RunLease(Protocol):
    """The runs this process executes, recorded in the shared store, so that a live
    node ends them if this process dies (:mod:`runwire.redis.nodes`)."""

    async def start(self) -> None:
        """Take the lease; keep it and sweep for lost nodes until :meth:`close`."""

    async def hold(
        self, user_id: UserId, run_id: RunId, thread_id: ThreadId, message_id: str
    ) -> None:
        """Record a run before it starts.

        Raises:
            EngineError: it could not be recorded (the run must not start).
        """

    async def finished(self, run_id: str, published: bool) -> None:
        """The run ended here (``published``: with its terminal event stored)."""

    async def close(self) -> None:
        """Give the lease up (after the runtime has ended its runs)."""


class LocalDispatcher:
    """Runs agents in this gateway process with its :class:`AgentRuntime`.

    With ``claims`` (a shared engine), a message retried on another node maps to
    the run the first node started; without, the runtime's own memory does. With a
    ``lease`` (a shared engine), each run is held in the shared store before it
    starts, so another node ends it if this process dies; the caller releases it
    when the run finishes (the runtime's ``on_finished``).
    """

    def __init__(
        self,
        runtime: AgentRuntime,
        claims: MessageClaims | None = None,
        lease: RunLease | None = None,
    ) -> None:
        self.runtime = runtime
        self.claims = claims
        self.lease = lease

    async def start_run(
        self, user_id: UserId, content: str, *, message_id: str, thread_id: str | None
    ) -> StartedRun:
        run_id: RunId | None = None
        if self.claims is not None:
            claimed = await self.claims.claim(
                user_id,
                message_id,
                new_run_id(),
                ThreadId(thread_id) if thread_id else new_thread_id(),
            )
            if claimed.duplicate:
                return claimed
            run_id, thread_id = claimed.run_id, claimed.thread_id
            if self.lease is not None:
                await self.lease.hold(user_id, run_id, claimed.thread_id, message_id)
        try:
            started = self.runtime.start_run(
                user_id, content, message_id=message_id, thread_id=thread_id, run_id=run_id
            )
        except BaseException:
            if run_id is not None:  # it never ran: its message may come again
                if self.lease is not None:
                    await self.lease.finished(run_id, published=True)
                if self.claims is not None:
                    await self.claims.release(user_id, message_id, run_id)
            raise
        if self.lease is not None and run_id is not None and started.run_id != run_id:
            await self.lease.finished(run_id, published=True)  # a known run: not this one
        return started

    async def cancel(self, user_id: UserId, run_id: str) -> bool:
        return self.runtime.cancel(user_id, run_id)

    async def find(self, user_id: UserId, message_id: str) -> StartedRun | None:
        if self.claims is not None:
            return await self.claims.find(user_id, message_id)
        return self.runtime.find(user_id, message_id)

    def active_runs(self) -> int:
        return self.runtime.active_runs()

    async def stop(self, grace_s: float) -> None:
        await self.runtime.stop(grace_s)
        if self.lease is not None:
            await self.lease.close()
        if self.claims is not None:
            await self.claims.close()
