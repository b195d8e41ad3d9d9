"""The runwire command: serve, worker, token, chat and config.

Every user-facing error is one line on stderr and exit code 2 (no traceback); a
chat whose run ended in an error exits 1.
"""

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
from runwire.banner import BANNER_LOGGER, dev_warning
from runwire.config import (
    CONFIG_FILE_VARIABLE,
    ENV_PREFIX,
    Settings,
    load_settings,
    masked_settings,
    redacted_url,
)
from runwire.exceptions import ConnectionClosed, RunwireError
from runwire.stopping import block_stop_signals, until_signalled

if TYPE_CHECKING:
    from runwire.client import TokenSource

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
runwire: the WebSocket gateway between AI agents and the people who talk to them.

Every setting is also a RUNWIRE_* environment variable (for example RUNWIRE_PORT=8771);
runwire config prints the effective values, docs/configuration.md lists them all.
Run runwire COMMAND --help for the options of a command."""

START_HINT = "is the gateway running? start it with make run (or runwire serve)"


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
    warning = dev_warning(settings)
    if warning is not None:
        print(warning, file=sys.stderr)


def _configure_logging(settings: Settings) -> None:
    """Logs on stderr; the gateway's banner (``runwire.banner``) plainly on stdout."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("picows").setLevel(logging.WARNING)  # one line per socket otherwise
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(logging.Formatter("%(message)s"))
    banner = logging.getLogger(BANNER_LOGGER)
    banner.addHandler(out)
    banner.setLevel(logging.INFO)
    banner.propagate = False


def _setting(name: str, text: str | None = None) -> str:
    """Help for an option that sets ``name``: its text, default and variable (plain)."""
    field = Settings.model_fields[name]
    default: Any = field.default
    if field.default_factory is not None:
        default = (field.default_factory.__doc__ or "computed").strip()
    about = (text or field.description or "").replace("`", "")
    return f"{about} (default: {str(default).replace('`', '')}; env {ENV_PREFIX}{name.upper()})"


# -- serve --------------------------------------------------------------------


async def _serve(settings: Settings) -> int:
    from runwire.app import Gateway

    gateway = Gateway(settings)
    await gateway.start()  # logs the banner: URL, dev warning, commands to try
    await until_signalled(settings.shutdown_grace_s)
    print("stopping: runs end, sockets close with 1001", flush=True)
    await gateway.stop()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port)
    _configure_logging(settings)
    block_stop_signals()
    return _run(_serve(settings))


# -- worker -------------------------------------------------------------------


async def _work(settings: Settings) -> int:
    from runwire.app import create_engine, load_agent
    from runwire.redis.worker import Worker

    worker = Worker(settings, create_engine(settings), load_agent(settings.agent))
    await worker.start()
    print(f"runwire worker {worker.name} on {redacted_url(settings.engine)}", flush=True)
    await until_signalled(settings.shutdown_grace_s)
    print("stopping: runs get the grace period, then end with agent_error", flush=True)
    await worker.stop(settings.shutdown_grace_s)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.engine.startswith(("redis://", "redis+cluster://")):
        print("runwire: RUNWIRE_ENGINE: workers need the redis engine", file=sys.stderr)
        return 2
    _configure_logging(settings)
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


def _connect_error(url: str, exc: Exception) -> str | None:
    """One line for a failure to reach the gateway at ``url``; None if it is not one."""
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

    if isinstance(exc, InvalidURI):
        return f"not a WebSocket URL: {url} (use ws://HOST:PORT/ws, as the gateway prints it)"
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return (
            f"{url} answered HTTP {status}: not a runwire WebSocket endpoint"
            " (the gateway prints its URL, ending in /ws)"
        )
    if isinstance(exc, InvalidHandshake):
        return f"{url}: the WebSocket handshake failed ({exc})"
    if isinstance(exc, TimeoutError):
        return f"cannot connect to {url}: no answer in time; {START_HINT}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url}: connection refused; {START_HINT}"
    if isinstance(exc, OSError):
        return f"cannot connect to {url}: {exc.strerror or exc}"
    return None


def cmd_chat(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # A token it signs itself is renewed in-band as needed; a given one is used as is.
    token: TokenSource = args.token or (lambda: issue_token(settings, args.user))
    url = args.url or f"ws://{settings.host}:{settings.port}/ws"
    try:
        return _run(_chat(url, token, args.message, args.thread, args.json))
    except ConnectionClosed as exc:
        print(f"runwire: connection closed: {exc.code} {exc.reason}", file=sys.stderr)
        return 2
    except Exception as exc:
        line = _connect_error(url, exc)
        if line is None:
            raise
        print(f"runwire: {line}", file=sys.stderr)
        return 2


# -- config -------------------------------------------------------------------


def cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(masked_settings(_settings(args)), indent=2, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``runwire`` argument parser: plain-text help for every command and option,
    naming its default and its RUNWIRE_* variable."""
    plain = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="runwire", description=DESCRIPTION, formatter_class=plain)
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of settings, field names as keys"
        f" (default: none; env {CONFIG_FILE_VARIABLE})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description, formatter_class=plain
        )

    serve = command(
        "serve",
        "start the gateway: chat page, WebSocket and HTTP API",
        "Start the gateway and print its URL and commands to try; stop with Ctrl+C\n"
        "(runs end, sockets close with 1001). The agent is RUNWIRE_AGENT (default: the\n"
        "demo agent); a module not installed is imported from the current folder.",
    )
    serve.add_argument("--host", help=_setting("host"))
    serve.add_argument("--port", type=int, help=_setting("port"))
    serve.set_defaults(func=cmd_serve)

    worker = command(
        "worker",
        "run agents for the gateways (redis engine, RUNWIRE_RUNS=workers)",
        "Run the agents of RUNWIRE_RUNS=workers gateways: takes runs from the Redis\n"
        "engine named by RUNWIRE_ENGINE (redis://...). Start as many as needed.",
    )
    worker.set_defaults(func=cmd_worker)

    token = command(
        "token",
        "print a dev token for a user (HS* secrets only)",
        "Print a JWT for USER signed with the gateway's secret: RUNWIRE_AUTH_SECRET, or\n"
        "in dev mode the generated one every runwire of this user shares.",
    )
    token.add_argument("user", metavar="USER", help="the user id (the token's sub claim)")
    token.add_argument(
        "--ttl", type=int, metavar="SECONDS", help=_setting("dev_token_ttl_s", "lifetime")
    )
    token.set_defaults(func=cmd_token)

    chat = command(
        "chat",
        "send one message and print the run live",
        "Send MESSAGE as a user and print every step of the run as it happens.\n"
        "Exit code 0 when the run completes, 1 when it ends in an error, 2 when the\n"
        "gateway cannot be reached or refuses the connection.",
    )
    chat.add_argument("message", metavar="MESSAGE", help="the message to send")
    chat.add_argument("--user", default="alice", help="user to sign a token for (default: alice)")
    chat.add_argument("--token", help="use this token instead of signing one (default: none)")
    chat.add_argument(
        "--url",
        help="the gateway's WebSocket URL (default: ws://HOST:PORT/ws from RUNWIRE_HOST"
        " and RUNWIRE_PORT, ws://127.0.0.1:8765/ws unless set)",
    )
    chat.add_argument("--thread", help="continue this thread id (default: a new thread)")
    chat.add_argument(
        "--json", action="store_true", help="print the raw frames (default: readable lines)"
    )
    chat.set_defaults(func=cmd_chat)

    config = command(
        "config",
        "print the effective configuration, secrets masked",
        "Print every setting as JSON, from keyword options, RUNWIRE_* variables, the\n"
        "TOML file and the defaults; secrets are shown as ***.",
    )
    config.set_defaults(func=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runwire`` console script: one line and exit code 2 for
    every error a user can fix (configuration, address in use, unreachable gateway)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RunwireError as exc:  # ConfigError included
        print(f"runwire: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
