"""The context runwire's own loop callbacks run in.

``loop.call_soon``, ``loop.call_at`` and ``Future.add_done_callback`` copy the
caller's context for every callback they schedule unless given one: a tracked
object each, which lives as long as the callback is pending (a token timer's lasts
the socket's life). Callbacks that read no context variable share
:data:`NO_CONTEXT` instead. Agents' code never runs in it: a run's task has its own
context (``runwire.agents.base`` keeps the current run there).
"""

from __future__ import annotations

import contextvars

__all__ = ["NO_CONTEXT"]

NO_CONTEXT = contextvars.Context()
"""One empty context, shared by every callback that reads no context variable."""
