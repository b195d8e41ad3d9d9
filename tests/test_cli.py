"""The `runwire` command as a user runs it: serve, token, chat, config."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from runwire.cli import build_parser
from runwire.client import Client
from runwire.stopping import FORCE_AFTER_S

RUNWIRE = [sys.executable, "-m", "runwire"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env.update(
        {
            "RUNWIRE_STATE_DIR": str(tmp_path / "state"),
            "RUNWIRE_ENGINE": f"sqlite:///{tmp_path / 'runwire.db'}",  # not the repo's folder
            **extra,
        }
    )
    return env


BANNER_LINES = 6  # gateway on, chat page, WebSocket, dev token, try it, DEV warning


def _banner(process: subprocess.Popen[str]) -> list[str]:
    """The banner `runwire serve` prints once it listens (readline blocks until then)."""
    assert process.stdout is not None
    lines = [process.stdout.readline().rstrip("\n") for _ in range(BANNER_LINES)]
    assert "gateway on http://127.0.0.1:" in lines[0], lines
    return lines


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    """`runwire serve` on a free port; yields its banner and environment."""
    env = _env(tmp_path, RUNWIRE_PORT="0", RUNWIRE_AGENT="runwire.agents.demo:demo_agent")
    process = subprocess.Popen(
        [*RUNWIRE, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield _banner(process), env
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert "stopping" in out


@pytest.fixture
def server(served: tuple[list[str], dict[str, str]]) -> tuple[str, dict[str, str]]:
    """`runwire serve` on a free port; its WebSocket URL and environment."""
    banner, env = served
    url = banner[0].split(" on ")[1].strip()
    return url.replace("http", "ws", 1) + "/ws", env


def test_the_banner_names_the_real_port_and_its_commands_work_as_typed(
    served: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    """Was: `runwire token alice` (not on the PATH) and a `try it` line for port 8765
    whatever the port."""
    banner, env = served
    port = banner[0].rsplit(":", 1)[1]
    assert banner[2] == f"  WebSocket:  ws://127.0.0.1:{port}/ws"
    assert banner[5].startswith("WARNING: runwire is in DEV mode")
    commands = {line.split(":", 1)[0].strip(): line.split(":", 1)[1] for line in banner[3:5]}
    token = subprocess.run(
        shlex.split(commands["dev token"]), env=env, capture_output=True, text=True, timeout=30
    )
    assert token.returncode == 0, token.stderr
    assert token.stdout.count(".") == 2  # a JWT
    chat = shlex.split(commands["try it"])
    assert f"ws://127.0.0.1:{port}/ws" in chat
    result = subprocess.run(chat, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "17 * 23 = 391." in result.stdout and result.stdout.endswith("■ completed\n")


def test_a_port_in_use_is_one_line_naming_the_port_and_how_to_choose_another(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*RUNWIRE, "serve", "--port", str(port)],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert result.stderr == (
        f"runwire: RUNWIRE_PORT: port {port} on 127.0.0.1 is already in use;"
        " choose another with --port N or RUNWIRE_PORT=N (make run PORT=N)\n"
    )
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("path", "status"),
    [("/nope", 404), ("", 404)],  # ws://host:port: only /ws upgrades (the root is the page)
)
def test_chat_to_a_wrong_path_is_one_line(
    server: tuple[str, dict[str, str]], path: str, status: int
) -> None:
    """Was: a traceback ending in InvalidStatus."""
    url, env = server
    wrong = url.removesuffix("/ws") + path
    result = _chat_to(wrong, env)
    assert result.returncode == 2
    assert result.stderr == (
        f"runwire: {wrong} answered HTTP {status}: not a runwire WebSocket endpoint"
        " (the gateway prints its URL, ending in /ws)\n"
    )


def _chat_to(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNWIRE, "chat", "--url", url, "hi"], env=env, capture_output=True, text=True, timeout=30
    )


def test_chat_to_a_url_that_is_no_websocket_url_is_one_line(tmp_path: Path) -> None:
    result = _chat_to("http://127.0.0.1:8765", _env(tmp_path))
    assert result.returncode == 2
    assert result.stderr == (
        "runwire: not a WebSocket URL: http://127.0.0.1:8765"
        " (use ws://HOST:PORT/ws, as the gateway prints it)\n"
    )


def test_chat_with_no_gateway_says_how_to_start_one(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _chat_to(f"ws://127.0.0.1:{port}/ws", _env(tmp_path))
    assert result.returncode == 2
    assert result.stderr == (
        f"runwire: cannot connect to ws://127.0.0.1:{port}/ws: connection refused;"
        " is the gateway running? start it with make run (or runwire serve)\n"
    )


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_help_is_plain_text_and_lists_every_command() -> None:
    result = subprocess.run([*RUNWIRE, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "``" not in result.stdout and "`" not in result.stdout
    for name in ("serve", "worker", "token", "chat", "config"):
        assert f"    {name} " in result.stdout, name
    assert set(_subcommands()) == {"serve", "worker", "token", "chat", "config"}


@pytest.mark.parametrize("command", ["serve", "worker", "token", "chat", "config"])
def test_every_command_has_a_description_and_every_option_its_default(command: str) -> None:
    parser = _subcommands()[command]
    assert parser.description and "`" not in parser.description
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and "`" not in action.help, action.dest
        if action.option_strings:
            assert "(default: " in action.help, action.dest
    result = subprocess.run(
        [*RUNWIRE, command, "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and parser.description.splitlines()[0] in result.stdout


def test_serve_options_name_their_defaults_and_variables() -> None:
    result = subprocess.run([*RUNWIRE, "serve", "--help"], capture_output=True, text=True)
    text = " ".join(result.stdout.split())
    assert "(default: 127.0.0.1; env RUNWIRE_HOST)" in text
    assert "(default: 8765; env RUNWIRE_PORT)" in text


def test_a_misspelt_variable_is_a_warning_naming_the_closest_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RUNWIRE, "config"],
        env=_env(tmp_path, RUNWIRE_PROT="9999"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["port"] == 8765
    assert result.stderr == (
        "runwire: ignoring RUNWIRE_PROT: no such setting; did you mean RUNWIRE_PORT?\n"
    )


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
