"""Every error runwire raises, and the close codes it sends.

::

    RunwireError                   base: catch-all for library users
    ├── ConfigError                invalid settings, raised at start-up
    ├── AuthError                  no, forged, expired or unacceptable token (close 4401)
    ├── ProtocolError              a client broke wire protocol v1 (close 4400)
    │   └── MessageTooBigError     a client frame over ``max_frame_bytes`` (close 1009)
    ├── LimitError                 a bound was hit; carries the client-facing ``code``
    ├── EngineError                the engine failed to publish or read
    ├── EventRejected              an event cannot be encoded or is too big; nothing stored
    ├── RunClosedError             an agent emitted after its run ended
    ├── ToolCallError              a tool call used out of turn (id in use, end of a call not open)
    └── ConnectionClosed           the peer left; carries ``code`` and ``reason``

:class:`CloseCode` is the one table of close codes, each with its reconnect advice.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AuthError",
    "CloseCode",
    "ConfigError",
    "ConnectionClosed",
    "EngineError",
    "EventRejected",
    "LimitError",
    "MessageTooBigError",
    "ProtocolError",
    "RunClosedError",
    "RunwireError",
    "ToolCallError",
    "close_reason",
    "should_reconnect",
]

MAX_CLOSE_REASON_BYTES = 120
"""The longest close reason runwire sends, in UTF-8 bytes (RFC 6455 allows 123)."""


def close_reason(reason: str) -> str:
    """``reason`` cut to :data:`MAX_CLOSE_REASON_BYTES` of UTF-8 on a character
    boundary (a cut inside a character makes the close frame invalid: it is not
    sent)."""
    encoded = reason.encode()
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return encoded[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


class CloseCode(IntEnum):
    """WebSocket close codes runwire sends. See docs/protocol.md for the advice table."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    """RFC 6455 framing broken (RSV bits, bad opcode, bad close code...); not 4400."""
    INVALID_PAYLOAD = 1007
    """A text frame (or close reason) that is not valid UTF-8."""
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    PROTOCOL_VIOLATION = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    SLOW_CONSUMER = 4409
    RATE_LIMITED = 4429


_RECONNECT: dict[int, bool] = {
    1003: False,  # unsupported data
    1008: False,  # policy violation
    CloseCode.NORMAL: False,
    CloseCode.GOING_AWAY: True,
    CloseCode.PROTOCOL_ERROR: False,  # framing: reconnecting would repeat it
    CloseCode.INVALID_PAYLOAD: False,
    CloseCode.MESSAGE_TOO_BIG: False,
    CloseCode.INTERNAL_ERROR: True,
    CloseCode.PROTOCOL_VIOLATION: False,
    CloseCode.UNAUTHORIZED: False,
    CloseCode.FORBIDDEN: False,
    CloseCode.SLOW_CONSUMER: True,
    CloseCode.RATE_LIMITED: True,
}


def should_reconnect(code: int) -> bool:
    """Whether a client should reconnect (and resume) after a close with ``code``.

    Unknown codes and abnormal closures (1006) are treated as transient.
    """
    return _RECONNECT.get(code, True)


class RunwireError(Exception):
    """Base class of every runwire error."""


class ConfigError(RunwireError):
    """Invalid settings; the message names the environment variable to fix."""


class AuthError(RunwireError):
    """The token is missing, forged, expired or otherwise unacceptable.

    ``reason`` is safe to send to the client and to log; it never contains the token.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProtocolError(RunwireError):
    """A client frame broke wire protocol v1; the connection closes with ``close_code``."""

    close_code: CloseCode = CloseCode.PROTOCOL_VIOLATION


class MessageTooBigError(ProtocolError):
    """A client frame is larger than ``max_frame_bytes``."""

    close_code = CloseCode.MESSAGE_TOO_BIG


class LimitError(RunwireError):
    """A configured bound was reached; ``code`` is the client-facing error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EngineError(RunwireError):
    """The engine could not publish or read history (for example Redis is down)."""


class EventRejected(RunwireError):
    """An event cannot become a frame: its data is not JSON-encodable (an object, an
    integer of more than 4,300 digits, a cycle, a lone surrogate...) or its envelope
    is over ``max_event_bytes``. Raised before the event takes an offset, so the
    user's stream has no gap; ``reason`` is safe to show the user.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RunClosedError(RunwireError):
    """An agent tried to emit after its run reached its terminal event."""


class ToolCallError(RunwireError):
    """A tool call was used against the run rules: a call id that is not a 1-128
    character string or was already used in the run, or an end (``complete``,
    ``fail``, :meth:`Run.tool_call <runwire.agents.base.Run.tool_call>`) for a call
    that is not open. Raised before anything is emitted."""


class ConnectionClosed(RunwireError):
    """The WebSocket closed; ``code`` and ``reason`` are what the peer said."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
