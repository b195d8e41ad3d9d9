"""The server API (``/api/v1``): off without a key, 401 with a wrong one, and each
route doing what the backend asked, seen by the users' own sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from runwire import Gateway
from runwire.exceptions import ConfigError, ConnectionClosed
from tests.deployments import Deployment
from tests.front_doors import (
    OpenDoor,
    door as door,  # the parametrized fixture
)
from tests.helpers import (
    GatedAgent,
    collect_run,
    connect,
    get_json,
    post_json,
    running_gateway,
    token_for,
    types_of,
    wait_until,
)

KEY = "k" * 40
BAD_KEY = "x" * 40


def api(gateway: Gateway, path: str) -> str:
    return f"{gateway.url}/api/v1{path}"


async def post(gateway: Gateway, path: str, body: object, key: str | None = KEY) -> tuple[int, Any]:
    return await asyncio.to_thread(post_json, api(gateway, path), body, key)


async def get(gateway: Gateway, path: str, key: str | None = KEY) -> tuple[int, Any]:
    return await asyncio.to_thread(get_json, api(gateway, path), key)


async def test_without_a_key_configured_the_server_api_does_not_exist() -> None:
    async with running_gateway() as gateway:
        body = {"user_id": "alice", "content": "hi", "id": "m1"}
        assert (await post(gateway, "/runs", body))[0] == 404
        assert (await get(gateway, "/users/alice/presence"))[0] == 404
        assert (await get(gateway, "/openapi.json"))[0] == 404


async def test_a_missing_or_wrong_key_is_401_on_every_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_gateway(api_key=KEY) as gateway:
        for key in (None, BAD_KEY, KEY[:-1]):
            assert await post(gateway, "/runs", {}, key) == (
                401,
                {"error": "unauthorized", "message": "missing or wrong API key"},
            )
            assert (await post(gateway, "/runs/r1/cancel", {"user_id": "a"}, key))[0] == 401
            assert (await post(gateway, "/users/alice/disconnect", {}, key))[0] == 401
            assert (await get(gateway, "/users/alice/presence", key))[0] == 401
        assert (await post(gateway, "/runs", {"bad": 1}))[0] == 400  # the right key gets in
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert "server API start_run refused" in logged
    assert KEY not in logged and BAD_KEY not in logged, "an API key was logged"


async def test_a_short_api_key_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match="RUNWIRE_API_KEY must be at least 32 characters"):
        async with running_gateway(api_key="short"):
            pass


def unique(name: str) -> str:
    """A user id no other test (or deployment, on the session's Redis) uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def test_start_run_is_seen_live_by_the_users_tabs_and_is_idempotent(
    deployment: Deployment,
) -> None:
    alice = unique("alice")
    async with (
        deployment(api_key=KEY) as gateway,
        connect(gateway, alice) as tab,
        connect(gateway, unique("bob")) as bob,
    ):
        body = {"user_id": alice, "content": "from the backend", "id": "b1", "thread_id": "t9"}
        status, started = await post(gateway, "/runs", body)
        assert status == 202
        assert started == {
            "id": "b1",
            "run_id": started["run_id"],
            "thread_id": "t9",
            "duplicate": False,
        }
        frames = await collect_run(tab, started["run_id"])
        assert types_of(frames)[0] == "agent_started" and types_of(frames)[-1] == "agent_completed"
        assert frames[-1]["data"]["output"] == "echo: from the backend."
        again = await post(gateway, "/runs", body)
        assert again == (202, started | {"duplicate": True})
        # The socket's retry of the same message id gets the same run, too.
        ack = await tab.send_message("from the backend", thread_id="t9", message_id="b1")
        assert ack["run_id"] == started["run_id"]
        with pytest.raises(TimeoutError):
            await bob.recv(timeout=0.3)


async def test_start_run_refuses_bad_bodies_with_their_status() -> None:
    async with running_gateway(api_key=KEY, max_message_chars=10) as gateway:
        good = {"user_id": "alice", "content": "hi", "id": "m1"}
        assert (await post(gateway, "/runs", good | {"content": "x" * 11}))[0] == 413
        assert (await post(gateway, "/runs", good | {"extra": 1}))[0] == 400
        assert (await post(gateway, "/runs", good | {"user_id": ""}))[0] == 400
        assert (await post(gateway, "/runs", good | {"thread_id": "bad id!"}))[0] == 400
        assert (await post(gateway, "/runs", b"{"))[0] == 400
        status, body = await asyncio.to_thread(
            post_json, api(gateway, "/runs"), good, KEY, "text/plain"
        )
        assert (status, body["error"]) == (415, "unsupported_media_type")


async def test_cancel_ends_the_users_run_and_needs_its_user(deployment: Deployment) -> None:
    agent = GatedAgent()
    carol = unique("carol")
    async with deployment(agent, api_key=KEY) as gateway, connect(gateway, carol) as tab:
        body = {"user_id": carol, "content": "wait", "id": "c1"}
        _, started = await post(gateway, "/runs", body)
        run_id = started["run_id"]
        await asyncio.wait_for(agent.in_tool.wait(), 10)
        assert (await post(gateway, f"/runs/{run_id}/cancel", {"user_id": unique("dave")}))[
            0
        ] == 404
        status, answer = await post(gateway, f"/runs/{run_id}/cancel", {"user_id": carol})
        assert (status, answer) == (200, {"run_id": run_id, "cancelled": True})
        frames = await collect_run(tab, run_id)
        assert frames[-1]["type"] == "agent_completed"
        assert frames[-1]["data"]["status"] == "cancelled"
        assert (await post(gateway, f"/runs/{run_id}/cancel", {"user_id": carol}))[0] == 404


async def test_disconnect_closes_every_socket_of_the_user_only() -> None:
    async with (
        running_gateway(api_key=KEY) as gateway,
        connect(gateway, "erin") as tab1,
        connect(gateway, "erin") as tab2,
        connect(gateway, "frank") as other,
    ):
        status, body = await post(gateway, "/users/erin/disconnect", {})
        assert (status, body) == (200, {"user_id": "erin", "closed_here": 2})
        for tab in (tab1, tab2):
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await tab.recv(timeout=5)
            assert (closed.value.code, closed.value.reason) == (4403, "revoked")
        await other.ping()
        async with connect(gateway, "erin") as again:
            custom = {"code": 4000, "reason": "account moved"}
            assert (await post(gateway, "/users/erin/disconnect", custom))[0] == 200
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await again.recv(timeout=5)
            assert (closed.value.code, closed.value.reason) == (4000, "account moved")
        assert (await post(gateway, "/users/erin/disconnect", {"code": 1000}))[0] == 400


async def test_presence_counts_the_users_open_sockets() -> None:
    async with (
        running_gateway(api_key=KEY) as gateway,
        connect(gateway, "gina"),
        connect(gateway, "gina"),
    ):
        status, presence = await get(gateway, "/users/gina/presence")
        assert status == 200
        assert presence == {
            "user_id": "gina",
            "connections": 2,
            "nodes": {gateway.node_id: 2},
            "complete": True,
        }
        _, nobody = await get(gateway, "/users/hank/presence")
        assert (nobody["connections"], nobody["nodes"]) == (0, {})


async def test_presence_and_disconnect_reach_every_node_in_redis_mode(
    redis_server: Any,
) -> None:
    url, ivy = redis_server.url, unique("ivy")
    async with (
        running_gateway(engine=url, api_key=KEY) as node_a,
        running_gateway(engine=url, api_key=KEY) as node_b,
        connect(node_a, ivy),
        connect(node_b, ivy) as on_b,
        connect(node_b, ivy),
    ):
        status, presence = await get(node_a, f"/users/{ivy}/presence")
        assert status == 200 and presence["complete"] is True
        assert presence["nodes"] == {node_a.node_id: 1, node_b.node_id: 2}
        assert presence["connections"] == 3
        assert (await post(node_a, f"/users/{ivy}/disconnect", {}))[1]["closed_here"] == 1
        with pytest.raises(ConnectionClosed):
            while True:
                await on_b.recv(timeout=5)
        await wait_until(lambda: not node_b.manager.connections_of(ivy), 5, "node B")  # type: ignore[arg-type]


async def test_api_runs_on_another_node_answer_from_the_shared_store(redis_server: Any) -> None:
    """A run executed on node A, read over HTTP from node B (was: B's memory only)."""
    url, jo = redis_server.url, unique("jo")
    async with (
        running_gateway(engine=url, api_key=KEY) as node_a,
        running_gateway(engine=url) as node_b,
        connect(node_a, jo) as tab,
    ):
        _, started = await post(node_a, "/runs", {"user_id": jo, "content": "x", "id": "s1"})
        await collect_run(tab, started["run_id"])
        token = token_for(node_b.settings, jo)
        run_url = f"{node_b.url}/api/runs/{started['run_id']}"

        async def terminal() -> bool:
            status, run = await asyncio.to_thread(get_json, run_url, token)
            return status == 200 and run["status"] == "completed"

        deadline = asyncio.get_running_loop().time() + 5
        while not await terminal():  # snapshots are written behind (<= 0.1 s)
            assert asyncio.get_running_loop().time() < deadline, "node B never saw the run"
            await asyncio.sleep(0.05)
        status, threads = await asyncio.to_thread(get_json, f"{node_b.url}/api/threads", token)
        assert status == 200 and [t["runs"] for t in threads["threads"]] == [1]


async def test_the_openapi_document_describes_every_route(door: OpenDoor) -> None:
    async with door(api_key=KEY) as d:
        status, document = await asyncio.to_thread(get_json, f"{d.url}/api/v1/openapi.json", KEY)
        assert status == 200 and document["openapi"].startswith("3.1")
        assert set(document["paths"]) == {
            "/api/v1/runs",
            "/api/v1/runs/{run_id}/cancel",
            "/api/v1/users/{user_id}/disconnect",
            "/api/v1/users/{user_id}/presence",
        }
        start = document["components"]["schemas"]["StartRun"]
        assert set(start["required"]) == {"user_id", "content", "id"}
        status, started = await asyncio.to_thread(
            post_json,
            f"{d.url}/api/v1/runs",
            {"user_id": "door-kim", "content": "hi", "id": "d1"},
            KEY,
        )
        assert status == 202 and started["duplicate"] is False


def call(
    url: str, method: str = "GET", body: bytes | None = None, authorization: str = f"Bearer {KEY}"
) -> tuple[int, Any]:
    """``method url`` with this ``Authorization`` header, sent as it is."""
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Authorization", authorization)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def closed_with(tab: Any) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await tab.recv(timeout=5)
    return closed.value.code, closed.value.reason


async def test_a_user_id_is_percent_decoded_once_on_both_front_doors(door: OpenDoor) -> None:
    """``a%2541`` is user ``a%41`` (was: decoded again, user ``aA``, whose sockets a
    disconnect then closed): revocation must reach the user named."""
    async with (
        door(api_key=KEY) as d,
        d.connect("a%41") as percent,
        d.connect("aA") as other,
    ):
        users = f"{d.url}/api/v1/users"
        status, presence = await asyncio.to_thread(call, f"{users}/a%2541/presence")
        assert (status, presence["user_id"], presence["connections"]) == (200, "a%41", 1)
        answer = await asyncio.to_thread(call, f"{users}/a%2541/disconnect", "POST", b"{}")
        assert answer == (200, {"user_id": "a%41", "closed_here": 1})
        assert (await closed_with(percent))[0] == 4403
        await other.ping()  # user aA was not touched
        assert (await asyncio.to_thread(call, f"{users}/aA/presence"))[1]["connections"] == 1


async def test_a_user_id_with_an_encoded_slash_is_one_segment_on_both_front_doors(
    door: OpenDoor,
) -> None:
    """``team%2Fbob`` is user ``team/bob`` (was: 404, so the user could not be revoked)."""
    async with door(api_key=KEY) as d, d.connect("team/bob") as slash:
        users = f"{d.url}/api/v1/users"
        status, presence = await asyncio.to_thread(call, f"{users}/team%2Fbob/presence")
        assert (status, presence.get("user_id"), presence.get("connections")) == (
            200,
            "team/bob",
            1,
        )
        answer = await asyncio.to_thread(call, f"{users}/team%2Fbob/disconnect", "POST", b"{}")
        assert answer == (200, {"user_id": "team/bob", "closed_here": 1})
        assert (await closed_with(slash))[0] == 4403
        assert (await asyncio.to_thread(call, f"{users}/team/bob/presence"))[0] == 404


async def test_a_disconnect_reason_is_limited_to_120_bytes_not_characters() -> None:
    async with running_gateway(api_key=KEY) as gateway, connect(gateway, "kai") as tab:
        too_long = "\u30a2" * 41  # 41 characters, 123 bytes
        status, body = await post(gateway, "/users/kai/disconnect", {"reason": too_long})
        assert (status, body.get("error")) == (400, "bad_request")
        assert "120 bytes" in body["message"]
        await tab.ping()  # still open
        longest = "\u30a2" * 40  # 120 bytes
        assert (await post(gateway, "/users/kai/disconnect", {"reason": longest}))[0] == 200
        assert await closed_with(tab) == (4403, longest)


async def test_the_openapi_document_needs_the_key(door: OpenDoor) -> None:
    async with door(api_key=KEY) as d:
        url = f"{d.url}/api/v1/openapi.json"
        for key in (None, BAD_KEY):
            assert await asyncio.to_thread(get_json, url, key) == (
                401,
                {"error": "unauthorized", "message": "missing or wrong API key"},
            )
        assert (await asyncio.to_thread(get_json, url, KEY))[0] == 200


async def test_the_bearer_scheme_is_case_insensitive_the_key_is_not() -> None:
    async with running_gateway(api_key=KEY) as gateway:
        url = api(gateway, "/users/lee/presence")
        for scheme in ("bearer", "BEARER", "bEaReR"):
            assert (await asyncio.to_thread(call, url, authorization=f"{scheme} {KEY}"))[0] == 200
        for refused in (f"bearer {KEY.upper()}", f"Basic {KEY}", f"bearer {KEY[:-1]}", KEY):
            assert (await asyncio.to_thread(call, url, authorization=refused))[0] == 401


async def test_the_server_api_repr_does_not_show_the_key() -> None:
    async with running_gateway(api_key=KEY) as gateway:
        server_api = gateway._server_api()
        assert server_api.key == KEY
        assert KEY not in repr(server_api) and KEY not in str(server_api)
