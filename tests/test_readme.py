"""The README's examples run exactly as written.

Each test takes its code blocks from README.md by section and runs them: the
commands of "Try it" (against `make run`), the agent file of "Write an agent" (as a
script in a folder of its own, and served by `runwire serve`), the client of
"Connect a client", and the nodes, worker and chat of "Scale out". What a test adds
is only what a reader may set as the README says: ``RUNWIRE_PORT`` (a free port, as
8765 may be taken on this machine) and ``XDG_CONFIG_HOME`` (where this test's dev
secret lives); "Scale out" gets this test's Redis and free ports in place of its
fixed ones.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from tests.helpers import collect_run, connect, get_json, running_gateway
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUNWIRE = ROOT / ".venv" / "bin" / "runwire"
TIMEOUT_S = 30


def _section(heading: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _blocks(heading: str, language: str) -> list[str]:
    """The code blocks of one README section, in order (``language`` "" for plain)."""
    fenced = re.findall(r"^```(\w*)\n(.*?)^```$", _section(heading), re.DOTALL | re.MULTILINE)
    return [code for lang, code in fenced if lang == language]


def _commands(block: str) -> list[str]:
    """Shell lines without their trailing comments."""
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def _read_until(stream: IO[str], pattern: str) -> list[str]:
    """Lines of ``stream`` up to the first matching ``pattern`` (EOF fails)."""
    lines: list[str] = []
    while True:
        line = stream.readline()
        if line == "":
            raise AssertionError(f"ended before {pattern!r}: {lines}")
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines


@contextmanager
def _started(command: str, cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``command`` in its own process group; SIGINT to the group on exit."""
    process = subprocess.Popen(
        shlex.split(command),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.communicate(timeout=TIMEOUT_S)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def _without_timings(text: str) -> str:
    return re.sub(r"\(\d+(\.\d+)? ms\)", "(… ms)", text)


@pytest.fixture(autouse=True)
def _installed() -> None:
    if not RUNWIRE.exists():
        pytest.fail(f"{RUNWIRE} is missing: run make install", pytrace=False)


def test_try_it_prints_what_the_readme_shows(tmp_path: Path) -> None:
    commands = _commands(_blocks("Try it", "sh")[0])
    assert commands == [
        "make run",
        ".venv/bin/runwire token alice",
        '.venv/bin/runwire chat --user alice "what is 17 * 23?"',
    ]
    [expected] = _blocks("Try it", "")
    env = _env(tmp_path, RUNWIRE_PORT=str(_free_port()))
    with _started(commands[0], ROOT, env) as server:
        assert server.stdout is not None
        _read_until(server.stdout, r"gateway on http://")
        token = _run(commands[1], ROOT, env)
        assert token.returncode == 0, token.stderr
        assert token.stdout.count(".") == 2
        chat = _run(commands[2], ROOT, env)
        assert chat.returncode == 0, chat.stderr
    assert _without_timings(chat.stdout) == _without_timings(expected)


def _agent_source() -> str:
    [source] = _blocks("Write an agent", "python")
    return source


def test_the_agent_example_runs_as_a_script_and_prints_its_url(tmp_path: Path) -> None:
    """Was: no asyncio.run, port 8765 hard-coded, nothing printed, and its own
    .runwire/dev-secret in whatever folder it ran in (4401 for `runwire token`)."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "myagent.py").write_text(_agent_source())
    [command] = _commands(_blocks("Write an agent", "sh")[0])
    assert command == "RUNWIRE_PORT=0 .venv/bin/python myagent.py"
    env = _env(tmp_path, RUNWIRE_PORT="0")
    python = ROOT / ".venv" / "bin" / "python"
    with _started(f"{python} myagent.py", folder, env) as script:
        assert script.stderr is not None
        banner = _read_until(script.stderr, r"DEV mode")
        assert re.fullmatch(r"runwire dev gateway on http://127\.0\.0\.1:\d+", banner[0]), banner
        assert str(tmp_path / "config" / "runwire" / "dev-secret") in banner[-1]
        [try_it] = [line for line in banner if line.startswith("  try it:")]
        # Run from the clone, as printed: the same per-user dev secret signs its token.
        chat = _run(try_it.split(":", 1)[1], ROOT, env)
        assert chat.returncode == 0, chat.stderr
        assert "About 2,100,000 people." in chat.stdout.splitlines()
        os.killpg(script.pid, signal.SIGINT)
        _, rest = script.communicate(timeout=TIMEOUT_S)
    assert script.returncode == 0, rest
    assert "Traceback" not in rest
    # The dev secret is per user, not per folder; the folder keeps only its history.
    assert not (folder / ".runwire" / "dev-secret").exists()
    assert (folder / ".runwire" / "runwire.db").is_file()


def test_the_agent_example_is_served_from_its_folder_without_pythonpath(tmp_path: Path) -> None:
    """Was: No module named 'myagent' (it worked only with PYTHONPATH=.)."""
    (tmp_path / "myagent.py").write_text(_agent_source())
    section = " ".join(_section("Write an agent").split())
    assert "`RUNWIRE_AGENT=myagent:agent .venv/bin/runwire serve --port 0`" in section
    env = _env(tmp_path, RUNWIRE_AGENT="myagent:agent")
    with _started(f"{RUNWIRE} serve --port 0", tmp_path, env) as server:
        assert server.stdout is not None
        banner = _read_until(server.stdout, r"try it:")
        chat = _run(banner[-1].split(":", 1)[1], ROOT, env)
        assert chat.returncode == 0, chat.stderr
        assert "About 2,100,000 people." in chat.stdout.splitlines()


def test_the_client_example_prints_a_whole_run(tmp_path: Path) -> None:
    [source] = _blocks("Connect a client", "python")
    (tmp_path / "client.py").write_text(source)
    intro = " ".join(_section("Connect a client").split())
    assert '`.venv/bin/python client.py "$(.venv/bin/runwire token alice)"`' in intro
    env = _env(tmp_path, RUNWIRE_PORT=str(_free_port()))
    with _started(f"{RUNWIRE} serve", tmp_path, env) as server:
        assert server.stdout is not None
        _read_until(server.stdout, r"gateway on http://")
        token = _run(f"{RUNWIRE} token alice", ROOT, env).stdout.strip()
        python = ROOT / ".venv" / "bin" / "python"
        result = _run(f"{python} client.py {token}", tmp_path, env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("agent_started {")
    assert lines[-1] == (
        "agent_completed {'output': '17 * 23 = 391. Your message has 4 words and"
        " 16 characters.', 'status': 'completed'}"
    )


def test_the_fastapi_mount_example_serves_a_chat_under_its_prefix(tmp_path: Path) -> None:
    [source] = _blocks("Mount in FastAPI", "python")
    (tmp_path / "service.py").write_text(source)
    serve, chat = _commands(_blocks("Mount in FastAPI", "sh")[0])
    assert serve == ".venv/bin/python service.py &"
    port = str(_free_port())
    env = _env(tmp_path, RUNWIRE_PORT=port)
    python = ROOT / ".venv" / "bin" / "python"
    with _started(f"{python} service.py", tmp_path, env) as service:
        assert service.stderr is not None
        _read_until(service.stderr, r"Application startup complete")
        assert "127.0.0.1:8765/runwire/ws" in chat
        result = _run(chat.replace(":8765/", f":{port}/"), ROOT, env)
        assert result.returncode == 0, result.stderr
        status, body = get_json(f"http://127.0.0.1:{port}/runwire/healthz")
        assert status == 200 and body["connections"] == 0
        os.killpg(service.pid, signal.SIGINT)
        _, rest = service.communicate(timeout=TIMEOUT_S)
    assert "17 * 23 = 391." in result.stdout
    assert service.returncode == 0, rest
    assert "Traceback" not in rest


def _agent_namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(_agent_source(), str(README), "exec"), namespace)
    return namespace


def test_the_front_end_example_prints_a_whole_ui_message_stream(tmp_path: Path) -> None:
    token_line, curl = _commands(_blocks("Your front-end: AG-UI and the AI SDK", "sh")[0])
    port = _free_port()
    env = _env(tmp_path, RUNWIRE_PORT=str(port))
    assert token_line.startswith("TOKEN=$(") and token_line.endswith(")")
    with _started("make run", ROOT, env) as server:
        assert server.stdout is not None
        _read_until(server.stdout, r"gateway on http://")
        token = _run(token_line.removeprefix("TOKEN=$(").removesuffix(")"), ROOT, env)
        assert token.returncode == 0, token.stderr
        # `make run` keeps its SQLite file in the checkout across test runs: a fresh
        # chat and message id (as a reader's next message would have), so an earlier
        # run's "m1" (long out of the history window by now: 409) is not retried.
        fresh = secrets.token_hex(4)
        command = (
            curl.replace("$TOKEN", token.stdout.strip())
            .replace("8765", str(port))
            .replace('"chat-1"', f'"chat-{fresh}"')
            .replace('"id": "m1"', f'"id": "m-{fresh}"')
        )
        assert fresh in command.split("-d", 1)[1], "the README's ids changed: update the test"
        done = _run(command, ROOT, env)
    assert done.returncode == 0, done.stderr
    chunks = [line[6:] for line in done.stdout.splitlines() if line.startswith("data: ")]
    assert chunks[-1] == "[DONE]"
    parsed = [json.loads(chunk) for chunk in chunks[:-1]]
    assert parsed[0]["type"] == "start" and parsed[-1]["type"] == "finish"
    text = "".join(c["delta"] for c in parsed if c["type"] == "text-delta")
    assert text == "17 * 23 = 391. Your message has 4 words and 16 characters."
    assert [c["toolName"] for c in parsed if c["type"] == "tool-input-available"] == [
        "calculator",
        "text_stats",
    ]


async def test_the_readme_agent_obeys_the_run_rules() -> None:
    agent = _agent_namespace()["agent"]
    async with running_gateway(agent) as gateway, connect(gateway, "alice") as client:
        ack = await client.send_message("how many people live in Paris?")
        frames = await collect_run(client, ack["run_id"])
    assert [f["type"] for f in frames] == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "tool_executing",
        "tool_completed",
        "agent_message_delta",
        "agent_message_delta",
        "agent_message_delta",
        "agent_completed",
    ]
    assert frames[2]["data"]["tool"] == "lookup"
    assert frames[2]["data"]["args"] == {"city": "Paris"}
    assert frames[-1]["data"]["output"] == "About 2,100,000 people."


def test_scale_out_runs_a_message_through_two_nodes_and_a_worker(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The block runs as written with this test's Redis and free ports in place of
    6379, 8765 and 8766 (taken, perhaps, on this machine)."""
    block = _blocks("Scale out", "sh")[0]
    ports = {"8765": str(_free_port()), "8766": str(_free_port())}
    script = block.replace("redis://127.0.0.1:6379/0", redis_server.url)
    for fixed, free in ports.items():
        script = script.replace(f"--port {fixed}", f"--port {free}")
        script = script.replace(f"127.0.0.1:{fixed}/ws", f"127.0.0.1:{free}/ws")
    assert script.count(ports["8765"]) == 1 and script.count(ports["8766"]) == 2
    exports, starts, [chat] = _split_scale_out(script)
    env = _env(tmp_path)
    shell = subprocess.run(
        ["bash", "-c", f"{exports}\nenv"], env=env, capture_output=True, text=True, check=True
    )
    for line in shell.stdout.splitlines():
        if line.startswith("RUNWIRE_"):
            name, _, value = line.partition("=")
            env[name] = value
    assert env["RUNWIRE_RUNS"] == "workers" and len(env["RUNWIRE_AUTH_SECRET"]) == 64
    with (
        _started(starts[0], ROOT, env) as node1,
        _started(starts[1], ROOT, env) as node2,
        _started(starts[2], ROOT, env) as worker,
    ):
        for process, ready in ((node1, "gateway on"), (node2, "gateway on"), (worker, "worker")):
            assert process.stdout is not None
            _read_until(process.stdout, ready)
        result = _run(chat, ROOT, env)
        assert result.returncode == 0, result.stderr
        assert "17 * 23 = 391. Your message has 4 words and 16 characters." in result.stdout
        # Run by the worker: neither node runs agents with RUNWIRE_RUNS=workers.
        assert node1.poll() is None and node2.poll() is None and worker.poll() is None


def _split_scale_out(script: str) -> tuple[str, list[str], list[str]]:
    lines = _commands(script)
    exports = "\n".join(line for line in lines if line.startswith("export "))
    starts = [line.removesuffix("&").strip() for line in lines if line.endswith("&")]
    chats = [line for line in lines if " chat " in line]
    assert len(starts) == 3, lines
    return exports, starts, chats


@pytest.mark.parametrize("heading", ["The two commands", "Development"])
def test_every_make_command_the_readme_names_is_a_target(heading: str, tmp_path: Path) -> None:
    """`make test` is this suite and `make run` is run above; these are dry runs."""
    commands = [c for block in _blocks(heading, "sh") for c in _commands(block)]
    assert commands and all(re.fullmatch(r"make [a-z-]+", c) for c in commands), commands
    for command in commands:
        dry = _run(command.replace("make ", "make -n ", 1), ROOT, _env(tmp_path))
        assert dry.returncode == 0, (command, dry.stderr)


def test_start_runs_from_your_backend(tmp_path: Path) -> None:
    [source] = _blocks("Start runs from your backend", "python")
    [commands] = _blocks("Start runs from your backend", "sh")
    assert commands.splitlines()[0].startswith("export RUNWIRE_API_KEY=$(python3 -c")
    (tmp_path / "backend.py").write_text(source)
    env = _env(tmp_path, RUNWIRE_PORT=str(_free_port()), RUNWIRE_API_KEY="k" * 64)
    with _started(f"{RUNWIRE} serve", tmp_path, env) as server:
        assert server.stdout is not None
        _read_until(server.stdout, r"gateway on http://")
        python = ROOT / ".venv" / "bin" / "python"
        first = _run(f"{python} backend.py", tmp_path, env)
        again = _run(f"{python} backend.py", tmp_path, env)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    run_id, outcome = first.stdout.split()
    assert run_id.startswith("r_") and outcome == "started"
    assert again.stdout.split() == [run_id, "duplicate"]
