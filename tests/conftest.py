"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deployments import deployment  # noqa: F401 - every deployment, one fixture
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer

# Keep any developer's RUNWIRE_* environment out of the tests' configuration.
for _name in [name for name in os.environ if name.startswith("RUNWIRE_")]:
    del os.environ[_name]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in a temporary directory, and its per-user dev-mode state (the
    generated secret, under ``$XDG_CONFIG_HOME/runwire``) is there too."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a measured figure to the terminal even while output is captured."""

    def emit(line: str) -> None:
        with capsys.disabled():
            sys.stdout.write(f"\n  [figures] {line}\n")

    return emit


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis server for the session (tests use unique user ids)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of the test's own, for tests that read or kill the whole server
    (every pending entry, a restart) rather than their own users' keys."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One real Redis Cluster for the session: 3 masters, 1 replica each, no
    persistence (tests use unique user ids; a test that kills a master starts its own)."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


# Under `make mutate` (mutmut sets MUTANT_UNDER_TEST) the socket tests run after the
# in-memory ones: mutmut stops at the first failure (-x), so a mutant is then killed by a
# fast assertion instead of after a socket test's receive timeout.
_SOCKET_TESTS = (
    "tests/test_delivery.py",
    "tests/test_lifecycle.py",
    "tests/agents/test_runtime.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if "MUTANT_UNDER_TEST" in os.environ:
        items.sort(key=lambda item: item.nodeid.startswith(_SOCKET_TESTS))
