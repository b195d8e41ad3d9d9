"""The sqlite engine across restarts: real files, real sockets, a real kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runwire import Gateway
from runwire.client import Client
from runwire.engines.memory import HistoryBounds
from runwire.engines.sqlite import SqliteEngine
from runwire.events import AgentMessageDelta, Event
from runwire.exceptions import ConfigError, EngineError
from runwire.ids import UserId
from runwire.sqlite.db import Database
from tests.engines.test_memory_edges import CountingId
from tests.helpers import (
    SECRET,
    Listener,
    assert_run_rules,
    collect_run,
    connect,
    get_json,
    make_settings,
    publish_texts,
    running_gateway,
    scripted_agent,
    token_for,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]


def _url(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path: sqlite:////tmp/...


def _gateway(db: Path) -> Gateway:
    return Gateway(make_settings(engine=_url(db)), agent=scripted_agent)


async def test_a_clean_restart_keeps_five_conversations_and_resumes_in_the_same_epoch(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runwire.db"
    async with _gateway(db) as first:
        async with Client.connect(first.ws_url, token_for(first.settings, "alice")) as client:
            run_ids = []
            for n in range(5):
                ack = await client.send_message(f"question {n}")
                assert_run_rules(await collect_run(client, ack["run_id"]))
                run_ids.append(ack["run_id"])
            position = client.position
            assert position is not None and position.offset > 0

    async with _gateway(db) as second:
        token = token_for(second.settings, "alice")
        async with Client.connect(second.ws_url, token, resume=position) as client:
            assert (await client.recv(timeout=5))["type"] == "resumed"
            runs = await client.get_runs()
            assert [run["run_id"] for run in runs] == run_ids
            assert {run["status"] for run in runs} == {"completed"}
            assert runs[2]["answer"] == "echo: question 2."
            ack = await client.send_message("after the restart")
            frames = await collect_run(client, ack["run_id"])
            assert frames[0]["offset"] == position.offset + 1  # the same stream goes on


async def test_a_retried_message_after_a_restart_maps_to_its_first_run(tmp_path: Path) -> None:
    db = tmp_path / "runwire.db"
    async with _gateway(db) as first:
        async with Client.connect(first.ws_url, token_for(first.settings, "bob")) as client:
            ack = await client.send_message("once", message_id="m-1")
            await collect_run(client, ack["run_id"])
    async with _gateway(db) as second:
        async with Client.connect(second.ws_url, token_for(second.settings, "bob")) as client:
            again = await client.send_message("once", message_id="m-1")
            assert again["run_id"] == ack["run_id"]
            assert len(await client.get_runs()) == 1


async def test_a_truncated_database_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    db = tmp_path / "runwire.db"
    async with _gateway(db) as gateway:
        async with Client.connect(gateway.ws_url, token_for(gateway.settings, "carol")) as client:
            for n in range(20):
                ack = await client.send_message("x" * 2_000 + str(n))
                await collect_run(client, ack["run_id"])
    size = db.stat().st_size
    assert size > 8_192
    with db.open("r+b") as file:
        file.truncate(size // 2)

    gateway = _gateway(db)
    with pytest.raises(ConfigError) as refused:
        await gateway.start()
    assert str(db) in str(refused.value)
    assert "corrupt or truncated" in str(refused.value)
    assert db.stat().st_size == size // 2  # left as it was


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "runwire.db"
    db.write_bytes(b"not a database, " * 512)
    with pytest.raises(ConfigError, match="runwire.db"):
        await _gateway(db).start()
    assert db.read_bytes() == b"not a database, " * 512


# -- kill -9 ----------------------------------------------------------------------------


@contextmanager
def serve_sqlite(
    db: Path,
    tmp_path: Path,
    *,
    port: int = 0,
    agent: str = "tests.engines.streaming_agent:agent",
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`runwire serve` on the sqlite file (dev mode, the tests' secret), with ``agent``;
    yields the process and its WebSocket URL, and stops it with SIGINT if still
    running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env.update(
        RUNWIRE_ENGINE=_url(db),
        RUNWIRE_PORT=str(port),
        RUNWIRE_AUTH_SECRET=SECRET,
        RUNWIRE_STATE_DIR=str(tmp_path / "state"),
        RUNWIRE_AGENT=agent,
        PYTHONPATH=str(ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "runwire", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # printed once it listens
        assert " on http://" in first, (first, process.stderr and process.stderr.read())
        url = first.split(" on ")[1].strip()
        yield process, url.replace("http", "ws", 1) + "/ws"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.communicate(timeout=15)


async def test_kill_9_mid_run_then_restart_resumes_with_nothing_lost_and_ends_interrupted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runwire.db"
    settings = make_settings(auth_secret=SECRET)
    token = token_for(settings, "dave")
    seen: list[dict[str, object]] = []
    with serve_sqlite(db, tmp_path) as (process, ws_url):
        async with Client.connect(ws_url, token) as client:
            ack = await client.send_message("go")
            while sum(frame.get("type") == "agent_message_delta" for frame in seen) < 20:
                seen.append(await client.recv(timeout=10))
            position = client.position
            assert position is not None
            os.kill(process.pid, signal.SIGKILL)  # mid-stream: no shutdown at all
            process.wait(timeout=10)

    with serve_sqlite(db, tmp_path) as (_, ws_url):
        async with Client.connect(ws_url, token, resume=position) as client:
            notices: list[object] = []
            rest: list[dict[str, object]] = []
            while not rest or rest[-1]["type"] not in ("agent_completed", "agent_error"):
                frame = await client.recv(timeout=10)
                if frame.get("run_id") == ack["run_id"]:
                    rest.append(frame)
                else:
                    notices.append(frame["type"])
            while "resumed" not in notices and "resume_failed" not in notices:
                notices.append((await client.recv(timeout=10))["type"])  # after the replay
            runs = await client.get_runs()

    assert "resumed" in notices and "resume_failed" not in notices, notices
    frames = [frame for frame in seen if frame.get("run_id") == ack["run_id"]] + rest
    assert_run_rules(frames)  # seq 1..n with nothing missing, one terminal
    assert [frame["offset"] for frame in frames] == list(range(1, len(frames) + 1))
    assert frames[-1]["type"] == "agent_error"
    assert frames[-1]["data"]["code"] == "interrupted"  # type: ignore[index]
    closing = [frame for frame in rest if frame["type"] == "tool_completed"]
    assert [frame["data"]["ok"] for frame in closing] == [False]  # type: ignore[index]
    assert [(run["run_id"], run["status"]) for run in runs] == [(ack["run_id"], "error")]
    assert runs[0]["error"]["code"] == "interrupted"


# -- a failed commit ------------------------------------------------------------------


async def test_a_failed_commit_makes_the_engine_unavailable_until_the_file_takes_writes(
    tmp_path: Path,
) -> None:
    """The disk fills up (SQLite's own limit, ``max_page_count``, gives the real
    SQLITE_FULL a full disk gives): the publish fails, the sockets are told
    ``engine_status`` ``unavailable`` and ``/healthz`` answers 503; room again, and the
    engine reports ``available`` and publishes."""
    db = tmp_path / "runwire.db"
    async with _gateway(db) as gateway:
        assert isinstance(gateway.engine, SqliteEngine)
        database = gateway.engine.database
        health = gateway.url + "/healthz"
        async with Client.connect(gateway.ws_url, token_for(gateway.settings, "erin")) as client:
            await database.write([("PRAGMA max_page_count = 1", ())])  # = its size now: full
            big = Event.of(AgentMessageDelta("x" * 200_000), run_id="r", thread_id="t", seq=1, ts=1)
            with pytest.raises(EngineError, match="database or disk is full"):
                await gateway.publish(UserId("erin"), big)
            assert (await client.recv(timeout=5)) == {
                "type": "engine_status",
                "state": "unavailable",
            }
            status, body = await asyncio.to_thread(get_json, health)
            assert status == 503 and body["engine_available"] is False
            with pytest.raises(EngineError, match="unavailable"):
                await gateway.publish(UserId("erin"), big)

            await database.write([("PRAGMA max_page_count = 1073741823", ())])  # room again
            assert (await client.recv(timeout=5)) == {"type": "engine_status", "state": "available"}
            assert (await asyncio.to_thread(get_json, health))[0] == 200
            stored = await gateway.publish(UserId("erin"), big)
            assert stored.offset == 1  # the failed publish took no offset
            assert (await client.recv(timeout=5))["offset"] == 1


@pytest.mark.parametrize(("setting", "pragma"), [("full", 2), ("normal", 1)])
async def test_sqlite_synchronous_sets_how_commits_reach_the_disk(
    tmp_path: Path, setting: str, pragma: int
) -> None:
    engine = f"sqlite:///{tmp_path / 'runwire.db'}"
    async with running_gateway(engine=engine, sqlite_synchronous=setting) as gateway:
        assert isinstance(gateway.engine, SqliteEngine)
        database = gateway.engine.database
        assert database.synchronous == setting
        connection = database._conn  # the writer's own connection (the file is exclusive)
        assert connection is not None
        assert connection.execute("PRAGMA synchronous").fetchone() == (pragma,)
        await publish_texts(gateway, "sync-user", ["a", "b", "c"])
        position = await gateway.engine.position(UserId("sync-user"))
        assert position.offset == 3


async def test_the_publishes_of_one_loop_iteration_are_one_write(tmp_path: Path) -> None:
    engine = f"sqlite:///{tmp_path / 'runwire.db'}"
    async with running_gateway(engine=engine) as gateway:
        assert isinstance(gateway.engine, SqliteEngine)
        database = gateway.engine.database
        users = [UserId(f"batch-{n}") for n in range(20)]
        for user in users:  # the streams exist first (their rows are written behind)
            await gateway.engine.position(user)
        await database.write([])  # committed after those, in order
        before = database.writes
        events = [
            Event.of(AgentMessageDelta(f"{n}"), run_id=f"r{n}", thread_id="t", seq=1, ts=0)
            for n in range(20)
        ]
        stored = await asyncio.gather(
            *(
                gateway.engine.publish(user, event)
                for user, event in zip(users, events, strict=True)
            )
        )
        assert [s.offset for s in stored] == [1] * 20
        assert database.writes - before == 1, "one write for the iteration's 20 publishes"


async def test_a_cancelled_publish_leaves_the_others_of_its_write_alone(tmp_path: Path) -> None:
    """The publishes of one loop iteration wait on one commit: cancelling one of them
    (a user cancels their run) cancelled that shared wait, so every other user's
    publish in the write raised ``CancelledError`` although it was stored, and their
    runs ended as if the gateway were shutting down."""
    engine = f"sqlite:///{tmp_path / 'runwire.db'}"
    async with running_gateway(engine=engine) as gateway:
        sqlite = gateway.engine
        assert isinstance(sqlite, SqliteEngine)

        def event(run: str) -> Event:
            return Event.of(AgentMessageDelta("x"), run_id=run, thread_id="t", seq=1, ts=0)

        alice = asyncio.create_task(sqlite.publish(UserId("alice"), event("r_a")))
        bob = asyncio.create_task(sqlite.publish(UserId("bob"), event("r_b")))
        await asyncio.sleep(0)  # both wait on the same write now
        alice.cancel()
        stored = await asyncio.wait_for(bob, 5)
        assert stored.offset == 1
        with pytest.raises(asyncio.CancelledError):
            await alice
        assert (await sqlite.position(UserId("bob"))).offset == 1


async def test_a_message_id_finds_its_run_across_a_restart(tmp_path: Path) -> None:
    engine = f"sqlite:///{tmp_path / 'runwire.db'}"
    async with running_gateway(engine=engine) as gateway, connect(gateway, "finder") as client:
        ack = await client.send_message("hi", message_id="m-find")
        await collect_run(client, ack["run_id"])
        found = await gateway.dispatcher.find(UserId("finder"), "m-find")
        assert found is not None and found.run_id == ack["run_id"] and found.duplicate
        assert await gateway.dispatcher.find(UserId("finder"), "m-other") is None
    async with running_gateway(engine=engine) as gateway:
        found = await gateway.dispatcher.find(UserId("finder"), "m-find")
        assert found is not None and found.run_id == ack["run_id"]


# -- the streams held in memory -----------------------------------------------------


async def test_a_stream_created_at_the_bound_does_not_walk_the_subscribed_ones(
    tmp_path: Path,
) -> None:
    """The memory engine's test of the same name, for the window the SQLite engine holds
    in memory: 20,000 subscribed streams, the oldest, then idle ones up to the bound;
    100 new streams each evict one idle stream (from the file too). The work (hashes and
    comparisons of ids) stays near one pass over the subscribed streams plus a constant
    per new stream; walking past every subscribed stream for each new one is 100
    passes."""
    subscribed, idle, new = 20_000, 1_000, 100
    bounds = HistoryBounds(
        max_events=1_000,
        max_bytes=1_048_576,
        ttl_s=3_600.0,
        max_users=subscribed + idle,
        max_event_bytes=65_536,
    )
    engine = SqliteEngine(Database(tmp_path / "runwire.db", "normal"), bounds)
    await engine.start(Listener())
    try:
        event = Event.of(AgentMessageDelta("x"), run_id="r_1", thread_id="t_1", seq=1, ts=1)
        held = [UserId(CountingId(f"held-{i}")) for i in range(subscribed)]
        for user_id in held:
            await engine.subscribe(user_id)
        await asyncio.gather(
            *(engine.publish(UserId(CountingId(f"idle-{i}")), event) for i in range(idle))
        )
        CountingId.uses = 0
        for i in range(new):
            await engine.publish(UserId(CountingId(f"new-{i}")), event)
        assert engine.evicted_streams == new
        assert CountingId.uses <= 2 * subscribed + 20 * new, CountingId.uses
        CountingId.uses = 0
        for i in range(new, 2 * new):  # the subscribed streams were passed once, for good
            await engine.publish(UserId(CountingId(f"new-{i}")), event)
        assert CountingId.uses <= 20 * new, CountingId.uses
        assert engine.stats()["streams"] == subscribed + idle
        assert engine.stats()["subscriptions"] == subscribed
        assert all(user_id in engine._streams for user_id in held)
    finally:
        await engine.close()
    reopened = Database(tmp_path / "runwire.db", "normal")
    try:  # evicted from the file too
        assert len((await reopened.open()).streams) == subscribed + idle
    finally:
        await reopened.close()


async def test_a_stream_passed_while_its_publish_commits_is_evicted_after_the_commit(
    tmp_path: Path,
) -> None:
    """An eviction does not drop a stream whose publish is not committed yet; the next
    eviction after the commit does (least recently used first, as if never passed)."""
    bounds = HistoryBounds(
        max_events=1_000, max_bytes=1_048_576, ttl_s=3_600.0, max_users=1, max_event_bytes=65_536
    )
    engine = SqliteEngine(Database(tmp_path / "runwire.db", "normal"), bounds)
    await engine.start(Listener())
    x, y, z = UserId("x"), UserId("y"), UserId("z")
    try:
        event = Event.of(AgentMessageDelta("x"), run_id="r_1", thread_id="t_1", seq=1, ts=1)
        # y is created while x's publish waits for its commit: x is kept, over the bound.
        stored, _ = await asyncio.gather(engine.publish(x, event), engine.position(y))
        assert stored.offset == 1
        assert set(engine._streams) == {x, y} and engine.evicted_streams == 0
        await engine.position(z)  # x (committed now), then y
        assert set(engine._streams) == {z} and engine.evicted_streams == 2
    finally:
        await engine.close()


def _delta(text: str, seq: int) -> Event:
    return Event.of(AgentMessageDelta(text), run_id="r", thread_id="t", seq=seq, ts=1)


async def _until_available(engine: SqliteEngine) -> None:
    await wait_until(lambda: engine.available, 10, what="the engine available again")


async def test_a_publish_queued_as_a_commit_fails_is_failed_too(tmp_path: Path) -> None:
    """A publish that took its offset while an earlier commit was failing, and whose
    own write was still to come: it was written after the offsets were taken back (a
    gap, then the next publish reused its offset, then the file was refused at the
    next start). It now fails with the failed commit, and nothing is out of order."""
    import time

    bounds = HistoryBounds(1000, 1 << 20, 3600.0, 100, 1 << 20)
    delivered: list[int] = []
    engine = SqliteEngine(Database(tmp_path / "r.db", "full"), bounds)
    await engine.start(Listener(lambda stored: delivered.append(stored.offset)))
    user = UserId("u")
    await engine.subscribe(user)
    await engine.publish(user, _delta("a", 1))
    database = engine.database
    await database.write([("PRAGMA max_page_count = 1", ())])  # the disk is full
    failed_through = database._failed_through
    big = asyncio.create_task(engine.publish(user, _delta("x" * 200_000, 2)))
    await asyncio.sleep(0)  # big takes offset 2
    await asyncio.sleep(0)  # its write goes to the writer, which will fail it
    small = asyncio.create_task(engine.publish(user, _delta("small", 3)))  # runs first
    deadline = time.monotonic() + 10
    while database._failed_through == failed_through:  # the writer has failed the write
        assert time.monotonic() < deadline, "the write did not fail"
        # The loop must not run meanwhile (the failure then lands after small's step).
        time.sleep(0.001)  # noqa: ASYNC251
    results = await asyncio.gather(big, small, return_exceptions=True)
    assert [type(r) for r in results] == [EngineError, EngineError]
    await database.write([("PRAGMA max_page_count = 1073741823", ())])  # room again
    await _until_available(engine)
    assert (await engine.publish(user, _delta("after", 4))).offset == 2
    assert delivered == [1, 2]
    await engine.close()
    reopened = SqliteEngine(Database(tmp_path / "r.db", "full"), bounds)
    await reopened.start(Listener())  # the file is consistent
    assert (await reopened.position(user)).offset == 2
    await reopened.close()


async def test_a_stream_evicted_in_a_failed_commit_is_used_again_afterwards(
    tmp_path: Path,
) -> None:
    """The eviction's delete was in a commit that failed, so the file kept the evicted
    stream's rows; the user's new stream (offset 1 again) collided with them on every
    commit, and the engine went unavailable on each, until a restart."""
    bounds = HistoryBounds(1000, 1 << 20, 3600.0, 1, 1 << 20)  # one stream held
    events = Listener()
    engine = SqliteEngine(Database(tmp_path / "e.db", "full"), bounds)
    await engine.start(events)
    a, b = UserId("a"), UserId("b")
    for seq in range(1, 4):
        await engine.publish(a, _delta(f"a{seq}", seq))
    await engine.database.write([("PRAGMA max_page_count = 1", ())])  # the disk is full
    with pytest.raises(EngineError):
        await engine.publish(b, _delta("x" * 200_000, 1))  # b is created: a is evicted
    await engine.database.write([("PRAGMA max_page_count = 1073741823", ())])
    await _until_available(engine)
    failed = engine.failed_commits
    stored = await engine.publish(a, _delta("a again", 1))  # a's new stream
    assert (stored.offset, engine.failed_commits, engine.available) == (1, failed, True)
    await engine.close()
    reopened = SqliteEngine(Database(tmp_path / "e.db", "full"), bounds)
    await reopened.start(Listener())
    assert (await reopened.position(a)).offset == 1
    await reopened.close()
