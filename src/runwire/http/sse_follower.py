"""One run followed as an SSE stream, through a manager connection like any socket.

:class:`SseFollower` is a :class:`~runwire.manager.FrameWriter`: the manager opens a
connection on it (:meth:`~runwire.manager.WebSocketManager.open`) and writes it the
frames it writes to sockets. The follower decodes them, feeds the events of its one
run to a front-end translator (:mod:`runwire.frontends`) and queues the SSE text for
the response body (:meth:`SseFollower.chunks`). An SSE reader so gets everything a
socket gets: events in order and exactly once, from every node (Redis), resume
(``manager.open(..., resume=...)``), the per-user connection limits, and the
slow-consumer policy: while more than ``high_water_bytes`` of SSE text wait, the
follower is not :attr:`~SseFollower.writable`, events stay in the connection's queue,
deltas there are coalesced, and a reader that stays behind is closed (4409).

How a stream ends (the body's last block):

- the run's terminal event was sent (``RUN_FINISHED`` / ``RUN_ERROR``; the AI SDK's
  ``finish`` and ``data: [DONE]``): the stream is complete;
- anything else is cut short, and says why in a comment, :func:`end_comment`:
  ``: runwire-end <code> <reason>`` with the connection's close code (4409 the reader
  stayed behind, 1001 the gateway is stopping, 4401 the token expired, 1011 ...) or
  ``: runwire-end resume_failed <reason>`` (``out_of_window``, ``epoch_changed``,
  ``invalid_offset``: history no longer holds what the stream needed). The client
  resumes from the last ``id:`` it read.

Idle streams get :data:`~runwire.frontends.sse.HEARTBEAT` every ``heartbeat_s``.
The connection is released (``manager.closed``) when the body ends, when the client
goes away (the front door closes the body), or by :meth:`SseFollower.release`.
Nothing here blocks the loop: the manager's flush calls :meth:`write_frames`, which
only decodes, translates and queues.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from runwire.events import EVENT_TYPES, Event, event_from_frame
from runwire.exceptions import CloseCode
from runwire.frontends.base import RunTranslator
from runwire.frontends.sse import HEARTBEAT, comment
from runwire.ids import Epoch, UserId
from runwire.manager import Connection, WebSocketManager
from runwire.resume import ResumeRequest

__all__ = ["SseFollower", "TranslatorFactory", "end_comment"]

log = logging.getLogger("runwire.http")

TranslatorFactory = Callable[[Epoch], RunTranslator[Any]]
"""Makes the run's translator once the connection knows its stream epoch.

Raises:
    ValueError: the client's position is of another epoch (the stream ends with
        ``resume_failed epoch_changed``).
"""

_EVENT_TYPES = frozenset(EVENT_TYPES.values())
_CLIENT_GONE = 1006
"""The close code recorded (metrics) when the client went away first."""


class _Peek(msgspec.Struct):
    """What the follower reads of every frame before deciding whether to decode it."""

    type: str
    run_id: str = ""
    epoch: str = ""
    reason: str = ""


_peek = msgspec.json.Decoder(_Peek)


def end_comment(code: int | str, reason: str) -> bytes:
    """The comment that ends a stream cut short (see the module): one line."""
    text = " ".join(f"runwire-end {code} {reason}".split())
    return comment(text[:200]).encode()


class SseFollower:
    """A manager connection following one run as SSE (see the module).

    Args:
        manager: the gateway's manager.
        user_id: the authenticated user; the connection holds that user's stream only.
        translator: makes the run's translator from the stream epoch.
        run_id: the run to follow, or ``None`` until :meth:`follow` names it (events
            arriving before are kept, so a run started after :meth:`open` loses none).
        high_water_bytes: SSE text queued above which the follower is not writable.
        heartbeat_s: idle time before a heartbeat comment.
    """

    def __init__(
        self,
        manager: WebSocketManager,
        user_id: UserId,
        translator: TranslatorFactory,
        *,
        run_id: str | None,
        high_water_bytes: int,
        heartbeat_s: float,
    ) -> None:
        self.manager = manager
        self.user_id = user_id
        self.run_id = run_id
        self.connection: Connection | None = None
        self.translator: RunTranslator[Any] | None = None
        self._make_translator = translator
        self._high_water = high_water_bytes
        self._heartbeat_s = heartbeat_s
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._held = False
        """``writable`` said no: tell the manager once the queue drains."""
        self._early: list[tuple[int, Event]] = []
        """Events of the user before :meth:`follow` named the run."""
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._stopped = asyncio.Event()
        """Set when the stream is cut (not when the run ends)."""
        self._code: int = CloseCode.NORMAL
        """The close code recorded when the connection is released."""
        self.ended = False
        """Nothing more will be queued: the run ended, or the stream was cut."""
        self.end_reason: str | None = None
        """Why a stream was cut (``None``: not cut)."""
        self._released = False

    # -- opening --------------------------------------------------------------------

    def open(self, resume: ResumeRequest | None, expires_at: int | None) -> None:
        """Open the manager connection (live, or replaying after ``resume``).

        Raises:
            LimitError: ``too_many_connections`` or ``shutting_down`` (nothing is open).
        """
        self.connection = self.manager.open(self.user_id, self, resume, expires_at)

    async def connected(self, timeout_s: float) -> bool:
        """Wait for the connection's ``connected`` frame; ``False`` if the stream ended
        first (the engine is unavailable, the gateway is stopping) or ``timeout_s`` passed."""
        waiters = (
            asyncio.ensure_future(self._connected.wait()),
            asyncio.ensure_future(self._stopped.wait()),
        )
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self._connected.is_set() and not self._stopped.is_set()

    def follow(self, run_id: str) -> None:
        """Follow run ``run_id`` (of this user): feed what arrived already, then the rest."""
        self.run_id = run_id
        early, self._early = self._early, []
        for offset, event in early:
            self._bytes -= _EARLY_COST
            if event.run_id == run_id:
                self._feed(offset, event)
        self._wake.set()

    # -- FrameWriter ------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """False while more than the high-water mark of SSE text waits for the client."""
        if self._bytes < self._high_water:
            return True
        self._held = True
        return False

    def write_frames(self, frames: list[bytes]) -> None:
        """Take the connection's frames: translate the run's events, act on the rest."""
        for frame in frames:
            if self.ended:
                break  # the run ended or the stream was cut: the rest is not for it
            peek = _peek.decode(frame)
            kind = peek.type
            if kind in _EVENT_TYPES:
                if self.run_id is None:
                    self._early.append(event_from_frame(frame))
                    self._bytes += _EARLY_COST
                elif peek.run_id == self.run_id:
                    self._feed(*event_from_frame(frame))
            elif kind == "connected":
                self._start(Epoch(peek.epoch))
            elif kind == "resume_failed":
                self._cut(end_comment("resume_failed", peek.reason), f"resume_failed {peek.reason}")
            # resumed, engine_status, token_expiring, error...: nothing for SSE
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        """The manager closes the connection: what is queued goes out, then the reason."""
        self._code = code
        self._cut(end_comment(code, reason), f"{code} {reason}")

    def abort(self) -> None:
        """Drop the stream now (gateway shutdown after its grace): nothing more is sent."""
        self._queue.clear()
        self._bytes = 0
        self._cut(b"", "aborted")

    # -- translating ------------------------------------------------------------------

    def _start(self, epoch: Epoch) -> None:
        try:
            self.translator = self._make_translator(epoch)
        except ValueError:
            self._cut(end_comment("resume_failed", "epoch_changed"), "resume_failed epoch_changed")
            return
        self._connected.set()

    def _feed(self, offset: int, event: Event) -> None:
        translator = self.translator
        if translator is None:
            return  # not connected: impossible (the manager sends `connected` first)
        frames = translator.feed(offset, event)
        if frames:
            text = "".join(frame.sse for frame in frames).encode()
            self._queue.append(text)
            self._bytes += len(text)
        if translator.done:
            self.ended = True

    def _cut(self, last: bytes, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.end_reason = reason
        self._stopped.set()
        if last:
            self._queue.append(last)
            self._bytes += len(last)
        self._wake.set()

    # -- the response body --------------------------------------------------------------

    def chunks(self) -> AsyncIterator[bytes]:
        """The response body: SSE text as it is queued, heartbeats while idle, until the
        stream ends. Closing it (the client went away) releases the connection, whether
        or not it was ever iterated."""
        return _Body(self)

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or ``None`` at its end (then the connection is
        released)."""
        while True:
            if self._queue:
                chunk = b"".join(self._queue)
                self._queue.clear()
                self._bytes = len(self._early) * _EARLY_COST
                if self._held and self.connection is not None:
                    self._held = False
                    self.manager.writable_again(self.connection)
                return chunk
            if self.ended:
                self.release(self._code)
                return None
            self._wake.clear()
            try:
                async with asyncio.timeout(self._heartbeat_s):
                    await self._wake.wait()
            except TimeoutError:
                return HEARTBEAT.encode()

    def release(self, code: int = _CLIENT_GONE) -> None:
        """Forget the connection (idempotent): the manager stops delivering to it."""
        if self._released:
            return
        self._released = True
        self.ended = True
        self._queue.clear()
        self._early.clear()
        self._bytes = 0
        if self.connection is not None:
            self.manager.closed(self.connection, code)


_EARLY_COST = 512
"""What an event kept before :meth:`SseFollower.follow` counts toward the high-water mark."""


class _Body:
    """:meth:`SseFollower.chunks`: an async iterator whose ``aclose`` always releases
    (an async generator never started would skip its ``finally``)."""

    def __init__(self, follower: SseFollower) -> None:
        self._follower = follower

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._follower.next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        self._follower.release()
