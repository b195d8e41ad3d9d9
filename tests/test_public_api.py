"""The public API: a pinned ``runwire.__all__``, and light imports for clients."""

from __future__ import annotations

import subprocess
import sys

import pytest

import runwire

PUBLIC = [
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

SERVER_DEPENDENCIES = ("picows", "jwt", "pydantic", "pydantic_settings", "prometheus_client")


def test_all_is_pinned_sorted_and_every_name_resolves() -> None:
    assert runwire.__all__ == PUBLIC
    assert sorted(runwire.__all__) == runwire.__all__
    for name in runwire.__all__:
        assert getattr(runwire, name) is not None, name
    assert runwire.Gateway.__module__ == "runwire.app"
    assert runwire.create_manager.__module__ == "runwire.manager"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Gatway'"):
        _ = runwire.Gatway


@pytest.mark.parametrize(
    "module", ["runwire", "runwire.protocol", "runwire.events", "runwire.client"]
)
def test_protocol_and_clients_import_no_server_dependency(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"print(','.join(n for n in {SERVER_DEPENDENCIES!r} if n in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"import {module} loaded {loaded}"


def test_the_gateway_loads_on_first_use() -> None:
    code = "import sys, runwire\nrunwire.Gateway\nprint('picows' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "True"
