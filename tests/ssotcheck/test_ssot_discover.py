"""``ssotcheck discover``: proposals from the code, and its command line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ssotcheck.cli import main
from ssotcheck.propose import common_run, tokens
from ssotcheck.testing import make_project, write

REPO = Path(__file__).resolve().parents[2]

MANAGER = """\
class ConnectionHub:
    def __init__(self) -> None:
        self.members: dict[str, object] = {}

    def join(self, key: str, conn: object) -> None:
        self.members[key] = conn

    def leave(self, key: str) -> None:
        self.members.pop(key, None)

    def publish(self, data: bytes) -> int:
        return len(self.members)

    def members_of(self, room: str) -> list[str]:
        return [k for k in self.members if k.startswith(room)]


def create_connection_hub() -> ConnectionHub:
    return ConnectionHub()
"""

COPY = """\
class LegacyConnectionHub:
    def __init__(self) -> None:
        self.members: list[object] = []

    def join(self, key: str, conn: object) -> None:
        self.members.append(conn)

    def leave(self, key: str) -> None:
        pass

    def publish(self, data: bytes) -> int:
        return 0

    def members_of(self, room: str) -> list[str]:
        return []
"""


def _tree(tmp_path: Path) -> Path:
    write(tmp_path, "src/hub/__init__.py", "from hub.core import ConnectionHub\n")
    write(tmp_path, "src/hub/core.py", MANAGER)
    write(tmp_path, "src/hub/legacy.py", COPY)
    write(
        tmp_path,
        "src/app/use.py",
        "from hub import ConnectionHub\nfrom hub.core import create_connection_hub\n\n"
        "Hub = ConnectionHub\n\n\ndef f():\n    return create_connection_hub()\n",
    )
    return tmp_path / "src"


def test_discover_without_any_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["discover", "src", "--no-cache"]) == 0
    out = capsys.readouterr().out
    table = tomllib.loads(out)["tool"]["ssotcheck"]
    assert table["paths"] == ["src"]
    assert table["concepts"] == [
        {
            "name": "connection_hub",
            "canonical": "hub.core:ConnectionHub",
            "public": "hub",
            "factory": "hub.core:create_connection_hub",
            "patterns": ["*ConnectionHub*"],
        }
    ]
    assert "LegacyConnectionHub (name, overlap 1.00)" in out
    assert "would report SSOT001 x1, SSOT003 x1" in out
    assert src.is_dir()


def test_configured_concepts_are_not_proposed_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_project(
        tmp_path,
        {"src/app/copy.py": "class LegacyWebSocketManager:\n    pass\n"},
    )
    assert main(["discover", "--config", str(config), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "No concept found" in out
    assert 'config_module = "wire.config"' in out


def test_this_repository_has_nothing_new_to_propose(capsys: pytest.CaptureFixture[str]) -> None:
    """Only the one known proposal: the two node-local engines (memory, SQLite) share
    the Engine port plus their history attributes (``bounds``, eviction counters),
    which discover counts as overlap beyond the port. Their history itself is one
    implementation (``engines.history.Window``); the proposal is pinned here, so any
    other proposal fails this test."""
    assert main(["discover", "--config", str(REPO / "pyproject.toml"), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "1 concept(s) proposed" in out
    assert 'canonical = "runwire.engines.memory:MemoryEngine"' in out
    assert "by shape   SqliteEngine" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["discover", "--top", "0"], "--top and --jobs must be >= 1"),
        (["discover", "--config", "missing.toml"], "has no [tool.ssotcheck] table"),
        (["discover", "nowhere", "--config", "missing.toml"], "'nowhere' does not exist"),
    ],
)
def test_discover_errors_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_name_words() -> None:
    assert tokens("UnifiedWebSocketManager") == ("Unified", "Web", "Socket", "Manager")
    assert tokens("_MCPConnectionManager") == ("MCP", "Connection", "Manager")
    assert tokens("user_execution_context") == ("user", "execution", "context")
    a, b = tokens("UnifiedWebSocketManager"), tokens("WebSocketManagerAdapter")
    assert common_run(a, b) == ("Web", "Socket", "Manager")
    assert common_run(a, tokens("DatabaseConnectionManager")) == ("Manager",)
