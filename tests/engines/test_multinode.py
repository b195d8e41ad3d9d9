"""Three gateway processes on one Redis: every tab gets its user's whole stream.

Real processes (``python -m runwire serve``), real sockets, a real Redis server.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from runwire.client import ReconnectingClient
from tests.helpers import SECRET, get_json, make_settings, token_for
from tests.redis_server import RedisServer

NODES = 3


@contextmanager
def gateway_processes(
    redis_url: str,
    tmp_path: Path,
    count: int,
    runs: str = "local",
    workers: int = 0,
    extra_env: dict[str, str] | None = None,
) -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    """``count`` gateways (and ``workers`` workers) on one Redis; yields the gateways'
    (process, ws url) pairs. ``extra_env`` is added to every process's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env.update(
        RUNWIRE_ENGINE=redis_url,
        RUNWIRE_PORT="0",
        RUNWIRE_AUTH_SECRET=SECRET,
        RUNWIRE_STATE_DIR=str(tmp_path / "state"),
        RUNWIRE_MAX_CONCURRENT_RUNS_PER_USER="5",
        RUNWIRE_LOG_LEVEL="info",
        RUNWIRE_RUNS=runs,
    )
    env.update(extra_env or {})
    nodes: list[tuple[subprocess.Popen[str], str]] = []
    try:
        for index in range(workers):
            with (tmp_path / f"worker{index}.log").open("w") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "runwire", "worker"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=log_file,
                    text=True,
                )
            assert process.stdout is not None
            assert "runwire worker" in process.stdout.readline()
            nodes.append((process, ""))
        for index in range(count):
            log = tmp_path / f"node{index}.log"  # kept for a failing test's post-mortem
            with log.open("w") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "runwire", "serve"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=log_file,
                    text=True,
                )
            assert process.stdout is not None
            banner = process.stdout.readline()
            assert " on http://" in banner, banner
            url = banner.split(" on ")[1].strip().replace("http", "ws", 1) + "/ws"
            nodes.append((process, url))
        yield [(process, url) for process, url in nodes if url]
    finally:
        for process, _ in nodes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process, _ in nodes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
            if process.stdout is not None:
                process.stdout.close()


async def _run_events(client: ReconnectingClient, run_ids: set[str]) -> list[dict[str, Any]]:
    """Every event the tab receives until each run in ``run_ids`` has ended."""
    events: list[dict[str, Any]] = []
    pending = set(run_ids)
    while pending:
        frame = await client.recv(timeout=30)
        if "offset" not in frame:
            continue
        events.append(frame)
        if frame["type"] in ("agent_completed", "agent_error"):
            pending.discard(frame["run_id"])
    return events


def _check_stream(user: str, events: list[dict[str, Any]], runs: set[str]) -> None:
    offsets = [e["offset"] for e in events]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), user  # no gap, dup
    assert {e["run_id"] for e in events} == runs, user  # nothing foreign, nothing missing
    for run_id in runs:
        run = [e for e in events if e["run_id"] == run_id]
        assert run[0]["type"] == "agent_started" and run[-1]["type"] == "agent_completed"
        assert [e["seq"] for e in run] == list(range(1, len(run) + 1)), (user, run_id)


@pytest.mark.parametrize(
    ("store", "runs", "workers"),
    [
        ("redis", "local", 0),
        ("redis", "workers", 2),
        ("redis-cluster", "local", 0),
        ("redis-cluster", "workers", 2),
    ],
)
async def test_300_users_with_tabs_across_three_nodes(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    report: Callable[[str], None],
    store: str,
    runs: str,
    workers: int,
) -> None:
    """``redis-cluster``: the same on a 3-master Redis Cluster (sharded pub/sub)."""
    url = request.getfixturevalue(
        "redis_cluster" if store == "redis-cluster" else "redis_server"
    ).url
    settings = make_settings(auth_secret=SECRET)
    users = [f"mn-{store}-{runs}-{i}" for i in range(300)]
    rng = random.Random(300)
    with gateway_processes(url, tmp_path, NODES, runs, workers) as nodes:
        urls = [url for _, url in nodes]
        async with AsyncExitStack() as stack:
            tabs: dict[str, list[ReconnectingClient]] = {}
            for index, user in enumerate(users):
                token = token_for(settings, user)
                tabs[user] = [
                    await stack.enter_async_context(
                        ReconnectingClient(urls[(index + k) % NODES], token)
                    )
                    for k in range(2)
                ]
            acks = await asyncio.gather(
                *(
                    rng.choice(tabs[u]).send_message(f"what is {i} + 1?")
                    for i, u in enumerate(users)
                )
            )
            run_ids = {user: {ack["run_id"]} for user, ack in zip(users, acks, strict=True)}
            streams = await asyncio.gather(
                *(_run_events(tab, run_ids[user]) for user in users for tab in tabs[user])
            )
    misrouted = 0
    for (user, _tab), events in zip(
        [(u, k) for u in users for k in range(2)], streams, strict=True
    ):
        _check_stream(user, events, run_ids[user])
        misrouted += sum(e["run_id"] not in run_ids[user] for e in events)
    report(
        f"multinode ({store}, {runs}, {workers} workers): {len(users)} users x 2 tabs"
        f" on {NODES} nodes, "
        f"{sum(len(s) for s in streams)} events received, every run complete and in order "
        f"on every tab, misrouted={misrouted}"
    )


async def test_killed_node_clients_resume_on_another_node(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(auth_secret=SECRET)
    users = [f"kill-{i}" for i in range(20)]
    with gateway_processes(redis_server.url, tmp_path, NODES) as nodes:
        urls = [url for _, url in nodes]
        victim_process, victim_url = nodes[2]
        async with AsyncExitStack() as stack:
            senders, watchers = {}, {}
            for user in users:
                token = token_for(settings, user)
                senders[user] = await stack.enter_async_context(ReconnectingClient(urls[0], token))
                # The watcher lives on the victim and knows the other nodes.
                watchers[user] = await stack.enter_async_context(
                    ReconnectingClient([victim_url, urls[1]], token)
                )
            acks = await asyncio.gather(
                *(senders[u].send_message("please count the words in this message") for u in users)
            )
            runs = {user: {ack["run_id"]} for user, ack in zip(users, acks, strict=True)}
            # Mid-run: every watcher has seen its run start, none has seen it end.
            first = await asyncio.gather(*(watchers[u].recv(timeout=10) for u in users))
            assert all(frame["type"] == "agent_started" for frame in first)
            victim_process.send_signal(signal.SIGKILL)
            rest = await asyncio.gather(*(_run_events(watchers[u], runs[u]) for u in users))
    for user, head, tail in zip(users, first, rest, strict=True):
        _check_stream(user, [head, *tail], runs[user])
        assert watchers[user].reconnects >= 1


class _Tab:
    """A watching tab: a reconnecting client whose every event is recorded."""

    def __init__(self, client: ReconnectingClient) -> None:
        self.client = client
        self.events: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []

    async def read(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                frame = await self.client.recv(timeout=0.2)
            except TimeoutError:
                continue
            (self.events if "offset" in frame else self.notices).append(frame)

    def ended(self) -> set[str]:
        return {e["run_id"] for e in self.events if e["type"] in ("agent_completed", "agent_error")}

    def drop(self) -> None:
        """Cut the socket without a close frame (the client reconnects and resumes)."""
        transport = getattr(self.client.client.socket, "transport", None)
        if transport is not None:
            transport.abort()


async def _wait_for(
    predicate: Callable[[], bool], timeout: float, state: Callable[[], Any]
) -> None:
    """Wait until ``predicate()`` holds; fail after ``timeout`` seconds showing ``state()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, state()
        await asyncio.sleep(0.02)


async def _healthy(url: str) -> None:
    """Wait until the node at ``url`` reports its engine available."""
    base = url.replace("ws", "http", 1).removesuffix("/ws")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while (await asyncio.to_thread(get_json, base + "/healthz"))[0] != 200:
        assert loop.time() < deadline, f"{base} did not get its engine back"
        await asyncio.sleep(0.02)


async def test_twenty_redis_restarts_lose_no_event_and_refuse_no_message(
    tmp_path: Path, report: Callable[[str], None]
) -> None:
    """Issue #19 as an operator tried it: workers mode, two nodes, two workers, Redis
    with AOF (appendfsync always) restarted 20 times while runs stream and tabs drop
    and reconnect at random moments. Every tab gets every event of its user (no gap,
    no duplicate, every run complete), and a message sent as soon as the nodes report
    the engine available is accepted at once."""
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    settings = make_settings(auth_secret=SECRET)
    users = [f"rr-{i}" for i in range(6)]
    rng = random.Random(19)
    restarts, drops, right_after = 20, 0, 0
    runs: dict[str, set[str]] = {user: set() for user in users}
    try:
        with gateway_processes(server.url, tmp_path, 2, "workers", 2) as nodes:
            urls = [url for _, url in nodes]
            stop = asyncio.Event()
            async with AsyncExitStack() as stack:
                senders: dict[str, ReconnectingClient] = {}
                tabs: dict[str, list[_Tab]] = {}
                for index, user in enumerate(users):
                    token = token_for(settings, user)
                    senders[user] = await stack.enter_async_context(
                        ReconnectingClient(urls[index % 2], token)
                    )
                    tabs[user] = [
                        _Tab(
                            await stack.enter_async_context(
                                ReconnectingClient(urls[(index + k) % 2], token)
                            )
                        )
                        for k in range(2)
                    ]
                readers = [
                    asyncio.create_task(tab.read(stop)) for user in users for tab in tabs[user]
                ]

                async def send(user: str, text: str) -> None:
                    ack = await senders[user].send_message(text)  # waits out an outage
                    runs[user].add(ack["run_id"])

                for round_ in range(restarts):
                    # At most a few runs per user at once (the per-user limit is 5).
                    await _wait_for(
                        lambda: all(
                            len(runs[u] - tab.ended()) <= 1 for u in users for tab in tabs[u]
                        ),
                        30,
                        lambda: {u: [sorted(runs[u] - t.ended()) for t in tabs[u]] for u in users},
                    )
                    sending = [
                        asyncio.create_task(send(user, f"round {round_}: what is {round_} + 1?"))
                        for user in users
                    ]
                    await asyncio.sleep(rng.uniform(0.0, 0.15))  # a random moment mid-stream
                    for tab in rng.sample([t for u in users for t in tabs[u]], 2):
                        tab.drop()
                        drops += 1
                    server.restart()
                    if rng.random() < 0.5:
                        rng.choice(tabs[rng.choice(users)]).drop()  # while the nodes reconnect
                        drops += 1
                    await asyncio.gather(*(_healthy(url) for url in urls))
                    user = rng.choice(users)
                    # Right after `available`, on the plain client: no engine_unavailable.
                    ack = await senders[user].client.send_message(f"right after {round_}")
                    runs[user].add(ack["run_id"])
                    right_after += 1
                    await asyncio.gather(*sending)

                await _wait_for(
                    lambda: all(runs[user] <= tab.ended() for user in users for tab in tabs[user]),
                    60,
                    lambda: {u: [sorted(runs[u] - t.ended()) for t in tabs[u]] for u in users},
                )
                stop.set()
                await asyncio.gather(*readers)
    finally:
        server.stop()
    events = 0
    for user in users:
        for tab in tabs[user]:
            assert not [n for n in tab.notices if n["type"] == "resume_failed"], user
            _check_stream(user, tab.events, runs[user])
            assert tab.events[0]["offset"] == 1, user
            events += len(tab.events)
    report(
        f"redis restarts: {restarts} restarts (AOF, workers mode, 2 nodes, 2 workers), "
        f"{sum(len(r) for r in runs.values())} runs, {drops} tab drops, {events} events "
        f"checked on {2 * len(users)} tabs: none missing, none twice; "
        f"{right_after} messages right after available, all accepted"
    )
