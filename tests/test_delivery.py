"""Exactly-once, in-order delivery across reconnects and slow clients, in bounded memory."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from websockets.typing import Subprotocol

from runwire import Gateway
from runwire.client import Client, ReconnectingClient, StreamPosition
from runwire.exceptions import CloseCode
from runwire.ids import UserId
from tests.helpers import connect, publish_texts, running_gateway, token_for, wait_until


async def _events_until(client: Client | ReconnectingClient, offset: int) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await client.recv(timeout=10)
        if "offset" in frame:
            frames.append(frame)
            if frame["offset"] >= offset:
                return frames


async def test_handshake_resume_replays_exactly_the_missed_events_before_live_ones() -> None:
    async with running_gateway() as gateway:
        async with connect(gateway, "alice") as first:
            await publish_texts(gateway, "alice", ["a", "b", "c"])
            seen = await _events_until(first, 3)
            position = first.position
        assert position == StreamPosition(first.connected["epoch"], 3)
        await publish_texts(gateway, "alice", ["d", "e"])  # while offline
        async with connect(gateway, "alice", resume=position) as second:
            assert second.connected["offset"] == 5
            replay = [await second.recv(timeout=5) for _ in range(3)]
            await publish_texts(gateway, "alice", ["f"])
            live = await second.recv(timeout=5)
    assert [f["data"]["text"] for f in seen] == ["a", "b", "c"]
    assert [(f.get("offset"), f["type"]) for f in replay] == [
        (4, "agent_message_delta"),
        (5, "agent_message_delta"),
        (None, "resumed"),
    ]
    assert replay[2]["from"] == 3 and replay[2]["to"] == 5
    assert live["offset"] == 6 and live["data"]["text"] == "f"


@pytest.mark.parametrize(
    ("resume", "reason"),
    [
        (lambda epoch: StreamPosition("another-epoch", 1), "epoch_changed"),
        (lambda epoch: StreamPosition(epoch, 1), "out_of_window"),
        (lambda epoch: StreamPosition(epoch, 99), "invalid_offset"),
    ],
)
async def test_resume_failures_name_their_reason(resume: object, reason: str) -> None:
    async with running_gateway(history_max_events=3) as gateway:
        async with connect(gateway, "alice") as first:
            epoch = first.connected["epoch"]
        await publish_texts(gateway, "alice", [str(i) for i in range(10)])
        position = resume(epoch)  # type: ignore[operator]
        async with connect(gateway, "alice", resume=position) as second:
            failed = await second.recv(timeout=5)
            assert failed == {
                "type": "resume_failed",
                "reason": reason,
                "epoch": epoch,
                "offset": 10,
            }
            await publish_texts(gateway, "alice", ["live"])
            live = await second.recv(timeout=5)
            assert live["offset"] == 11  # the stream continues from the head


async def test_in_band_resume_before_live_events_replays_in_order() -> None:
    async with running_gateway() as gateway:
        await publish_texts(gateway, "alice", ["a", "b", "c"])
        async with connect(gateway, "alice") as client:
            epoch = client.connected["epoch"]
            client.position = StreamPosition(epoch, 1)
            await client.send_raw(f'{{"type": "resume", "epoch": "{epoch}", "offset": 1}}')
            frames = [await client.recv(timeout=5) for _ in range(3)]
    assert [f.get("offset") for f in frames] == [2, 3, None]
    assert frames[2] == {"type": "resumed", "epoch": epoch, "from": 1, "to": 3}


async def test_in_band_resume_after_live_events_fails_with_live_started() -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        await publish_texts(gateway, "alice", ["a", "b"])
        await _events_until(client, 2)
        epoch = client.connected["epoch"]
        await client.send_raw(f'{{"type": "resume", "epoch": "{epoch}", "offset": 0}}')
        failed = await client.recv(timeout=5)
    assert failed == {
        "type": "resume_failed",
        "reason": "live_started",
        "epoch": epoch,
        "offset": 2,
    }


async def test_a_client_that_stops_reading_is_closed_with_4409_and_resumes_everything(
    report: Callable[[str], None],
) -> None:
    queue_events = 64
    async with running_gateway(
        outbound_queue_events=queue_events, outbound_queue_bytes=16_384, heartbeat_timeout_s=10
    ) as gateway:
        token = token_for(gateway.settings, "slow")
        protocols = [Subprotocol("runwire.v1"), Subprotocol(f"bearer.{token}")]
        async with (
            websockets.connect(gateway.ws_url, subprotocols=protocols, max_queue=1) as slow,
            connect(gateway, "fast") as fast,
        ):
            connected = await slow.recv()  # then stop reading
            payload = "x" * 2000
            sent = 0
            while gateway.metrics.slow_consumer_closes._value.get() == 0:
                await publish_texts(gateway, "slow", [f"{sent}:{payload}"])
                sent += 1
                # Other users are served meanwhile, and promptly.
                await publish_texts(gateway, "fast", [str(sent)])
                assert (await fast.recv(timeout=5))["offset"] == sent
                assert sent < 20_000, "the slow client was never closed"
            # The server holds at most its bound for the slow socket.
            stats = gateway.manager.stats()
            assert stats["queued_frames"] <= queue_events
            # Read what arrived before the close, then the close code.
            received = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    received.append(await asyncio.wait_for(slow.recv(), 10))
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CloseCode.SLOW_CONSUMER
        import json

        offsets = [json.loads(frame)["offset"] for frame in received]
        assert offsets == list(range(1, len(offsets) + 1))
        epoch = json.loads(connected)["epoch"]
        last = offsets[-1] if offsets else 0
        async with connect(gateway, "slow", resume=StreamPosition(epoch, last)) as again:
            rest = await _events_until(again, sent)
        assert [f["offset"] for f in rest] == list(range(last + 1, sent + 1))
        report(f"slow consumer: {sent} published, {len(offsets)} before 4409, {len(rest)} resumed")


async def test_slow_sockets_get_their_deltas_coalesced_before_being_closed() -> None:
    async with running_gateway(outbound_queue_events=8, outbound_queue_bytes=65_536) as gateway:
        async with connect(gateway, "alice") as client:
            [connection] = gateway.manager.connections_of("alice")  # type: ignore[arg-type]
            connection.writer._paused = True  # type: ignore[attr-defined]  # a full socket
            await publish_texts(gateway, "alice", [f"w{i} " for i in range(30)])
            assert gateway.metrics.deltas_coalesced._value.get() > 0
            assert connection.session.pending <= 8
            gateway.manager.writable_again(connection)
            connection.writer._paused = False  # type: ignore[attr-defined]
            gateway.manager.writable_again(connection)
            frames = await _events_until(client, 30)
    text = "".join(f["data"]["text"] for f in frames)
    assert text == "".join(f"w{i} " for i in range(30))  # nothing lost, order kept
    assert frames[-1]["offset"] == 30
    merged = [f for f in frames if "coalesced_from" in f["data"]]
    assert merged and all(f["data"]["coalesced_from"] < f["offset"] for f in merged)


async def test_soak_200_users_20000_events_with_random_drops_on_both_sides(
    report: Callable[[str], None],
) -> None:
    users = [f"u{i}" for i in range(200)]
    per_user = 100
    rng = random.Random(2026)
    async with running_gateway(max_connections_per_user=2) as gateway:
        clients = {
            user: ReconnectingClient(gateway.ws_url, token_for(gateway.settings, user), rng=rng)
            for user in users
        }
        for client in clients.values():
            await client.__aenter__()
        try:
            await _soak(gateway, clients, per_user, rng, report)
        finally:
            for client in clients.values():
                await client.aclose()
        await wait_until(lambda: gateway.manager.connection_count == 0)


async def _soak(
    gateway: Gateway,
    clients: dict[str, ReconnectingClient],
    per_user: int,
    rng: random.Random,
    report: Callable[[str], None],
) -> None:
    users = list(clients)
    if True:
        drops = {"client": 0, "server": 0}

        async def publisher() -> None:
            order = [(user, i) for i in range(per_user) for user in users]
            for index, (user, i) in enumerate(order):
                await publish_texts(gateway, user, [f"{user}:{i}"], run_id=f"r_{user}")
                if index % 200 == 0:
                    await asyncio.sleep(0)
                if index % 500 == 250:
                    victim = rng.choice(users)
                    if rng.random() < 0.5:
                        clients[victim].client.socket.transport.abort()
                        drops["client"] += 1
                    else:
                        for connection in gateway.manager.connections_of(UserId(victim)):
                            code = rng.choice([CloseCode.GOING_AWAY, CloseCode.SLOW_CONSUMER])
                            gateway.manager.close_connection(connection, code, "chaos")
                            drops["server"] += 1

        async def reader(user: str) -> list[dict[str, Any]]:
            return await _events_until(clients[user], per_user)

        results = await asyncio.gather(publisher(), *(reader(u) for u in users))
        streams = dict(zip(users, results[1:], strict=True))
        lost = duplicated = misrouted = 0
        for user, frames in streams.items():
            offsets = [f["offset"] for f in frames]
            duplicated += len(offsets) - len(set(offsets))
            lost += per_user - len(set(offsets))
            misrouted += sum(not f["data"]["text"].startswith(f"{user}:") for f in frames)
            assert offsets == list(range(1, per_user + 1)), user
            assert [f["data"]["text"] for f in frames] == [f"{user}:{i}" for i in range(per_user)]
        reconnects = sum(c.reconnects for c in clients.values())
    report(
        f"soak: {len(users) * per_user} events, {len(users)} users, drops {drops}, "
        f"{reconnects} reconnects: lost={lost} duplicated={duplicated} misrouted={misrouted}"
    )
    assert drops["client"] > 0 and drops["server"] > 0 and reconnects > 0
    assert lost == duplicated == misrouted == 0


async def test_with_the_default_bounds_a_tab_closed_4409_resumes_without_loss() -> None:
    """The default outbound queue (480 frames / 512 KiB) is half of the default history
    (1,000 events / 1 MiB): a slow tab closed with 4409 under a steady stream resumes
    from the last event it read. With both at 1,000 / 1 MiB (before) its next event
    had always just left history (``resume_failed`` ``out_of_window``)."""
    import json

    import websockets
    from websockets.typing import Subprotocol

    from runwire.events import AgentThinking, Event

    async with running_gateway(heartbeat_timeout_s=20) as gateway:
        token = token_for(gateway.settings, "slow")
        protocols = [Subprotocol("runwire.v1"), Subprotocol(f"bearer.{token}")]
        async with websockets.connect(
            gateway.ws_url, subprotocols=protocols, max_queue=1
        ) as socket:
            connected = json.loads(await socket.recv())
            seq = 0
            while gateway.metrics.slow_consumer_closes._value.get() == 0:
                seq += 1
                event = Event.of(
                    AgentThinking(f"t{seq} " + "x" * 400), run_id="r", thread_id="t", seq=seq, ts=0
                )
                await gateway.publish(UserId("slow"), event)
                if seq % 64 == 0:
                    await asyncio.sleep(0)
            read = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    read.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
        last = max(frame["offset"] for frame in read if "offset" in frame)
        url = f"{gateway.ws_url}?epoch={connected['epoch']}&offset={last}"
        async with websockets.connect(url, subprotocols=protocols) as again:
            frames = [json.loads(await asyncio.wait_for(again.recv(), 5)) for _ in range(2)]
        assert [frame["type"] for frame in frames] == ["connected", "agent_thinking"]
        assert frames[1]["offset"] == last + 1
