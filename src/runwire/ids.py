"""Typed identifiers: a routing key can only be used for what it names.

The system runwire replaces routed events by thread id where a user id was meant;
distinct ``NewType``s make mypy refuse that mix-up.
"""

from __future__ import annotations

import secrets
from typing import NewType

__all__ = [
    "ConnectionId",
    "Epoch",
    "RunId",
    "ThreadId",
    "UserId",
    "new_connection_id",
    "new_epoch",
    "new_run_id",
    "new_thread_id",
]

UserId = NewType("UserId", str)
"""The verified ``sub`` of a token; never taken from a message body."""
ConnectionId = NewType("ConnectionId", str)
RunId = NewType("RunId", str)
ThreadId = NewType("ThreadId", str)
Epoch = NewType("Epoch", str)
"""Names one incarnation of a user's stream; offsets are comparable only within it."""


def new_connection_id() -> ConnectionId:
    """A fresh random connection id (``c_`` + 16 hex digits)."""
    return ConnectionId("c_" + secrets.token_hex(8))


def new_run_id() -> RunId:
    """A fresh random run id (``r_`` + 16 hex digits)."""
    return RunId("r_" + secrets.token_hex(8))


def new_thread_id() -> ThreadId:
    """A fresh random thread id (``t_`` + 16 hex digits)."""
    return ThreadId("t_" + secrets.token_hex(8))


def new_epoch() -> Epoch:
    """A fresh random epoch (12 hex digits)."""
    return Epoch(secrets.token_hex(6))
