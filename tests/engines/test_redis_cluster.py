"""The Redis engine on a real Redis Cluster (3 masters, 1 replica each): every user's
keys in one slot, live channels on sharded pub/sub held by the shard master of the
user's slot, and what a failover keeps.

The engine contract suite and the 300-user multi-node test run on the cluster too
(``redis-cluster`` cases of ``test_contract.py`` and ``test_multinode.py``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from runwire.engines import ResumeFailure, ResumeFailureReason, StoredEvent
from runwire.events import AgentMessageDelta, Event
from runwire.exceptions import ConfigError, EngineError
from runwire.ids import UserId
from runwire.redis import topology
from runwire.redis.engine import RedisEngine
from runwire.redis.keys import (
    NODES_KEY,
    active_runs_key,
    live_channel,
    message_key,
    node_closing_key,
    node_lease_key,
    node_runs_key,
    snapshot_index_key,
    snapshot_key,
    stream_keys,
)
from runwire.redis.topology import Address, Moved, Shard, cluster_seeds
from runwire.redis.wire import Redirect, redirect_of
from tests.helpers import Listener
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer, engine_on

_DEADLINE_S = 30.0


def _slot(key: str) -> int:
    return key_slot(key.encode())


def _users(count: int) -> list[UserId]:
    tag = secrets.token_hex(3)
    return [UserId(f"cl-{tag}-{i}") for i in range(count)]


def _event(seq: int, run_id: str = "r_1") -> Event:
    return Event.of(AgentMessageDelta(f"e{seq}"), run_id=run_id, thread_id="t", seq=seq, ts=seq)


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _publish(engine: RedisEngine, user_id: UserId, event: Event) -> StoredEvent:
    """Publish as the runtime does: retry while the engine is unavailable."""
    deadline = time.monotonic() + _DEADLINE_S
    while True:
        try:
            return await engine.publish(user_id, event)
        except EngineError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def _master_of(cluster: RedisCluster, slot: int) -> RedisServer:
    """The server serving ``slot`` now, as the cluster itself says."""
    live = next(server for server in cluster.servers if server.process is not None)
    rows = redis.Redis(port=live.port).execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
    port = next(int(row[2][1]) for row in rows if int(row[0]) <= slot <= int(row[1]))
    return next(server for server in cluster.servers if server.port == port)


# -- keys and URLs (no server) ------------------------------------------------------


def test_every_key_of_a_user_is_in_the_slot_of_its_live_channel() -> None:
    for user_id in _users(50):
        slot = _slot(live_channel(user_id))
        keys = [
            *stream_keys(user_id),
            snapshot_key(user_id, "r_1"),
            snapshot_index_key(user_id),
            message_key(user_id, "m_1"),
            active_runs_key(user_id),
        ]
        assert {_slot(key) for key in keys} == {slot}, user_id
    node_keys = [NODES_KEY, node_lease_key("a"), node_runs_key("b"), node_closing_key("c")]
    assert len({_slot(key) for key in node_keys}) == 1


def test_users_spread_over_the_slots() -> None:
    """One tag per user: no hot slot. The user ids are fixed (ids with a common prefix
    and a counter, as ``_users`` makes, collide more or less by the prefix: CRC16 is
    linear), and as spread as random ones: 300 ids over 16,384 slots take ~297."""
    users = [UserId(f"user-{uuid.UUID(int=n * 0x9E3779B97F4A7C15 % 2**128)}") for n in range(300)]
    slots = {_slot(live_channel(user_id)) for user_id in users}
    assert len(slots) > 285


def test_cluster_urls_name_seeds_and_credentials() -> None:
    seeds, options = cluster_seeds("redis+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001/")
    assert seeds == [Address("10.0.0.1", 7000), Address("::1", 7001)]
    assert options == {"username": "u", "password": "p@ss"}
    for bad in ("redis+cluster://", "redis+cluster://host", "redis+cluster://host:port"):
        with pytest.raises(ConfigError):
            cluster_seeds(bad)
    with pytest.raises(ConfigError) as refused:
        cluster_seeds("redis+cluster://app:S3cr3t@10.0.0.1:7000,10.0.0.2")
    assert "S3cr3t" not in str(refused.value)
    assert "'10.0.0.2' is not host:port in 'redis+cluster://app:***@" in str(refused.value)


def test_redirections_are_read_from_error_replies() -> None:
    assert redirect_of(ResponseError("MOVED 3999 127.0.0.1:6381")) == Redirect(
        True, 3999, "127.0.0.1", 6381
    )
    assert redirect_of(ResponseError("ASK 12 [::1]:7000")) == Redirect(False, 12, "::1", 7000)
    assert redirect_of(ResponseError("MOVED 5 :7001")) == Redirect(True, 5, "", 7001)
    for other in ("NOPERM no", "MOVED", "MOVED x 1.2.3.4:5", "ERR MOVED 1 a:2", "CLUSTERDOWN"):
        assert redirect_of(ResponseError(other)) is None
    stale = [Shard(((0, 99),), Address("a", 1)), Shard(((100, 199),), Address("b", 2))]
    fresh = [Shard(((0, 49),), Address("a", 1)), Shard(((50, 199),), Address("b", 2))]
    assert not Moved(60, Address("a", 1), Address("b", 2)).shown_by(stale)
    assert Moved(60, Address("a", 1), Address("b", 2)).shown_by(fresh)
    assert Moved(60, Address("a", 1), None).shown_by(fresh)
    assert not Moved(60, Address("a", 1), Address("c", 3)).shown_by(fresh)
    assert not Moved(300, None, None).shown_by(fresh)


# -- sharded pub/sub ----------------------------------------------------------------


@pytest.fixture
async def cluster_engine(redis_cluster: RedisCluster) -> AsyncIterator[Callable[[], object]]:
    engines: list[RedisEngine] = []

    async def make(deliver: Callable[[StoredEvent], None] | None = None) -> RedisEngine:
        engine = engine_on(redis_cluster.url)
        await engine.start(Listener(deliver))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


async def test_live_channels_are_sharded_and_held_by_the_master_of_their_slot(
    redis_cluster: RedisCluster, cluster_engine: Callable[..., asyncio.Future[RedisEngine]]
) -> None:
    delivered: list[StoredEvent] = []
    watcher = await cluster_engine(delivered.append)
    publisher = await cluster_engine()
    users = _users(60)
    for user_id in users:
        await watcher.subscribe(user_id)
    assert watcher.stats()["shards"] == 3
    # Each master holds exactly the channels of the users in its slots, as shard
    # channels; no live channel is a plain (cluster-wide) subscription.
    expected: dict[int, set[bytes]] = {}
    for user_id in users:
        channel = live_channel(user_id)
        master = _master_of(redis_cluster, _slot(channel))
        expected.setdefault(master.port, set()).add(channel.encode())
    assert len(expected) == 3
    for port, channels in expected.items():
        client = redis.Redis(port=port)
        held = set(client.execute_command("PUBSUB SHARDCHANNELS", "rw:{cl-*"))  # type: ignore[no-untyped-call]
        assert channels <= held
        assert not held & {c for p, cs in expected.items() if p != port for c in cs}
        assert not [c for c in client.pubsub_channels("rw:{*") if ":live" in str(c)]
    # One batch across every shard: each user's events arrive once, in order.
    await asyncio.gather(
        *(publisher.publish(user_id, _event(seq)) for seq in (1, 2, 3) for user_id in users)
    )
    await _until(lambda: len(delivered) == 3 * len(users), "every event delivered")
    for user_id in users:
        assert [s.offset for s in delivered if s.user_id == user_id] == [1, 2, 3]
        assert [s.event.seq for s in delivered if s.user_id == user_id] == [1, 2, 3]


# -- failover -----------------------------------------------------------------------


@pytest.fixture
def own_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisCluster]:
    """A cluster of the test's own (it kills servers); ``persistent`` by parameter."""
    persistent = bool(getattr(request, "param", False))
    cluster = RedisCluster(tmp_path / "cluster", persistent=persistent)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def _on_shard(cluster: RedisCluster, users: list[UserId], index: int) -> list[UserId]:
    port = cluster.masters[index].port
    return [u for u in users if _master_of(cluster, _slot(live_channel(u))).port == port]


async def test_a_killed_master_is_replaced_by_its_replica_and_nothing_replicated_is_lost(
    own_cluster: RedisCluster,
) -> None:
    """Events acknowledged and replicated before a master dies are all on the promoted
    replica: same epochs, no gap; the listener of that shard resubscribes to the new
    master; the engine reports unavailable, then available; publishing goes on."""
    delivered: list[StoredEvent] = []
    listener = Listener(delivered.append)
    states = listener.states
    watcher, publisher = engine_on(own_cluster.url), engine_on(own_cluster.url)
    await watcher.start(listener)
    await publisher.start(Listener())
    try:
        users = _users(30)
        victims = await _on_shard(own_cluster, users, 0)
        assert victims and len(victims) < len(users)
        for user_id in users:
            await watcher.subscribe(user_id)
        before = {u: await _publish(publisher, u, _event(1)) for u in users}
        await _until(lambda: len(delivered) == len(users), "the first events")
        own_cluster.wait_synced()
        own_cluster.kill_master(0)
        # Publishing goes on for every user, retried while the shard fails over.
        after = await asyncio.gather(*(_publish(publisher, u, _event(2)) for u in users))
        for user_id, stored in zip(users, after, strict=True):
            assert (stored.epoch, stored.offset) == (before[user_id].epoch, 2), user_id
        await _until(lambda: states[-1:] == [True] and False in states, "unavailable, available")
        await _until(lambda: watcher.available, "the watcher's shard resubscribed")
        # Events of the shard's users published after the resubscription arrive live.
        await asyncio.gather(*(_publish(publisher, u, _event(3)) for u in victims))
        await _until(
            lambda: all(3 in [s.offset for s in delivered if s.user_id == u] for u in victims),
            "live events after the failover",
        )
        for user_id in users:
            history = await watcher.read_after(user_id, before[user_id].epoch, 0, 10)
            assert not isinstance(history, ResumeFailure), user_id
            assert [s.offset for s in history] == list(range(1, len(history) + 1))
    finally:
        await watcher.close()
        await publisher.close()


@pytest.mark.parametrize("own_cluster", [False, True], ids=["volatile", "aof"], indirect=True)
async def test_a_whole_shard_lost_and_restarted(own_cluster: RedisCluster) -> None:
    """Master and replica of one shard die, the master restarts. Without persistence its
    users' streams are gone: their next read is ``epoch_changed`` (the documented data
    loss signal) and their next event starts a new epoch at offset 1; with
    ``appendfsync always`` every acknowledged event is back, same epoch. Users of the
    other shards are untouched either way."""
    persistent = own_cluster.masters[0].persistent
    engine = engine_on(own_cluster.url)
    listener = Listener()
    states = listener.states
    await engine.start(listener)
    try:
        users = _users(30)
        victims = set(await _on_shard(own_cluster, users, 0))
        before = {u: [await _publish(engine, u, _event(s)) for s in (1, 2)][-1] for u in users}
        for replica in own_cluster.replicas[0]:
            replica.stop()
        own_cluster.masters[0].restart()
        own_cluster._wait(own_cluster.healthy, _DEADLINE_S)
        await _until(lambda: False in states and engine.available, "available again")
        for user_id in users:
            old = before[user_id]
            result = await engine.read_after(user_id, old.epoch, 0, 10)
            if user_id in victims and not persistent:
                assert isinstance(result, ResumeFailure), user_id
                assert result.reason is ResumeFailureReason.EPOCH_CHANGED
                fresh = await _publish(engine, user_id, _event(3))
                assert fresh.offset == 1 and fresh.epoch != old.epoch
            else:
                assert not isinstance(result, ResumeFailure), user_id
                assert [s.offset for s in result] == [1, 2], user_id
    finally:
        await engine.close()


async def test_a_user_whose_slot_moves_to_another_master_is_followed(
    own_cluster: RedisCluster,
) -> None:
    """A resharding moves a subscribed user's slot to another master: the server drops
    the shard channel (``sunsubscribe``), the node rebuilds its per-shard subscriptions
    from the new slot map, and the user's next events (published at the new master)
    are delivered."""
    delivered: list[StoredEvent] = []
    watcher, publisher = engine_on(own_cluster.url), engine_on(own_cluster.url)
    await watcher.start(Listener(delivered.append))
    await publisher.start(Listener())
    try:
        [user_id] = _users(1)
        slot = _slot(live_channel(user_id))
        await watcher.subscribe(user_id)
        source = _master_of(own_cluster, slot)
        target = next(m for m in own_cluster.masters if m.port != source.port)
        target_id = redis.Redis(port=target.port).execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
        for master in [
            target,
            source,
            *(m for m in own_cluster.masters if m not in (source, target)),
        ]:
            redis.Redis(port=master.port).execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER SETSLOT", slot, "NODE", target_id
            )
        await _until(lambda: _master_of(own_cluster, slot).port == target.port, "the move")
        channel = live_channel(user_id).encode()

        def held_by_target() -> bool:
            client = redis.Redis(port=target.port)
            return channel in client.execute_command("PUBSUB SHARDCHANNELS")  # type: ignore[no-untyped-call]

        await _until(held_by_target, "the channel subscribed at the new master")
        await _until(lambda: watcher.available, "the watcher available")
        stored = await _publish(publisher, user_id, _event(1))
        assert stored.offset == 1
        await _until(lambda: [s.offset for s in delivered] == [1], "the event after the move")
    finally:
        await watcher.close()
        await publisher.close()


# -- a slot map gone stale ----------------------------------------------------------


def _move_slot(cluster: RedisCluster, slot: int, target: RedisServer) -> None:
    """Give ``slot`` to ``target`` (``CLUSTER SETSLOT ... NODE`` on every master, the
    target first) and wait until every master serves the new map."""
    target_id = redis.Redis(port=target.port).execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
    masters = sorted(cluster.masters, key=lambda master: master.port != target.port)
    for master in masters:
        redis.Redis(port=master.port).execute_command(  # type: ignore[no-untyped-call]
            "CLUSTER SETSLOT", slot, "NODE", target_id
        )

    def moved_everywhere() -> bool:
        for master in masters:
            rows = redis.Redis(port=master.port).execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            if not any(
                int(row[0]) <= slot <= int(row[1]) and int(row[2][1]) == target.port for row in rows
            ):
                return False
        return True

    cluster._wait(moved_everywhere, _DEADLINE_S)


async def test_a_user_of_a_slot_that_moved_while_nobody_here_held_it_goes_live(
    own_cluster: RedisCluster,
) -> None:
    """A slot holding no user of this node moves to another master: no ``sunsubscribe``
    tells the node, so its slot map is stale and the user's ``SSUBSCRIBE`` goes to the
    old master, which answers ``MOVED``. The listener follows it (new slot map, new
    listeners): the user's first ``subscribe`` returns, it receives what is published
    next, and so does a user already subscribed at the old master. Before, the
    ``MOVED`` was dropped and every ``subscribe`` of that user timed out."""
    delivered: list[StoredEvent] = []
    watcher, publisher = engine_on(own_cluster.url), engine_on(own_cluster.url)
    await watcher.start(Listener(delivered.append))
    await publisher.start(Listener())
    try:
        users = _users(200)
        mover = users[0]
        slot = _slot(live_channel(mover))
        source = _master_of(own_cluster, slot)
        neighbour = next(
            u
            for u in users[1:]
            if _slot(live_channel(u)) != slot
            and _master_of(own_cluster, _slot(live_channel(u))).port == source.port
        )
        await watcher.subscribe(neighbour)
        target = next(m for m in own_cluster.masters if m.port != source.port)
        _move_slot(own_cluster, slot, target)
        assert watcher.available and watcher.stats()["shards"] == 3

        await watcher.subscribe(mover)  # raised EngineError (not confirmed in time)

        channel = live_channel(mover).encode()
        held = redis.Redis(port=target.port).execute_command("PUBSUB SHARDCHANNELS")  # type: ignore[no-untyped-call]
        assert channel in held
        await _until(lambda: watcher.available, "the watcher available again")
        assert watcher.stats()["unconfirmed_users"] == 0
        for user_id in (mover, neighbour):
            await _publish(publisher, user_id, _event(1))
        await _until(
            lambda: (
                sorted((s.user_id, s.offset) for s in delivered)
                == sorted([(mover, 1), (neighbour, 1)])
            ),
            "both users' events, live",
        )
    finally:
        await watcher.close()
        await publisher.close()


async def test_a_moved_user_is_followed_past_a_seed_that_has_not_heard_of_the_move(
    own_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first seed lags: it goes on answering ``CLUSTER SLOTS`` as before the move
    (its real answer, taken before the move, stands in for a node the cluster's gossip
    has not reached yet; every other answer is the server's own). A subscribed user's
    slot is migrated (``MIGRATE`` of its keys, ``SETSLOT ... NODE``): the node is told by
    the ``sunsubscribe``, passes over the lagging seed's map for one that shows the
    move, and the user gets its next event live. Before, the first seed's stale map was
    taken every time: reconnected to the old master, ``MOVED`` dropped, the engine
    unavailable for good."""
    [user_id] = _users(1)
    slot = _slot(live_channel(user_id))
    source = _master_of(own_cluster, slot)
    target, lagging = [m for m in own_cluster.masters if m.port != source.port]
    seeds = [lagging, source, target]
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{m.port}" for m in seeds)
    stale = redis.Redis(port=lagging.port).execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
    real = topology._cluster_slots

    async def lagging_seed(address: Address, options: dict[str, object]) -> object:
        if address == Address("127.0.0.1", lagging.port):
            return stale
        return await real(address, options)

    monkeypatch.setattr(topology, "_cluster_slots", lagging_seed)
    delivered: list[StoredEvent] = []
    watcher, publisher = engine_on(url), engine_on(url)
    await watcher.start(Listener(delivered.append))
    await publisher.start(Listener())
    try:
        await watcher.subscribe(user_id)
        await _publish(publisher, user_id, _event(1))
        await _until(lambda: [s.offset for s in delivered] == [1], "the event before the move")
        src, tgt = redis.Redis(port=source.port), redis.Redis(port=target.port)
        source_id = src.execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
        target_id = tgt.execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
        tgt.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)  # type: ignore[no-untyped-call]
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)  # type: ignore[no-untyped-call]
        keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)  # type: ignore[no-untyped-call]
        assert keys
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)  # type: ignore[no-untyped-call]
        tgt.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)  # type: ignore[no-untyped-call]
        src.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)  # type: ignore[no-untyped-call]
        channel = live_channel(user_id).encode()

        def held_by_target() -> bool:
            held = tgt.execute_command("PUBSUB SHARDCHANNELS")  # type: ignore[no-untyped-call]
            return channel in held

        await _until(held_by_target, "the channel subscribed at the new master")
        await _until(
            lambda: watcher.available and watcher.stats()["unconfirmed_users"] == 0,
            "the watcher available, the user live",
        )
        await _publish(publisher, user_id, _event(2))
        await _until(lambda: [s.offset for s in delivered] == [1, 2], "the event after the move")
    finally:
        await watcher.close()
        await publisher.close()


async def test_a_refused_subscription_fails_the_connection_and_leaves_nothing_behind(
    redis_cluster: RedisCluster,
) -> None:
    """An error reply other than ``MOVED`` (here ``NOPERM``: the node's ACL user may not
    read the user's channel) fails the subscription connection: the node reconnects,
    resubscribes and resyncs, and is available again once the refused user's
    ``subscribe`` gave up. Nothing of the refused command stays behind: once the
    channel is allowed, the user's next ``subscribe`` goes live. Before, the error
    reply was dropped and the refused command stayed unanswered for good, so the
    user never went live on that connection again."""
    allowed, refused = _users(2)
    name, password = f"acl-{secrets.token_hex(4)}", secrets.token_hex(8)
    servers = [server for server in redis_cluster.servers if server.process is not None]

    def acl(*rules: str) -> None:
        for server in servers:
            redis.Redis(port=server.port).execute_command("ACL SETUSER", name, *rules)  # type: ignore[no-untyped-call]

    acl("on", f">{password}", "~*", "+@all", "resetchannels", "&rw:node")
    acl(f"&{live_channel(allowed)}")
    seeds = ",".join(f"127.0.0.1:{server.port}" for server in redis_cluster.masters)
    delivered: list[StoredEvent] = []
    watcher = engine_on(f"redis+cluster://{name}:{password}@{seeds}")
    publisher = engine_on(redis_cluster.url)
    await watcher.start(Listener(delivered.append))
    await publisher.start(Listener())
    try:
        await watcher.subscribe(allowed)
        with pytest.raises(EngineError):
            await watcher.subscribe(refused)
        await _until(lambda: watcher.available, "available once the refused user is gone")
        acl(f"&{live_channel(refused)}")
        await watcher.subscribe(refused)  # timed out before: its old command never cleared
        await _until(lambda: watcher.available, "available")
        for user_id in (allowed, refused):
            await _publish(publisher, user_id, _event(1))
        await _until(
            lambda: (
                sorted((s.user_id, s.offset) for s in delivered)
                == sorted([(allowed, 1), (refused, 1)])
            ),
            "both users' events, live",
        )
    finally:
        await watcher.close()
        await publisher.close()
        for server in servers:
            redis.Redis(port=server.port).execute_command("ACL DELUSER", name)  # type: ignore[no-untyped-call]
