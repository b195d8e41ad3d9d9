"""The SQLite file across crashes: message claims, snapshot rows, empty files, and what
the process keeps of the file in memory (real files, real gateways, a real kill -9)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from runwire import Gateway
from runwire.client import Client
from runwire.engines.sqlite import SqliteEngine
from runwire.exceptions import ConfigError
from runwire.ids import UserId
from runwire.sqlite.snapshots import SqliteSnapshots
from tests.engines.test_sqlite import ROOT, serve_sqlite
from tests.helpers import (
    SECRET,
    collect_run,
    connect,
    make_settings,
    running_gateway,
    scripted_agent,
    token_for,
)


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        return connection.execute(sql).fetchall()


# A gateway in a child process that claims message ``m-1`` of ``bob`` and is killed
# with SIGKILL by its own engine at a chosen publish: ``first`` (before the run's
# ``agent_started`` is committed) or ``second`` (after it, with the snapshots'
# write-behind stopped, so the run's pending mark is still in the file).
_CHILD = """
import asyncio, os, signal, sys
from runwire import Gateway
from runwire.engines.sqlite import SqliteEngine
from runwire.ids import UserId
from runwire.sqlite.snapshots import SqliteSnapshots
from runwire.sqlite.snapshots import SqliteSnapshots
from tests.helpers import make_settings, scripted_agent

url, kill_at = sys.argv[1], sys.argv[2]
original = SqliteEngine.publish
published = 0

async def publish(self, user_id, event):
    global published
    published += 1
    if published == (1 if kill_at == "first" else 2):
        os.kill(os.getpid(), signal.SIGKILL)
    return await original(self, user_id, event)

SqliteEngine.publish = publish
if kill_at == "second":
    SqliteSnapshots.flush = lambda self: None

async def main():
    gateway = Gateway(make_settings(engine=url), agent=scripted_agent)
    await gateway.start(listen=False)
    started = await gateway.dispatcher.start_run(
        UserId("bob"), "hello", message_id="m-1", thread_id=None
    )
    print(started.run_id, flush=True)
    await asyncio.sleep(20)  # killed long before

asyncio.run(main())
"""


def _claim_then_kill(db: Path, kill_at: str) -> str:
    """Run the child; return the run id it claimed for ``m-1``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, _url(db), kill_at],
        env=env,
        cwd=db.parent,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)
    run_id = done.stdout.strip()
    assert run_id.startswith("r_"), (done.stdout, done.stderr)
    assert _rows(db, "SELECT run_id FROM claims") == [(run_id,)]  # committed before
    return run_id


async def test_a_claim_cut_off_by_a_kill_before_its_run_started_is_released(
    tmp_path: Path,
) -> None:
    """The claim of ``m-1`` is committed, then the process dies before the run's first
    event: the retry of ``m-1`` was answered with the dead run, which never produced
    anything. Now it starts the run."""
    db = tmp_path / "runwire.db"
    dead = _claim_then_kill(db, "first")
    assert _rows(db, "SELECT count(*) FROM events") == [(0,)]

    async with running_gateway(engine=_url(db)) as gateway, connect(gateway, "bob") as client:
        ack = await client.send_message("hello", message_id="m-1")
        assert ack["run_id"] != dead
        frames = await collect_run(client, ack["run_id"], timeout=5)
        assert frames[-1]["type"] == "agent_completed"
        runs = await client.get_runs()
        assert [(run["run_id"], run["status"]) for run in runs] == [(ack["run_id"], "completed")]
        again = await client.send_message("hello", message_id="m-1")
        assert again["run_id"] == ack["run_id"]  # exactly once from here on
    assert _rows(db, "SELECT run_id FROM claims") == [(ack["run_id"],)]
    assert _rows(db, "SELECT count(*) FROM meta WHERE key LIKE 'pending-run:%'") == [(0,)]


async def test_a_run_killed_after_its_first_event_keeps_its_claim(tmp_path: Path) -> None:
    """Killed after ``agent_started`` committed, its pending mark still in the file: the
    run did start, so a retry of its message is the same run (ended ``interrupted``)."""
    db = tmp_path / "runwire.db"
    started = _claim_then_kill(db, "second")
    assert _rows(db, "SELECT count(*) FROM meta WHERE key LIKE 'pending-run:%'") == [(1,)]

    async with running_gateway(engine=_url(db)) as gateway, connect(gateway, "bob") as client:
        again = await client.send_message("hello", message_id="m-1")
        assert again["run_id"] == started
        runs = await client.get_runs()
        assert [(run["run_id"], run["status"]) for run in runs] == [(started, "error")]
        assert runs[0]["error"]["code"] == "interrupted"
    assert _rows(db, "SELECT count(*) FROM meta WHERE key LIKE 'pending-run:%'") == [(0,)]


async def test_a_retry_after_a_kill_9_mid_run_is_the_same_run(tmp_path: Path) -> None:
    db = tmp_path / "runwire.db"
    token = token_for(make_settings(auth_secret=SECRET), "dave")
    with serve_sqlite(db, tmp_path) as (process, ws_url):
        async with Client.connect(ws_url, token) as client:
            ack = await client.send_message("go", message_id="m-kill")
            deltas = 0
            while deltas < 5:
                deltas += (await client.recv(timeout=10)).get("type") == "agent_message_delta"
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    async with running_gateway(engine=_url(db)) as gateway, connect(gateway, "dave") as client:
        again = await client.send_message("go", message_id="m-kill")
        assert again["run_id"] == ack["run_id"]
        assert [run["status"] for run in await client.get_runs()] == ["error"]


async def test_a_started_run_keeps_its_claim_once_its_events_and_snapshot_are_gone(
    tmp_path: Path,
) -> None:
    """Exactly once for a run that started, however old: its events trimmed out of the
    history and its snapshot dropped, a retry of its message still finds it."""
    db = tmp_path / "runwire.db"
    bounds: dict[str, Any] = {
        "engine": _url(db),
        "history_max_events": 2,
        "snapshot_runs_per_user": 1,
    }
    async with running_gateway(**bounds) as gateway, connect(gateway, "erin") as client:
        first = await client.send_message("one", message_id="m-1")
        await collect_run(client, first["run_id"], timeout=5)
        for n in range(2, 4):
            ack = await client.send_message(f"more {n}", message_id=f"m-{n}")
            await collect_run(client, ack["run_id"], timeout=5)
    assert _rows(db, "SELECT count(*) FROM meta WHERE key LIKE 'pending-run:%'") == [(0,)]
    assert _rows(db, "SELECT count(*) FROM snapshots") == [(1,)]
    assert _rows(db, "SELECT count(*) FROM events") == [(2,)]  # of the last run

    async with running_gateway(**bounds) as gateway, connect(gateway, "erin") as client:
        again = await client.send_message("one", message_id="m-1")
        assert again["run_id"] == first["run_id"]


async def _one_run_each(gateway: Gateway, users: list[str]) -> None:
    """A run for each user in turn, each one's snapshot on disk before the next."""
    shared = gateway._shared_snapshots
    assert isinstance(shared, SqliteSnapshots)
    for user in users:
        async with connect(gateway, user) as client:
            ack = await client.send_message(f"hi from {user}")
            await collect_run(client, ack["run_id"], timeout=5)
        shared.flush()  # not waiting for the write-behind's timer
        await shared.database.write([])  # committed after it


async def test_the_snapshot_rows_of_users_the_store_evicts_are_deleted(tmp_path: Path) -> None:
    """The store keeps ``history_max_users`` users; the file kept every user's rows
    forever (and every start-up loaded them all)."""
    db = tmp_path / "runwire.db"
    async with running_gateway(engine=_url(db), history_max_users=2) as gateway:
        await _one_run_each(gateway, [f"user{n}" for n in range(6)])
    assert sorted(_rows(db, "SELECT DISTINCT user_id FROM snapshots")) == [
        ("user4",),
        ("user5",),
    ]


async def test_the_snapshot_rows_beyond_the_bounds_are_trimmed_at_start_up(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runwire.db"
    async with running_gateway(engine=_url(db)) as gateway:
        await _one_run_each(gateway, [f"user{n}" for n in range(5)] + ["user4", "user4"])
    assert _rows(db, "SELECT count(*) FROM snapshots") == [(7,)]

    small: dict[str, Any] = {
        "engine": _url(db),
        "history_max_users": 2,
        "snapshot_runs_per_user": 1,
    }
    async with running_gateway(**small) as gateway:
        kept = {user: gateway.runs.runs(UserId(user)) for user in ("user3", "user4")}
        assert [len(runs) for runs in kept.values()] == [1, 1]
    rows = sorted(_rows(db, "SELECT user_id, run_id FROM snapshots"))
    assert rows == [(user, runs[0].run_id) for user, runs in sorted(kept.items())]


async def test_an_empty_file_is_refused_naming_it(tmp_path: Path) -> None:
    """A 0-byte file (truncated to nothing) started with an empty history; every other
    truncation is refused."""
    db = tmp_path / "runwire.db"
    db.write_bytes(b"")
    gateway = Gateway(make_settings(engine=_url(db)), agent=scripted_agent)
    with pytest.raises(ConfigError) as refused:
        await gateway.start()
    assert str(db) in str(refused.value)
    assert "corrupt or truncated" in str(refused.value)
    assert db.stat().st_size == 0  # left as it was: no schema written into it


async def test_a_new_file_still_gets_its_schema(tmp_path: Path) -> None:
    db = tmp_path / "new" / "runwire.db"
    async with running_gateway(engine=_url(db)) as gateway:
        await _one_run_each(gateway, ["fresh"])
    assert _rows(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]


async def test_what_was_loaded_is_not_held_once_taken(tmp_path: Path) -> None:
    """The loaded streams' events and the claims stayed in ``Database.loaded`` for the
    process's life (only the snapshots were let go)."""
    db = tmp_path / "runwire.db"
    async with running_gateway(engine=_url(db)) as gateway, connect(gateway, "gail") as client:
        first = await client.send_message("one", message_id="m-1")
        await collect_run(client, first["run_id"], timeout=5)

    async with running_gateway(engine=_url(db)) as gateway, connect(gateway, "gail") as client:
        engine = gateway.engine
        assert isinstance(engine, SqliteEngine)
        loaded = engine.database.loaded
        assert loaded is not None
        assert loaded.streams == [] and loaded.snapshots == []
        again = await client.send_message("one", message_id="m-1")  # the claims are taken
        assert again["run_id"] == first["run_id"]
        assert loaded.claims == []
        assert [run["run_id"] for run in await client.get_runs()] == [first["run_id"]]
