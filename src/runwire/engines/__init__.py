"""Engines: the port (:class:`Engine`) and the in-memory adapter.

The Redis adapter is the :mod:`runwire.redis` package.
"""

from __future__ import annotations

from runwire.engines.base import (
    Engine,
    ResumeFailure,
    ResumeFailureReason,
    StoredEvent,
    StreamPosition,
)

__all__ = ["Engine", "ResumeFailure", "ResumeFailureReason", "StoredEvent", "StreamPosition"]
