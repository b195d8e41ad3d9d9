"""runwire: the one WebSocket gateway between AI agents and the people who talk to them.

Public API (import everything from here)::

    from runwire import Gateway, Settings, Run, tool

Names are loaded on first use: ``import runwire`` (or ``runwire.protocol``,
``runwire.events``, ``runwire.client``) does not import the server's dependencies
(picows, PyJWT, pydantic, prometheus-client); ``runwire.Gateway`` does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Agent": "runwire.agents.base",
    "AuthError": "runwire.exceptions",
    "CRITICAL_EVENT_TYPES": "runwire.events",
    "CloseCode": "runwire.exceptions",
    "ConfigError": "runwire.exceptions",
    "ConnectionClosed": "runwire.exceptions",
    "EngineError": "runwire.exceptions",
    "Event": "runwire.events",
    "EventRejected": "runwire.exceptions",
    "Gateway": "runwire.app",
    "LimitError": "runwire.exceptions",
    "Run": "runwire.agents.base",
    "RunClosedError": "runwire.exceptions",
    "RunwireError": "runwire.exceptions",
    "Settings": "runwire.config",
    "ToolCall": "runwire.agents.base",
    "ToolCallError": "runwire.exceptions",
    "ToolError": "runwire.agents.base",
    "WebSocketManager": "runwire.manager",
    "create_manager": "runwire.manager",
    "current_run": "runwire.agents.base",
    "load_settings": "runwire.config",
    "tool": "runwire.agents.base",
}
"""Public name to the module that defines it."""

__all__ = [
    "Agent",
    "AuthError",
    "CRITICAL_EVENT_TYPES",
    "CloseCode",
    "ConfigError",
    "ConnectionClosed",
    "EngineError",
    "Event",
    "EventRejected",
    "Gateway",
    "LimitError",
    "Run",
    "RunClosedError",
    "RunwireError",
    "Settings",
    "ToolCall",
    "ToolCallError",
    "ToolError",
    "WebSocketManager",
    "__version__",
    "create_manager",
    "current_run",
    "load_settings",
    "tool",
]
"""Pinned by tests/test_public_api.py: every name of ``_EXPORTS``, and the version."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'runwire' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from runwire.agents.base import Agent, Run, ToolCall, ToolError, current_run, tool
    from runwire.app import Gateway
    from runwire.config import Settings, load_settings
    from runwire.events import CRITICAL_EVENT_TYPES, Event
    from runwire.exceptions import (
        AuthError,
        CloseCode,
        ConfigError,
        ConnectionClosed,
        EngineError,
        EventRejected,
        LimitError,
        RunClosedError,
        RunwireError,
        ToolCallError,
    )
    from runwire.manager import WebSocketManager, create_manager
