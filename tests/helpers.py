"""Shared test helpers: gateways on free ports, tokens, clients, and test agents."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from runwire import Gateway, Run, Settings, ToolError
from runwire.agents.base import Agent
from runwire.auth import issue_token
from runwire.client import Client
from runwire.config import load_settings

SECRET = "test-secret-" + "x" * 60

Frame = dict[str, Any]


def make_settings(tmp_path: Path | None = None, **overrides: Any) -> Settings:
    """Settings for a test gateway: a free port, a fixed secret, no dev state on disk."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "auth_secret": SECRET,
        "shutdown_grace_s": 2.0,
        "engine": "memory://",  # fast; tests of the durable engine say sqlite:// themselves
    }
    if tmp_path is not None:
        values["state_dir"] = tmp_path / "state"
    values.update(overrides)
    return load_settings(**values)


def token_for(settings: Settings, user: str, ttl_s: int | None = None) -> str:
    return issue_token(settings, user, ttl_s)


@asynccontextmanager
async def running_gateway(agent: Agent | None = None, **overrides: Any) -> AsyncIterator[Gateway]:
    """A started gateway on 127.0.0.1 and a free port; stopped on exit."""
    gateway = Gateway(make_settings(**overrides), agent=agent or scripted_agent)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


@asynccontextmanager
async def connect(gateway: Gateway, user: str, **kwargs: Any) -> AsyncIterator[Client]:
    async with Client.connect(
        gateway.ws_url, token_for(gateway.settings, user), **kwargs
    ) as client:
        yield client


async def collect_run(client: Client, run_id: str, timeout: float = 10.0) -> list[Frame]:
    """Events of ``run_id`` received by ``client`` up to its terminal event."""
    frames: list[Frame] = []
    while True:
        frame = await client.recv(timeout=timeout)
        if frame.get("run_id") != run_id:
            continue
        frames.append(frame)
        if frame["type"] in ("agent_completed", "agent_error"):
            return frames


def assert_run_rules(frames: list[Frame]) -> None:
    """agent_started first, one terminal last, every tool_executing closed, seq 1..n."""
    types = [frame["type"] for frame in frames]
    assert types[0] == "agent_started"
    assert types[-1] in ("agent_completed", "agent_error")
    assert sum(t in ("agent_completed", "agent_error") for t in types) == 1
    assert [frame["seq"] for frame in frames] == list(range(1, len(frames) + 1))
    open_calls: set[str] = set()
    for frame in frames:
        data = frame["data"]
        if frame["type"] == "tool_executing":
            assert data["call_id"] not in open_calls
            open_calls.add(data["call_id"])
        elif frame["type"] == "tool_completed":
            open_calls.remove(data["call_id"])
    assert not open_calls


# -- agents ------------------------------------------------------------------


async def scripted_agent(run: Run, message: str) -> str:
    """Deterministic: think, one tool call, three deltas."""
    await run.think(f"thinking about {message}")
    async with run.tool("echo", {"text": message}) as call:
        call.result = message.upper()
    for word in ("echo: ", message, "."):
        await run.say(word)
    return f"echo: {message}."


async def failing_agent(run: Run, message: str) -> str:
    """Raises with a secret in the message, inside an open tool call."""
    async with run.tool("explode", {}):
        raise RuntimeError("internal detail: password=hunter2")
    return "unreachable"  # pragma: no cover


class GatedAgent:
    """Opens a tool call and waits inside it until released (for cancel and shutdown)."""

    def __init__(self) -> None:
        self.in_tool = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, run: Run, message: str) -> str:
        await run.think("waiting")
        async with run.tool("slow_tool", {"message": message}) as call:
            self.in_tool.set()
            await self.release.wait()
            call.result = "released"
        await run.say("done")
        return "done"


async def tool_error_agent(run: Run, message: str) -> str:
    """A tool fails with a user-safe error; the agent recovers and completes."""
    try:
        async with run.tool("lookup", {"key": message}):
            raise ToolError("no such key")
    except ToolError:
        await run.say("not found")
    return "not found"


async def wait_until(predicate: Any, timeout: float = 5.0, what: str = "condition") -> None:
    """Wait for ``predicate()`` to hold, checking every loop tick; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


async def publish_texts(gateway: Gateway, user: str, texts: list[str], run_id: str = "") -> None:
    """Publish one ``agent_message_delta`` per text into ``user``'s stream (no agent)."""
    from runwire.events import AgentMessageDelta, Event
    from runwire.ids import UserId

    run = run_id or f"r_{user}"
    for text in texts:
        # (run_id, seq) names one event: engines store it at most once.
        _published_seqs[run] = seq = _published_seqs.get(run, 0) + 1
        event = Event.of(AgentMessageDelta(text), run_id=run, thread_id="t", seq=seq, ts=0)
        await gateway.publish(UserId(user), event)


_published_seqs: dict[str, int] = {}


async def sleepy_agent(run: Run, message: str) -> str:
    """Thinks, then sits in a tool for a minute (for killing workers mid-run)."""
    await run.think("about to wait")
    async with run.tool("sleep", {"seconds": 60}) as call:
        await asyncio.sleep(60)
        call.result = "woke up"
    return "done"


def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    """GET ``url`` (with a bearer token if given): status and decoded JSON body."""
    return _json_exchange(urllib.request.Request(url), token)


def post_json(
    url: str, body: object, token: str | None = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    """POST ``body`` as JSON (bytes are sent as they are): status and decoded JSON body."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", content_type)
    return _json_exchange(request, token)


def _json_exchange(request: urllib.request.Request, token: str | None) -> tuple[int, Any]:
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Listener:
    """An engine listener for engine-level tests: passes deliveries to ``deliver`` and
    records resync requests and availability changes."""

    def __init__(self, deliver: Any = None) -> None:
        self._deliver = deliver if deliver is not None else (lambda stored: None)
        self.resyncs: list[str] = []
        self.states: list[bool] = []

    def deliver(self, stored: Any) -> None:
        self._deliver(stored)

    def resync(self, user_id: str) -> None:
        self.resyncs.append(user_id)

    def engine_state_changed(self, available: bool) -> None:
        self.states.append(available)


# -- reading a run's frames -------------------------------------------------------------


def types_of(frames: list[Frame]) -> list[str]:
    """The ``type`` of each frame, in order."""
    return [frame["type"] for frame in frames]


def answer_of(frames: list[Frame]) -> str:
    """The streamed answer: every ``agent_message_delta`` text, joined."""
    return "".join(f["data"]["text"] for f in frames if f["type"] == "agent_message_delta")


def data_of(frames: list[Frame], kind: str) -> list[dict[str, Any]]:
    """The ``data`` of every frame of type ``kind``."""
    return [f["data"] for f in frames if f["type"] == kind]


async def one_run(agent: Agent, message: str, user: str = "alice") -> list[Frame]:
    """Run ``agent`` once on a fresh gateway; the run's frames, checked against the run
    rules, with no run left active."""
    async with running_gateway(agent) as gateway, connect(gateway, user) as client:
        ack = await client.send_message(message)
        frames = await collect_run(client, ack["run_id"])
        assert gateway.runtime.active_runs() == 0
    assert_run_rules(frames)
    return frames
