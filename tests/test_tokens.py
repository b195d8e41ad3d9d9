"""Token lifetime on open sockets: `token_expiring`, 4401 at `exp`, in-band `refresh`.

Issue #10 item 7: `exp` was checked only at the upgrade, so a 3-second token's socket
was still open, and starting runs, long after. Real sockets on 127.0.0.1; waits are
on frames and conditions with deadlines. Token lifetimes are 2-3 s so that `exp`
passes within each test (`issue_token` truncates `exp` to whole seconds, so a
"3-second" token lives 2-3 s).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import jwt
import pytest
import websockets
from websockets.typing import Subprotocol

from runwire.app import Gateway
from runwire.auth import Authenticator, TokenClaims
from runwire.client import Client, ReconnectingClient
from runwire.exceptions import AuthError, CloseCode, ConnectionClosed
from runwire.ids import UserId
from runwire.manager import Connection
from runwire.protocol import State
from runwire.tokens import TokenPolicy, TokenSchedule, TokenStep, refresh_delay, verify_refresh
from tests.helpers import (
    SECRET,
    GatedAgent,
    collect_run,
    connect,
    make_settings,
    running_gateway,
    token_for,
    wait_until,
)

WINDOW_S = 1.0
"""`token_refresh_window_s` of these tests' gateways."""


def _exp(token: str) -> int:
    return int(jwt.decode(token, options={"verify_signature": False})["exp"])


def _only_connection(gateway: Gateway, user: str) -> Connection:
    [connection] = gateway.manager.connections_of(UserId(user))
    return connection


async def _until_closed(client: Client, timeout: float = 10.0) -> ConnectionClosed:
    """Read until the connection closes; the close, with the frames read meanwhile."""
    try:
        while True:
            await client.recv(timeout=timeout)
    except ConnectionClosed as closed:
        return closed


async def _past(moment: float, timeout: float = 10.0) -> None:
    """Wait until the wall clock is past ``moment`` (a token's ``exp``)."""
    await wait_until(lambda: time.time() > moment, timeout=timeout, what=f"time {moment}")


# -- the schedule, sans I/O -------------------------------------------------------------

POLICY = TokenPolicy(refresh_window_s=60.0, leeway_s=5.0)


def test_schedule_warns_once_window_before_exp_and_expires_at_exp_plus_leeway() -> None:
    schedule = TokenSchedule(POLICY, expires_at=1_000)
    assert schedule.next_deadline() == 940
    assert schedule.due(939.9) is None
    assert schedule.due(940.0) is TokenStep.WARN
    assert schedule.due(941.0) is None  # once per token
    assert schedule.next_deadline() == 1_005
    assert schedule.due(1_004.9) is None and not schedule.expired(1_004.9)
    assert schedule.due(1_005.0) is TokenStep.EXPIRE and schedule.expired(1_005.0)


def test_a_token_already_inside_the_window_at_open_is_warned_at_once() -> None:
    schedule = TokenSchedule(POLICY, expires_at=1_000)
    assert schedule.due(990.0) is TokenStep.WARN


def test_refresh_moves_both_moments_and_rearms_the_warning() -> None:
    schedule = TokenSchedule(POLICY, expires_at=1_000)
    assert schedule.due(950.0) is TokenStep.WARN
    schedule.refresh(2_000, now=950.0)
    assert not schedule.warned
    assert schedule.next_deadline() == 1_940
    assert schedule.due(1_010.0) is None  # the old exp means nothing now
    assert schedule.due(1_940.0) is TokenStep.WARN


def test_a_refreshed_token_already_inside_the_window_is_not_warned_again() -> None:
    # Its client has just refreshed; warning again would make it refresh in a loop.
    schedule = TokenSchedule(POLICY, expires_at=1_000)
    assert schedule.due(950.0) is TokenStep.WARN
    schedule.refresh(1_030, now=1_000.0)
    assert schedule.warned
    assert schedule.due(1_001.0) is None
    assert schedule.due(1_035.0) is TokenStep.EXPIRE


def test_refresh_delay_is_margin_before_exp_but_never_before_half_the_lifetime() -> None:
    assert refresh_delay(1_000, now=0.0, margin_s=30.0) == 970.0
    assert refresh_delay(1_000, now=980.0, margin_s=30.0) == 10.0  # half of 20 s left
    assert refresh_delay(1_000, now=1_000.0, margin_s=30.0) == 0.0
    assert refresh_delay(1_000, now=1_200.0, margin_s=30.0) == 0.0


def test_verify_claims_gives_the_expiry_and_refresh_requires_the_same_subject() -> None:
    settings = make_settings()
    authenticator = Authenticator(settings)
    token = token_for(settings, "alice", 120)
    assert authenticator.verify_claims(token) == TokenClaims(UserId("alice"), _exp(token))
    assert authenticator.verify(token) == "alice"
    assert verify_refresh(authenticator, UserId("alice"), token).expires_at == _exp(token)
    with pytest.raises(AuthError, match="token subject changed"):
        verify_refresh(authenticator, UserId("bob"), token)


# -- the gateway -------------------------------------------------------------------------


async def test_a_3_second_tokens_socket_is_warned_then_closed_4401_at_exp() -> None:
    # The regression of issue #10 item 7: on the old code nothing was sent and the
    # socket stayed open (and kept starting runs) after `exp`.
    async with running_gateway(token_refresh_window_s=WINDOW_S) as gateway:
        token = token_for(gateway.settings, "alice", 3)
        exp = _exp(token)
        async with Client.connect(gateway.ws_url, token) as client:
            assert client.connected["expires_at"] == exp
            timer = _only_connection(gateway, "alice").token
            assert timer is not None and timer.pending
            handle = timer._handle
            warning = await client.recv(timeout=5)
            warned_at = time.time()
            assert warning == {"type": "token_expiring", "expires_at": exp}
            assert exp - WINDOW_S <= warned_at < exp
            closed = await _until_closed(client)
            closed_at = time.time()
        assert (closed.code, closed.reason) == (4401, "token expired")
        assert exp <= closed_at < exp + 2.0
        assert handle is not None and not timer.pending
        await wait_until(lambda: gateway.manager.connection_count == 0)


async def test_no_run_starts_on_a_socket_whose_token_ran_out() -> None:
    # Even when a frame is handled before the expiry timer fires (a busy loop): here
    # the timer is stopped and the token's time is up as far as the schedule knows.
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        timer = _only_connection(gateway, "alice").token
        assert timer is not None
        timer.cancel()
        timer.schedule.expires_at = int(time.time()) - 1
        await client.send_raw(json.dumps({"type": "user_message", "id": "m", "content": "x"}))
        closed = await _until_closed(client, timeout=5)
        assert (closed.code, closed.reason) == (4401, "token expired")
        assert gateway.runtime.started_total == 0


async def test_a_refreshed_socket_outlives_the_first_exp_and_still_starts_runs() -> None:
    async with running_gateway(token_refresh_window_s=WINDOW_S) as gateway:
        token = token_for(gateway.settings, "alice", 2)
        first_exp = _exp(token)
        async with Client.connect(gateway.ws_url, token) as client:
            warning = await client.recv(timeout=5)
            assert warning["type"] == "token_expiring"
            fresh = token_for(gateway.settings, "alice", 60)
            reply = await client.refresh(fresh)
            assert reply["type"] == "refreshed" and reply["expires_at"] == _exp(fresh)
            assert client.expires_at == _exp(fresh)
            await _past(first_exp + 0.2)
            ack = await client.send_message("still here?")
            frames = await collect_run(client, ack["run_id"])
            assert frames[-1]["type"] == "agent_completed"
            assert _only_connection(gateway, "alice").id == client.connected["connection_id"]
        assert gateway.metrics.token_refreshes.labels("ok")._value.get() == 1


BAD_REFRESHES: dict[str, tuple[Callable[[], str], str]] = {
    "another_user": (lambda: token_for(make_settings(), "mallory", 60), "token subject changed"),
    "forged": (
        lambda: jwt.encode(
            {"sub": "alice", "exp": int(time.time()) + 60}, "another-" + "y" * 40, "HS256"
        ),
        "invalid token",
    ),
    "expired": (
        lambda: jwt.encode({"sub": "alice", "exp": int(time.time()) - 10}, SECRET, "HS256"),
        "expired token",
    ),
    "garbage": (lambda: "not.a.jwt", "invalid token"),
}


@pytest.mark.parametrize("name", sorted(BAD_REFRESHES))
async def test_a_refresh_the_handshake_would_refuse_closes_4401(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    make_token, reason = BAD_REFRESHES[name]
    bad = make_token()
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        connection = _only_connection(gateway, "alice")
        with pytest.raises(ConnectionClosed) as closed:
            await client.refresh(bad)
        assert (closed.value.code, closed.value.reason) == (4401, reason)
        await wait_until(lambda: gateway.manager.connection_count == 0)
        assert connection.token is not None and not connection.token.pending
    assert gateway.metrics.token_refreshes.labels("refused")._value.get() == 1
    assert f"token refresh refused: {reason}" in caplog.text
    assert bad not in caplog.text
    for part in bad.split(".")[1:]:  # neither server nor client logged the claims or MAC
        assert len(part) < 8 or part not in caplog.text


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"type": "refresh", "id": "r1"}, "token"),
        ({"type": "refresh", "id": "r1", "token": 42}, "token"),
        ({"type": "refresh", "id": "r1", "token": ""}, "token"),
        ({"type": "refresh", "id": 7, "token": "x.y.z"}, "id"),
    ],
)
async def test_refresh_frame_validation_errors_keep_the_connection(
    frame: dict[str, object], field: str
) -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        await client.send_raw(json.dumps(frame))
        error = await client.recv(timeout=5)
        assert error["type"] == "error" and error["code"] == "invalid_message"
        assert error["ref"] == (frame["id"] if isinstance(frame["id"], str) else None)
        assert f"`{field}`" in error["message"] or f"$.{field}" in error["message"]
        await client.ping()  # still open and served


async def test_refresh_with_a_too_long_id_is_invalid_and_the_token_is_not_echoed() -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        token = token_for(gateway.settings, "alice", 60)
        await client.send_raw(json.dumps({"type": "refresh", "token": token, "id": "i" * 129}))
        error = await client.recv(timeout=5)
        assert error["code"] == "invalid_message" and "$.id" in error["message"]
        assert token not in json.dumps(error)
        await client.ping()


async def test_a_refresh_sent_while_connecting_is_answered_after_connected() -> None:
    async with running_gateway() as gateway:
        gate = asyncio.Event()
        subscribe = gateway.engine.subscribe

        async def held_subscribe(user_id: UserId) -> None:
            await gate.wait()  # the socket stays in CONNECTING until released
            await subscribe(user_id)

        gateway.engine.subscribe = held_subscribe  # type: ignore[method-assign]
        token = token_for(gateway.settings, "alice", 600)  # outside the 90 s window
        fresh = token_for(gateway.settings, "alice", 1200)
        protocols = [Subprotocol("runwire.v1"), Subprotocol(f"bearer.{token}")]
        async with websockets.connect(gateway.ws_url, subprotocols=protocols) as socket:
            await wait_until(lambda: gateway.manager.connection_count == 1)
            connection = _only_connection(gateway, "alice")
            await socket.send(json.dumps({"type": "refresh", "token": fresh, "id": "early"}))
            await wait_until(lambda: len(connection.session._received or ()) == 1, what="buffered")
            assert connection.session.state is State.CONNECTING
            gate.set()
            first = json.loads(await asyncio.wait_for(socket.recv(), 5))
            second = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert first["type"] == "connected" and first["expires_at"] == _exp(token)
        assert second == {"type": "refreshed", "id": "early", "expires_at": _exp(fresh)}


async def test_refreshed_keeps_the_order_of_the_clients_frames() -> None:
    agent = GatedAgent()
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        fresh = token_for(gateway.settings, "alice", 60)
        await client.send_raw(json.dumps({"type": "ping", "id": "p1"}))
        await client.send_raw(json.dumps({"type": "refresh", "token": fresh, "id": "r1"}))
        await client.send_raw(json.dumps({"type": "ping", "id": "p2"}))
        replies = [await client.recv(timeout=5) for _ in range(3)]
        agent.release.set()
    assert [(f["type"], f["id"]) for f in replies] == [
        ("pong", "p1"),
        ("refreshed", "r1"),
        ("pong", "p2"),
    ]


@pytest.mark.parametrize("exit_path", ["client_close", "network_drop", "server_shutdown"])
async def test_the_token_timer_is_cancelled_on_every_exit_path(exit_path: str) -> None:
    # (Expiry and a refused refresh are the other exit paths, tested above.)
    async with running_gateway() as gateway, AsyncExitStack() as stack:
        client = await stack.enter_async_context(connect(gateway, "alice"))
        timer = _only_connection(gateway, "alice").token
        assert timer is not None and timer.pending
        handle = timer._handle
        assert handle is not None and not handle.cancelled()
        if exit_path == "client_close":
            await stack.aclose()
        elif exit_path == "network_drop":
            client.socket.transport.abort()
        else:
            await gateway.manager.close_all(CloseCode.GOING_AWAY, "server shutting down", 2.0)
        await wait_until(lambda: gateway.manager.connection_count == 0)
        assert not timer.pending and handle.cancelled()


# -- the Python clients refresh on their own ----------------------------------------------


def _counting_provider(
    settings: object, user: str, ttl_s: int, asynchronous: bool
) -> tuple[Callable[[], str | Awaitable[str]], list[str]]:
    issued: list[str] = []

    def make() -> str:
        issued.append(token_for(settings, user, ttl_s))  # type: ignore[arg-type]
        return issued[-1]

    async def make_async() -> str:
        await asyncio.sleep(0)
        return make()

    return (make_async if asynchronous else make), issued


async def test_clients_with_sync_and_async_providers_stay_the_same_connection_past_exp() -> None:
    async with running_gateway(token_refresh_window_s=WINDOW_S) as gateway:

        async def scenario(user: str, asynchronous: bool) -> list[str]:
            provider, issued = _counting_provider(gateway.settings, user, 2, asynchronous)
            async with Client.connect(gateway.ws_url, provider) as client:
                first_exp = client.connected["expires_at"]
                assert first_exp == _exp(issued[0])
                await _past(first_exp + 0.2)
                await wait_until(lambda: client.refreshes >= 1, what="a refresh")
                assert client.expires_at is not None and client.expires_at > first_exp
                await client.ping()
                assert client._frames.empty()  # token_expiring is handled, not passed on
                ack = await client.send_message("after exp")
                frames = await collect_run(client, ack["run_id"])
                assert frames[-1]["type"] == "agent_completed"
                assert _only_connection(gateway, user).id == client.connected["connection_id"]
            return issued

        issued = await asyncio.gather(scenario("sync", False), scenario("async", True))
        assert all(len(tokens) >= 2 for tokens in issued)
        assert gateway.metrics.connections_opened._value.get() == 2


async def test_reconnecting_client_refreshes_in_band_and_asks_the_provider_on_reconnect() -> None:
    async with running_gateway(token_refresh_window_s=WINDOW_S) as gateway:
        provider, issued = _counting_provider(gateway.settings, "alice", 2, False)
        async with ReconnectingClient(gateway.ws_url, provider) as client:
            first = client.client
            first_exp = first.connected["expires_at"]
            await _past(first_exp + 0.2)
            await wait_until(lambda: first.refreshes >= 1, what="a refresh")
            assert client.client is first and client.reconnects == 0
            asked = len(issued)

            connection = _only_connection(gateway, "alice")
            gateway.manager.close_connection(connection, CloseCode.GOING_AWAY, "test restart")
            ack = await client.send_message("after the reconnect")
            async for frame in client.run("and a run"):
                last = frame
            assert last["type"] == "agent_completed"
            assert client.reconnects == 1 and client.client is not first
            assert ack["run_id"]
            # The new connection was opened with a fresh token from the provider.
            assert len(issued) > asked
            assert client.client.connected["expires_at"] >= _exp(issued[asked])


async def test_after_token_expired_a_provider_client_reconnects_and_a_plain_one_stops() -> None:
    # The provider's refresh came too late: it could not give a later `exp` in time.
    async with running_gateway(token_refresh_window_s=WINDOW_S) as gateway:
        stale = token_for(gateway.settings, "alice", 2)

        def provider() -> str:
            if time.time() < _exp(stale):
                return stale
            return token_for(gateway.settings, "alice", 60)

        async with (
            ReconnectingClient(gateway.ws_url, provider) as renewing,
            ReconnectingClient(gateway.ws_url, stale) as plain,
        ):
            first = renewing.client
            warning = await plain.recv(timeout=5)  # no provider: the caller is told
            assert warning == {"type": "token_expiring", "expires_at": _exp(stale)}
            with pytest.raises(ConnectionClosed) as closed:
                await plain.recv(timeout=5)
            assert (closed.value.code, closed.value.reason) == (4401, "token expired")
            assert plain.reconnects == 0

            await wait_until(lambda: first.close_code is not None, what="the expiry close")
            assert (first.close_code, first.close_reason) == (4401, "token expired")
            ack = await renewing.send_message("after the expiry")
            assert ack["run_id"] and renewing.reconnects == 1
            assert renewing.client.connected["expires_at"] > _exp(stale)


async def test_refresh_tokens_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    async with running_gateway(token_refresh_window_s=WINDOW_S) as gateway:
        provider, issued = _counting_provider(gateway.settings, "alice", 60, False)
        manual = token_for(gateway.settings, "bob", 120)
        async with Client.connect(gateway.ws_url, provider) as client:
            await client.refresh()
            with pytest.raises(ConnectionClosed):
                await client.refresh(manual)  # another user's: refused, 4401
    assert '"token":"[redacted]' in caplog.text  # the frames were logged, redacted
    for token in [*issued, manual]:
        _, payload, signature = token.split(".")
        assert payload not in caplog.text and signature not in caplog.text
