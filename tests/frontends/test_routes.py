"""The front-end routes' refusals, before any stream, and the SSE follower's policy.

Refusals are JSON answers with stable codes (401, 400, 404, 409, 413, 429, 204); the
follower (an SSE stream as a manager connection) sends heartbeats while idle, and a
reader that stays behind gets coalesced deltas and then the documented end of stream.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from runwire import Gateway
from runwire.exceptions import CloseCode
from runwire.frontends.aisdk import UiMessageTranslator
from runwire.frontends.sse import HEARTBEAT
from runwire.http.sse_follower import SseFollower, end_comment
from runwire.ids import Epoch, UserId
from tests.frontends.live import StepAgent, streams_of
from tests.helpers import (
    GatedAgent,
    connect,
    publish_texts,
    running_gateway,
    token_for,
    wait_until,
)

RUN_INPUT = {
    "threadId": "t_1",
    "runId": "run_1",
    "messages": [{"id": "u1", "role": "user", "content": "hello"}],
    "tools": [],
    "context": [],
    "state": {},
    "forwardedProps": {},
}
CHAT = {
    "id": "c_1",
    "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hello"}]}],
    "trigger": "submit-message",
}


def call(
    method: str, url: str, body: object = None, token: str | None = None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    """One request: status, headers and the JSON body (``None`` when empty)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw, status = response.read(), response.status
            got = {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
        got = {k.lower(): v for k, v in error.headers.items()}
    text = raw.decode()
    return status, got, json.loads(text) if text and not text.startswith(("id:", ":")) else text


async def acall(*args: Any, **kwargs: str) -> tuple[int, dict[str, str], Any]:
    return await asyncio.to_thread(call, *args, **kwargs)


async def test_refusals_are_json_before_any_stream() -> None:
    async with running_gateway(StepAgent(), max_message_chars=20) as gateway:
        url, token = gateway.url, token_for(gateway.settings, "alice")
        for method, path, body in (
            ("POST", "/agui", RUN_INPUT),
            ("POST", "/api/chat", CHAT),
            ("GET", "/agui/runs/r_x/stream", None),
            ("POST", "/agui/runs/r_x/cancel", None),
            ("GET", "/api/chat/c_1/stream", None),
        ):
            status, _, answer = await acall(method, url + path, body)
            assert (status, answer["error"]) == (401, "unauthorized"), path
        status, headers, answer = await acall("POST", f"{url}/agui", {"threadId": "t"}, token)
        assert status == 400 and answer["error"] == "invalid_request"
        assert headers["content-type"] == "application/json"
        assert "RunAgentInput" in answer["message"]
        bad_chat = CHAT | {"messages": []}
        status, _, answer = await acall("POST", f"{url}/api/chat", bad_chat, token)
        assert (status, answer["error"]) == (400, "invalid_request")
        long = RUN_INPUT | {"messages": [{"id": "u", "role": "user", "content": "x" * 21}]}
        status, _, answer = await acall("POST", f"{url}/agui", long, token)
        assert (status, answer["error"]) == (413, "message_too_long")
        status, _, answer = await acall("GET", f"{url}/agui/runs/r_nope/stream", None, token)
        assert (status, answer["error"]) == (404, "not_found")
        status, _, answer = await acall("POST", f"{url}/agui/runs/r_nope/cancel", None, token)
        assert (status, answer["error"]) == (404, "not_found")
        status, _, answer = await acall("GET", f"{url}/api/chat/c_none/stream", None, token)
        assert (status, answer) == (204, "")
        assert gateway.manager.connection_count == 0, "nothing was left open"


async def test_positions_are_checked_and_a_stale_epoch_is_409() -> None:
    async with running_gateway(StepAgent()) as gateway:
        url, token = gateway.url, token_for(gateway.settings, "alice")
        status, _, body = await acall("POST", f"{url}/agui", RUN_INPUT, token)
        assert status == 200 and body.rstrip().endswith("}")
        run_id = json.loads(body.split("data: ", 1)[1].split("\n", 1)[0])["runId"]
        stream = f"{url}/agui/runs/{run_id}/stream"
        status, _, answer = await acall("GET", stream, None, token, Last_Event_ID="nonsense")
        assert (status, answer["error"]) == (400, "invalid_request")
        status, _, answer = await acall("GET", f"{stream}?after=0ld3p0ch:3", None, token)
        assert (status, answer["error"], answer["message"]) == (
            409,
            "resume_failed",
            "epoch_changed",
        )
        status, _, replay = await acall("GET", stream, None, token)
        assert (status, replay) == (200, body), "a finished run replays to its end, the same bytes"
        assert gateway.manager.connection_count == 0


async def test_limits_refuse_with_429_and_release_the_stream() -> None:
    agent = GatedAgent()
    async with running_gateway(agent, max_concurrent_runs_per_user=1) as gateway:
        url, token = gateway.url, token_for(gateway.settings, "alice")
        async with connect(gateway, "alice") as socket:
            await socket.send_message("hold")
            await asyncio.wait_for(agent.in_tool.wait(), 10)
            status, headers, answer = await acall("POST", f"{url}/api/chat", CHAT, token)
            assert (status, answer["error"]) == (429, "too_many_runs")
            assert headers["retry-after"] == "1"
            await streams_of(gateway, "alice", 1, "the refused stream released")
            agent.release.set()
    async with running_gateway(StepAgent(), max_connections_per_user=1) as gateway:
        token = token_for(gateway.settings, "alice")
        async with connect(gateway, "alice"):
            status, _, answer = await acall("POST", f"{gateway.url}/agui", RUN_INPUT, token)
            assert (status, answer["error"]) == (429, "too_many_connections")
            assert gateway.runtime.active_runs() == 0, "no run without a stream to follow it"


async def test_cancel_route_cancels_the_run_the_stream_follows() -> None:
    agent = GatedAgent()
    async with running_gateway(agent) as gateway:
        url, token = gateway.url, token_for(gateway.settings, "alice")
        post = asyncio.ensure_future(acall("POST", f"{url}/agui", RUN_INPUT, token))
        await asyncio.wait_for(agent.in_tool.wait(), 10)
        (run_id,) = [r.run_id for r in gateway.runs.runs(UserId("alice"))]
        bob = token_for(gateway.settings, "bob")
        status, _, _ = await acall("POST", f"{url}/agui/runs/{run_id}/cancel", None, bob)
        assert status == 404, "another user's run"
        status, _, answer = await acall("POST", f"{url}/agui/runs/{run_id}/cancel", None, token)
        assert (status, answer) == (200, {"run_id": run_id, "cancelled": True})
        status, _, body = await asyncio.wait_for(post, 10)
    last = json.loads(body.rstrip().rsplit("data: ", 1)[1])
    assert last["type"] == "RUN_FINISHED" and last["outcome"] == {"type": "cancelled"}


def follower_on(gateway: Gateway, run_id: str, **options: Any) -> SseFollower:
    follower = SseFollower(
        gateway.manager,
        UserId("alice"),
        lambda epoch: UiMessageTranslator(Epoch(epoch)),
        run_id=run_id,
        high_water_bytes=options.get("high_water_bytes", 4096),
        heartbeat_s=options.get("heartbeat_s", 30.0),
    )
    follower.open(None, None)
    return follower


async def test_an_idle_stream_gets_heartbeats() -> None:
    async with running_gateway(StepAgent()) as gateway:
        follower = follower_on(gateway, "r_idle", heartbeat_s=0.05)
        assert await follower.connected(5)
        body = follower.chunks()
        assert await asyncio.wait_for(anext(body), 5) == HEARTBEAT.encode()
        await publish_texts(gateway, "alice", ["hi"], run_id="r_idle")
        chunk = await asyncio.wait_for(anext(body), 5)
        assert b'"delta":"hi"' in chunk
        await body.aclose()  # type: ignore[attr-defined]
        assert gateway.manager.connection_count == 0, "closing the body releases it"


async def test_a_reader_that_stays_behind_gets_coalesced_deltas_then_the_end() -> None:
    async with running_gateway(
        StepAgent(), outbound_queue_events=8, outbound_queue_bytes=4096
    ) as gateway:
        follower = follower_on(gateway, "r_slow", high_water_bytes=4096)
        assert await follower.connected(5)
        texts = iter(f"{index:04d}" + "x" * 60 for index in range(1000))
        sent: list[str] = []

        async def publish(count: int) -> None:
            for _ in range(count):  # each flush hands the follower what it may hold
                sent.append(next(texts))
                await publish_texts(gateway, "alice", sent[-1:], run_id="r_slow")
                await asyncio.sleep(0)

        while follower.writable:
            await publish(1)
        await publish(10)  # held in the connection's queue, where deltas are coalesced
        body = follower.chunks()
        first = await anext(body)  # the reader catches up once: the queue is written
        second = await asyncio.wait_for(anext(body), 5)
        merged = [json.loads(line[6:])["delta"] for line in second.decode().splitlines()[1::3]]
        assert any(len(delta) > 64 for delta in merged), "coalesced deltas reached the reader"
        while not follower.ended:  # then it stays behind for good
            await publish(1)
        rest = b"".join([chunk async for chunk in body])
        assert gateway.manager.connection_count == 0, "released once its body ended"
    text = (first + second + rest).decode()
    reason = "outbound queue full; resume from history"
    assert text.endswith(end_comment(CloseCode.SLOW_CONSUMER, reason).decode())
    deltas = [
        json.loads(line[6:])["delta"]
        for line in text.splitlines()
        if line.startswith("data: ") and '"text-delta"' in line
    ]
    joined = "".join(deltas)
    assert "".join(sent).startswith(joined) and len(joined) > 64 * 10, "a prefix, in order"
    assert gateway.metrics.deltas_coalesced._value.get() > 0


async def test_the_ag_ui_path_can_be_turned_off() -> None:
    async with running_gateway(StepAgent(), agui_path="") as gateway:
        token = token_for(gateway.settings, "alice")
        status, _, answer = await acall("POST", f"{gateway.url}/agui", RUN_INPUT, token)
        assert (status, answer["error"]) == (404, "not_found")
        status, _, _ = await acall("POST", f"{gateway.url}/api/chat", CHAT, token)
        assert status == 200


async def test_the_stream_ends_at_its_runs_end_even_mid_write() -> None:
    from runwire.events import AgentCompleted, AgentMessageDelta, Event

    async with running_gateway(StepAgent()) as gateway:
        follower = follower_on(gateway, "r_end")  # heartbeats every 30 s: none here
        assert await follower.connected(5)
        user = UserId("alice")
        reading = asyncio.ensure_future(read_all(follower))
        await wait_until(lambda: follower._wake.is_set() is False, what="the reader waiting")
        await asyncio.sleep(0)
        for event in (
            Event.of(AgentMessageDelta("done"), run_id="r_end", thread_id="t", seq=1, ts=0),
            Event.of(
                AgentCompleted("done", "completed"), run_id="r_end", thread_id="t", seq=2, ts=0
            ),
            Event.of(AgentMessageDelta("other"), run_id="r_other", thread_id="t", seq=1, ts=0),
        ):
            await gateway.publish(user, event)  # one flush writes all three to the follower
        body = await asyncio.wait_for(reading, 5)
        assert body.decode().endswith("data: [DONE]\n\n")
        assert gateway.manager.connection_count == 0


async def read_all(follower: SseFollower) -> bytes:
    """The whole body of a follower's stream."""
    return b"".join([chunk async for chunk in follower.chunks()])


async def test_the_clients_own_run_id_reattaches_and_cancels(deployment: Any) -> None:
    """An AG-UI client knows its own ``runId`` (the idempotency key), not runwire's:
    the stream and cancel routes take either (was: 404 for the client's)."""
    import uuid

    agent = GatedAgent()
    user, client_run = f"own-{uuid.uuid4().hex[:8]}", f"client-run-{uuid.uuid4().hex[:8]}"
    async with deployment(agent) as gateway:
        url, token = gateway.url, token_for(gateway.settings, user)
        body = RUN_INPUT | {"runId": client_run}
        post = asyncio.ensure_future(acall("POST", f"{url}/agui", body, token))
        await asyncio.wait_for(agent.in_tool.wait(), 10)
        stranger = token_for(gateway.settings, f"stranger-{uuid.uuid4().hex[:8]}")
        status, _, _ = await acall("GET", f"{url}/agui/runs/{client_run}/stream", None, stranger)
        assert status == 404, "another user cannot reattach by the key"
        reattached = asyncio.ensure_future(
            acall("GET", f"{url}/agui/runs/{client_run}/stream", None, token)
        )
        status, _, answer = await acall("POST", f"{url}/agui/runs/{client_run}/cancel", None, token)
        assert status == 200 and answer["cancelled"] is True and answer["run_id"] != client_run
        for response in (post, reattached):
            status, _, text = await asyncio.wait_for(response, 10)
            assert status == 200
            events = [
                json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")
            ]
            assert events[0]["type"] == "RUN_STARTED"
            assert events[-1]["type"] == "RUN_FINISHED"
            assert events[-1]["outcome"] == {"type": "cancelled"}
