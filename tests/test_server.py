"""The gateway over real sockets: fan-out to tabs, isolation, bad input, HTTP routes."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
import websockets
from websockets.typing import Subprotocol

from runwire.client import Client, ClientError
from runwire.exceptions import ConnectionClosed
from tests.helpers import GatedAgent, collect_run, connect, running_gateway, token_for


async def test_every_tab_of_a_user_gets_every_event_once() -> None:
    async with (
        running_gateway() as gateway,
        connect(gateway, "alice") as tab1,
        connect(gateway, "alice") as tab2,
        connect(gateway, "alice") as tab3,
    ):
        ack = await tab1.send_message("hi")
        runs = [await collect_run(tab, ack["run_id"]) for tab in (tab1, tab2, tab3)]
    offsets = [[frame["offset"] for frame in run] for run in runs]
    assert offsets[0] == offsets[1] == offsets[2]
    assert len(offsets[0]) == len(set(offsets[0])) == 8
    assert runs[0] == runs[1] == runs[2]


async def test_users_never_see_each_others_events() -> None:
    async with (
        running_gateway() as gateway,
        connect(gateway, "alice") as alice,
        connect(gateway, "bob") as bob,
    ):
        alice_ack = await alice.send_message("from alice")
        bob_ack = await bob.send_message("from bob")
        alice_run = await collect_run(alice, alice_ack["run_id"])
        bob_run = await collect_run(bob, bob_ack["run_id"])
        # Each user's stream holds only its own run: a ping round trip proves the
        # queue is drained, and nothing else arrived.
        await alice.ping()
        await bob.ping()
        assert alice._frames.empty() and bob._frames.empty()
    assert {frame["run_id"] for frame in alice_run} == {alice_ack["run_id"]}
    assert {frame["run_id"] for frame in bob_run} == {bob_ack["run_id"]}
    assert alice_run[0]["data"]["input"] == "from alice"
    assert bob_run[0]["data"]["input"] == "from bob"


async def test_cancel_of_another_users_run_is_not_found_and_the_run_continues() -> None:
    agent = GatedAgent()
    async with (
        running_gateway(agent) as gateway,
        connect(gateway, "alice") as alice,
        connect(gateway, "mallory") as mallory,
    ):
        ack = await alice.send_message("secret work")
        await asyncio.wait_for(agent.in_tool.wait(), 5)
        with pytest.raises(ClientError) as error:
            await mallory.cancel(ack["run_id"])
        assert error.value.code == "not_found"
        agent.release.set()
        frames = await collect_run(alice, ack["run_id"])
        await mallory.ping()
        assert mallory._frames.empty()
    assert frames[-1]["data"]["status"] == "completed"


async def test_a_message_sent_right_after_connected_is_never_lost() -> None:
    async with running_gateway() as gateway:
        token = token_for(gateway.settings, "alice")
        protocols = [Subprotocol("runwire.v1"), Subprotocol(f"bearer.{token}")]
        async with websockets.connect(gateway.ws_url, subprotocols=protocols) as socket:
            # Sent before reading anything, without waiting for `connected`.
            await socket.send(json.dumps({"type": "user_message", "id": "m1", "content": "x"}))
            frames: list[dict[str, object]] = []
            while not frames or frames[-1]["type"] != "agent_completed":
                frames.append(json.loads(await asyncio.wait_for(socket.recv(), 5)))
    assert frames[0]["type"] == "connected"
    assert frames[1]["type"] == "ack" and frames[1]["id"] == "m1"
    assert frames[2]["type"] == "agent_started"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ('{"type": "dance", "id": "r1"}', "unknown_type"),
        ('{"type": "user_message", "id": "r1"}', "invalid_message"),
        ('{"type": "user_message", "id": "r1", "content": 5}', "invalid_message"),
        ('{"type": "cancel", "id": "r1"}', "invalid_message"),
    ],
)
async def test_invalid_frames_get_an_error_and_the_connection_stays(
    payload: str, code: str
) -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        await client.send_raw(payload)
        error = await client.recv(timeout=5)
        assert error["type"] == "error"
        assert error["code"] == code
        assert error["ref"] == "r1"
        await client.ping()  # still open and served


async def test_too_long_content_is_refused_with_an_error() -> None:
    async with (
        running_gateway(max_message_chars=10) as gateway,
        connect(gateway, "alice") as client,
    ):
        with pytest.raises(ClientError) as error:
            await client.send_message("x" * 11)
        assert error.value.code == "message_too_long"
        ack = await client.send_message("x" * 10)
        assert ack["type"] == "ack"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("{not json", 4400),
        ("[1, 2]", 4400),
        ('{"no_type": 1}', 4400),
        (b"\x00binary", 4400),
        ("x" * 3000, 1009),
    ],
)
async def test_protocol_violations_close_with_the_documented_code_and_others_are_served(
    payload: str | bytes, code: int
) -> None:
    async with (
        running_gateway(max_frame_bytes=2048) as gateway,
        connect(gateway, "alice") as bystander,
        connect(gateway, "mallory") as offender,
    ):
        await offender.send_raw(payload)
        with pytest.raises(ConnectionClosed):
            while True:
                await offender.recv(timeout=5)
        assert offender.close_code == code
        ack = await bystander.send_message("still here?")
        frames = await collect_run(bystander, ack["run_id"])
        assert frames[-1]["type"] == "agent_completed"


async def test_rate_limit_closes_with_4429() -> None:
    async with (
        running_gateway(client_messages_per_s=5) as gateway,
        connect(gateway, "alice") as client,
    ):
        for index in range(20):
            await client.send_raw(json.dumps({"type": "ping", "id": f"p{index}"}))
        with pytest.raises(ConnectionClosed):
            while True:
                await client.recv(timeout=5)
        assert client.close_code == 4429


async def test_connections_per_user_are_bounded_with_4429() -> None:
    async with (
        running_gateway(max_connections_per_user=2) as gateway,
        connect(gateway, "alice"),
        connect(gateway, "alice"),
    ):
        with pytest.raises(ConnectionClosed) as closed:
            async with connect(gateway, "alice"):
                pass
        assert closed.value.code == 4429
        async with connect(gateway, "bob") as bob:  # other users are unaffected
            await bob.ping()


async def test_too_many_concurrent_runs_get_an_error() -> None:
    agent = GatedAgent()
    async with (
        running_gateway(agent, max_concurrent_runs_per_user=1) as gateway,
        connect(gateway, "alice") as client,
    ):
        first = await client.send_message("one")
        with pytest.raises(ClientError) as error:
            await client.send_message("two")
        assert error.value.code == "too_many_runs"
        agent.release.set()
        await collect_run(client, first["run_id"])


async def test_retried_user_message_id_starts_no_second_run() -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        first = await client.send_message("hi", message_id="same")
        await collect_run(client, first["run_id"])
        again = await client.send_message("hi", message_id="same")
        assert again["run_id"] == first["run_id"]
        await client.ping()
        assert client._frames.empty()
        assert gateway.runtime.started_total == 1


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


async def test_http_routes() -> None:
    async with running_gateway() as gateway, connect(gateway, "alice"):
        status, kind, body = await asyncio.to_thread(_get, gateway.url + "/healthz")
        assert status == 200 and kind == "application/json"
        assert json.loads(body) == {
            "status": "ok",
            "engine_available": True,
            "mode": "dev",
            "engine": "memory",
            "connections": 1,
            "active_runs": 0,
        }
        status, kind, body = await asyncio.to_thread(_get, gateway.url + "/metrics")
        assert status == 200 and kind.startswith("text/plain")
        assert b"runwire_connections 1.0" in body
        assert b"runwire_connections_opened_total 1.0" in body
        status, kind, body = await asyncio.to_thread(_get, gateway.url + "/")
        assert status == 200 and kind.startswith("text/html") and b"runwire" in body
        status, _, _ = await asyncio.to_thread(_get, gateway.url + "/nope")
        assert status == 404


async def test_dev_token_endpoint_exists_only_in_dev_mode() -> None:
    async with running_gateway(mode="dev") as gateway:
        status, _, body = await asyncio.to_thread(_get, gateway.url + "/api/dev-token?user=zoe")
        assert status == 200
        token = json.loads(body)["token"]
        async with Client.connect(gateway.ws_url, token) as client:
            assert client.connected["user_id"] == "zoe"
    async with running_gateway(mode="production") as gateway:
        status, _, _ = await asyncio.to_thread(_get, gateway.url + "/api/dev-token?user=zoe")
        assert status == 404
