"""The socket contract, proved against both front doors over real sockets.

Each test runs twice: against the standalone server (picows) and against
``gateway.asgi_app()`` mounted under ``/runwire`` in a FastAPI app served by a real
uvicorn. Both go through the same manager and session, so both must behave alike.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from websockets.typing import Subprotocol

from runwire import Gateway
from runwire.asgi import uvicorn_settings
from runwire.client import StreamPosition
from runwire.events import CRITICAL_EVENT_TYPES
from runwire.exceptions import CloseCode
from tests.asgi_server import uvicorn_serving
from tests.front_doors import (
    PREFIX,
    FrontDoor,
    OpenDoor,
    door as door,  # the parametrized fixture
    fastapi_app,
    front_door,
)
from tests.helpers import (
    assert_run_rules,
    collect_run,
    get_json,
    make_settings,
    publish_texts,
    scripted_agent,
)


async def test_golden_path_the_five_events_in_order(door: OpenDoor) -> None:
    async with door() as d, d.connect("alice") as client:
        assert client.connected["user_id"] == "alice"
        ack = await client.send_message("hello", thread_id="t1", message_id="m1")
        assert ack == {"type": "ack", "id": "m1", "run_id": ack["run_id"], "thread_id": "t1"}
        frames = await collect_run(client, ack["run_id"])
    assert_run_rules(frames)
    types = [frame["type"] for frame in frames]
    assert [t for t in types if t in CRITICAL_EVENT_TYPES] == list(CRITICAL_EVENT_TYPES)
    start = client.connected["offset"]
    assert [frame["offset"] for frame in frames] == list(range(start + 1, start + len(frames) + 1))
    assert frames[-1]["data"] == {"output": "echo: hello.", "status": "completed"}


async def test_a_users_events_reach_each_of_their_tabs_once_and_nobody_else(
    door: OpenDoor,
) -> None:
    async with (
        door() as d,
        d.connect("alice") as tab1,
        d.connect("alice", header_auth=True) as tab2,
        d.connect("bob") as bob,
    ):
        ack = await tab1.send_message("mine", thread_id="t")
        first = await collect_run(tab1, ack["run_id"])
        second = await collect_run(tab2, ack["run_id"])
        assert first == second
        assert_run_rules(first)
        # bob's own run arrives, and nothing of alice's came before it.
        bob_ack = await bob.send_message("his", thread_id="t")
        frame = await bob.recv(timeout=10)
        assert frame["run_id"] == bob_ack["run_id"] and frame["offset"] == 1
        frames = await collect_run(bob, bob_ack["run_id"])
        assert all(f["run_id"] == bob_ack["run_id"] for f in frames)


async def test_resume_after_reconnect_replays_exactly_the_missed_events(door: OpenDoor) -> None:
    async with door() as d:
        async with d.connect("carol") as client:
            await publish_texts(d.gateway, "carol", ["a", "b"])
            seen = [await client.recv(timeout=10) for _ in range(2)]
            epoch = client.connected["epoch"]
        await publish_texts(d.gateway, "carol", ["c", "d", "e"])  # while away
        async with d.connect("carol", resume=StreamPosition(epoch, seen[-1]["offset"])) as again:
            replayed = [await again.recv(timeout=10) for _ in range(3)]
            resumed = await again.recv(timeout=10)
    assert [f["offset"] for f in seen] == [1, 2]
    assert [(f["offset"], f["data"]["text"]) for f in replayed] == [(3, "c"), (4, "d"), (5, "e")]
    assert resumed == {"type": "resumed", "epoch": epoch, "from": 2, "to": 5}


async def test_a_client_that_stops_reading_is_closed_4409_and_resumes_everything(
    door: OpenDoor, report: Callable[[str], None]
) -> None:
    async with door(
        outbound_queue_events=64, outbound_queue_bytes=16_384, heartbeat_timeout_s=10
    ) as d:
        protocols = [Subprotocol("runwire.v1"), Subprotocol(f"bearer.{d.token('slow')}")]
        async with (
            websockets.connect(d.ws_url, subprotocols=protocols, max_queue=1) as slow,
            d.connect("fast") as fast,
        ):
            connected = json.loads(await slow.recv())  # then stop reading
            payload = "x" * 2000
            sent = 0
            while d.gateway.metrics.slow_consumer_closes._value.get() == 0:
                await publish_texts(d.gateway, "slow", [f"{sent}:{payload}"])
                sent += 1
                await publish_texts(d.gateway, "fast", [str(sent)])  # others are served
                assert (await fast.recv(timeout=5))["offset"] == sent
                assert sent < 20_000, "the slow client was never closed"
            assert d.gateway.manager.stats()["queued_frames"] <= 64
            received = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    received.append(json.loads(await asyncio.wait_for(slow.recv(), 10)))
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CloseCode.SLOW_CONSUMER
        offsets = [frame["offset"] for frame in received]
        assert offsets == list(range(1, len(offsets) + 1))
        last = offsets[-1] if offsets else 0
        position = StreamPosition(connected["epoch"], last)
        async with d.connect("slow", resume=position) as again:
            rest: list[dict[str, Any]] = []
            while not rest or rest[-1]["offset"] < sent:
                frame = await again.recv(timeout=10)
                if "offset" in frame:
                    rest.append(frame)
        assert [f["offset"] for f in rest] == list(range(last + 1, sent + 1))
        report(f"4409: {sent} published, {len(offsets)} read before the close, {len(rest)} resumed")


async def _close_code(ws: websockets.ClientConnection) -> int:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_a_binary_frame_closes_4400(door: OpenDoor) -> None:
    async with door() as d:
        protocols = [Subprotocol("runwire.v1"), Subprotocol(f"bearer.{d.token('dave')}")]
        async with websockets.connect(d.ws_url, subprotocols=protocols) as ws:
            assert ws.subprotocol == "runwire.v1"
            assert json.loads(await ws.recv())["type"] == "connected"
            await ws.send(b'{"type":"ping","id":"1"}')
            assert await _close_code(ws) == CloseCode.PROTOCOL_VIOLATION


@pytest.mark.parametrize("token", ["forged.token.value", None])
async def test_a_bad_or_missing_token_closes_4401_after_accept(
    door: OpenDoor, token: str | None
) -> None:
    async with door() as d:
        protocols = [Subprotocol("runwire.v1")]
        if token is not None:
            protocols.append(Subprotocol(f"bearer.{token}"))
        async with websockets.connect(d.ws_url, subprotocols=protocols) as ws:
            assert ws.subprotocol == "runwire.v1"
            assert await _close_code(ws) == CloseCode.UNAUTHORIZED


async def test_a_frame_over_the_limit_closes_1009(door: OpenDoor) -> None:
    async with door(max_frame_bytes=1024) as d:
        protocols = [Subprotocol("runwire.v1"), Subprotocol(f"bearer.{d.token('erin')}")]
        async with websockets.connect(d.ws_url, subprotocols=protocols) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "ping", "id": "x" * 2000}))
            assert await _close_code(ws) == CloseCode.MESSAGE_TOO_BIG


async def test_a_foreign_origin_is_refused_403(door: OpenDoor) -> None:
    async with door() as d:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(
                d.ws_url,
                origin=websockets.Origin("https://evil.example"),
                additional_headers={"Authorization": f"Bearer {d.token('frank')}"},
            ):
                pass  # pragma: no cover
        assert refused.value.response.status_code == 403


async def test_healthz_and_api_runs_with_and_without_a_token(door: OpenDoor) -> None:
    async with door() as d:
        status, health = await asyncio.to_thread(get_json, d.url + "/healthz")
        assert status == 200 and health["status"] == "ok"
        status, body = await asyncio.to_thread(get_json, d.url + "/api/runs")
        assert (status, body) == (401, {"error": "unauthorized", "message": "missing token"})
        async with d.connect("gina") as client:
            ack = await client.send_message("hi", thread_id="t")
            await collect_run(client, ack["run_id"])
        status, body = await asyncio.to_thread(get_json, d.url + "/api/runs", d.token("gina"))
        assert status == 200 and [run["run_id"] for run in body["runs"]] == [ack["run_id"]]


async def test_served_alone_the_app_runs_its_own_lifespan_at_the_root() -> None:
    gateway = Gateway(make_settings(), agent=scripted_agent)
    async with uvicorn_serving(gateway.asgi_app(), **uvicorn_settings(gateway.settings)) as url:
        assert gateway.started
        d = FrontDoor(gateway, url)
        status, health = await asyncio.to_thread(get_json, url + "/healthz")
        assert status == 200 and health["status"] == "ok"
        async with d.connect("hana") as client:
            ack = await client.send_message("hi", thread_id="t")
            assert_run_rules(await collect_run(client, ack["run_id"]))
    assert not gateway.started


async def test_a_gateway_started_already_is_left_running_by_the_lifespan() -> None:
    async with Gateway(make_settings(), agent=scripted_agent) as gateway:
        async with uvicorn_serving(fastapi_app(gateway)) as url:
            status, _ = await asyncio.to_thread(get_json, url + PREFIX + "/healthz")
            assert status == 200
        assert gateway.started


def _request(method: str, url: str) -> tuple[int, dict[str, str], bytes]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=5)
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


async def test_the_mount_point_redirects_and_only_get_and_head_are_served() -> None:
    async with front_door("asgi") as d:
        # FastAPI redirects the mount point itself (307); runwire would too (308).
        status, headers, _ = await asyncio.to_thread(_request, "GET", d.url + "?x=1")
        assert status in (307, 308) and headers["location"].endswith(PREFIX + "/?x=1")
        status, headers, body = await asyncio.to_thread(_request, "GET", d.url + "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'src="assets/app.js"' in body
        status, headers, body = await asyncio.to_thread(_request, "HEAD", d.url + "/healthz")
        assert (status, body) == (200, b"") and int(headers["content-length"]) > 0
        status, _, _ = await asyncio.to_thread(_request, "POST", d.url + "/healthz")
        assert status == 405
        status, _, _ = await asyncio.to_thread(_request, "GET", d.url + "/nope")
        assert status == 404
        status, _, body = await asyncio.to_thread(_request, "GET", d.url + "/metrics")
        assert status == 200 and b"runwire_connections" in body


async def test_behind_uvicorn_root_path_the_stripped_paths_are_served() -> None:
    """``uvicorn --root-path /runwire`` behind a proxy that strips the prefix: uvicorn
    puts it back into ``path``, the app takes it off again."""
    gateway = Gateway(make_settings(), agent=scripted_agent)
    async with uvicorn_serving(gateway.asgi_app(), root_path=PREFIX) as url:
        status, _, body = await asyncio.to_thread(_request, "GET", url + "/")
        assert status == 200 and b"assets/app.js" in body
        status, health = await asyncio.to_thread(get_json, url + "/healthz")
        assert status == 200 and health["status"] == "ok"
        async with FrontDoor(gateway, url).connect("ivan") as client:
            assert client.connected["user_id"] == "ivan"
