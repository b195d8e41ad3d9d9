"""runwire: the one WebSocket gateway between AI agents and the people who talk to them.

Public API (import everything from here)::

    from runwire import Gateway, Settings, Run, tool
"""

from __future__ import annotations

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
    LimitError,
    ProtocolError,
    RunClosedError,
    RunwireError,
    ToolCallError,
)
from runwire.manager import WebSocketManager

__version__ = "0.1.0"

__all__ = [
    "CRITICAL_EVENT_TYPES",
    "Agent",
    "AuthError",
    "CloseCode",
    "ConfigError",
    "ConnectionClosed",
    "EngineError",
    "Event",
    "Gateway",
    "LimitError",
    "ProtocolError",
    "Run",
    "RunClosedError",
    "RunwireError",
    "Settings",
    "ToolCall",
    "ToolCallError",
    "ToolError",
    "WebSocketManager",
    "__version__",
    "current_run",
    "load_settings",
    "tool",
]
