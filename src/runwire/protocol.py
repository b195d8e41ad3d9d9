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
from runwire.events import (
    CLIENT_FRAME_TYPES,
    AgentMessageDelta,
    ClientFrame,
    Connected,
    ErrorFrame,
    Event,
)
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
    COALESCED = "coalesced"
    """Queued, after merging queued deltas to make room."""
    CLOSED = "closed"
    """The session is closing or closed; nothing more is sent."""


@dataclass(frozen=True, slots=True)
class _Queued:
    """One outbound frame; events keep their offset and (when known) the event."""

    frame: bytes
    event: Event | None = None
    offset: int = 0
    coalesced_from: int = 0


def _is_delta(event: Event | None) -> bool:
    return event is not None and isinstance(event.data, AgentMessageDelta)


def _merge(first: _Queued, second: _Queued) -> _Queued:
    assert first.event is not None and second.event is not None
    head, tail = first.event.data, second.event.data
    assert isinstance(head, AgentMessageDelta) and isinstance(tail, AgentMessageDelta)
    start = first.coalesced_from or first.offset
    event = msgspec.structs.replace(
        second.event, data=AgentMessageDelta(head.text + tail.text, coalesced_from=start)
    )
    return _Queued(events.encode_envelope(event, second.offset), event, second.offset, start)


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
        self._outbound: deque[_Queued] = deque()
        self.coalesced = 0
        """Event frames merged away by delta coalescing (for metrics)."""
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
        size = len(payload.encode()) if isinstance(payload, str) else len(payload)
        if size > self.limits.max_frame_bytes:
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
        self._outbound.appendleft(_Queued(frame))  # before any error queued while connecting
        self._outbound_bytes += len(frame)

    def send_frame(self, frame: msgspec.Struct) -> None:
        """Queue a control frame (ack, pong, error, resumed...). Never dropped while open."""
        if self.state <= State.OPEN:
            self._push(_Queued(events.encode(frame)))

    def send_error(self, code: str, message: str, ref: str | None = None) -> None:
        """Queue an ``error`` frame that keeps the connection open."""
        self.send_frame(ErrorFrame(code, message, ref))

    def send_event(self, offset: int, frame: bytes, event: Event | None = None) -> EventAdmission:
        """Queue the event at ``offset`` if it is the next one this connection needs.

        Events are accepted strictly in offset order, each once. When the queue is
        full, adjacent queued ``agent_message_delta`` frames of one run are merged
        first (``event`` must be given for a frame to be mergeable); if it is still
        full, the session requests a close with 4409 (the client resumes from history).
        """
        if self.state is not State.OPEN:
            return EventAdmission.CLOSED
        if offset <= self.cursor:
            return EventAdmission.DUPLICATE
        if offset != self.cursor + 1:
            return EventAdmission.GAP
        admission = EventAdmission.QUEUED
        if self._full(len(frame)):
            if self._coalesce():
                admission = EventAdmission.COALESCED
            if self._full(len(frame)):
                self.close(CloseCode.SLOW_CONSUMER, "outbound queue full; resume from history")
                return EventAdmission.OVERFLOW
        self.cursor = offset
        self._push(_Queued(frame, event, offset))
        return admission

    def has_room(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes fits in the outbound queue right now."""
        return not self._full(size)

    def _full(self, incoming: int) -> bool:
        return (
            len(self._outbound) >= self.limits.queue_events
            or self._outbound_bytes + incoming > self.limits.queue_bytes
        )

    def _coalesce(self) -> bool:
        """Merge runs of adjacent queued deltas of the same run into one frame each.

        The merged frame keeps the last delta's ``offset`` and ``seq``, concatenates
        the texts, and says in ``data.coalesced_from`` the first offset it stands for.
        Lifecycle and tool events are never merged or dropped. Returns whether
        anything was merged.
        """
        merged: deque[_Queued] = deque()
        changed = False
        for entry in self._outbound:
            previous = merged[-1] if merged else None
            if (
                previous is not None
                and _is_delta(previous.event)
                and _is_delta(entry.event)
                and previous.event.run_id == entry.event.run_id  # type: ignore[union-attr]
            ):
                merged[-1] = _merge(previous, entry)
                changed = True
                self.coalesced += 1
            else:
                merged.append(entry)
        if changed:
            self._outbound = merged
            self._outbound_bytes = sum(len(entry.frame) for entry in merged)
        return changed

    def _push(self, entry: _Queued) -> None:
        self._outbound.append(entry)
        self._outbound_bytes += len(entry.frame)

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
        frames = [entry.frame for entry in self._outbound]
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
