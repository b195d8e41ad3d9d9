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

__all__ = [
    "CONTROL_RESERVE_BYTES",
    "CONTROL_RESERVE_FRAMES",
    "MAX_NESTING",
    "EventAdmission",
    "Session",
    "SessionLimits",
    "State",
]

CONTROL_RESERVE_FRAMES = 16
"""Control frames (replies) may exceed ``outbound_queue_events`` by this many."""
CONTROL_RESERVE_BYTES = 32_768
"""Control frames may exceed ``outbound_queue_bytes`` by this many bytes."""
MAX_NESTING = 32
"""Deepest nesting of arrays and objects accepted in a client frame (4400 beyond)."""


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


_OPEN = State.OPEN
_QUEUED = EventAdmission.QUEUED
_COALESCED = EventAdmission.COALESCED
_DUPLICATE = EventAdmission.DUPLICATE
_GAP = EventAdmission.GAP
_OVERFLOW = EventAdmission.OVERFLOW
_CLOSED = EventAdmission.CLOSED


def _nests_deeper(value: object, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest more than ``limit`` levels deep.

    Iterative (no recursion), linear in the number of values; scalars cost nothing.
    """
    level: list[object] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[object] = []
        for item in level:
            if isinstance(item, dict):
                below.extend(child for child in item.values() if isinstance(child, dict | list))
            elif isinstance(item, list):
                below.extend(child for child in item if isinstance(child, dict | list))
        level = below
    return False


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode()
    except UnicodeDecodeError:
        return False
    return True


def _is_delta(event: Event | None) -> bool:
    return event is not None and type(event.data) is AgentMessageDelta


def _merge(first: Event, first_offset: int, second: Event, offset: int) -> tuple[bytes, Event]:
    """One delta frame at ``offset`` standing for ``first``'s offsets through ``offset``."""
    head, tail = first.data, second.data
    assert isinstance(head, AgentMessageDelta) and isinstance(tail, AgentMessageDelta)
    start = first_offset if head.coalesced_from is msgspec.UNSET else head.coalesced_from
    event = msgspec.structs.replace(
        second, data=AgentMessageDelta(head.text + tail.text, coalesced_from=start)
    )
    return events.encode_envelope(event, offset), event


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

    __slots__ = (
        "_events",
        "_frames",
        "_max_bytes",
        "_max_events",
        "_offsets",
        "_outbound_bytes",
        "_received",
        "_tokens",
        "_tokens_at",
        "close_code",
        "close_reason",
        "coalesced",
        "cursor",
        "limits",
        "state",
    )

    def __init__(self, limits: SessionLimits, *, cursor: int, now: float) -> None:
        self.limits = limits
        self.state = State.CONNECTING
        self.cursor = cursor
        self.close_code: int | None = None
        self.close_reason = ""
        self._received: list[ClientFrame] | None = None
        """Valid frames not yet taken (None when there are none: an idle session
        holds no list of its own for the collector to walk)."""
        # The outbound queue, as three parallel lists (no object per queued frame):
        # the frame, its event (None for control frames and unmergeable events) and
        # its offset (0 for control frames). ``_frames`` is None while nothing is
        # queued (it is handed over whole by data_to_send).
        self._frames: list[bytes] | None = None
        self._events: list[Event | None] = []
        self._offsets: list[int] = []
        self._max_events = limits.queue_events
        self._max_bytes = limits.queue_bytes
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
        1009 too big, 4429 over the rate limit, 1007 not UTF-8, 4400 not a JSON object.
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
            # msgspec rejects invalid UTF-8 too; telling it apart costs only on this path.
            if isinstance(payload, bytes) and not _is_utf8(payload):
                self.close(CloseCode.INVALID_PAYLOAD, "text frame is not valid UTF-8")
            else:
                self.close(CloseCode.PROTOCOL_VIOLATION, "frame is not valid JSON")
            return
        except RecursionError:
            self.close(CloseCode.PROTOCOL_VIOLATION, f"frame nests deeper than {MAX_NESTING}")
            return
        if _nests_deeper(raw, MAX_NESTING):
            self.close(CloseCode.PROTOCOL_VIOLATION, f"frame nests deeper than {MAX_NESTING}")
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
        received = self._received
        if received is None:
            self._received = [frame]
        else:
            received.append(frame)

    def frames_received(self) -> list[ClientFrame]:
        """The valid client frames received since the last call, in order."""
        received, self._received = self._received, None
        return received if received is not None else []

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
        # before any error queued while connecting
        self._frames = [frame, *(self._frames or ())]
        self._events.insert(0, None)
        self._offsets.insert(0, 0)
        self._outbound_bytes += len(frame)

    def send_frame(self, frame: msgspec.Struct) -> bool:
        """Queue a control frame (ack, pong, error, resumed, runs...).

        Control frames count against the same outbound queue as events, with a small
        reserve on top (:data:`CONTROL_RESERVE_FRAMES`, :data:`CONTROL_RESERVE_BYTES`)
        so that ``resumed`` after a replay that filled the queue still fits. A client
        that does not read is closed with 4409 whatever it asks for: the frame is not
        queued and ``False`` is returned (also when the session is closing).
        """
        if self.state > State.OPEN:
            return False
        encoded = events.encode(frame)
        size = len(encoded)
        if self._control_full(size) and (not self._coalesce() or self._control_full(size)):
            self.close(CloseCode.SLOW_CONSUMER, "outbound queue full; resume from history")
            return False
        self._append(encoded)
        self._events.append(None)
        self._offsets.append(0)
        self._outbound_bytes += size
        return True

    def _control_full(self, incoming: int) -> bool:
        return (
            self.pending >= self._max_events + CONTROL_RESERVE_FRAMES
            or self._outbound_bytes + incoming > self._max_bytes + CONTROL_RESERVE_BYTES
        )

    def send_error(self, code: str, message: str, ref: str | None = None) -> bool:
        """Queue an ``error`` frame that keeps the connection open (see :meth:`send_frame`)."""
        return self.send_frame(ErrorFrame(code, message, ref))

    def send_event(self, offset: int, frame: bytes, event: Event | None = None) -> EventAdmission:
        """Queue the event at ``offset`` if it is the next one this connection needs.

        Events are accepted strictly in offset order, each once. When the queue is
        full, adjacent queued ``agent_message_delta`` frames of one run are merged
        first (``event`` must be given for a frame to be mergeable); if it is still
        full, the session requests a close with 4409 (the client resumes from history).
        """
        if self.state is not _OPEN:
            return _CLOSED
        cursor = self.cursor
        if offset != cursor + 1:
            return _DUPLICATE if offset <= cursor else _GAP
        size = len(frame)
        admission = _QUEUED
        frames = self._frames
        if (
            frames is not None and len(frames) >= self._max_events
        ) or self._outbound_bytes + size > self._max_bytes:  # self._full(size), inline
            if self._coalesce():
                admission = _COALESCED
            if self._full(size):
                self.close(CloseCode.SLOW_CONSUMER, "outbound queue full; resume from history")
                return _OVERFLOW
        self.cursor = offset
        frames = self._frames
        if frames is None:
            self._frames = [frame]
        else:
            frames.append(frame)
        self._events.append(event)
        self._offsets.append(offset)
        self._outbound_bytes += size
        return admission

    def has_room(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes fits in the outbound queue right now."""
        return not self._full(size)

    def _full(self, incoming: int) -> bool:
        frames = self._frames
        return (
            frames is not None and len(frames) >= self._max_events
        ) or self._outbound_bytes + incoming > self._max_bytes

    def _append(self, frame: bytes) -> None:
        frames = self._frames
        if frames is None:
            self._frames = [frame]
        else:
            frames.append(frame)

    def _coalesce(self) -> bool:
        """Merge runs of adjacent queued deltas of the same run into one frame each.

        The merged frame keeps the last delta's ``offset`` and ``seq``, concatenates
        the texts, and says in ``data.coalesced_from`` the first offset it stands for.
        Lifecycle and tool events are never merged or dropped. Returns whether
        anything was merged.
        """
        frames: list[bytes] = []
        queued: list[Event | None] = []
        offsets: list[int] = []
        changed = False
        queued_frames = self._frames or ()
        for frame, event, offset in zip(queued_frames, self._events, self._offsets, strict=True):
            previous = queued[-1] if queued else None
            if (
                previous is not None
                and event is not None
                and _is_delta(previous)
                and _is_delta(event)
                and previous.run_id == event.run_id
            ):
                frames[-1], queued[-1] = _merge(previous, offsets[-1], event, offset)
                offsets[-1] = offset
                changed = True
                self.coalesced += 1
            else:
                frames.append(frame)
                queued.append(event)
                offsets.append(offset)
        if changed:
            self._frames, self._events, self._offsets = frames, queued, offsets
            self._outbound_bytes = sum(map(len, frames))
        return changed

    @property
    def pending(self) -> int:
        """Frames queued and not yet taken by :meth:`data_to_send`."""
        frames = self._frames
        return len(frames) if frames is not None else 0

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet taken by :meth:`data_to_send`."""
        return self._outbound_bytes

    def data_to_send(self) -> list[bytes]:
        """Take every queued frame, oldest first (one text frame each)."""
        frames = self._frames
        self._frames = None
        self._events.clear()
        self._offsets.clear()
        self._outbound_bytes = 0
        return frames if frames is not None else []

    # -- closing ----------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Request a close (``code``: a :class:`CloseCode`, or any 4000-4999); the first
        request wins. Queued frames are discarded."""
        if self.state >= State.CLOSING:
            return
        self.state = State.CLOSING
        self.close_code = code
        self.close_reason = reason
        self._clear_outbound()

    def connection_lost(self) -> None:
        """The transport is gone; nothing more will be sent or received."""
        self.state = State.CLOSED
        self._clear_outbound()
        self._received = None

    def _clear_outbound(self) -> None:
        self._frames = None
        self._events.clear()
        self._offsets.clear()
        self._outbound_bytes = 0

    def describe(self) -> dict[str, Any]:
        """Counters for debugging and metrics."""
        return {"state": self.state.name, "cursor": self.cursor, "pending": self.pending}
