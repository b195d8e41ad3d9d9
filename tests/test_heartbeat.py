"""Heartbeats (protocol.md section 14): idle sockets are pinged, silent ones closed 1001.

Proved on real sockets with the raw client (it answers nothing by itself), then the
one-timer heap on its own: many peers due at once never hold the loop for more than
``BATCH`` of them, and a forgotten peer is neither called nor held.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

from runwire.heartbeat import BATCH, Heartbeats
from tests.helpers import running_gateway, wait_until
from tests.rawws import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawWebSocket, encode_frame

INTERVAL_S, TIMEOUT_S = 0.3, 0.2
PING = b'{"type":"ping","id":"p1"}'


async def _connected(ws: RawWebSocket) -> None:
    frame = await ws.recv_frame()
    assert frame.opcode == OP_TEXT and frame.payload.startswith(b'{"type":"connected"')


async def test_an_idle_socket_is_pinged_after_the_interval() -> None:
    async with (
        running_gateway(heartbeat_interval_s=INTERVAL_S, heartbeat_timeout_s=TIMEOUT_S) as gw,
        RawWebSocket.connect(gw) as ws,
    ):
        await _connected(ws)
        loop = asyncio.get_running_loop()
        since = loop.time()
        ping = await ws.recv_frame(timeout=5)
        assert ping.opcode == OP_PING and ping.payload == b""
        assert loop.time() - since >= INTERVAL_S * 0.8


async def test_a_socket_that_answers_its_pings_stays_open() -> None:
    async with (
        running_gateway(heartbeat_interval_s=INTERVAL_S, heartbeat_timeout_s=TIMEOUT_S) as gw,
        RawWebSocket.connect(gw) as ws,
    ):
        await _connected(ws)
        for _ in range(4):  # four rounds, each longer than interval + timeout in all
            ping = await ws.recv_frame(timeout=5)
            assert ping.opcode == OP_PING
            await ws.send(encode_frame(OP_PONG, ping.payload))
        assert gw.manager.connection_count == 1


async def test_a_socket_that_does_not_answer_is_closed_1001_after_the_timeout() -> None:
    async with (
        running_gateway(heartbeat_interval_s=INTERVAL_S, heartbeat_timeout_s=TIMEOUT_S) as gw,
        RawWebSocket.connect(gw) as ws,
    ):
        await _connected(ws)
        ping = await ws.recv_frame(timeout=5)
        assert ping.opcode == OP_PING
        loop = asyncio.get_running_loop()
        pinged = loop.time()
        close = await ws.recv_close(timeout=5)
        assert close.close_code == 1001
        assert (
            close.close_reason
            == (
                f"peer has not replied to ping/heartbeat request within {TIMEOUT_S} second(s)"
            ).encode()
        )
        assert loop.time() - pinged >= TIMEOUT_S * 0.8
        await ws.send(encode_frame(OP_CLOSE, b"\x03\xe9"))
        await ws.wait_closed(timeout=5)
        await wait_until(lambda: gw.manager.connection_count == 0, 5)
        assert gw.metrics.connections_closed.labels("1001")._value.get() == 1


async def test_a_socket_that_keeps_sending_is_never_pinged() -> None:
    """Anything received counts as life: a client sending more often than the
    interval gets no Ping (and so needs to answer none)."""
    async with (
        running_gateway(heartbeat_interval_s=INTERVAL_S, heartbeat_timeout_s=TIMEOUT_S) as gw,
        RawWebSocket.connect(gw) as ws,
    ):
        await _connected(ws)
        loop = asyncio.get_running_loop()
        until = loop.time() + 4 * INTERVAL_S
        while loop.time() < until:
            await ws.send(encode_frame(OP_TEXT, PING))
            pong = await ws.recv_frame(timeout=5)
            assert pong.opcode == OP_TEXT and b'"pong"' in pong.payload, pong
            await asyncio.sleep(INTERVAL_S / 3)
        assert not [frame for frame in ws.received if frame.opcode == OP_PING]
        assert gw.manager.connection_count == 1


class _Peer:
    """A heartbeat peer that records its pings and never answers."""

    def __init__(self, turns: list[int]) -> None:
        self.last_seen = 0.0
        self.awaiting_pong = False
        self.heartbeat_entry: list[object] | None = None
        self.pinged_at_turn: int | None = None
        self.failed = False
        self._turns = turns

    def send_ping(self) -> bool:
        self.pinged_at_turn = self._turns[0]
        return True

    def heartbeat_failed(self) -> None:
        self.failed = True


async def test_many_peers_due_at_once_are_pinged_a_batch_per_loop_turn() -> None:
    heartbeats = Heartbeats(0.05, 0.05)
    turns = [0]
    ticking = True

    def tick() -> None:
        turns[0] += 1
        if ticking:
            asyncio.get_running_loop().call_soon(tick)

    peers = [_Peer(turns) for _ in range(int(2.5 * BATCH))]
    for peer in peers:
        heartbeats.watch(peer)
    asyncio.get_running_loop().call_soon(tick)
    try:
        await wait_until(lambda: all(p.pinged_at_turn is not None for p in peers), 10)
        await wait_until(lambda: all(p.failed for p in peers), 10)
    finally:
        ticking = False
        heartbeats.close()
    per_turn: dict[int, int] = {}
    for peer in peers:
        assert peer.pinged_at_turn is not None
        per_turn[peer.pinged_at_turn] = per_turn.get(peer.pinged_at_turn, 0) + 1
    assert max(per_turn.values()) <= BATCH
    assert len(per_turn) >= 3


async def test_a_forgotten_peer_is_not_called_and_not_held() -> None:
    heartbeats = Heartbeats(0.05, 0.05)
    turns = [0]
    forgotten, dropped, staying = _Peer(turns), _Peer(turns), _Peer(turns)
    for peer in (forgotten, dropped, staying):
        heartbeats.watch(peer)
    Heartbeats.forget(forgotten)
    Heartbeats.forget(dropped)
    dropped_ref = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert dropped_ref() is None  # the heap keeps no reference to a forgotten peer
    try:
        await wait_until(lambda: staying.failed, 5)
    finally:
        heartbeats.close()
    assert forgotten.pinged_at_turn is None and not forgotten.failed
    assert staying.pinged_at_turn is not None
    assert len(heartbeats) == 0


class _Broken(_Peer):
    def send_ping(self) -> bool:
        raise RuntimeError("this socket's ping breaks")


class _Closing(_Peer):
    def send_ping(self) -> bool:
        self.pinged_at_turn = self._turns[0]
        return False  # its close frame is sent already


async def test_a_peer_that_breaks_or_is_closing_leaves_and_the_others_go_on() -> None:
    heartbeats = Heartbeats(0.05, 0.05)
    turns = [0]
    broken, closing = _Broken(turns), _Closing(turns)
    healthy = [_Peer(turns) for _ in range(3)]
    heartbeats.watch(broken)
    heartbeats.watch(closing)
    for peer in healthy:
        heartbeats.watch(peer)
    try:
        await wait_until(lambda: all(peer.failed for peer in healthy), 5)
    finally:
        heartbeats.close()
    assert broken.heartbeat_entry is None and not broken.failed
    assert closing.pinged_at_turn is not None and not closing.failed
    assert closing.heartbeat_entry is None


async def test_the_server_watches_open_sockets_only_and_forgets_closed_ones() -> None:
    async with running_gateway(
        heartbeat_interval_s=30.0, heartbeat_timeout_s=30.0, max_connections_per_user=1
    ) as gateway:
        heartbeats = gateway._heartbeats
        assert heartbeats is not None
        async with RawWebSocket.connect(gateway, "alice") as first:
            await _connected(first)
            assert heartbeats.watched == 1
            async with RawWebSocket.connect(gateway, "alice") as refused:
                close = await refused.recv_close()
                assert close.close_code == 4429  # over the per-user limit: never watched
                assert heartbeats.watched == 1
        await wait_until(lambda: gateway.manager.connection_count == 0, 5)
        assert heartbeats.watched == 0
