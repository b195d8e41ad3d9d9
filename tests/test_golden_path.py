"""The golden path over real sockets: one message, the five critical events, the answer."""

from __future__ import annotations

from runwire.events import CRITICAL_EVENT_TYPES
from tests.helpers import collect_run, connect, running_gateway

ENVELOPE_KEYS = ["type", "offset", "run_id", "thread_id", "seq", "ts", "data"]


async def test_golden_path_delivers_every_event_in_one_envelope() -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        assert client.connected["user_id"] == "alice"
        assert client.connected["protocol"] == 1
        ack = await client.send_message("hello", thread_id="t1", message_id="m1")
        assert ack == {"type": "ack", "id": "m1", "run_id": ack["run_id"], "thread_id": "t1"}
        frames = await collect_run(client, ack["run_id"])

    types = [frame["type"] for frame in frames]
    assert types == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_message_delta",
        "agent_message_delta",
        "agent_message_delta",
        "agent_completed",
    ]
    assert [t for t in types if t in CRITICAL_EVENT_TYPES] == list(CRITICAL_EVENT_TYPES)
    start = client.connected["offset"]
    for index, frame in enumerate(frames):
        assert list(frame) == ENVELOPE_KEYS
        assert frame["offset"] == start + index + 1
        assert frame["seq"] == index + 1
        assert frame["thread_id"] == "t1"
        assert frame["run_id"] == ack["run_id"]
    started, thinking, executing, completed_tool = (f["data"] for f in frames[:4])
    assert started == {"agent": "scripted_agent", "input": "hello"}
    assert thinking == {"text": "thinking about hello"}
    assert executing["tool"] == "echo" and executing["args"] == {"text": "hello"}
    assert completed_tool["call_id"] == executing["call_id"]
    assert completed_tool["ok"] is True and completed_tool["result"] == "HELLO"
    assert completed_tool["duration_ms"] >= 0
    assert "".join(f["data"]["text"] for f in frames[4:7]) == "echo: hello."
    assert frames[-1]["data"] == {"output": "echo: hello.", "status": "completed"}
