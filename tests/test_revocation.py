"""Gateway.disconnect_user closes every socket of a user, on every node, with 4403."""

from __future__ import annotations

import pytest

from runwire.exceptions import CloseCode, ConnectionClosed
from tests.helpers import connect, running_gateway
from tests.redis_server import RedisServer


async def _closed_code(client: object) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await client.recv(timeout=10)  # type: ignore[attr-defined]
    return closed.value.code


async def test_disconnect_user_closes_every_tab_of_that_user_only() -> None:
    async with (
        running_gateway() as gateway,
        connect(gateway, "mallory") as tab_1,
        connect(gateway, "mallory") as tab_2,
        connect(gateway, "alice") as alice,
    ):
        assert await gateway.disconnect_user("mallory") == 2
        assert await _closed_code(tab_1) == CloseCode.FORBIDDEN
        assert await _closed_code(tab_2) == CloseCode.FORBIDDEN
        assert tab_1.socket.close_reason == "revoked"
        await alice.ping()
        assert await gateway.disconnect_user("nobody") == 0


async def test_a_long_non_ascii_reason_is_cut_at_a_character_and_closes_the_tabs() -> None:
    """The close reason is cut to 120 bytes on a character boundary: cut inside one,
    the close frame was never sent (picows refused the bytes), the tabs stayed open,
    and the flush stopped for every other connection in it."""
    reason = "a" + "日本語の理由" * 8  # 49 characters, 145 bytes: byte 120 is inside one
    async with (
        running_gateway() as gateway,
        connect(gateway, "mallory") as tab_1,
        connect(gateway, "mallory") as tab_2,
        connect(gateway, "alice") as alice,
    ):
        assert await gateway.disconnect_user("mallory", reason=reason) == 2
        for tab in (tab_1, tab_2):
            assert await _closed_code(tab) == CloseCode.FORBIDDEN
            sent = tab.socket.close_reason
            assert sent is not None and reason.startswith(sent)
            assert 117 <= len(sent.encode()) <= 120
        await alice.ping()


async def test_disconnect_user_reaches_every_node(redis_server: RedisServer) -> None:
    async with (
        running_gateway(engine=redis_server.url) as node_a,
        running_gateway(engine=redis_server.url) as node_b,
        connect(node_a, "mallory-rv") as on_a,
        connect(node_b, "mallory-rv") as on_b,
        connect(node_b, "alice-rv") as alice,
    ):
        closed_here = await node_a.disconnect_user(
            "mallory-rv", code=CloseCode.FORBIDDEN, reason="account suspended"
        )
        assert closed_here == 1
        assert await _closed_code(on_a) == CloseCode.FORBIDDEN
        assert await _closed_code(on_b) == CloseCode.FORBIDDEN
        assert on_b.socket.close_reason == "account suspended"
        await alice.ping()
        assert node_b.manager.connections_of("alice-rv")  # type: ignore[arg-type]
