"""What a started gateway tells its user, embedded or served, and how it fails to start."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import pytest

from runwire.app import Gateway, load_agent
from runwire.banner import BANNER_LOGGER, banner, runwire_command
from runwire.config import load_settings
from runwire.exceptions import ConfigError
from tests.helpers import make_settings, scripted_agent


def _script(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "env" / "bin" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_command_is_the_environments_script_relative_to_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(_script(tmp_path, "python")))
    _script(tmp_path, "runwire")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert runwire_command() == "env/bin/runwire"  # conftest: cwd is tmp_path
    monkeypatch.chdir(tmp_path / "env")
    assert runwire_command() == "bin/runwire"
    monkeypatch.setenv("PATH", str(tmp_path / "env" / "bin"))
    assert runwire_command() == "runwire"  # on the PATH: as short as it gets


def test_without_a_script_the_command_is_python_dash_m(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(_script(tmp_path, "python")))
    assert runwire_command() == "env/bin/python -m runwire"


def test_the_try_it_line_names_the_url_unless_it_is_the_default() -> None:
    settings = load_settings(auth_secret="s" * 40)
    default = banner(settings, "http://127.0.0.1:8765", "ws://127.0.0.1:8765/ws")
    assert default[-1].endswith(' chat --user alice "what is 17 * 23?"')
    other = banner(settings, "http://127.0.0.1:8771", "ws://127.0.0.1:8771/ws")
    assert other[0] == "runwire dev gateway on http://127.0.0.1:8771"
    assert other[-1].endswith(' chat --url ws://127.0.0.1:8771/ws --user alice "what is 17 * 23?"')
    assert not any("DEV mode" in line for line in other)  # a configured secret


async def test_an_embedded_dev_gateway_logs_its_url_and_warning_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Was: a Gateway in a script printed neither its URL nor the dev-mode warning."""
    gateway = Gateway(make_settings(auth_secret=None), agent=scripted_agent)
    with caplog.at_level(logging.INFO, logger=BANNER_LOGGER):
        await gateway.start()
        await gateway.stop()
    [record] = [r for r in caplog.records if r.name == BANNER_LOGGER]
    assert record.levelno == logging.WARNING  # shown even with logging unconfigured
    lines = record.getMessage().splitlines()
    assert lines[0] == f"runwire dev gateway on {gateway.url}"
    assert f"--url {gateway.ws_url}" in lines[4]
    assert lines[5].startswith("WARNING: runwire is in DEV mode")
    assert str(gateway.settings.state_dir / "dev-secret") in lines[5]


async def test_a_gateway_with_a_configured_secret_logs_its_banner_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = Gateway(make_settings(mode="production"), agent=scripted_agent)
    with caplog.at_level(logging.INFO, logger=BANNER_LOGGER):
        await gateway.start()
        await gateway.stop()
    [record] = [r for r in caplog.records if r.name == BANNER_LOGGER]
    assert record.levelno == logging.INFO
    assert record.getMessage().splitlines() == [
        f"runwire production gateway on {gateway.url}",
        f"  chat page:  {gateway.url}/",
        f"  WebSocket:  {gateway.ws_url}",
    ]


async def test_a_port_in_use_is_a_config_error_and_nothing_keeps_running() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = Gateway(make_settings(port=port), agent=scripted_agent)
        with pytest.raises(ConfigError) as raised:
            await gateway.start()
    assert str(raised.value) == (
        f"RUNWIRE_PORT: port {port} on 127.0.0.1 is already in use;"
        " choose another with --port N or RUNWIRE_PORT=N (make run PORT=N)"
    )
    assert gateway._loop_lag._task is None  # stopped again: the loop monitor too


def test_runwire_agent_finds_a_module_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: No module named 'myagent' unless PYTHONPATH=. was set."""
    (tmp_path / "nc_local_agent.py").write_text("async def agent(run, message):\n    return 'hi'\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    agent = load_agent("nc_local_agent:agent")
    assert agent.__module__ == "nc_local_agent"
    assert load_agent("nc_local_agent").__name__ == "agent"  # `:agent` is the default
    with pytest.raises(ConfigError, match="No module named 'nc_missing_agent'"):
        load_agent("nc_missing_agent:agent")
