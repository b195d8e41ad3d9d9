"""The official clients, unmodified, in Node, over real HTTP against a running gateway.

``@ag-ui/client``'s ``HttpAgent`` against ``POST /agui`` and its stream route, and the
``ai`` package's ``DefaultChatTransport`` (+ ``readUIMessageStream``) against
``POST /api/chat`` and ``GET /api/chat/{id}/stream``: whole runs, runs aborted mid-way
(the agent waits at a gate the test holds) and resumed, another user, a run started on
``/ws``, and two gateway nodes on Redis. The clients' own parsers, schemas, verifier
(``verifyEvents``) and message assembly judge every stream.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from runwire import Gateway
from runwire.client import Client
from runwire.ids import UserId
from tests.front_doors import (
    OpenDoor,
    door as door,  # the parametrized fixture
)
from tests.frontends.live import ANSWER, StepAgent, normalized, streams_of
from tests.frontends.node import arun_node
from tests.helpers import connect, running_gateway, token_for
from tests.redis_server import RedisServer

QUESTION = "gate: what is six times seven?"


def agui_options(url: str, token: str, run_id: str, **more: Any) -> dict[str, Any]:
    return (
        {"url": f"{url}/agui", "token": token, "threadId": f"t_{run_id}", "runId": run_id}
        | {"message": QUESTION}
        | more
    )


def chat_options(url: str, token: str, chat_id: str, **more: Any) -> dict[str, Any]:
    return {
        "api": f"{url}/api/chat",
        "token": token,
        "chatId": chat_id,
        "messageId": f"m_{chat_id}",
        "message": QUESTION,
    } | more


def tool_result() -> str:
    return json.dumps({"answer": 42, "source": "table"}, separators=(",", ":"))


def check_agui_messages(messages: list[dict[str, Any]]) -> None:
    """Reasoning, the tool call with its result, and the assistant's text, in order."""
    roles = [m["role"] for m in messages]
    assert roles == ["user", "reasoning", "assistant", "tool", "assistant"], roles
    assert messages[1]["content"] == f"The user asks: {QUESTION}"
    (call,) = messages[2]["toolCalls"]
    assert call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"query": QUESTION, "limit": 1}
    assert messages[3]["toolCallId"] == call["id"]
    assert messages[3]["content"] == tool_result()
    assert messages[4]["content"] == ANSWER


def check_chat_message(message: dict[str, Any]) -> None:
    """One assistant message: reasoning, the tool with its output, the text, all done."""
    assert message["role"] == "assistant"
    parts = [p for p in message["parts"] if p["type"] != "step-start"]
    assert [p["type"] for p in parts] == ["reasoning", "dynamic-tool", "text"]
    assert parts[0]["text"] == f"The user asks: {QUESTION}"
    assert parts[1]["toolName"] == "lookup"
    assert parts[1]["state"] == "output-available"
    assert parts[1]["input"] == {"query": QUESTION, "limit": 1}
    assert parts[1]["output"] == {"answer": 42, "source": "table"}
    assert parts[2]["text"] == ANSWER
    assert parts[2]["state"] == "done"


async def reference_chat(url: str, token: str) -> tuple[dict[str, Any], str]:
    """An uninterrupted chat run of QUESTION (the gate open): its message and chat id."""
    chat_id = f"c_ref_{uuid.uuid4().hex[:8]}"
    out = await arun_node("aisdk_run.mjs", chat_options(url, token, chat_id))
    assert out["error"] is None and not out["errors"], out
    return out["message"], chat_id


def run_of_chat(out: dict[str, Any]) -> str:
    """The runwire run id a chat stream named in its ``start`` chunk."""
    start = next(c for c in out["chunks"] if c["type"] == "start")
    run_id: str = start["messageMetadata"]["runwire"]["runId"]
    return run_id


# -- whole runs ----------------------------------------------------------------------


async def test_http_agent_run_agent_resolves_with_the_answer(door: OpenDoor) -> None:
    agent = StepAgent()
    agent.release.set()
    async with door(agent) as front:
        out = await arun_node("agui_run.mjs", agui_options(front.url, front.token("alice"), "a1"))
        assert out["error"] is None, out
        assert out["resolved"] and out["result"] == ANSWER
        assert out["outcome"] == "success"
        check_agui_messages(out["messages"])
        assert out["events"][-1]["type"] == "RUN_FINISHED"
        await streams_of(front.gateway, "alice", 0, "the stream released at the run's end")


async def test_chat_transport_assembles_the_full_assistant_message(door: OpenDoor) -> None:
    agent = StepAgent()
    agent.release.set()
    async with door(agent) as front:
        out = await arun_node("aisdk_run.mjs", chat_options(front.url, front.token("alice"), "c1"))
        assert out["error"] is None and not out["errors"], out
        check_chat_message(out["message"])
        assert out["message"]["id"] == f"{run_of_chat(out)}.assistant"
        await streams_of(front.gateway, "alice", 0, "the stream released at the run's end")


# -- aborted mid-run, resumed --------------------------------------------------------


async def test_ag_ui_aborted_mid_run_resumes_from_last_event_id(tmp_path: Path) -> None:
    agent = StepAgent()
    async with running_gateway(agent) as gateway:
        token = token_for(gateway.settings, "alice")
        first = await arun_node(
            "agui_run.mjs",
            agui_options(gateway.url, token, "a_cut", abortAfterEvents=6, recordIds=True),
        )
        assert not first["resolved"] or first["result"] is None
        received = [e["type"] for e in first["events"]]
        assert received[-1] == "RUN_ERROR", "the client's own event for its abort"
        assert "RUN_FINISHED" not in received and len(first["ids"]) == len(received) - 1
        # Resume as a client cut inside the tool call event (its TOOL_CALL_ARGS block,
        # id epoch:offset.2) would: the route must send exactly the rest.
        got = first["events"][:6]
        assert [e["type"] for e in got][-1] == "TOOL_CALL_ARGS"
        run_id = got[0]["runId"]
        last_id = first["ids"][5]
        assert last_id.endswith(".2"), last_id
        await streams_of(gateway, "alice", 0, "the aborted POST released its stream")
        assert gateway.dispatcher.active_runs() == 1, "closing the POST does not cancel the run"
        prefix = tmp_path / "prefix.json"
        prefix.write_text(json.dumps(got))
        stream_url = f"{gateway.url}/agui/runs/{run_id}/stream"
        resumed = asyncio.ensure_future(
            arun_node(
                "agui_run.mjs",
                agui_options(
                    gateway.url,
                    token,
                    "a_cut",
                    stream={"url": stream_url, "lastEventId": last_id, "prefixFile": str(prefix)},
                ),
            )
        )
        await streams_of(gateway, "alice", 1, "the resumed stream open")
        agent.release.set()  # the rest of the run happens while the client follows it
        second = await resumed
        reference = await arun_node("agui_run.mjs", agui_options(gateway.url, token, "a_ref"))
    assert second["error"] is None, second
    assert second["resolved"] and second["result"] == ANSWER
    check_agui_messages(second["messages"])
    ref_run = reference["events"][0]["runId"]
    assert normalized(second["messages"], run=run_id, client="a_cut") == normalized(
        reference["messages"], run=ref_run, client="a_ref"
    )
    stitched = [e["type"] for e in second["events"]]
    assert stitched == [e["type"] for e in reference["events"]], "no event twice, none missing"
    assert second["requests"] == [] and len(second["events"]) > len(got)


async def test_chat_aborted_mid_run_reconnects_to_the_same_message() -> None:
    agent = StepAgent()
    async with running_gateway(agent) as gateway:
        token = token_for(gateway.settings, "alice")
        first = await arun_node(
            "aisdk_run.mjs", chat_options(gateway.url, token, "c_cut", abortAfterChunks=8)
        )
        types = [c["type"] for c in first["chunks"]]
        assert len(types) >= 8 and "finish" not in types, types  # cut at the gate, mid-answer
        run_id = run_of_chat(first)
        await streams_of(gateway, "alice", 0, "the aborted POST released its stream")
        resumed = asyncio.ensure_future(
            arun_node("aisdk_run.mjs", chat_options(gateway.url, token, "c_cut", reconnect=True))
        )
        await streams_of(gateway, "alice", 1, "the reconnected stream open")
        agent.release.set()
        second = await resumed
        reference, ref_chat = await reference_chat(gateway.url, token)
        after = await arun_node(
            "aisdk_run.mjs", chat_options(gateway.url, token, "c_cut", reconnect=True)
        )
    assert second["error"] is None and not second["errors"], second
    assert not second["noStream"]
    check_chat_message(second["message"])
    ref_run = reference["id"].removesuffix(".assistant")
    assert normalized(second["message"], run=run_id, thread="c_cut") == normalized(
        reference, run=ref_run, thread=ref_chat
    )
    assert after["noStream"], "a chat with no active run: 204, no stream"


# -- isolation, the socket, Redis ----------------------------------------------------


async def test_a_second_user_sees_nothing_and_cannot_resume_the_first_users_run() -> None:
    agent = StepAgent()
    async with running_gateway(agent) as gateway:
        alice = token_for(gateway.settings, "alice")
        bob = token_for(gateway.settings, "bob")
        async with connect(gateway, "bob") as bob_socket:
            first = await arun_node(
                "aisdk_run.mjs", chat_options(gateway.url, alice, "c_shared", abortAfterChunks=3)
            )
            run_id = run_of_chat(first)
            assert gateway.dispatcher.active_runs() == 1
            theirs = await arun_node(
                "aisdk_run.mjs", chat_options(gateway.url, bob, "c_shared", reconnect=True)
            )
            assert theirs["noStream"], "bob's chat of the same id has no active run"
            stream = {"url": f"{gateway.url}/agui/runs/{run_id}/stream"}
            refused = await arun_node(
                "agui_run.mjs", agui_options(gateway.url, bob, "b1", stream=stream)
            )
            assert refused["error"] is not None and "404" in refused["error"]["message"]
            assert refused["events"] == []
            agent.release.set()
            mine = await arun_node(
                "aisdk_run.mjs", chat_options(gateway.url, alice, "c_shared", reconnect=True)
            )
            await streams_of(gateway, "alice", 0, "alice's stream released")
            await bob_socket.ping()  # after its pong, anything sent before has arrived
            assert [f for f in await received(bob_socket) if "offset" in f and "run_id" in f] == []
    assert mine["noStream"] or mine["message"] is not None


async def received(client: Client) -> list[dict[str, Any]]:
    """The frames ``client`` holds already (it has answered a ping since they were sent)."""
    frames = []
    while True:
        try:
            frames.append(await client.recv(timeout=0.01))
        except TimeoutError:
            return frames


async def test_a_run_started_on_the_socket_is_followed_over_both_sse_routes() -> None:
    agent = StepAgent()
    async with running_gateway(agent) as gateway:
        token = token_for(gateway.settings, "alice")
        async with connect(gateway, "alice") as socket:
            ack = await socket.send_message(QUESTION, thread_id="t_ws")
            run_id, thread_id = ack["run_id"], ack["thread_id"]
            await asyncio.wait_for(agent.at_gate.wait(), 10)
            stream = {"url": f"{gateway.url}/agui/runs/{run_id}/stream"}
            agui = asyncio.ensure_future(
                arun_node("agui_run.mjs", agui_options(gateway.url, token, "w1", stream=stream))
            )
            chat = asyncio.ensure_future(
                arun_node(
                    "aisdk_run.mjs", chat_options(gateway.url, token, thread_id, reconnect=True)
                )
            )
            await streams_of(gateway, "alice", 3, "the socket and both streams open")
            agent.release.set()
            agui_out, chat_out = await agui, await chat
    assert agui_out["error"] is None and agui_out["result"] == ANSWER, agui_out
    messages = agui_out["messages"]
    assert [m["role"] for m in messages][1:] == ["reasoning", "assistant", "tool", "assistant"]
    assert messages[-1]["content"] == ANSWER
    assert agui_out["events"][0]["runId"] == run_id
    assert chat_out["error"] is None and not chat_out["errors"], chat_out
    check_chat_message(chat_out["message"])
    assert chat_out["message"]["id"] == f"{run_id}.assistant"


async def test_redis_a_chat_posted_on_one_node_resumes_on_another(
    redis_server: RedisServer,
) -> None:
    agent = StepAgent()
    user = f"u_{uuid.uuid4().hex[:10]}"
    async with (
        running_gateway(agent, engine=redis_server.url) as node_a,
        running_gateway(agent, engine=redis_server.url) as node_b,
    ):
        token = token_for(node_a.settings, user)
        first = await arun_node(
            "aisdk_run.mjs", chat_options(node_a.url, token, "c_nodes", abortAfterChunks=8)
        )
        run_id = run_of_chat(first)
        await streams_of(node_a, user, 0, "node A released the aborted stream")
        await snapshot_on(node_b, user, run_id)
        resumed = asyncio.ensure_future(
            arun_node("aisdk_run.mjs", chat_options(node_b.url, token, "c_nodes", reconnect=True))
        )
        await streams_of(node_b, user, 1, "the stream open on node B")
        agent.release.set()
        second = await resumed
        reference, ref_chat = await reference_chat(node_a.url, token)
    assert second["error"] is None and not second["errors"], second
    check_chat_message(second["message"])
    ref_run = reference["id"].removesuffix(".assistant")
    assert normalized(second["message"], run=run_id, thread="c_nodes") == normalized(
        reference, run=ref_run, thread=ref_chat
    )


async def snapshot_on(gateway: Gateway, user: str, run_id: str, timeout: float = 10) -> None:
    """Wait until ``gateway`` reads the run's snapshot (Redis: written behind by its node)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await gateway.snapshots.run(UserId(user), run_id) is None:
        if loop.time() > deadline:
            raise AssertionError(f"no snapshot of {run_id} on the other node after {timeout} s")
        await asyncio.sleep(0.02)
