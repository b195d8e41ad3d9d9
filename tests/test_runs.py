"""Run snapshots over HTTP: each user sees only their own runs, complete and current."""

from __future__ import annotations

import asyncio

from tests.helpers import GatedAgent, collect_run, connect, get_json, running_gateway, token_for


async def test_snapshots_rebuild_a_finished_run() -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("hello", thread_id="t1")
        frames = await collect_run(client, ack["run_id"])
        token = token_for(gateway.settings, "alice")
        status, body = await asyncio.to_thread(
            get_json, f"{gateway.url}/api/runs?thread_id=t1", token
        )
    assert status == 200
    assert isinstance(body, dict)
    [run] = body["runs"]
    assert run["run_id"] == ack["run_id"]
    assert run["status"] == "completed"
    assert run["input"] == "hello"
    assert run["thinking"] == ["thinking about hello"]
    assert run["answer"] == "echo: hello."
    assert run["output"] == "echo: hello."
    assert run["last_offset"] == frames[-1]["offset"]
    [call] = run["tools"]
    assert call["tool"] == "echo" and call["status"] == "completed" and call["result"] == "HELLO"


async def test_a_running_run_shows_its_open_tool_call() -> None:
    agent = GatedAgent()
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("wait")
        await asyncio.wait_for(agent.in_tool.wait(), 5)
        token = token_for(gateway.settings, "alice")
        status, run = await asyncio.to_thread(
            get_json, f"{gateway.url}/api/runs/{ack['run_id']}", token
        )
        agent.release.set()
        await collect_run(client, ack["run_id"])
    assert status == 200 and isinstance(run, dict)
    assert run["status"] == "running"
    assert run["tools"][0]["status"] == "running"


async def test_snapshots_are_private_and_need_a_token() -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("private", thread_id="t1")
        await collect_run(client, ack["run_id"])
        bob = token_for(gateway.settings, "bob")
        url = gateway.url
        assert await asyncio.to_thread(get_json, f"{url}/api/runs/{ack['run_id']}", bob) == (
            404,
            {"error": "not_found", "message": "no such run"},
        )
        assert await asyncio.to_thread(get_json, f"{url}/api/runs?thread_id=t1", bob) == (
            200,
            {"runs": [], "more": False},
        )
        assert await asyncio.to_thread(get_json, f"{url}/api/runs", None) == (
            401,
            {"error": "unauthorized", "message": "missing token"},
        )
        assert await asyncio.to_thread(get_json, f"{url}/api/threads", "forged") == (
            401,
            {"error": "unauthorized", "message": "invalid token"},
        )
        status, threads = await asyncio.to_thread(
            get_json, f"{url}/api/threads", token_for(gateway.settings, "alice")
        )
    assert status == 200 and isinstance(threads, dict)
    assert [t["thread_id"] for t in threads["threads"]] == ["t1"]
    assert threads["threads"][0]["title"] == "private"


async def test_snapshots_are_bounded_per_user() -> None:
    async with (
        running_gateway(snapshot_runs_per_user=3) as gateway,
        connect(gateway, "alice") as client,
    ):
        run_ids = []
        for index in range(5):
            ack = await client.send_message(f"m{index}")
            await collect_run(client, ack["run_id"])
            run_ids.append(ack["run_id"])
        assert [r.run_id for r in gateway.runs.runs("alice")] == run_ids[-3:]  # type: ignore[arg-type]
        assert gateway.runs.stats() == {"users": 1, "runs": 3}


async def test_snapshots_over_the_socket_match_http() -> None:
    async with running_gateway() as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("hello", thread_id="t9")
        await collect_run(client, ack["run_id"])
        runs = await client.get_runs(thread_id="t9")
        run = await client.get_run(ack["run_id"])
        assert await client.get_run("r_not_mine") is None
        token = token_for(gateway.settings, "alice")
        status, body = await asyncio.to_thread(
            get_json, f"{gateway.url}/api/runs?thread_id=t9", token
        )
    assert status == 200 and isinstance(body, dict)
    assert runs == body["runs"] and [run] == runs
    assert run is not None and run["status"] == "completed" and run["answer"] == "echo: hello."


def test_first_offset_is_the_runs_start_and_old_snapshots_still_decode() -> None:
    import msgspec

    from runwire.events import AgentMessageDelta, AgentStarted, Event
    from runwire.ids import UserId
    from runwire.runs import RunSnapshot, RunStore

    store = RunStore(runs_per_user=5, max_users=5)
    user = UserId("alice")
    started = Event.of(AgentStarted("demo", "hi"), run_id="r_1", thread_id="t", seq=1, ts=1)
    delta = Event.of(AgentMessageDelta("hello"), run_id="r_1", thread_id="t", seq=2, ts=2)
    store.observe(user, 7, started)
    store.observe(user, 9, delta)
    snapshot = store.run(user, "r_1")
    assert snapshot is not None and (snapshot.first_offset, snapshot.last_offset) == (7, 9)
    stored = msgspec.json.encode(snapshot)  # as SQLite and Redis keep it
    assert msgspec.json.decode(stored, type=RunSnapshot).first_offset == 7
    old = msgspec.json.decode(stored.replace(b',"first_offset":7', b""))
    assert "first_offset" not in old
    assert msgspec.json.decode(msgspec.json.encode(old), type=RunSnapshot).first_offset == 0


def test_runs_read_back_from_elsewhere_take_their_place_by_start() -> None:
    """A node that observed the newest run, then merges older snapshots read from Redis
    (``get_runs`` in Redis mode): the runs stay oldest first. Merged runs went after the
    newer ones before, so the newest page was wrong and a new run evicted the newest."""
    from runwire.events import AgentStarted, Event
    from runwire.ids import UserId
    from runwire.runs import RunSnapshot, RunStore, page_of

    alice = UserId("alice")
    store = RunStore(runs_per_user=3, max_users=10)
    started = Event.of(AgentStarted("demo", "third"), run_id="r_3", thread_id="t", seq=1, ts=3000)
    store.observe(alice, 30, started)
    for i in (1, 2):
        store.merge(
            alice,
            RunSnapshot(
                f"r_{i}", "t", "demo", f"input {i}", status="completed",
                started_ts=i * 1000, last_offset=i * 10, last_seq=5, first_offset=i * 10 - 4,
            ),
        )  # fmt: skip
    assert [r.run_id for r in store.runs(alice)] == ["r_1", "r_2", "r_3"]
    newest = page_of(store.runs(alice), limit=1, before=None, max_bytes=10**6)
    assert [r.run_id for r in newest.runs] == ["r_3"]
    fourth = Event.of(AgentStarted("demo", "fourth"), run_id="r_4", thread_id="t", seq=1, ts=4000)
    store.observe(alice, 40, fourth)
    assert [r.run_id for r in store.runs(alice)] == ["r_2", "r_3", "r_4"]


def test_an_output_cut_to_the_snapshots_bound_says_so() -> None:
    from runwire.events import AgentCompleted, AgentStarted, Event
    from runwire.ids import UserId
    from runwire.runs import MAX_ANSWER_CHARS, RunStore

    alice = UserId("alice")
    store = RunStore(runs_per_user=3, max_users=10)
    store.observe(
        alice, 1, Event.of(AgentStarted("demo", "x"), run_id="r", thread_id="t", seq=1, ts=0)
    )
    output = "y" * (MAX_ANSWER_CHARS + 1)
    done = Event.of(AgentCompleted(output, "completed"), run_id="r", thread_id="t", seq=2, ts=0)
    store.observe(alice, 2, done)
    snapshot = store.run(alice, "r")
    assert snapshot is not None and snapshot.output == output[:MAX_ANSWER_CHARS]
    assert snapshot.truncated
