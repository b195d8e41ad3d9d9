"""Seeded fuzzing of the wire: 12,000 mutated client frames, each with its documented outcome.

The mutations and the oracle live in tests/wirefuzz.py (bench/fuzz_soak.py runs the
same for 200,000+ frames). Each frame goes over a real socket to a running gateway;
its outcome (served, or a close code) must be exactly what docs/protocol.md says for
those bytes. Then: nothing was logged at ERROR, the gateway still serves a control
user, nothing is left behind, and memory is back near where it started.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from picows import WSTransport

from runwire.manager import Connection
from runwire.protocol import Session
from runwire.server import _ConnectionListener, _PicowsWriter
from tests.helpers import collect_run, connect, running_gateway, wait_until
from tests.rawws import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, RawWebSocket, encode_frame
from tests.wirefuzz import Expectation, complete, expect, fuzz

SEED = 61_455
FRAMES = 12_000
RSS_GROWTH_LIMIT = 12 * 2**20
"""Bounded retention (history, snapshots) grows it by about 1 MiB over the run."""
PER_SOCKET = {Connection, Session, WSTransport, _ConnectionListener, _PicowsWriter}
"""Objects that exist once per socket: none may outlive it."""
MAX_FRAME_BYTES = 1024

FUZZ_SETTINGS: dict[str, Any] = {
    "max_frame_bytes": MAX_FRAME_BYTES,
    "client_messages_per_s": 1e9,  # rate limiting is tested elsewhere; here it would mask
    "max_connections_per_user": 1000,
    "close_timeout_s": 2.0,
}


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR or r.exc_info
    ]


@pytest.mark.slow
async def test_mutated_frames_get_their_documented_outcome_and_the_gateway_keeps_serving(
    caplog: pytest.LogCaptureFixture, report: Callable[[str], None]
) -> None:
    async with running_gateway(**FUZZ_SETTINGS) as gateway:
        warm_up = await fuzz(gateway, 1000, seed=SEED - 1)
        assert not warm_up.failures, warm_up.failures
        await wait_until(lambda: not gateway.manager.connection_count, 10, "warm-up sockets")
        gc.collect()
        baseline = rss_bytes()
        loop_time = asyncio.get_running_loop().time
        started = loop_time()

        result = await fuzz(gateway, FRAMES, seed=SEED, concurrency=16)

        elapsed = loop_time() - started
        assert not result.failures, "\n".join(result.failures)
        assert result.frames == FRAMES
        assert "1011" not in result.outcomes  # the oracle never expects it: never sent
        # Every documented outcome occurred, so the mutations reach every check.
        assert {"open", "1002", "1007", "1009", "4400"} <= set(result.outcomes)

        await wait_until(lambda: not gateway.manager.connection_count, 10, "fuzz sockets")
        async with connect(gateway, "control") as control:
            await control.ping()
            ack = await control.send_message("still serving?")
            frames = await collect_run(control, ack["run_id"])
            assert frames[-1]["type"] == "agent_completed"
        await wait_until(lambda: not gateway.manager.connection_count, 10, "control socket")
        stats = gateway.manager.stats()
        await wait_until(lambda: gateway.manager.stats()["tasks"] == 0, 10, "tasks to end")
        gc.collect()
        growth = rss_bytes() - baseline
        alive = Counter(type(o).__name__ for o in gc.get_objects() if type(o) in PER_SOCKET)
    assert not errors_logged(caplog)
    assert stats["connections"] == stats["users"] == stats["queued_frames"] == 0
    assert not alive, f"per-socket objects still alive: {alive}"
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / 2**20:.1f} MiB"
    report(
        f"fuzz: {result.frames} frames over {result.connections} connections in "
        f"{elapsed:.1f} s ({result.frames / elapsed:,.0f} frames/s); RSS "
        f"{baseline / 2**20:.1f} MiB -> {(baseline + growth) / 2**20:.1f} MiB; "
        + ", ".join(f"{k}: {v}" for k, v in result.outcomes.most_common())
    )


PROBE = encode_frame(OP_TEXT, b'{"type":"ping","id":"probe"}')


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (encode_frame(OP_TEXT, b'{"type":"ping","id":"a"}'), Expectation(None)),
        (encode_frame(OP_PING, b"hi"), Expectation(None, (b"hi",))),
        (encode_frame(3, b"x"), Expectation(frozenset({1002}))),
        (encode_frame(OP_TEXT, b"x", rsv=4), Expectation(frozenset({1002}))),
        (encode_frame(OP_BINARY, b"x"), Expectation(frozenset({4400}))),
        (encode_frame(OP_TEXT, b"\xff"), Expectation(frozenset({1007}))),
        (encode_frame(OP_TEXT, b"[1]"), Expectation(frozenset({4400}))),
        (encode_frame(OP_TEXT, b"x" * 1025), Expectation(frozenset({1009}))),
        (encode_frame(OP_TEXT, length=5000), Expectation(frozenset({1009}))),
        (encode_frame(OP_CLOSE, b""), Expectation(frozenset({1000}))),
        (encode_frame(OP_CLOSE, b"\x13\x88"), Expectation(frozenset({1002}))),  # 5000
        (encode_frame(OP_CLOSE, b"\x0f\xa0"), Expectation(frozenset({4000}))),
        # Truncated: completed with zeros, so the payload is the masking key (not UTF-8).
        (encode_frame(OP_TEXT, b"abcd")[:6], Expectation(frozenset({1007}))),
        # A second close frame is a parse error, which may overtake the first's echo.
        (
            encode_frame(OP_CLOSE, b"\x03\xe8") + encode_frame(OP_CLOSE, b""),
            Expectation(frozenset({1000, 1002})),
        ),
        # A session decision (4400) may be overtaken by a later parse error (1002).
        (
            encode_frame(OP_TEXT, b"[]") + encode_frame(OP_PING, b"") + encode_frame(5, b""),
            Expectation(frozenset({4400, 1002})),
        ),
    ],
)
def test_the_oracle_knows_the_documented_outcomes(wire: bytes, expected: Expectation) -> None:
    assert expect(complete(wire, MAX_FRAME_BYTES) + PROBE, MAX_FRAME_BYTES) == expected


async def test_json_nested_deeper_than_the_parser_allows_closes_4400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        running_gateway(close_timeout_s=5.0) as gateway,
        RawWebSocket.connect(gateway) as ws,
    ):
        await ws.recv_frame()
        depth = 5_000  # 10 KB, under max_frame_bytes
        await ws.send_frame(
            OP_TEXT, b'{"type":"ping","id":"d","x":' + b"[" * depth + b"]" * depth + b"}"
        )
        close = await ws.recv_close()
        assert close.close_code == 4400
    assert not errors_logged(caplog)
