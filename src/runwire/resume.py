"""Where one connection stands in its user's stream, and what history it still needs.

Sans-I/O: :class:`StreamFollower` knows no engine, socket or event loop. The manager
asks it what to do at each turn (a live event arrived, a history batch was read, the
client asked to resume, the stream's epoch changed) and performs the I/O it names:
reading history, queueing frames. Every decision of resume lives here and is unit
tested without sockets (``tests/test_resume.py``); the per-connection order of
events itself is kept by :class:`~runwire.protocol.Session` (its ``cursor``).

A connection follows one epoch of its user's stream. Between ``connected`` and its
first live event it may rewind (resume); after that, replaying older events would
break offset order, so an in-band ``resume`` is refused with ``live_started``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from runwire.events import Resume, Resumed, ResumeFailed
from runwire.ids import Epoch

__all__ = [
    "MAX_STALLED_READS",
    "AfterBatch",
    "LiveAction",
    "ReplayStart",
    "ResumeRequest",
    "StreamFollower",
]

_HISTORY_LOST = frozenset({"out_of_window", "invalid_offset"})
"""The replay failures after which history cannot serve the cursor any more."""

MAX_STALLED_READS = 3
"""History reads in a row that bring nothing new before a catch-up gives up."""


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """A client's position: it has every event up to ``offset`` of ``epoch``."""

    epoch: Epoch
    offset: int


class LiveAction(Enum):
    """What to do about a live event the session did not queue."""

    NOTHING = "nothing"
    """Already held, or the connection is not open: drop it."""
    CATCH_UP = "catch_up"
    """It is ahead of the cursor: read the gap from history (start a catch-up)."""
    READ_AGAIN = "read_again"
    """A catch-up is running: it must read history once more before it ends."""
    FOLLOW_EPOCH = "follow_epoch"
    """It belongs to a newer epoch: the user's stream restarted; move to it."""


class AfterBatch(Enum):
    """What a catch-up does after queueing one batch of history."""

    DONE = "done"
    READ_MORE = "read_more"
    GIVE_UP = "give_up"
    """History cannot fill the gap a live event revealed (close 1011, never spin)."""


@dataclass(frozen=True, slots=True)
class ReplayStart:
    """How to begin a replay: read history of ``epoch`` after the cursor ``cursor``."""

    epoch: Epoch
    cursor: int


class StreamFollower:
    """The resume state of one connection (the cursor itself is the Session's).

    Attributes:
        epoch: the epoch this connection follows.
        connected_offset: the offset announced in ``connected`` (or where the
            connection moved to after an epoch change).
        catching_up: a catch-up (history read loop) is running.
        following: the connection is moving to a new epoch (its probe is running).
        replaying: the handshake replay is running: client frames wait for it.
    """

    __slots__ = (
        "_missed",
        "_stalled",
        "catching_up",
        "connected_offset",
        "epoch",
        "following",
        "replaying",
    )

    def __init__(self) -> None:
        self.epoch = Epoch("")
        self.connected_offset = 0
        self.catching_up = False
        self.following = False
        self.replaying = False
        self._missed = False
        self._stalled = 0

    # -- opening ------------------------------------------------------------------

    def connected(self, epoch: Epoch, offset: int) -> int:
        """The connection opened at ``offset`` of ``epoch``; returns the cursor to use."""
        self.epoch = epoch
        self.connected_offset = offset
        return offset

    def replay_start(self, request: ResumeRequest, head: int) -> ReplayStart:
        """Where a replay for ``request`` starts, the cursor being at ``head``.

        In the connection's epoch the cursor rewinds to the client's offset; for
        another epoch it stays at the head and the history read reports
        ``epoch_changed``.
        """
        cursor = request.offset if request.epoch == self.epoch else head
        return ReplayStart(request.epoch, cursor)

    def replay_failed(
        self, failure: ResumeFailed, *, start: int, cursor: int, head: int
    ) -> tuple[ResumeFailed, int]:
        """A replay could not be served: the frame to send and the cursor to go on from.

        If nothing was replayed the cursor returns to the head (the connection goes on
        live from ``connected``). If the replay was overtaken (history lost what
        follows the events it sent), the connection goes on from the offset the frame
        names; on an epoch change it stays where the replay got to (moving to the new
        epoch resets it).
        """
        if cursor == start:
            return failure, head
        if failure.reason in _HISTORY_LOST:
            return failure, failure.offset
        return failure, cursor

    def replay_done(self, request: ResumeRequest, cursor: int) -> Resumed:
        """The frame that ends a successful replay."""
        return Resumed(self.epoch, from_=request.offset, to=cursor)

    def in_band(self, frame: Resume, cursor: int) -> ResumeRequest | ResumeFailed:
        """An in-band ``resume``: replay it, or refuse with ``live_started``.

        Allowed while nothing moved past ``connected``, or when the client asks for
        no event it does not already have (same epoch, at or after the cursor).
        """
        if cursor != self.connected_offset and not (
            frame.epoch == self.epoch and frame.offset >= cursor
        ):
            return ResumeFailed("live_started", self.epoch, cursor)
        return ResumeRequest(Epoch(frame.epoch), frame.offset)

    # -- live events ----------------------------------------------------------------

    def live(self, *, epoch: Epoch, gap: bool, is_open: bool) -> LiveAction:
        """A live event the session did not queue: ``gap`` if it was ahead of the cursor."""
        if epoch != self.epoch:
            if is_open and not self.catching_up and not self.following:
                return LiveAction.FOLLOW_EPOCH
            return LiveAction.NOTHING
        if not gap:
            return LiveAction.NOTHING
        return self._behind()

    def resync(self) -> LiveAction:
        """The engine may have missed live events (a lost subscription)."""
        return self._behind()

    def _behind(self) -> LiveAction:
        if self.catching_up:
            self._missed = True
            return LiveAction.READ_AGAIN
        return LiveAction.CATCH_UP

    # -- the catch-up loop ----------------------------------------------------------

    def catch_up_started(self) -> None:
        self.catching_up = True
        self._missed = False
        self._stalled = 0

    def batch_read(self) -> None:
        """A history read is about to start: live gaps seen from now on need another."""
        self._missed = False

    def after_batch(self, *, size: int, limit: int, progressed: bool) -> AfterBatch:
        """A batch of ``size`` events (``limit`` asked) was queued; ``progressed``: the
        cursor moved."""
        if size < limit and not self._missed:
            return AfterBatch.DONE
        self._stalled = 0 if progressed else self._stalled + 1
        if self._stalled >= MAX_STALLED_READS:
            return AfterBatch.GIVE_UP
        return AfterBatch.READ_MORE

    def catch_up_ended(self) -> None:
        self.catching_up = False

    # -- epochs -----------------------------------------------------------------------

    def skip_to_head(self, reason: str, head: int) -> ResumeFailed:
        """History no longer holds what follows the cursor (``out_of_window``: those
        events left it; ``invalid_offset``: the stream's head went back behind the
        cursor, its last events lost): the ``resume_failed`` to send, after which the
        connection goes on from ``head`` (the frame's offset)."""
        self.connected_offset = head
        return ResumeFailed(reason, self.epoch, head)

    def follow(self, epoch: Epoch, *, retained_from_start: bool, head: int) -> ResumeFailed:
        """Move to a new epoch of the stream; returns the ``resume_failed`` to send.

        The new epoch is delivered from its start when history still holds it
        (``offset`` 0 in the frame), else from its head.
        """
        start = 0 if retained_from_start else head
        self.epoch = epoch
        self.connected_offset = start
        return ResumeFailed("epoch_changed", epoch, start)
