"""The sans-I/O protocol state of one WebSocket connection.

:class:`Session` knows no sockets, no event loop and no clock: the I/O layer feeds it
client text with :meth:`Session.receive_text` (passing the time), takes parsed frames
from :meth:`Session.frames_received`, and writes :meth:`Session.data_to_send`.
It enforces wire protocol v1: frame size, rate, validation, and the per-connection
order of events (each offset once, no gap), and bounds the outbound queue in frames
and bytes. When the queue overflows the session asks to close with 4409.

States: ``CONNECTING`` → ``OPEN`` (after ``connected`` is queued) → ``CLOSING``
(a close was requested) → ``CLOSED`` (the transport is gone).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

import msgspec

from runwire import events
from runwire.events import CLIENT_FRAME_TYPES, ClientFrame, Connected, ErrorFrame
from runwire.exceptions import CloseCode

__all__ = ["EventAdmission", "SessionLimits", "Session", "State"]


class State(IntEnum):
    """Lifecycle of one connection; it only moves forward."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class EventAdmission(Enum):
    """What :meth:`Session.send_event` did with an event."""

    QUEUED = "queued"
    """Queued for this connection."""
    DUPLICATE = "duplicate"
    """At or before this connection's cursor: it already has it; dropped."""
    GAP = "gap"
    """Later than the next expected offset: the caller must fill from history first."""
    OVERFLOW = "overflow"
    """The outbound queue is full: the session now closes with 4409."""
    CLOSED = "closed"
    """The session is closing or closed; nothing more is sent."""


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """The bounds one session enforces (taken from :class:`runwire.config.Settings`)."""

    max_frame_bytes: int
    max_message_chars: int
    messages_per_s: float
    queue_events: int
    queue_bytes: int


class Session:
    """Protocol state of one connection.

    Args:
        limits: the bounds to enforce.
        cursor: the offset of the last event this connection is considered to have;
            the next event it accepts is ``cursor + 1``.
        now: the current time in seconds (monotonic), for the rate limiter.
    """

    def __init__(self, limits: SessionLimits, *, cursor: int, now: float) -> None:
        self.limits = limits
        self.state = State.CONNECTING
        self.cursor = cursor
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        self._received: list[ClientFrame] = []
        self._outbound: deque[bytes] = deque()
        self._outbound_bytes = 0
        self._tokens = 2 * limits.messages_per_s
        self._tokens_at = now

    # -- inbound ----------------------------------------------------------------

    def receive_text(self, payload: bytes | str, now: float) -> None:
        """Take one client text frame (also while connecting: nothing sent early is lost).

        Valid frames become available from :meth:`frames_received`. Invalid ones
        queue an ``error`` frame (unknown type, invalid fields) or request a close:
        1009 too big, 4400 not a JSON object, 4429 over the rate limit.
        """
        if self.state >= State.CLOSING:
            return
        if len(payload) > self.limits.max_frame_bytes:
            self.close(CloseCode.MESSAGE_TOO_BIG, "frame larger than max_frame_bytes")
            return
        if not self._take_token(now):
            self.close(CloseCode.RATE_LIMITED, "too many messages")
            return
        try:
            raw = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            self.close(CloseCode.PROTOCOL_VIOLATION, "frame is not valid JSON")
            return
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            self.close(CloseCode.PROTOCOL_VIOLATION, "frame is not an object with a type")
            return
        ref = raw.get("id") if isinstance(raw.get("id"), str) else None
        if raw["type"] not in CLIENT_FRAME_TYPES:
            self.send_error("unknown_type", f"unknown message type {raw['type'][:64]!r}", ref)
            return
        try:
            frame: ClientFrame = msgspec.convert(raw, ClientFrame)
        except msgspec.ValidationError as exc:
            self.send_error("invalid_message", str(exc), ref)
            return
        if (
            isinstance(frame, events.UserMessage)
            and len(frame.content) > self.limits.max_message_chars
        ):
            self.send_error("message_too_long", "content exceeds max_message_chars", ref)
            return
        self._received.append(frame)

    def frames_received(self) -> list[ClientFrame]:
        """The valid client frames received since the last call, in order."""
        received, self._received = self._received, []
        return received

    def _take_token(self, now: float) -> bool:
        rate = self.limits.messages_per_s
        self._tokens = min(2 * rate, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    # -- outbound ---------------------------------------------------------------

    def open(self, connected: Connected) -> None:
        """Queue the ``connected`` frame and start accepting client frames."""
        if self.state is not State.CONNECTING:
            raise RuntimeError(f"open() in state {self.state.name}")
        self.state = State.OPEN
        frame = events.encode(connected)
        self._outbound.appendleft(frame)  # before any error queued while connecting
        self._outbound_bytes += len(frame)

    def send_frame(self, frame: msgspec.Struct) -> None:
        """Queue a control frame (ack, pong, error, resumed...). Never dropped while open."""
        if self.state <= State.OPEN:
            self._push(events.encode(frame))

    def send_error(self, code: str, message: str, ref: str | None = None) -> None:
        """Queue an ``error`` frame that keeps the connection open."""
        self.send_frame(ErrorFrame(code, message, ref))

    def send_event(self, offset: int, frame: bytes) -> EventAdmission:
        """Queue the event at ``offset`` if it is the next one this connection needs.

        Events are accepted strictly in offset order, each once. Exceeding the
        queue bounds requests a close with 4409 (the client resumes from history).
        """
        if self.state is not State.OPEN:
            return EventAdmission.CLOSED
        if offset <= self.cursor:
            return EventAdmission.DUPLICATE
        if offset != self.cursor + 1:
            return EventAdmission.GAP
        if (
            len(self._outbound) >= self.limits.queue_events
            or self._outbound_bytes + len(frame) > self.limits.queue_bytes
        ):
            self.close(CloseCode.SLOW_CONSUMER, "outbound queue full; resume from history")
            return EventAdmission.OVERFLOW
        self.cursor = offset
        self._push(frame)
        return EventAdmission.QUEUED

    def _push(self, frame: bytes) -> None:
        self._outbound.append(frame)
        self._outbound_bytes += len(frame)

    @property
    def pending(self) -> int:
        """Frames queued and not yet taken by :meth:`data_to_send`."""
        return len(self._outbound)

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet taken by :meth:`data_to_send`."""
        return self._outbound_bytes

    def data_to_send(self) -> list[bytes]:
        """Take every queued frame, oldest first (one text frame each)."""
        frames = list(self._outbound)
        self._outbound.clear()
        self._outbound_bytes = 0
        return frames

    # -- closing ----------------------------------------------------------------

    def close(self, code: CloseCode, reason: str) -> None:
        """Request a close; the first request wins. Queued frames are discarded."""
        if self.state >= State.CLOSING:
            return
        self.state = State.CLOSING
        self.close_code = code
        self.close_reason = reason
        self._outbound.clear()
        self._outbound_bytes = 0

    def connection_lost(self) -> None:
        """The transport is gone; nothing more will be sent or received."""
        self.state = State.CLOSED
        self._outbound.clear()
        self._outbound_bytes = 0
        self._received.clear()

    def describe(self) -> dict[str, Any]:
        """Counters for debugging and metrics."""
        return {"state": self.state.name, "cursor": self.cursor, "pending": self.pending}
