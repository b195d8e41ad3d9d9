"""Wire protocol v1 as types: the one event envelope, its payloads, and every frame.

Pure and synchronous: no I/O, no clock (callers pass ``ts``). Frames are
``msgspec`` structs; :func:`encode` turns any of them into the JSON bytes of one
text frame and :func:`decode_client_frame` parses and validates a client frame.

The envelope (``type, offset, run_id, thread_id, seq, ts, data``) is built in one
place, :func:`encode_envelope`, from an :class:`Event` and the offset the engine
assigned. Nothing else builds envelopes.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Generic, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from runwire.exceptions import EventRejected

__all__ = [
    "BEARER_PROTOCOL_PREFIX",
    "CRITICAL_EVENT_TYPES",
    "EVENT_TYPES",
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
    "TERMINAL_EVENT_TYPES",
    "Ack",
    "AgentCompleted",
    "AgentError",
    "AgentMessageDelta",
    "AgentStarted",
    "AgentThinking",
    "Cancel",
    "ClientFrame",
    "Connected",
    "EngineStatus",
    "Envelope",
    "GetRun",
    "GetRuns",
    "ErrorFrame",
    "Event",
    "EventData",
    "Limits",
    "MAX_RUNS_PAGE",
    "Ping",
    "Pong",
    "Refresh",
    "Refreshed",
    "Resume",
    "ResumeFailed",
    "Resumed",
    "Runs",
    "ToolCompleted",
    "TokenExpiring",
    "ToolExecuting",
    "UserMessage",
    "decode_client_frame",
    "decode_envelope",
    "encode",
    "encode_envelope",
    "encode_envelope_checked",
    "event_from_frame",
]

PROTOCOL_VERSION: Final = 1

SUBPROTOCOL: Final = "runwire.v1"
"""The WebSocket subprotocol of wire protocol v1 (selected when offered)."""
BEARER_PROTOCOL_PREFIX: Final = "bearer."
"""Browsers offer ``bearer.<jwt>`` as a second subprotocol to carry the token."""

# ---------------------------------------------------------------------------
# Event payloads (the ``data`` of an envelope)
# ---------------------------------------------------------------------------


class AgentStarted(Struct, frozen=True, gc=False):
    """``agent_started``: always the first event of a run."""

    agent: str
    input: str


class AgentThinking(Struct, frozen=True, gc=False):
    """``agent_thinking``: a step of the agent's reasoning, shown to the user."""

    text: str


class ToolExecuting(Struct, frozen=True, gc=False):
    """``tool_executing``: a tool call began; its ``tool_completed`` always follows."""

    call_id: str
    tool: str
    args: dict[str, Any]


class ToolCompleted(Struct, frozen=True, omit_defaults=True, gc=False):
    """``tool_completed``: ``result`` when ``ok``, ``error`` (a safe message) when not."""

    call_id: str
    tool: str
    ok: bool
    duration_ms: float
    result: Any | UnsetType = UNSET
    error: str | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.ok and self.error is not UNSET:
            raise ValueError("a successful tool call has no error")
        if not self.ok and (self.result is not UNSET or self.error is UNSET):
            raise ValueError("a failed tool call has an error and no result")


class AgentMessageDelta(Struct, frozen=True, omit_defaults=True, gc=False):
    """``agent_message_delta``: the next piece of the streamed answer.

    ``coalesced_from`` is set only on a frame that merged the deltas at offsets
    ``coalesced_from`` to its own ``offset`` for a slow connection.
    """

    text: str
    coalesced_from: int | UnsetType = UNSET


class AgentCompleted(Struct, frozen=True, gc=False):
    """``agent_completed``: terminal; ``status`` is ``completed`` or ``cancelled``."""

    output: str
    status: Literal["completed", "cancelled"]


class AgentError(Struct, frozen=True, gc=False):
    """``agent_error``: terminal failure with a stable ``code`` and a safe ``message``."""

    code: str
    message: str


EventData = (
    AgentStarted
    | AgentThinking
    | ToolExecuting
    | ToolCompleted
    | AgentMessageDelta
    | AgentCompleted
    | AgentError
)

EVENT_TYPES: Final[dict[type[Struct], str]] = {
    AgentStarted: "agent_started",
    AgentThinking: "agent_thinking",
    ToolExecuting: "tool_executing",
    ToolCompleted: "tool_completed",
    AgentMessageDelta: "agent_message_delta",
    AgentCompleted: "agent_completed",
    AgentError: "agent_error",
}
"""Payload class to wire ``type``: the one list of event types."""

CRITICAL_EVENT_TYPES: Final = (
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
)
"""The five critical events: never removed, never renamed."""

TERMINAL_EVENT_TYPES: Final = frozenset({"agent_completed", "agent_error"})


class Event(Struct, frozen=True, gc=False):
    """One event of a run, before the engine gives it its place in the user's stream.

    Events and their payloads are not tracked by the cyclic garbage collector
    (``gc=False``): they hold only JSON values and never form cycles, and a gateway
    keeps up to ``history_max_events`` of them per user, which would otherwise make
    every full collection walk the whole history (measured: 75-264 ms pauses).
    """

    type: str
    run_id: str
    thread_id: str
    seq: int
    ts: int
    data: EventData

    @classmethod
    def of(cls, data: EventData, *, run_id: str, thread_id: str, seq: int, ts: int) -> Event:
        """Build an event whose ``type`` is derived from its payload class."""
        return cls(EVENT_TYPES[type(data)], run_id, thread_id, seq, ts, data)

    @property
    def is_terminal(self) -> bool:
        """Whether this event ends its run."""
        return self.type in TERMINAL_EVENT_TYPES


DataT = TypeVar("DataT")


class Envelope(Struct, Generic[DataT], frozen=True):
    """The one event envelope on the wire. ``ts`` is Unix time in milliseconds.

    Encoded as ``Envelope[EventData]``; decoded by clients as ``Envelope[dict]``.
    """

    type: str
    offset: int
    run_id: str
    thread_id: str
    seq: int
    ts: int
    data: DataT


# ---------------------------------------------------------------------------
# Server frames other than events
# ---------------------------------------------------------------------------


class Limits(Struct, frozen=True):
    """The limits a client must respect, announced in ``connected``."""

    max_frame_bytes: int
    max_message_chars: int
    messages_per_s: float
    max_concurrent_runs: int


class Connected(Struct, frozen=True, omit_defaults=True, tag="connected", tag_field="type"):
    """First frame of every authenticated connection.

    ``expires_at`` is the token's ``exp`` (Unix seconds): the socket closes with 4401
    then unless a ``refresh`` frame replaces the token. Absent only when the
    connection was opened without a token lifetime (embedding code).
    """

    connection_id: str
    user_id: str
    epoch: str
    offset: int
    protocol: int
    limits: Limits
    expires_at: int | None = None


class Ack(Struct, frozen=True, tag="ack", tag_field="type"):
    """Reply to ``user_message``: the run it started (or already started, on a retry)."""

    id: str
    run_id: str
    thread_id: str


class Resumed(Struct, frozen=True, tag="resumed", tag_field="type"):
    """Replay is complete: events ``from`` (exclusive) to ``to`` (inclusive) were sent."""

    epoch: str
    from_: int = msgspec.field(name="from")
    to: int = 0


class ResumeFailed(Struct, frozen=True, tag="resume_failed", tag_field="type"):
    """Resume impossible (``epoch_changed``, ``out_of_window``, ``invalid_offset``)."""

    reason: str
    epoch: str
    offset: int


class EngineStatus(Struct, frozen=True, tag="engine_status", tag_field="type"):
    """The engine became ``unavailable`` (publishing fails; the socket stays open) or
    ``available`` again (missed events within the history window follow, in order)."""

    state: Literal["available", "unavailable"]


class Runs(Struct, frozen=True, tag="runs", tag_field="type"):
    """Reply to ``get_runs`` / ``get_run``: run snapshots (as ``GET /api/runs``), any node.

    ``more`` says that older runs exist than the oldest in ``runs``: ask again with
    ``before`` = its ``run_id``.
    """

    id: str
    runs: list[Any]
    more: bool = False


class Pong(Struct, frozen=True, tag="pong", tag_field="type"):
    """Reply to ``ping``."""

    id: str


class TokenExpiring(Struct, frozen=True, tag="token_expiring", tag_field="type"):
    """The connection's token runs out at ``expires_at`` (Unix seconds): send ``refresh``."""

    expires_at: int


class Refreshed(Struct, frozen=True, tag="refreshed", tag_field="type"):
    """Reply to ``refresh``: the new token is in force until ``expires_at``."""

    id: str | None
    expires_at: int


class ErrorFrame(Struct, frozen=True, tag="error", tag_field="type"):
    """An error that keeps the connection open; ``ref`` is the client frame's ``id``."""

    code: str
    message: str
    ref: str | None = None


# ---------------------------------------------------------------------------
# Client frames
# ---------------------------------------------------------------------------

ClientId = Annotated[str, Meta(min_length=1, max_length=128)]
WireId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


class UserMessage(Struct, frozen=True, tag="user_message", tag_field="type"):
    """Start a run. ``id`` is the client's idempotency key."""

    id: ClientId
    content: str
    thread_id: WireId | None = None


class Resume(Struct, frozen=True, tag="resume", tag_field="type"):
    """Replay every event after ``offset`` of stream ``epoch``."""

    epoch: str
    offset: Annotated[int, Meta(ge=0)]


class Cancel(Struct, frozen=True, tag="cancel", tag_field="type"):
    """Cancel one of the user's own runs."""

    run_id: Annotated[str, Meta(max_length=128)]
    id: ClientId | None = None


class Ping(Struct, frozen=True, tag="ping", tag_field="type"):
    """Application-level ping; answered with ``pong``."""

    id: ClientId


MAX_RUNS_PAGE = 100
"""Most run snapshots in one ``runs`` reply."""


class GetRuns(Struct, frozen=True, tag="get_runs", tag_field="type"):
    """Ask for the user's run snapshots (of one thread, if given); answered by ``runs``.

    The newest ``limit`` runs (older than run ``before``, if given), oldest first.
    """

    id: ClientId
    thread_id: WireId | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_RUNS_PAGE)] = MAX_RUNS_PAGE
    before: Annotated[str, Meta(max_length=128)] | None = None


class GetRun(Struct, frozen=True, tag="get_run", tag_field="type"):
    """Ask for one of the user's run snapshots; answered by ``runs`` (0 or 1 run)."""

    id: ClientId
    run_id: Annotated[str, Meta(max_length=128)]


class Refresh(Struct, frozen=True, tag="refresh", tag_field="type"):
    """Replace the connection's token (same ``sub``); answered by ``refreshed`` or 4401.

    ``token`` is a credential: it is never logged, echoed or stored.
    """

    token: Annotated[str, Meta(min_length=1)]
    id: ClientId | None = None

    def __repr__(self) -> str:
        return f"Refresh(token=<redacted>, id={self.id!r})"


ClientFrame = UserMessage | Resume | Cancel | Ping | GetRuns | GetRun | Refresh

CLIENT_FRAME_TYPES: Final = frozenset(
    {"user_message", "resume", "cancel", "ping", "get_runs", "get_run", "refresh"}
)

_encoder = msgspec.json.Encoder()
_client_decoder: msgspec.json.Decoder[ClientFrame] = msgspec.json.Decoder(ClientFrame)
_envelope_decoder = msgspec.json.Decoder(Envelope[dict[str, Any]])


def encode(frame: Struct) -> bytes:
    """The JSON bytes of one server frame (``type`` first)."""
    return _encoder.encode(frame)


def encode_envelope(event: Event, offset: int) -> bytes:
    """The one place an envelope is built: ``event`` at ``offset`` in its user's stream."""
    return _encoder.encode(
        Envelope(event.type, offset, event.run_id, event.thread_id, event.seq, event.ts, event.data)
    )


def encode_envelope_checked(event: Event, offset: int, max_bytes: int) -> bytes:
    """:func:`encode_envelope`, for engines: fails cleanly instead of half-way.

    Engines call it *before* the event takes its offset, so an event that cannot be
    encoded leaves no gap in the user's stream.

    Raises:
        EventRejected: the data is not JSON-encodable, or the frame is over
            ``max_bytes``.
    """
    try:
        frame = encode_envelope(event, offset)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EventRejected(f"{event.type} could not be encoded: {_encode_failure(exc)}") from None
    if len(frame) > max_bytes:
        raise EventRejected(
            f"{event.type} is {len(frame):,} bytes, over max_event_bytes ({max_bytes:,})"
        )
    return frame


def _encode_failure(exc: BaseException) -> str:
    """A short, safe description of why msgspec refused a value."""
    if isinstance(exc, RecursionError):
        return "it nests too deeply or contains a cycle"
    if isinstance(exc, UnicodeEncodeError):
        return "text contains characters that are not valid Unicode (lone surrogates)"
    message = str(exc)
    if "integer string conversion" in message or isinstance(exc, OverflowError):
        return "an integer has too many digits"
    return message[:200]


def decode_envelope(payload: bytes | str) -> Envelope[dict[str, Any]]:
    """Parse an envelope (used by clients and the Redis engine)."""
    return _envelope_decoder.decode(payload)


_PAYLOADS: Final[dict[str, type[Any]]] = {name: cls for cls, name in EVENT_TYPES.items()}


def event_from_frame(frame: bytes) -> tuple[int, Event]:
    """Rebuild ``(offset, Event)`` from an encoded envelope (read back from a store)."""
    envelope = decode_envelope(frame)
    data: EventData = msgspec.convert(envelope.data, _PAYLOADS[envelope.type])
    event = Event(
        envelope.type, envelope.run_id, envelope.thread_id, envelope.seq, envelope.ts, data
    )
    return envelope.offset, event


def decode_client_frame(payload: bytes | str) -> ClientFrame:
    """Parse and validate one client frame.

    Raises:
        msgspec.DecodeError: not JSON.
        msgspec.ValidationError: JSON, but not a valid v1 client frame; the message
            names the offending field.
    """
    return _client_decoder.decode(payload)
