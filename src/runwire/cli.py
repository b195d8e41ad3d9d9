"""The ``runwire`` command: ``serve``, ``token``, ``chat`` and ``config``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runwire.auth import issue_token
from runwire.config import Mode, Settings, load_settings, masked_settings
from runwire.exceptions import ConfigError, ConnectionClosed, RunwireError
from runwire.stopping import block_stop_signals, until_signalled

if TYPE_CHECKING:
    from runwire.client import TokenSource

__all__ = ["main"]

DEV_WARNING = (
    "WARNING: runwire is in DEV mode: tokens are signed with a generated secret kept in "
    "{path}. Never expose this gateway; set RUNWIRE_MODE=production and RUNWIRE_AUTH_SECRET."
)


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed, else on the stock asyncio loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    config = Path(args.config) if getattr(args, "config", None) else None
    return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})


def _warn_dev(settings: Settings) -> None:
    if settings.mode is Mode.DEV and settings.auth_secret is None:
        print(DEV_WARNING.format(path=settings.state_dir / "dev-secret"), file=sys.stderr)


# -- serve --------------------------------------------------------------------


async def _serve(settings: Settings) -> int:
    from runwire.app import Gateway

    gateway = Gateway(settings)
    await gateway.start()
    print(f"runwire {settings.mode.value} gateway on {gateway.url}", flush=True)
    print(f"  chat page:  {gateway.url}/", flush=True)
    print(f"  WebSocket:  {gateway.ws_url}", flush=True)
    if settings.mode is Mode.DEV:
        print("  dev token:  runwire token alice", flush=True)
        print('  try it:     runwire chat --user alice "what is 17 * 23?"', flush=True)
    await until_signalled(settings.shutdown_grace_s)
    print("stopping: runs end, sockets close with 1001", flush=True)
    await gateway.stop()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("picows").setLevel(logging.WARNING)  # one line per socket otherwise
    _warn_dev(settings)
    block_stop_signals()
    return _run(_serve(settings))


# -- worker -------------------------------------------------------------------


async def _work(settings: Settings) -> int:
    from runwire.app import create_engine, load_agent
    from runwire.redis.worker import Worker

    worker = Worker(settings, create_engine(settings), load_agent(settings.agent))
    await worker.start()
    print(f"runwire worker {worker.name} on {settings.engine}", flush=True)
    await until_signalled(settings.shutdown_grace_s)
    print("stopping: runs get the grace period, then end with agent_error", flush=True)
    await worker.stop(settings.shutdown_grace_s)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.engine.startswith("redis://"):
        print("runwire: RUNWIRE_ENGINE: workers need the redis engine", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    block_stop_signals()
    return _run(_work(settings))


# -- token --------------------------------------------------------------------


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _warn_dev(settings)
    print(issue_token(settings, args.user, args.ttl))
    return 0


# -- chat ---------------------------------------------------------------------


def _describe(frame: dict[str, Any]) -> str:
    kind, data = frame.get("type"), frame.get("data", {})
    if kind == "agent_started":
        return f"▶ started ({data['agent']})"
    if kind == "agent_thinking":
        return f"… {data['text']}"
    if kind == "tool_executing":
        return f"⚙ {data['tool']}({json.dumps(data['args'])})"
    if kind == "tool_completed":
        outcome = json.dumps(data.get("result")) if data["ok"] else f"error: {data['error']}"
        return f"✓ {data['tool']} → {outcome} ({data['duration_ms']} ms)"
    if kind == "agent_completed":
        return f"■ {data['status']}"
    if kind == "agent_error":
        return f"✗ {data['code']}: {data['message']}"
    return json.dumps(frame)


async def _chat(url: str, token: TokenSource, message: str, thread: str | None, raw: bool) -> int:
    from runwire.client import ReconnectingClient

    async with ReconnectingClient(url, token) as client:
        if raw:
            print(json.dumps(client.client.connected), flush=True)
        status = 1
        answering = False
        async for frame in client.run(message, thread_id=thread):
            if raw:
                print(json.dumps(frame), flush=True)
            elif frame["type"] == "agent_message_delta":
                print(frame["data"]["text"], end="", flush=True)
                answering = True
            else:
                if answering:
                    print(flush=True)
                    answering = False
                print(_describe(frame), flush=True)
            if frame["type"] == "agent_completed":
                status = 0
        return status


def cmd_chat(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # A token it signs itself is renewed in-band as needed; a given one is used as is.
    token: TokenSource = args.token or (lambda: issue_token(settings, args.user))
    url = args.url or f"ws://{settings.host}:{settings.port}/ws"
    try:
        return _run(_chat(url, token, args.message, args.thread, args.json))
    except ConnectionClosed as exc:
        print(f"connection closed: {exc.code} {exc.reason}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot connect to {url}: {exc}", file=sys.stderr)
        return 2


# -- config -------------------------------------------------------------------


def cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(masked_settings(_settings(args)), indent=2, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runwire", description=__doc__)
    parser.add_argument("--config", help="TOML configuration file (field names as keys)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser("worker", help="run agents for the gateways (redis engine)")
    worker.set_defaults(func=cmd_worker)

    token = commands.add_parser("token", help="print a token for a user (HS* secrets only)")
    token.add_argument("user")
    token.add_argument("--ttl", type=int, help="lifetime in seconds")
    token.set_defaults(func=cmd_token)

    chat = commands.add_parser("chat", help="send one message and print the run live")
    chat.add_argument("message")
    chat.add_argument("--user", default="alice", help="user to mint a dev token for")
    chat.add_argument("--token", help="use this token instead of minting one")
    chat.add_argument("--url", help="WebSocket URL (default: from the configuration)")
    chat.add_argument("--thread", help="thread id to continue")
    chat.add_argument("--json", action="store_true", help="print the raw frames")
    chat.set_defaults(func=cmd_chat)

    config = commands.add_parser("config", help="print the effective configuration")
    config.set_defaults(func=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runwire`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"runwire: {exc}", file=sys.stderr)
        return 2
    except RunwireError as exc:
        print(f"runwire: {exc}", file=sys.stderr)
        return 1
