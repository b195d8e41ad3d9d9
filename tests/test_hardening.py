"""Hostile input cannot stall, bloat or break the gateway (issue #10, over real sockets).

Each test names the case of the issue it reproduces; each failed on cd924f8.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from typing import Any

import msgspec
import pytest
import websockets

from runwire import Run, tool
from runwire.agents.demo import DemoAgent
from runwire.auth import BEARER_PROTOCOL_PREFIX, SUBPROTOCOL
from runwire.client import Client, ClientError
from runwire.ids import UserId
from runwire.protocol import CONTROL_RESERVE_BYTES
from tests.helpers import collect_run, connect, running_gateway, token_for, wait_until

pytestmark = pytest.mark.timeout(60)


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


async def _ping_rtt(client: Client) -> float:
    started = time.perf_counter()
    await client.ping(timeout=20)
    return time.perf_counter() - started


# -- case 1: one chat message froze the whole gateway ------------------------------


async def test_a_result_too_big_to_compute_ends_the_call_and_the_gateway_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        running_gateway(DemoAgent(word_delay_s=0)) as gateway,
        connect(gateway, "mallory") as mallory,
        connect(gateway, "alice") as alice,
    ):
        ack = await mallory.send_message("what is ((9**64)**64)**64?")
        frames = await collect_run(mallory, ack["run_id"])
        calls = [f for f in frames if f["type"] == "tool_completed"]
        assert calls[0]["data"]["tool"] == "calculator"
        assert calls[0]["data"]["ok"] is False
        assert "digits" in calls[0]["data"]["error"]
        assert frames[-1]["type"] == "agent_completed"
        assert [f["offset"] for f in frames] == list(range(1, len(frames) + 1))
        # Everyone else is still served, and so is the sender.
        assert await _ping_rtt(alice) < 5
        ack = await mallory.send_message("what is 2 + 2?")
        assert (await collect_run(mallory, ack["run_id"]))[-1]["type"] == "agent_completed"
    _no_tracebacks(caplog)


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def _cycle() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


HOSTILE_RESULTS: dict[str, Any] = {
    "huge int": ((9**64) ** 64) ** 64,
    "object": _Opaque(),
    "cycle": _cycle(),
    "50 MB string": "x" * 50_000_000,
    "lone surrogate": "\ud800",
}


async def _hostile_agent(run: Run, message: str) -> str:
    for name, value in HOSTILE_RESULTS.items():
        async with run.tool(name, {}) as call:
            call.result = value
    async with run.tool("nan", {}) as call:
        call.result = {"nan": math.nan, "bytes": b"\x00\xff"}
    await run.say("survived")
    return "survived"


async def test_whatever_a_tool_returns_ends_as_a_well_formed_event() -> None:
    async with running_gateway(_hostile_agent) as gateway, connect(gateway, "eve") as eve:
        ack = await eve.send_message("go")
        frames = await collect_run(eve, ack["run_id"])
        completed = [f["data"] for f in frames if f["type"] == "tool_completed"]
        by_tool = {c["tool"]: c for c in completed}
        for name in HOSTILE_RESULTS:
            assert by_tool[name]["ok"] is False, name
            assert by_tool[name]["error"].startswith("the tool's result could not be sent"), name
        assert "max_event_bytes" in by_tool["50 MB string"]["error"]
        assert "digits" in by_tool["huge int"]["error"]
        # NaN and bytes are JSON-encodable (null and base64): the call succeeds.
        assert by_tool["nan"]["ok"] is True
        assert by_tool["nan"]["result"] == {"nan": None, "bytes": "AP8="}
        assert frames[-1]["type"] == "agent_completed"
        assert frames[-1]["data"]["output"] == "survived"
        # No gap: every offset once, in order; a fresh socket replays the same stream.
        assert [f["offset"] for f in frames] == list(range(1, len(frames) + 1))
        assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))


async def test_an_answer_that_cannot_be_encoded_ends_the_run_with_agent_error() -> None:
    async def agent(run: Run, message: str) -> str:
        await run.say("partial ")
        return "\ud800 not text"

    async with running_gateway(agent) as gateway, connect(gateway, "eve") as eve:
        ack = await eve.send_message("go")
        frames = await collect_run(eve, ack["run_id"])
        assert frames[-1]["type"] == "agent_error"
        assert frames[-1]["data"]["code"] == "event_rejected"
        assert "answer could not be sent" in frames[-1]["data"]["message"]


async def test_text_too_big_to_send_raises_in_the_agent_which_may_recover() -> None:
    caught: list[str] = []

    async def agent(run: Run, message: str) -> str:
        try:
            await run.think("t" * 300_000)
        except Exception as exc:  # EventRejected: the agent is told, nothing is stored
            caught.append(type(exc).__name__)
        await run.say("short")
        await run.say("s" * 300_000)  # not caught: the run ends with event_rejected
        return "unreachable"

    async with running_gateway(agent) as gateway, connect(gateway, "eve") as eve:
        ack = await eve.send_message("go")
        frames = await collect_run(eve, ack["run_id"])
        assert caught == ["EventRejected"]
        assert [f["type"] for f in frames] == [
            "agent_started",
            "agent_message_delta",
            "agent_error",
        ]
        assert frames[-1]["data"]["code"] == "event_rejected"
        assert [f["seq"] for f in frames] == [1, 2, 3]


# -- case 2: a client that stops reading grew the server without limit ----------------


async def _big_answer_agent(run: Run, message: str) -> str:
    for _ in range(4):
        await run.say("a" * 60_000)
    return "done"


async def test_a_socket_that_never_reads_is_closed_4409_whatever_it_asks_for() -> None:
    async with running_gateway(
        _big_answer_agent, heartbeat_interval_s=2.0, heartbeat_timeout_s=2.0
    ) as gateway:
        async with connect(gateway, "bob") as bob:  # a big run snapshot to ask for
            ack = await bob.send_message("go")
            await collect_run(bob, ack["run_id"])
        # A client that reads nothing: a tiny receive buffer, and websockets stops
        # reading the socket once a few frames are waiting.
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", gateway.port))
        token = token_for(gateway.settings, "bob")
        async with websockets.connect(
            gateway.ws_url,
            sock=raw,
            subprotocols=[SUBPROTOCOL, BEARER_PROTOCOL_PREFIX + token],  # type: ignore[list-item]
            max_queue=1,
            max_size=None,
        ) as deaf:
            session_limit = gateway.settings.outbound_queue_bytes + CONTROL_RESERVE_BYTES
            peak = 0
            for index in range(400):
                (connection,) = gateway.manager.connections_of(UserId("bob")) or (None,)
                if connection is None:
                    break
                peak = max(peak, connection.session.pending_bytes)
                try:
                    await deaf.send(
                        msgspec.json.encode({"type": "get_runs", "id": f"g{index}"}).decode()
                    )
                except websockets.ConnectionClosed:
                    break
                await asyncio.sleep(1 / 19)  # under the rate limit
            await wait_until(
                lambda: not gateway.manager.connections_of(UserId("bob")),
                timeout=15,
                what="the non-reader closed",
            )
        assert peak <= session_limit, (peak, index)
        assert gateway.metrics.slow_consumer_closes._value.get() == 1


async def test_get_runs_pages_by_limit_and_before() -> None:
    async def quick(run: Run, message: str) -> str:
        return message

    async with running_gateway(quick) as gateway, connect(gateway, "pat") as pat:
        run_ids = []
        for index in range(5):
            ack = await pat.send_message(f"m{index}", thread_id="t")
            await collect_run(pat, ack["run_id"])
            run_ids.append(ack["run_id"])
        reply = await pat._request({"type": "get_runs", "id": "p1", "limit": 2}, "p1", 5)
        assert [r["run_id"] for r in reply["runs"]] == run_ids[3:]
        assert reply["more"] is True
        before = reply["runs"][0]["run_id"]
        reply = await pat._request(
            {"type": "get_runs", "id": "p2", "limit": 2, "before": before}, "p2", 5
        )
        assert [r["run_id"] for r in reply["runs"]] == run_ids[1:3]
        reply = await pat._request({"type": "get_runs", "id": "p3", "before": run_ids[1]}, "p3", 5)
        assert [r["run_id"] for r in reply["runs"]] == run_ids[:1]
        assert reply["more"] is False
        with pytest.raises(ClientError) as refused:
            await pat._request({"type": "get_runs", "id": "p4", "limit": 101}, "p4", 5)
        assert refused.value.code == "invalid_message"


# -- case 3: a CPU-heavy tool stalled every user ------------------------------------


@pytest.mark.parametrize(
    "message",
    ["what is (((9**64)**64)**64)**64 % 7?", "(" * 15_990 + " hi"],
    ids=["huge power", "16,000 parentheses"],
)
async def test_hostile_arithmetic_delays_no_other_user(message: str) -> None:
    async with (
        running_gateway(DemoAgent(word_delay_s=0)) as gateway,
        connect(gateway, "mallory") as mallory,
        connect(gateway, "alice") as alice,
    ):
        await mallory.send_raw(
            msgspec.json.encode({"type": "user_message", "id": "m1", "content": message}).decode()
        )
        rtts = [await _ping_rtt(alice) for _ in range(5)]
        assert max(rtts) < 0.5, rtts  # cd924f8: 12.9 s and 1.9 s
        ack = await mallory.recv(timeout=10)
        assert ack["type"] == "ack"
        assert (await collect_run(mallory, ack["run_id"]))[-1]["type"] == "agent_completed"


async def test_a_blocking_sync_tool_runs_in_a_thread_and_delays_nobody() -> None:
    started = asyncio.Event()

    @tool
    def slow_lookup(key: str) -> str:
        started.set()  # set from the worker thread: only read after the call ends
        time.sleep(1.0)
        return key.upper()

    async def agent(run: Run, message: str) -> str:
        return await slow_lookup(key=message)

    async with (
        running_gateway(agent) as gateway,
        connect(gateway, "mallory") as mallory,
        connect(gateway, "alice") as alice,
    ):
        ack = await mallory.send_message("abc")
        await wait_until(
            lambda: gateway.runtime.active_runs() == 1, what="the run started", timeout=5
        )
        rtts = [await _ping_rtt(alice) for _ in range(5)]
        assert max(rtts) < 0.5, rtts
        frames = await collect_run(mallory, ack["run_id"])
        assert frames[-2]["data"]["result"] == "ABC"
        assert frames[-1]["data"]["output"] == "ABC"


async def test_a_step_that_blocks_the_loop_is_reported_with_its_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def blocking(run: Run, message: str) -> str:
        await run.think("about to block")
        time.sleep(0.4)  # noqa: ASYNC251 - the bad practice under test
        return "done"

    caplog.set_level(logging.WARNING, logger="runwire.agents")
    async with running_gateway(blocking) as gateway, connect(gateway, "dan") as dan:
        ack = await dan.send_message("go")
        await collect_run(dan, ack["run_id"])
        warnings = [
            r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()
        ]
        assert len(warnings) == 1 and ack["run_id"] in warnings[0]
        assert gateway.metrics.slow_steps._value.get() == 1
        await wait_until(
            lambda: _lag_samples(gateway.metrics.render()) >= 2, what="two loop-lag samples"
        )
        # The sampler sleeps 0.25 s: a 0.4 s block makes it at least 0.15 s late.
        assert _lag_count_over(gateway.metrics.render(), "0.1") >= 1


def _lag_samples(text: bytes) -> float:
    for line in text.decode().splitlines():
        if line.startswith("runwire_event_loop_lag_seconds_count"):
            return float(line.split()[-1])
    return 0.0


def _lag_count_over(text: bytes, bound: str) -> float:
    """Samples above ``bound`` seconds (total minus the ``le=bound`` bucket)."""
    total = _lag_samples(text)
    for line in text.decode().splitlines():
        if line.startswith(f'runwire_event_loop_lag_seconds_bucket{{le="{bound}"}}'):
            return total - float(line.split()[-1])
    raise AssertionError(f"no bucket {bound}")


# -- case 4: deeply nested JSON closed 1011 with a traceback ------------------------


@pytest.mark.parametrize("depth", [33, 990, 5_000])
async def test_deeply_nested_json_closes_4400(depth: int, caplog: pytest.LogCaptureFixture) -> None:
    async with running_gateway() as gateway, connect(gateway, "nest") as nest:
        payload = '{"type":"ping","id":"p","x":' + "[" * depth + "]" * depth + "}"
        await nest.send_raw(payload)
        await nest.socket.wait_closed()
        assert nest.socket.close_code == 4400
        assert "nests deeper than 32" in (nest.socket.close_reason or "")
    _no_tracebacks(caplog)


async def test_nesting_up_to_the_limit_is_accepted() -> None:
    async with running_gateway() as gateway, connect(gateway, "nest") as nest:
        depth = 31  # the frame object itself is the first level
        await nest.send_raw('{"type":"ping","id":"p","x":' + "[" * depth + "]" * depth + "}")
        assert (await nest.recv(timeout=5))["type"] == "pong"


# -- case 8: clients chose metric labels --------------------------------------------


async def test_client_close_codes_do_not_become_metric_labels() -> None:
    async with running_gateway() as gateway:
        for code in range(3000, 3040):
            async with connect(gateway, "labeller") as client:
                await client.socket.close(code)
        await wait_until(lambda: gateway.manager.connection_count == 0, what="all closed")
        text = gateway.metrics.render().decode()
        closed = [
            line
            for line in text.splitlines()
            if line.startswith("runwire_connections_closed_total")
        ]
        assert len(closed) <= 2, closed  # "other" (and nothing per client code)
        assert any('code="other"' in line and line.endswith(" 40.0") for line in closed)
