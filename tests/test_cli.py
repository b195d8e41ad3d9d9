"""The `runwire` command as a user runs it: serve, token, chat, config."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from runwire.client import Client
from runwire.stopping import FORCE_AFTER_S

RUNWIRE = [sys.executable, "-m", "runwire"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env.update({"RUNWIRE_STATE_DIR": str(tmp_path / "state"), **extra})
    return env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`runwire serve` on a free port; yields its WebSocket URL and environment."""
    env = _env(tmp_path, RUNWIRE_PORT="0", RUNWIRE_AGENT="runwire.agents.demo:demo_agent")
    process = subprocess.Popen(
        [*RUNWIRE, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        banner = process.stdout.readline()  # blocks until the gateway listens
        assert "gateway on http://127.0.0.1:" in banner, banner
        url = banner.split(" on ")[1].strip()
        yield url.replace("http", "ws", 1) + "/ws", env
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert "stopping" in out
        assert "DEV mode" in err


def test_token_prints_a_jwt_for_the_user_with_a_dev_warning(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RUNWIRE, "token", "alice"], env=_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "WARNING: runwire is in DEV mode" in result.stderr
    secret = (tmp_path / "state" / "dev-secret").read_text().strip()
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["exp"] > claims["iat"]
    assert oct((tmp_path / "state" / "dev-secret").stat().st_mode & 0o777) == "0o600"


def test_chat_prints_the_run_live_and_exits_0(server: tuple[str, dict[str, str]]) -> None:
    url, env = server
    result = subprocess.run(
        [*RUNWIRE, "chat", "--url", url, "--user", "alice", "what is 17 * 23?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "▶ started (demo)"
    assert any(line.startswith("⚙ calculator(") for line in lines)
    assert any(line.startswith("✓ calculator → 391 (") and "ms)" in line for line in lines)
    assert "17 * 23 = 391. Your message has 4 words and 16 characters." in lines
    assert lines[-1] == "■ completed"


def test_chat_json_prints_raw_frames(server: tuple[str, dict[str, str]]) -> None:
    url, env = server
    result = subprocess.run(
        [*RUNWIRE, "chat", "--url", url, "--json", "hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line) for line in result.stdout.splitlines()]
    assert frames[0]["type"] == "connected"
    types = [frame["type"] for frame in frames[1:]]
    assert types[0] == "agent_started" and types[-1] == "agent_completed"
    assert {"agent_thinking", "tool_executing", "tool_completed"} <= set(types)


def test_chat_with_a_bad_token_reports_4401(server: tuple[str, dict[str, str]]) -> None:
    url, env = server
    result = subprocess.run(
        [*RUNWIRE, "chat", "--url", url, "--token", "forged", "hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "connection closed: 4401 invalid token" in result.stderr


def test_config_prints_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    secret = "s" * 40
    result = subprocess.run(
        [*RUNWIRE, "config"],
        env=_env(tmp_path, RUNWIRE_AUTH_SECRET=secret, RUNWIRE_PORT="9999"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    values = json.loads(result.stdout)
    assert values["auth_secret"] == "***" and values["port"] == 9999
    assert secret not in result.stdout


def test_invalid_configuration_fails_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RUNWIRE, "serve"],
        env=_env(tmp_path, RUNWIRE_PORT="not-a-port"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "RUNWIRE_PORT" in result.stderr


_STUCK_AGENT = """
import asyncio
import time


async def agent(run, message):
    await run.think("about to hang")
    await asyncio.sleep(0.2)  # lets the thought reach the socket
    while True:
        time.sleep(0.5)  # holds the event loop for good
"""


def test_sigterm_stops_the_gateway_even_when_an_agent_holds_the_loop(tmp_path: Path) -> None:
    """cd924f8 ignored SIGTERM once the loop was stuck; only SIGKILL ended it."""
    (tmp_path / "stuck_agent.py").write_text(_STUCK_AGENT)
    env = _env(
        tmp_path,
        RUNWIRE_PORT="0",
        RUNWIRE_AGENT="stuck_agent:agent",
        RUNWIRE_SHUTDOWN_GRACE_S="1",
        PYTHONPATH=str(tmp_path),
    )
    process = subprocess.Popen(
        [*RUNWIRE, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        banner = process.stdout.readline()
        url = banner.split(" on ")[1].strip().replace("http", "ws", 1) + "/ws"
        token = subprocess.run(
            [*RUNWIRE, "token", "ann"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        asyncio.run(_start_stuck_run(url, token))
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
        elapsed = time.monotonic() - signalled
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 1
    assert "did not stop within 3 s" in err
    assert elapsed < 1 + FORCE_AFTER_S + 2.0


async def _start_stuck_run(url: str, token: str) -> None:
    async with Client.connect(url, token) as client:
        await client.send_message("hang")
        while (await client.recv(timeout=10))["type"] != "agent_thinking":
            pass
