"""What every deployment promises over a real socket (memory, Redis, Redis + workers):
the golden path, isolation, resume without loss, cancel, and bad input."""

from __future__ import annotations

import secrets

import pytest

from runwire.client import Client
from runwire.events import CRITICAL_EVENT_TYPES
from runwire.exceptions import CloseCode, ConnectionClosed
from tests.deployments import Deployment
from tests.helpers import (
    GatedAgent,
    assert_run_rules,
    collect_run,
    connect,
    token_for,
    types_of,
    wait_until,
)


def _user(name: str) -> str:
    """A user id of this test only (a shared Redis keeps other tests' streams)."""
    return f"{name}-{secrets.token_hex(3)}"


async def test_the_golden_path(deployment: Deployment) -> None:
    async with deployment() as gateway, connect(gateway, _user("alice")) as client:
        ack = await client.send_message("hello", thread_id="t1")
        frames = await collect_run(client, ack["run_id"])
    assert_run_rules(frames)
    assert [t for t in types_of(frames) if t in CRITICAL_EVENT_TYPES] == list(CRITICAL_EVENT_TYPES)
    start = client.connected["offset"]
    assert [f["offset"] for f in frames] == list(range(start + 1, start + 1 + len(frames)))
    assert frames[-1]["data"]["output"] == "echo: hello."


async def test_every_tab_of_a_user_and_no_one_else(deployment: Deployment) -> None:
    alice, bob = _user("alice"), _user("bob")
    async with (
        deployment() as gateway,
        connect(gateway, alice) as tab_1,
        connect(gateway, alice) as tab_2,
        connect(gateway, bob) as other,
    ):
        ack = await tab_1.send_message("private")
        first = await collect_run(tab_1, ack["run_id"])
        second = await collect_run(tab_2, ack["run_id"])
        await other.ping()
        assert other._frames.empty(), "another user received alice's events"
    assert first == second


async def test_a_client_resumes_with_nothing_missing_and_nothing_twice(
    deployment: Deployment,
) -> None:
    user = _user("carol")
    async with deployment() as gateway:
        async with connect(gateway, user) as first:
            ack = await first.send_message("one")
            await collect_run(first, ack["run_id"])
            position = first.position
        assert position is not None
        async with connect(gateway, user) as other:  # published while the first is away
            missed = await other.send_message("two")
            expected = await collect_run(other, missed["run_id"])
        async with connect(gateway, user, resume=position) as again:
            replayed = await collect_run(again, missed["run_id"])
            resumed = await again.recv(timeout=5)
    assert replayed == expected
    assert resumed["type"] == "resumed" and resumed["to"] == expected[-1]["offset"]


async def test_cancel_ends_the_run_as_cancelled_with_its_tool_closed(
    deployment: Deployment,
) -> None:
    agent = GatedAgent()
    async with deployment(agent) as gateway, connect(gateway, _user("dan")) as client:
        ack = await client.send_message("wait")
        await wait_until(lambda: agent.in_tool.is_set(), timeout=10, what="the tool call")
        await client.cancel(ack["run_id"])
        frames = await collect_run(client, ack["run_id"])
    assert_run_rules(frames)
    assert frames[-1]["data"]["status"] == "cancelled"
    assert any(f["type"] == "tool_completed" and not f["data"]["ok"] for f in frames)


async def test_a_binary_frame_closes_4400(deployment: Deployment) -> None:
    async with deployment() as gateway, connect(gateway, _user("eve")) as client:
        await client.send_raw(b"\x00\x01")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.recv(timeout=10)
    assert closed.value.code == CloseCode.PROTOCOL_VIOLATION


async def test_a_forged_token_closes_4401(deployment: Deployment) -> None:
    async with deployment() as gateway:
        forged = token_for(gateway.settings, "mallory")[:-4] + "AAAA"
        with pytest.raises(ConnectionClosed) as closed:
            async with Client.connect(gateway.ws_url, forged):
                pass
    assert closed.value.code == CloseCode.UNAUTHORIZED
