"""The Origin check of the upgrade: pages of other sites cannot open sockets."""

from __future__ import annotations

import pytest
import websockets
from websockets.typing import Origin, Subprotocol

from runwire.origins import origin_allowed
from tests.helpers import running_gateway, token_for


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        (None, "gw:8765", (), True),  # not a browser
        ("http://gw:8765", "gw:8765", (), True),  # the gateway's own page
        ("HTTP://GW:8765", "gw:8765", (), True),
        ("http://evil.example", "gw:8765", (), False),
        ("http://gw:8766", "gw:8765", (), False),  # another port is another origin
        ("null", "gw:8765", (), False),
        ("http://gw:8765", None, (), False),
        ("https://app.example", "gw:8765", ("https://app.example",), True),
        ("https://app.example", "gw:8765", ("https://app.example/",), True),
        ("http://gw:8765", "gw:8765", ("https://app.example",), False),  # the list decides
        ("https://other.example", "gw:8765", ("https://app.example",), False),
        ("https://anything.example", "gw:8765", ("*",), True),
    ],
)
def test_origin_rules(
    origin: str | None, host: str | None, allowed: tuple[str, ...], expected: bool
) -> None:
    assert origin_allowed(origin, host, allowed) is expected


async def _open(url: str, token: str, origin: str | None) -> int | None:
    """The HTTP status of a refused handshake, or ``None`` when it was accepted."""
    protocols = [Subprotocol("runwire.v1"), Subprotocol(f"bearer.{token}")]
    try:
        async with websockets.connect(
            url, subprotocols=protocols, origin=Origin(origin) if origin else None
        ) as socket:
            await socket.recv()
            return None
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


async def test_a_foreign_page_gets_403_and_the_own_page_connects() -> None:
    async with running_gateway() as gateway:
        token = token_for(gateway.settings, "alice")
        own = f"http://127.0.0.1:{gateway.port}"
        assert await _open(gateway.ws_url, token, own) is None
        assert await _open(gateway.ws_url, token, None) is None
        assert await _open(gateway.ws_url, token, "https://evil.example") == 403
        assert gateway.manager.connection_count == 0


async def test_configured_origins_are_allowed() -> None:
    async with running_gateway(allowed_origins="https://app.example") as gateway:
        token = token_for(gateway.settings, "alice")
        assert await _open(gateway.ws_url, token, "https://app.example") is None
        assert await _open(gateway.ws_url, token, "https://evil.example") == 403
