"""The one configuration object of runwire.

Every setting and every default lives in :class:`Settings`, and nowhere else.
Values come, highest priority first, from keyword arguments, ``RUNWIRE_*``
environment variables, a TOML file (``RUNWIRE_CONFIG_FILE`` or the ``--config``
option of the CLI), then the defaults below. Invalid values fail at start-up with
:class:`~runwire.exceptions.ConfigError`, whose message names the environment
variable to fix.

This is the only module of runwire that reads the process environment.
"""

from __future__ import annotations

import difflib
import logging
import os
import secrets
import tomllib
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from runwire.exceptions import ConfigError

__all__ = [
    "ENV_PREFIX",
    "Mode",
    "Settings",
    "SqliteSynchronous",
    "load_settings",
    "masked_settings",
    "redacted_url",
]

ENV_PREFIX = "RUNWIRE_"
CONFIG_FILE_VARIABLE = f"{ENV_PREFIX}CONFIG_FILE"

# The TOML file chosen by load_settings() for the Settings being built right now.
_toml_file: ContextVar[Path | None] = ContextVar("runwire_toml_file", default=None)

log = logging.getLogger("runwire.config")

# Unknown RUNWIRE_* variables already warned about (once per process each).
_warned: set[str] = set()


def _per_user_state_dir() -> Path:
    """`$XDG_CONFIG_HOME/runwire`, else `~/.config/runwire`"""
    base = os.environ.get("XDG_CONFIG_HOME")
    return (Path(base) if base else Path.home() / ".config") / "runwire"


class Mode(StrEnum):
    """How strict the gateway is about secrets.

    ``dev`` generates and keeps a signing secret in ``state_dir`` (per user by
    default) when none is configured and serves the dev token endpoint;
    ``production`` refuses to start without an explicit secret or public key.
    """

    DEV = "dev"
    PRODUCTION = "production"


SqliteSynchronous = Literal["full", "normal"]
"""How the SQLite engine commits (``Settings.sqlite_synchronous``)."""


class Settings(BaseSettings):
    """Every setting of a runwire gateway, with its one default.

    Field descriptions are the documentation: ``docs/configuration.md`` is
    generated from them (and a test checks it is current).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # -- network ---------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Interface the gateway listens on.")
    port: int = Field(8765, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    public_url: str | None = Field(
        None, description="Base URL printed for users; derived from host and port when unset."
    )

    # -- composition -----------------------------------------------------------
    mode: Mode = Field(Mode.DEV, description="`dev` or `production` (see docs/operations.md).")
    engine: str = Field(
        "sqlite:///.runwire/runwire.db",
        description="Engine URL: `sqlite:///relative/path` or `sqlite:////absolute/path` (one"
        " process, history, runs and idempotency keys kept in that file across restarts; the"
        " default is `.runwire/runwire.db` in the current folder), `memory://` (one process,"
        " nothing kept: tests and benchmarks), `redis://host:port/db` (many nodes) or"
        " `redis+cluster://host:port,host:port` (many nodes on a Redis Cluster: the seed"
        " nodes).",
    )
    sqlite_synchronous: SqliteSynchronous = Field(
        "full",
        description="SQLite engine: `full` (each commit is fsynced before its events are"
        " delivered: nothing a client saw is lost, even by a power cut) or `normal` (no"
        " fsync per commit: survives the process dying, not the machine losing power;"
        " several times the publish rate on slow disks, docs/benchmarks.md).",
    )
    runs: Literal["local", "workers"] = Field(
        "local",
        description="Where agents run: `local` (this process) or `workers` (`runwire worker`;"
        " needs the redis engine).",
    )
    agent: str = Field(
        "runwire.agents.demo:demo_agent",
        description="Import path `module:attribute` of the agent that answers user messages:"
        " an async function, or a LangGraph graph, LangChain Runnable or pydantic-ai `Agent`"
        " (wrapped by its adapter; docs/agents.md); a module that is not installed is"
        " imported from the current folder.",
    )
    state_dir: Path = Field(
        default_factory=_per_user_state_dir,
        description="Directory for dev-mode state: the generated dev secret (`dev-secret`)."
        " Per user by default, so `runwire token`, `runwire serve` and a `Gateway` in any"
        " folder of the same user sign and accept the same dev tokens.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the `runwire` loggers."
    )

    allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Web origins (`https://app.example.com`, comma-separated) whose pages may"
        " open sockets; `*` allows any. Empty: only pages served by the gateway itself."
        " Others get HTTP 403.",
    )

    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Web origins (comma-separated; `*` for any) whose pages may call the HTTP"
        " routes from another origin (CORS, with preflight). Empty: no CORS headers; a"
        " preflight from another origin gets 403.",
    )

    # -- HTTP ------------------------------------------------------------------
    max_request_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest HTTP request body; larger ones get 413 before the handler runs.",
    )
    http_header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Standalone server: time a client has to send a request's headers, from"
        " its first byte (or from connecting); then 408 and the connection closes.",
    )
    http_body_timeout_s: float = Field(
        15.0, gt=0, description="Time a client has to send a whole request body; then 408."
    )
    http_keepalive_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Standalone server: an idle keep-alive connection closes after this long.",
    )
    max_http_requests: int = Field(
        1_000,
        ge=1,
        description="HTTP requests handled at once (streams included); more get 503.",
    )
    agui_path: str = Field(
        "/agui",
        pattern=r"^(/[A-Za-z0-9._~-]+)+$|^$",
        description="AG-UI endpoint (`POST`; resume `GET <path>/runs/{runId}/stream`, cancel"
        " `POST <path>/runs/{runId}/cancel`; docs/frontends.md). Served when the `agui` extra"
        " is installed; empty: off.",
    )
    chat_path: str = Field(
        "/api/chat",
        pattern=r"^(/[A-Za-z0-9._~-]+)+$|^$",
        description="AI SDK UI message stream endpoint (`POST`, the `ai` package's"
        " `DefaultChatTransport` default; resume `GET <path>/{id}/stream`). Empty: off.",
    )
    sse_heartbeat_s: float = Field(
        15.0,
        gt=0,
        description="An idle front-end stream (AG-UI, AI SDK) gets a `: heartbeat` comment"
        " this often, so proxies keep it open.",
    )
    sse_high_water_bytes: int = Field(
        262_144,
        ge=4096,
        description="SSE text waiting for one slow front-end stream before its events stay in"
        " its connection's queue (then coalesced deltas, then the end of the stream, as 4409"
        " on a socket).",
    )
    api_key: SecretStr | None = Field(
        None,
        description="Key of the server API (`/api/v1/*`, `Authorization: Bearer <key>`, at"
        " least 32 characters). Unset: the server API is off (404).",
    )

    # -- auth ------------------------------------------------------------------
    auth_secret: SecretStr | None = Field(
        None, description="HMAC secret for HS* tokens. Dev mode generates one when unset."
    )
    auth_public_key: str | None = Field(
        None, description="PEM public key for RS*/ES* tokens (instead of a secret)."
    )
    auth_algorithm: Literal["HS256", "HS384", "HS512", "RS256", "RS512", "ES256"] = Field(
        "HS256", description="The only JWT algorithm accepted."
    )
    auth_issuer: str | None = Field(None, description="Required `iss` claim, when set.")
    auth_audience: str | None = Field(None, description="Required `aud` claim, when set.")
    auth_leeway_s: float = Field(0.0, ge=0, le=300, description="Clock skew allowed on `exp`.")
    dev_token_ttl_s: int = Field(
        86_400, ge=1, description="Lifetime of tokens minted by `runwire token` and the page."
    )
    token_refresh_window_s: float = Field(
        90.0,
        gt=0,
        description="An open socket gets `token_expiring` this long before its token's `exp`"
        " (it closes with 4401 at `exp` unless a `refresh` frame replaces the token).",
    )

    # -- limits ----------------------------------------------------------------
    max_frame_bytes: int = Field(
        65_536, ge=1024, description="Largest client frame; bigger ones close with 1009."
    )
    max_message_chars: int = Field(
        16_000, ge=1, description="Largest `user_message.content`, in characters."
    )
    max_event_bytes: int = Field(
        262_144,
        ge=1024,
        description="Largest encoded event (capped at `outbound_queue_bytes` and"
        " `history_max_bytes`); a tool result over it ends the call `ok: false`, an answer"
        " over it ends the run with `agent_error` `event_rejected`.",
    )
    max_connections_per_user: int = Field(
        10, ge=1, description="Open sockets per user; one more is closed with 4429."
    )
    max_connections: int = Field(
        20_000, ge=1, description="Open sockets per gateway process; one more gets 4429."
    )
    outbound_queue_events: int = Field(
        480, ge=8, description="Frames waiting for one slow socket before it is closed (4409)."
    )
    outbound_queue_bytes: int = Field(
        524_288, ge=4096, description="Bytes waiting for one slow socket before 4409."
    )
    user_queue_budget_bytes: int = Field(
        4_194_304,
        ge=4096,
        description="Bytes queued across all sockets of one user; over it the biggest gets 4409.",
    )
    client_messages_per_s: float = Field(
        20.0, gt=0, description="Sustained client frames per second per socket (burst 2x)."
    )
    max_concurrent_runs_per_user: int = Field(
        3, ge=1, description="Runs of one user at once; one more gets error `too_many_runs`."
    )
    max_active_runs: int = Field(
        10_000, ge=1, description="Runs at once in this process; one more gets `busy`."
    )
    run_timeout_s: float = Field(
        300.0, gt=0, description="A run still going after this ends with `agent_error` timeout."
    )
    slow_step_warning_s: float = Field(
        0.1,
        gt=0,
        description="A run step (code between two awaits) holding the event loop longer is"
        " logged as a warning naming the run.",
    )
    engine_retry_s: float = Field(
        10.0, ge=0, description="How long a run retries publishing while the engine is down."
    )
    run_publish_window: int = Field(
        48,
        ge=1,
        le=1024,
        description="Redis engine: events of one run sent without waiting for each to be"
        " confirmed (kept in order; resent in order after a failure). 1 waits for each.",
    )
    idempotency_ttl_s: int = Field(
        86_400,
        ge=60,
        description="Redis engine: how long a `user_message.id` is remembered (any node).",
    )
    runs_stream_max: int = Field(
        100_000, ge=1_000, description="Workers mode: entries kept in the `rw:runs` stream."
    )
    worker_heartbeat_s: float = Field(
        2.0, gt=0, description="Workers: heartbeat period; a worker silent 3x as long is dead."
    )
    node_heartbeat_s: float = Field(
        2.0,
        gt=0,
        description="Redis engine, `local` runs: period of each node's run lease. A node"
        " silent 3x as long is lost, and a live node ends its unfinished runs (`agent_error`"
        " `node_lost`) within 4x this period (8 s by default).",
    )
    idempotency_keys: int = Field(
        100_000, ge=100, description="Remembered `user_message.id`s (oldest evicted first)."
    )

    # -- history (resume window) -----------------------------------------------
    history_max_events: int = Field(1_000, ge=1, description="Events kept per user for resume.")
    history_max_bytes: int = Field(
        1_048_576, ge=1024, description="Encoded bytes kept per user for resume."
    )
    history_ttl_s: float = Field(
        3_600.0, gt=0, description="Age after which events leave a user's history."
    )
    redis_key_ttl_s: int = Field(
        604_800,
        ge=60,
        description="Redis engine: a user's keys expire this long after its last event.",
    )
    history_max_users: int = Field(
        100_000, ge=1, description="Users with a stream in the memory engine (LRU evicted)."
    )

    snapshot_runs_per_user: int = Field(
        50, ge=1, description="Run snapshots kept per user (`/api/runs`, `get_runs`; in Redis too)."
    )

    # -- time ------------------------------------------------------------------
    heartbeat_interval_s: float = Field(
        20.0, gt=0, description="Idle time before the server pings a socket."
    )
    heartbeat_timeout_s: float = Field(
        20.0, gt=0, description="Time to wait for the pong before dropping the socket."
    )
    handshake_timeout_s: float = Field(5.0, gt=0, description="Time allowed for the HTTP upgrade.")
    close_timeout_s: float = Field(
        5.0,
        gt=0,
        description="After the server's close frame, time the client has to answer with its own"
        " (RFC 6455 closing handshake) before the TCP connection is aborted.",
    )
    shutdown_grace_s: float = Field(
        5.0, ge=0, description="On stop, time given to runs and sockets before cancelling."
    )

    @field_validator("allowed_origins", "cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """``RUNWIRE_ALLOWED_ORIGINS=https://a.example,https://b.example``."""
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @model_validator(mode="after")
    def _check_keys(self) -> Settings:
        """Production never runs on a generated secret; asymmetric algorithms need a key."""
        asymmetric = not self.auth_algorithm.startswith("HS")
        if asymmetric and not self.auth_public_key:
            raise ValueError(f"{ENV_PREFIX}AUTH_PUBLIC_KEY is required for {self.auth_algorithm}")
        if self.mode is Mode.PRODUCTION and not asymmetric and self.auth_secret is None:
            raise ValueError(f"{ENV_PREFIX}AUTH_SECRET is required in production mode")
        if self.runs == "workers" and not self.engine.startswith(("redis://", "redis+cluster://")):
            raise ValueError(
                f"{ENV_PREFIX}RUNS=workers needs {ENV_PREFIX}ENGINE=redis://..."
                " or redis+cluster://..."
            )
        if self.heartbeat_timeout_s > self.heartbeat_interval_s:
            raise ValueError(
                f"{ENV_PREFIX}HEARTBEAT_TIMEOUT_S must not exceed {ENV_PREFIX}HEARTBEAT_INTERVAL_S"
            )
        if self.auth_secret is not None and len(self.auth_secret.get_secret_value()) < 32:
            raise ValueError(f"{ENV_PREFIX}AUTH_SECRET must be at least 32 characters")
        if self.api_key is not None and len(self.api_key.get_secret_value()) < 32:
            raise ValueError(f"{ENV_PREFIX}API_KEY must be at least 32 characters")
        self._warn_if_queue_outgrows_history()
        return self

    def _warn_if_queue_outgrows_history(self) -> None:
        """A socket closed with 4409 resumes from the last event it read: everything
        still queued for it (and in the kernel's buffers) must still be in history.
        A queue over half of history can leave a slow tab nothing to resume from."""
        for queue, history in (
            ("outbound_queue_events", "history_max_events"),
            ("outbound_queue_bytes", "history_max_bytes"),
        ):
            if getattr(self, queue) * 2 > getattr(self, history) and queue not in _warned:
                _warned.add(queue)
                log.warning(
                    "runwire: %s%s (%d) is over half of %s%s (%d): a socket closed with"
                    " 4409 may find the events it missed gone from history"
                    " (resume_failed out_of_window)",
                    ENV_PREFIX,
                    queue.upper(),
                    getattr(self, queue),
                    ENV_PREFIX,
                    history.upper(),
                    getattr(self, history),
                )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then environment, then the optional TOML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _toml_file.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def event_size_limit(self) -> int:
        """The largest event envelope: ``max_event_bytes``, but never more than fits in
        one socket's queue or one user's history."""
        return min(self.max_event_bytes, self.outbound_queue_bytes, self.history_max_bytes)

    @property
    def reply_size_limit(self) -> int:
        """The largest ``runs`` reply (socket or HTTP): half of one socket's queue, so a
        reading client always has room for it."""
        return self.outbound_queue_bytes // 2

    @property
    def base_url(self) -> str:
        """The HTTP base URL users open (``public_url`` or ``http://host:port``)."""
        return self.public_url or f"http://{self.host}:{self.port}"

    def signing_secret(self) -> str:
        """The HMAC secret: configured, or in dev mode the generated one kept in ``state_dir``.

        Raises:
            ConfigError: in production without a secret.
        """
        if self.auth_secret is not None:
            return self.auth_secret.get_secret_value()
        if self.mode is not Mode.DEV:
            raise ConfigError(f"{ENV_PREFIX}AUTH_SECRET is required in production mode")
        return _dev_secret(self.state_dir)


def _dev_secret(state_dir: Path) -> str:
    """Read, or create once (mode 0600), the dev-mode signing secret.

    A missing, empty or truncated file (shorter than 32 characters) is replaced by a
    fresh secret: a weak key is never used.
    """
    path = state_dir / "dev-secret"
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        secret = ""
    if len(secret) >= 32:
        return secret
    state_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    staging = path.with_suffix(".tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    os.replace(staging, path)
    return secret


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build and validate the settings, or raise :class:`ConfigError` naming the variable.

    Args:
        config_file: a TOML file whose keys are the field names (lower case, no prefix);
            it overrides ``RUNWIRE_CONFIG_FILE``.
        overrides: field values that win over every other source.
    """
    if config_file is None and os.environ.get(CONFIG_FILE_VARIABLE):
        config_file = Path(os.environ[CONFIG_FILE_VARIABLE])
    _warn_unknown_variables()
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"{CONFIG_FILE_VARIABLE}: no such file: {config_file}")
        _check_toml(config_file)
    token = _toml_file.set(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    finally:
        _toml_file.reset(token)


def _warn_unknown_variables() -> None:
    """Log a warning, once per process, for each ``RUNWIRE_*`` variable that names no
    setting (a typo such as ``RUNWIRE_PROT`` would otherwise be ignored silently),
    naming the closest known variable."""
    known = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]
    known.append(CONFIG_FILE_VARIABLE)
    for name in sorted(os.environ):
        upper = name.upper()  # variables match case-insensitively, as pydantic-settings does
        if not upper.startswith(ENV_PREFIX) or upper in known or name in _warned:
            continue
        _warned.add(name)
        closest = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        hint = f"did you mean {closest[0]}?" if closest else "see docs/configuration.md"
        log.warning("runwire: ignoring %s: no such setting; %s", name, hint)


def _check_toml(path: Path) -> None:
    try:
        tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}: {path} is not valid TOML: {exc}") from None


def _describe(exc: ValidationError) -> str:
    """One line per invalid value, each naming its environment variable."""
    lines = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        if location:
            name = f"{ENV_PREFIX}{location[0].upper()}"
            lines.append(f"{name}: {error['msg']}")
        else:
            lines.append(error["msg"].removeprefix("Value error, "))
    return "invalid configuration: " + "; ".join(lines)


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain values, every secret replaced by ``'***'``
    (the engine URL's password too: :func:`redacted_url`)."""
    values = settings.model_dump(mode="json")
    for name, value in values.items():
        if isinstance(getattr(settings, name), SecretStr) and value is not None:
            values[name] = "***"
    values["engine"] = redacted_url(settings.engine)
    return values


def redacted_url(url: str) -> str:
    """``url`` fit to print or log: the password of its ``user:password@`` part
    becomes ``***`` (a user part without a password, which Redis may take as one,
    is replaced whole). Everything else is kept; a URL without credentials is
    returned as it is."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, slash, path = rest.partition("/")
    credentials, at, hosts = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = credentials.partition(":")
    shown = f"{user}:***" if colon else "***"
    return f"{scheme}://{shown}@{hosts}{slash}{path}"
