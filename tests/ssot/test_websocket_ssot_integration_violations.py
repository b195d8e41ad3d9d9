"""Agents talk to users through the run API only; one envelope; one manager on the golden path."""

from __future__ import annotations

import asyncio
import gc
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from runwire import CRITICAL_EVENT_TYPES, WebSocketManager
from runwire.client import Client
from runwire.exceptions import ConnectionClosed
from runwire.ids import UserId
from tests.helpers import connect, running_gateway, token_for
from tests.ssot._support import (
    PACKAGE,
    Frame,
    after_future_import,
    assert_none,
    broken_tree,
    calls_of,
    frames_until_terminal,
    importers_of,
    settle,
    socket_writes,
)

# -- statically: one emit path -------------------------------------------------------

ENGINE_MODULES = ("runwire/engines/", "runwire/redis/engine.py:")
"""Where engine adapters live: they build envelopes before taking an offset."""

SOCKET_WRITERS = {
    "runwire/server.py",  # the server's I/O adapter (picows transports)
    "runwire/client.py",  # the Python client, on the other end of the wire
    "runwire/manager.py:WebSocketManager.flush",  # the manager's one write, through the port
    # The standalone front door's HTTP 408 to a request whose headers never came: a
    # fixed HTTP answer on a connection that carries no socket (never an event).
    "runwire/front.py:_HttpProtocol._headers_too_slow",
    # ... its 431 to a request head over the bounds, and the HTTP response of a
    # request whose body is still unread, passed on before the connection closes.
    "runwire/front.py:_HttpProtocol._refuse",
    "runwire/front.py:_LingeringClose.write",
    # The Redis engine's own connections to Redis (commands, subscriptions): never a
    # client's socket.
    "runwire/redis/wire.py",
}
AGENT_FORBIDDEN = [
    "runwire.manager",
    "runwire.server",
    "runwire.engines",
    "runwire.app",
    "runwire.handlers",
    "runwire.client",
    "picows",
    "websockets",
]


def emit_path_violations(package: Path) -> list[str]:
    """Everything that builds envelopes or touches sockets outside the one path."""
    problems = []
    for builder in ("encode_envelope", "encode_envelope_checked"):
        for call in calls_of(package, builder):
            # The engines (before an offset is taken), delta coalescing, and the
            # checked variant beside the builder itself.
            if not call.startswith((*ENGINE_MODULES, "runwire/protocol.py:", "runwire/events.py:")):
                problems.append(f"{builder} called in {call}")
    for call in calls_of(package, "Envelope"):
        if not call.startswith("runwire/events.py:"):
            problems.append(f"Envelope constructed in {call}")
    for call in socket_writes(package):
        if call not in SOCKET_WRITERS and call.split(":")[0] not in SOCKET_WRITERS:
            problems.append(f"socket write in {call}")
    for label in importers_of(package, "picows"):
        if label != "runwire/server.py":
            problems.append(f"picows imported in {label}")
    for module in AGENT_FORBIDDEN:
        problems += [
            f"{label} imports {module}"
            for label in importers_of(package, module)
            if label.startswith("runwire/agents/")
        ]
    return sorted(problems)


def test_unified_websocket_agent_communication() -> None:
    assert_none(emit_path_violations(PACKAGE))
    # The detectors see the real path (so an empty result above means something).
    assert calls_of(PACKAGE, "Envelope") == ["runwire/events.py:encode_envelope"]
    assert calls_of(PACKAGE, "encode_envelope") == [
        "runwire/events.py:encode_envelope_checked",
        "runwire/protocol.py:_merge",
    ]
    assert any(c.startswith(ENGINE_MODULES) for c in calls_of(PACKAGE, "encode_envelope_checked"))
    assert "runwire/manager.py:WebSocketManager.flush" in socket_writes(PACKAGE)
    assert any(c.startswith("runwire/server.py:") for c in socket_writes(PACKAGE))
    assert importers_of(PACKAGE, "picows") == ["runwire/server.py"]


def test_emit_path_check_fails_on_a_second_emitter(tmp_path: Path) -> None:
    broken_tree(
        tmp_path,
        {
            "src/runwire/agents/demo.py": after_future_import(
                "from runwire.manager import Connection"
            ),
            "src/runwire/emitter.py": (
                "from runwire.events import Envelope, encode_envelope\n"
                "\n\n"
                "def emit(transport, event, offset):\n"
                "    transport.send(encode_envelope(event, offset))\n"
                "    return Envelope(event.type, offset, '', '', 1, 0, {})\n"
            ),
        },
    )
    assert emit_path_violations(tmp_path / "src" / "runwire") == [
        "Envelope constructed in runwire/emitter.py:emit",
        "encode_envelope called in runwire/emitter.py:emit",
        "runwire/agents/demo.py imports runwire.manager",
        "socket write in runwire/emitter.py:emit",
    ]


# -- the five critical events --------------------------------------------------------

ENVELOPE = ["type", "offset", "run_id", "thread_id", "seq", "ts", "data"]
REQUIRED_DATA = {
    "agent_started": {"agent", "input"},
    "agent_thinking": {"text"},
    "tool_executing": {"call_id", "tool", "args"},
    "tool_completed": {"call_id", "tool", "ok", "duration_ms"},
    "agent_message_delta": {"text"},
    "agent_completed": {"output", "status"},
    "agent_error": {"code", "message"},
}


def check_complete(frame: Frame) -> None:
    assert list(frame) == ENVELOPE, frame
    data = frame["data"]
    assert REQUIRED_DATA[frame["type"]] <= set(data), frame
    if frame["type"] == "tool_completed":
        assert ("result" in data) == data["ok"] and ("error" in data) != data["ok"], frame


async def test_all_five_critical_events_delivery() -> None:
    async with running_gateway() as gateway, AsyncExitStack() as stack:
        tabs = [await stack.enter_async_context(connect(gateway, "alice")) for _ in range(3)]
        ack = await tabs[1].send_message("weather in Paris", thread_id="t1")
        streams = await asyncio.gather(*(frames_until_terminal(t, {ack["run_id"]}) for t in tabs))
        later = await asyncio.gather(*(settle(t) for t in tabs))
    assert later == [[], [], []]
    for frames in streams:
        for frame in frames:
            check_complete(frame)
            assert frame["run_id"] == ack["run_id"] and frame["thread_id"] == "t1"
        types = [f["type"] for f in frames]
        critical = [t for t in types if t in CRITICAL_EVENT_TYPES]
        assert critical == list(CRITICAL_EVENT_TYPES)  # each once, in order
        assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
        started, thinking, executing, completed_tool = (
            next(f["data"] for f in frames if f["type"] == kind)
            for kind in CRITICAL_EVENT_TYPES[:4]
        )
        assert started == {"agent": "scripted_agent", "input": "weather in Paris"}
        assert thinking == {"text": "thinking about weather in Paris"}
        assert executing == {
            "call_id": executing["call_id"],
            "tool": "echo",
            "args": {"text": "weather in Paris"},
        }
        assert completed_tool["call_id"] == executing["call_id"]
        assert completed_tool["ok"] is True and completed_tool["result"] == "WEATHER IN PARIS"
        assert frames[-1]["data"] == {"output": "echo: weather in Paris.", "status": "completed"}
    assert streams[0] == streams[1] == streams[2]  # every tab: the same frames


# -- the golden path through one manager -------------------------------------------


async def test_golden_path_flow_unified_manager() -> None:
    async with running_gateway() as gateway:
        manager = gateway.manager
        # A forged token is refused and never reaches the manager.
        with pytest.raises(ConnectionClosed) as refused:
            async with Client.connect(gateway.ws_url, token_for(gateway.settings, "x") + "x"):
                pass
        assert refused.value.code == 4401
        assert manager.connection_count == 0
        async with (
            connect(gateway, "alice") as tab1,
            connect(gateway, "alice", header_auth=True) as tab2,
            connect(gateway, "bob") as bob,
        ):
            tabs = {tab1, tab2}
            for tab in tabs:
                assert tab.connected["user_id"] == "alice" and tab.connected["protocol"] == 1
            registered = {c.id for c in manager.connections_of(UserId("alice"))}
            assert registered == {t.connected["connection_id"] for t in tabs}
            assert [c.id for c in manager.connections_of(UserId("bob"))] == [
                bob.connected["connection_id"]
            ]
            answers = []
            async for event in tab1.run("what is 6 * 7?"):
                answers.append(event)
            assert [e["type"] for e in answers if e["type"] in CRITICAL_EVENT_TYPES] == list(
                CRITICAL_EVENT_TYPES
            )
            answer = "".join(
                e["data"]["text"] for e in answers if e["type"] == "agent_message_delta"
            )
            assert answer == "echo: what is 6 * 7?." == answers[-1]["data"]["output"]
            mirrored = await frames_until_terminal(tab2, {answers[0]["run_id"]})
            assert mirrored == answers
            assert await settle(bob) == []
            gc.collect()
            alive = [o for o in gc.get_objects() if isinstance(o, WebSocketManager)]
            assert alive == [manager]
            assert manager.connection_count == 3
