"""Engines: the port (:class:`Engine`) and its adapters, chosen by URL in one place."""

from __future__ import annotations

from runwire.engines.base import (
    Engine,
    ResumeFailure,
    ResumeFailureReason,
    StoredEvent,
    StreamPosition,
)

__all__ = ["Engine", "ResumeFailure", "ResumeFailureReason", "StoredEvent", "StreamPosition"]
