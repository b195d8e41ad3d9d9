"""The translators' streams read by the official clients, unmodified, in Node.

Before any HTTP route: the SSE text a translator writes is served to ``@ag-ui/client``'s
``HttpAgent.runAgent()`` and to the ``ai`` package's ``DefaultChatTransport`` +
``readUIMessageStream`` through their ``fetch`` option, so the clients' own parsers,
schemas (``uiMessageChunkSchema``), verifier (``verifyEvents``) and message assembly
judge them. Expectations are computed from the runwire events, not from the translators.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from runwire.events import (
    AgentCompleted,
    AgentError,
    AgentMessageDelta,
    AgentStarted,
    AgentThinking,
    ToolCompleted,
    ToolExecuting,
)
from runwire.frontends import RunTranslator
from runwire.frontends.agui import AguiTranslator, parse_run_input
from runwire.frontends.aisdk import UiMessageTranslator, parse_chat_request
from runwire.ids import Epoch
from tests.frontends.node import run_node
from tests.frontends.runs import RUNS, Run

EPOCH = Epoch("e0e0e0e0e0e0")


def sse_file(tmp_path: Path, translator: RunTranslator[Any], run: Run) -> str:
    path = tmp_path / "stream.sse"
    path.write_text("".join(f.sse for o, e in run for f in translator.feed(o, e)))
    return str(path)


def expected(run: Run) -> dict[str, Any]:
    """What any client must end up with, from the run's (deduplicated) events."""
    seen: dict[int, Any] = {}
    for _, event in run:
        seen.setdefault(event.seq, event.data)
    data = [seen[seq] for seq in sorted(seen)]
    deltas = "".join(d.text for d in data if isinstance(d, AgentMessageDelta))
    end = data[-1]
    text = deltas or (end.output if isinstance(end, AgentCompleted) else "")
    return {
        "started": next(d for d in data if isinstance(d, AgentStarted)),
        "thinking": [d.text for d in data if isinstance(d, AgentThinking)],
        "calls": {d.call_id: (d.tool, d.args) for d in data if isinstance(d, ToolExecuting)},
        "results": [d for d in data if isinstance(d, ToolCompleted)],
        "text": text,
        "end": end,
    }


def result_text(done: ToolCompleted) -> str:
    """``TOOL_CALL_RESULT.content`` as the issue defines it: a string."""
    if not done.ok:
        return str(done.error)
    value = None if done.result is msgspec.UNSET else done.result
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize("name", RUNS)
def test_ag_ui_http_agent_runs_the_stream_to_the_answer(name: str, tmp_path: Path) -> None:
    run = RUNS[name]
    want = expected(run)
    out = run_node(
        "agui_run.mjs",
        {
            "sseFile": sse_file(tmp_path, AguiTranslator(EPOCH), run),
            "threadId": run[0][1].thread_id,
            "runId": run[0][1].run_id,
            "message": want["started"].input,
        },
    )
    assert out["error"] is None and out["resolved"], out
    assert "[ag-ui]" not in out["stderr"], out["stderr"]  # nothing stripped, nothing refused
    end = want["end"]
    if isinstance(end, AgentCompleted):
        assert out["outcome"] == ("success" if end.status == "completed" else "cancelled")
        assert out["result"] == (end.output if end.status == "completed" else None)
        assert out["events"][-1]["type"] == "RUN_FINISHED"
    else:
        assert isinstance(end, AgentError)
        assert out["events"][-1] == {**out["events"][-1], "type": "RUN_ERROR", "code": end.code}
    messages = out["messages"][1:]  # after the user's own message
    assert [m["content"] for m in messages if m["role"] == "reasoning"] == want["thinking"]
    calls = {
        call["id"]: (call["function"]["name"], call["function"]["arguments"])
        for m in messages
        if m["role"] == "assistant"
        for call in m.get("toolCalls", [])
    }
    assert {k: (name, json.loads(args)) for k, (name, args) in calls.items()} == (want["calls"])
    tool_messages = [(m["toolCallId"], m["content"]) for m in messages if m["role"] == "tool"]
    assert dict(tool_messages) == {r.call_id: result_text(r) for r in want["results"]}
    texts = [m["content"] for m in messages if m["role"] == "assistant" and m.get("content")]
    assert "".join(texts) == want["text"]


@pytest.mark.parametrize("name", RUNS)
def test_ai_sdk_transport_assembles_the_assistant_message(name: str, tmp_path: Path) -> None:
    run = RUNS[name]
    want = expected(run)
    out = run_node(
        "aisdk_run.mjs",
        {
            "sseFile": sse_file(tmp_path, UiMessageTranslator(EPOCH), run),
            "chatId": run[0][1].thread_id,
            "message": want["started"].input,
        },
    )
    assert out["error"] is None, out
    end = want["end"]
    assert out["errors"] == (
        [{"name": "Error", "message": end.message}] if isinstance(end, AgentError) else []
    )
    message = out["message"]
    assert message["id"] == f"{run[0][1].run_id}.assistant"
    assert message["role"] == "assistant"
    parts = message["parts"]
    assert parts[0] == {"type": "step-start"}
    assert [p["text"] for p in parts if p["type"] == "reasoning"] == want["thinking"]
    assert all(p["state"] == "done" for p in parts if p["type"] in ("reasoning", "text"))
    tools = {p["toolCallId"]: p for p in parts if p["type"] == "dynamic-tool"}
    assert {k: (p["toolName"], p["input"]) for k, p in tools.items()} == want["calls"]
    for result in want["results"]:
        part = tools[result.call_id]
        if result.ok:
            assert part["state"] == "output-available"
            assert part.get("output") == (None if result.result is msgspec.UNSET else result.result)
        else:
            assert (part["state"], part["errorText"]) == ("output-error", result.error)
    assert "".join(p["text"] for p in parts if p["type"] == "text") == want["text"]
    status = "error" if isinstance(end, AgentError) else end.status
    assert message["metadata"]["runwire"]["status"] == status


def test_the_clients_requests_are_what_the_parsers_accept(tmp_path: Path) -> None:
    """What the routes will receive: the clients' real request bodies and headers."""
    run = RUNS["thinking, a tool, a failing tool, deltas"]
    agui = run_node(
        "agui_run.mjs",
        {
            "sseFile": sse_file(tmp_path, AguiTranslator(EPOCH), run),
            "url": "http://gateway.test/agui",
            "token": "tok",
            "threadId": "t_1",
            "runId": "r_1",
            "message": "how many orders shipped?",
        },
    )
    (post,) = agui["requests"]
    assert (post["method"], post["url"]) == ("POST", "http://gateway.test/agui")
    assert post["headers"]["authorization"] == "Bearer tok"
    assert post["headers"]["accept"] == "text/event-stream"
    request = parse_run_input(post["body"])
    assert (request.thread_id, request.run_id, request.text) == (
        "t_1",
        "r_1",
        "how many orders shipped?",
    )
    chat = run_node(
        "aisdk_run.mjs",
        {
            "sseFile": sse_file(tmp_path, UiMessageTranslator(EPOCH), run),
            "api": "http://gateway.test/api/chat",
            "token": "tok",
            "chatId": "t_1",
            "messageId": "u_1",
            "message": "how many orders shipped?",
        },
    )
    (post,) = chat["requests"]
    assert (post["method"], post["url"]) == ("POST", "http://gateway.test/api/chat")
    assert post["headers"]["authorization"] == "Bearer tok"
    body = parse_chat_request(post["body"])
    assert (body.thread_id, body.text, body.idempotency_key) == (
        "t_1",
        "how many orders shipped?",
        "u_1",
    )


def test_the_resume_requests_are_gets_of_the_stream_routes(tmp_path: Path) -> None:
    run = RUNS["thinking, a tool, a failing tool, deltas"]
    agui = run_node(
        "agui_run.mjs",
        {
            "sseFile": sse_file(tmp_path, AguiTranslator(EPOCH), run),
            "stream": {"url": "http://gateway.test/agui/runs/r_1/stream", "lastEventId": "e:4"},
            "token": "tok",
            "runId": "r_1",
        },
    )
    assert agui["resolved"] and agui["result"] == run[-1][1].data.output  # type: ignore[union-attr]
    (get,) = agui["requests"]
    assert (get["method"], get["url"], get["body"]) == (
        "GET",
        "http://gateway.test/agui/runs/r_1/stream",
        None,
    )
    assert get["headers"]["last-event-id"] == "e:4"
    chat = run_node(
        "aisdk_run.mjs",
        {
            "sseFile": sse_file(tmp_path, UiMessageTranslator(EPOCH), run),
            "api": "http://gateway.test/api/chat",
            "chatId": "t_1",
            "reconnect": True,
        },
    )
    (get,) = chat["requests"]
    assert (get["method"], get["url"]) == ("GET", "http://gateway.test/api/chat/t_1/stream")
    assert chat["message"]["id"] == "r_1.assistant"
