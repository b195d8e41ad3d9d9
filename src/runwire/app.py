"""The composition root: the one place that picks adapters and wires runwire together.

``Gateway`` builds, from one :class:`~runwire.config.Settings`, the engine (chosen by
URL scheme), the metrics, the one :class:`~runwire.manager.WebSocketManager`, the
agent runtime and the server, and stops them in the reverse order.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from runwire.adapters import adapt
from runwire.agents.base import Agent, Run
from runwire.agents.dispatch import LocalDispatcher, RunDispatcher, RunLease
from runwire.agents.runtime import UNPUBLISHED, AgentRuntime, RunLimits, StartedRun
from runwire.asgi import AsgiApp
from runwire.auth import Authenticator
from runwire.backends import Backend, NodeHandlers, backend_for
from runwire.banner import BANNER_LOGGER, banner
from runwire.config import Mode, Settings, load_settings
from runwire.engines.base import Engine, StoredEvent
from runwire.events import Event
from runwire.exceptions import CloseCode, ConfigError
from runwire.front import FrontDoor, FrontDoorOptions
from runwire.handlers import ClientFrameHandler
from runwire.heartbeat import Heartbeats
from runwire.http.chat_routes import add_chat_routes
from runwire.http.cors import CorsPolicy
from runwire.http.exchange import HttpExchange, HttpLimits
from runwire.http.router import Router
from runwire.http.routes import gateway_routes
from runwire.http.run_streams import RunStreams
from runwire.http.server_api import Presence, ServerApi
from runwire.ids import UserId
from runwire.loopwatch import LoopLagMonitor
from runwire.manager import WebSocketManager, create_manager
from runwire.metrics import Metrics
from runwire.pipeline import Pipeline
from runwire.recovery import close_interrupted
from runwire.runs import RunStore, SnapshotReader
from runwire.server import ServerOptions, websocket_protocol_factory

if TYPE_CHECKING:
    pass

__all__ = ["Gateway", "create_dispatcher", "create_engine", "load_agent"]

log = logging.getLogger("runwire")
banner_log = logging.getLogger(BANNER_LOGGER)


def create_engine(settings: Settings) -> Engine:
    """The engine named by ``settings.engine`` (its backend's).

    Raises:
        ConfigError: unknown scheme, or its extra is missing.
    """
    return backend_for(settings).engine(settings)


def create_dispatcher(
    settings: Settings,
    runtime: AgentRuntime,
    backend: Backend | None = None,
    lease: RunLease | None = None,
) -> RunDispatcher:
    """Where runs execute: in this process (``local``, holding each run in ``lease``
    when there is one) or in workers (``workers``).

    Raises:
        ConfigError: ``workers`` with a backend that has no run queue.
    """
    backend = backend or backend_for(settings)
    if settings.runs == "workers":
        if backend.workers is None:
            raise ConfigError("RUNWIRE_RUNS: workers need a shared engine (redis://...)")
        return backend.workers(settings)
    claims = backend.message_claims(settings) if backend.message_claims is not None else None
    return LocalDispatcher(runtime, claims, lease)


def _import(module_name: str) -> Any:
    """Import ``module_name``; a module not installed is looked for in the current
    folder too (as ``python -m`` would), so ``RUNWIRE_AGENT=myagent:agent runwire
    serve`` works next to ``myagent.py`` without ``PYTHONPATH``. Installed modules win."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.partition(".")[0]
        here = os.getcwd()
        if exc.name != top or here in sys.path:
            raise
    sys.path.append(here)
    return importlib.import_module(module_name)


def load_agent(path: str) -> Agent:
    """Import ``module:attribute`` and return the agent it names (``module`` alone
    means ``module:agent``). Modules not installed are imported from the current folder.

    The attribute is an agent (``async def agent(run, message) -> str``) or an object
    of a supported framework, wrapped by its adapter with the default options
    (:func:`runwire.adapters.adapt`): a LangGraph graph, a LangChain Runnable, a
    pydantic-ai ``Agent``.

    Raises:
        ConfigError: the module or attribute does not exist, or is not callable.
    """
    module_name, _, attribute = path.partition(":")
    try:
        agent = getattr(_import(module_name), attribute or "agent")
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"RUNWIRE_AGENT: cannot load {path!r}: {exc}") from None
    adapted = adapt(agent)
    if adapted is not None:
        return adapted
    if not callable(agent):
        raise ConfigError(f"RUNWIRE_AGENT: {path!r} is not callable")
    return agent  # type: ignore[no-any-return]


class Gateway:
    """One runwire gateway process: engine, manager, agent runtime and server.

    Use as ``async with Gateway(settings) as gateway:`` or ``await start()`` /
    ``await stop()``. ``agent`` overrides ``settings.agent`` (handy when embedding).
    """

    def __init__(self, settings: Settings | None = None, *, agent: Agent | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.agent = agent if agent is not None else load_agent(self.settings.agent)
        self.authenticator = Authenticator(self.settings)
        self.node_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        """This gateway process among the nodes (presence, logs)."""
        self.metrics = Metrics()
        backend = backend_for(self.settings)
        self.engine = backend.engine(self.settings)
        self.runs = RunStore(
            runs_per_user=self.settings.snapshot_runs_per_user,
            max_users=self.settings.history_max_users,
        )
        self._shared_snapshots = (
            backend.snapshots(self.settings, self.runs) if backend.snapshots is not None else None
        )
        self.snapshots: SnapshotReader = backend.snapshot_reader(self._shared_snapshots, self.runs)
        self.manager: WebSocketManager = create_manager(
            engine=self.engine, settings=self.settings, metrics=self.metrics
        )
        self.pipeline = Pipeline(
            self.engine,
            self.runs,
            snapshots=self._shared_snapshots,
            sink=self.manager,
            metrics=self.metrics,
        )
        self.lease: RunLease | None = (
            backend.run_lease(
                self.settings,
                self.node_id,
                self.engine,
                self.pipeline.publish,
                self.runs,
                self.snapshots,
            )
            if backend.run_lease is not None and self.settings.runs != "workers"
            else None
        )
        self.runtime = AgentRuntime(
            self.agent,
            self.pipeline.publish,
            RunLimits.of(self.settings, per_user=self.settings.max_concurrent_runs_per_user),
            on_finished=self._run_finished,
            on_slow_step=lambda _run, _held_s: self.metrics.slow_steps.inc(),
            submit=self.pipeline.submitter,
        )
        self.dispatcher = create_dispatcher(self.settings, self.runtime, backend, self.lease)
        self.manager.set_frame_handler(
            ClientFrameHandler(
                self.manager,
                self.dispatcher,
                self.engine,
                self.metrics,
                self.snapshots,
                self.authenticator,
                reply_max_bytes=self.settings.reply_size_limit,
            )
        )
        self._control = (
            backend.control(
                self.settings,
                NodeHandlers(
                    self.node_id,
                    self.manager.disconnect_user,
                    lambda user_id: len(self.manager.connections_of(user_id)),
                ),
            )
            if backend.control is not None
            else None
        )
        self.router = Router()
        """The HTTP routes of both front doors (add your own before :meth:`start`)."""
        gateway_routes(
            self.router,
            settings=self.settings,
            authenticator=self.authenticator,
            runs=self.runs,
            snapshots=self.snapshots,
            metrics=self.metrics,
            health=self._health,
        )
        if self.settings.api_key is not None:
            self._server_api().add_routes(self.router)
        self._frontend_routes()
        self.http = HttpExchange(
            self.router,
            HttpLimits(
                self.settings.max_request_bytes,
                self.settings.http_body_timeout_s,
                self.settings.max_http_requests,
            ),
            CorsPolicy(self.settings.cors_origins),
        )
        self._server: FrontDoor | None = None
        self._heartbeats: Heartbeats | None = None
        """The standalone server's socket heartbeats (one timer for every socket)."""
        self._started = False
        self._loop_lag = LoopLagMonitor(self.metrics.event_loop_lag.observe)
        self.port = self.settings.port
        self._register_gauges()

    # -- lifecycle --------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran and :meth:`stop` has not."""
        return self._started

    async def start(self, *, listen: bool = True) -> None:
        """Connect the engine and start listening (``listen=False``: no standalone server,
        for an ASGI server hosting :meth:`asgi_app`)."""
        self._started = True
        await self.pipeline.start()
        if self._shared_snapshots is not None:
            self._shared_snapshots.start()
        capabilities = self.engine.capabilities
        if capabilities.durable and not capabilities.shared:
            await close_interrupted(self.runs, self.pipeline.publish)
        if self.lease is not None:
            await self.lease.start()
        self._loop_lag.start()
        if self._control is not None:
            await self._control.start()
        if not listen:
            log.info("gateway started (no standalone server: serve it with asgi_app())")
            return
        settings = self.settings
        self._heartbeats = Heartbeats(settings.heartbeat_interval_s, settings.heartbeat_timeout_s)
        websocket = websocket_protocol_factory(
            ServerOptions(
                host=settings.host,
                port=settings.port,
                max_frame_bytes=settings.max_frame_bytes,
                handshake_timeout_s=settings.handshake_timeout_s,
                heartbeat_interval_s=settings.heartbeat_interval_s,
                heartbeat_timeout_s=settings.heartbeat_timeout_s,
                close_timeout_s=settings.close_timeout_s,
                allowed_origins=settings.allowed_origins,
            ),
            self.manager,
            self.authenticator,
            self.metrics,
            self._heartbeats,
        )
        server = FrontDoor(
            self.asgi_app(),
            websocket,
            FrontDoorOptions(
                settings.host,
                settings.port,
                settings.http_header_timeout_s,
                settings.http_keepalive_timeout_s,
            ),
        )
        try:
            await server.start()
        except OSError as exc:
            await self.stop()  # the engine and the loop monitor are already running
            raise ConfigError(_listen_error(settings, exc)) from None
        self._server = server
        self.port = server.port
        dev_secret = settings.mode is Mode.DEV and settings.auth_secret is None
        banner_log.log(
            logging.WARNING if dev_secret else logging.INFO,
            "\n".join(banner(settings, self.url, self.ws_url)),
        )

    async def start_unless_started(self) -> bool:
        """:meth:`start` without the standalone server, unless started already; whether
        it started (then the caller stops it)."""
        if self._started:
            return False
        await self.start(listen=False)
        return True

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Run the gateway for the life of a host application (``FastAPI(lifespan=...)``).

        Starts it without the standalone server unless started already, and stops it
        on exit only if it started it here. ``app`` is ignored (the hosting
        framework passes itself).
        """
        owned = await self.start_unless_started()
        try:
            yield
        finally:
            if owned:
                await self.stop()

    def asgi_app(self) -> AsgiApp:
        """The whole gateway (``/ws``, the page, ``/healthz``, ``/metrics``, ``/api/*``)
        as an ASGI 3 application, mountable under a prefix (:mod:`runwire.asgi`)."""
        return AsgiApp(self)

    async def stop(self) -> None:
        """Stop: no new sockets or runs; runs end (``shutdown``); sockets close with 1001."""
        self._started = False
        if self._server is not None:
            self._server.close()
        grace = self.settings.shutdown_grace_s
        await self.dispatcher.stop(grace)
        await self.manager.close_all(CloseCode.GOING_AWAY, "server shutting down", grace)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._heartbeats is not None:
            self._heartbeats.close()
            self._heartbeats = None
        if self._shared_snapshots is not None:
            await self._shared_snapshots.close()
        await self._loop_lag.stop()
        if self._control is not None:
            await self._control.close()
        await self.engine.close()

    async def serve_forever(self) -> None:
        """Run until cancelled, or until SIGINT or SIGTERM when the loop runs in the
        main thread, then stop gracefully (starts the gateway if needed).

        A signal makes it return normally, so ``asyncio.run(main())`` ends on Ctrl+C
        without a ``KeyboardInterrupt`` traceback.
        """
        if not self._started:
            await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (ValueError, RuntimeError, NotImplementedError):
                continue  # not the main thread, or no signal support on this loop
            handled.append(signum)
        try:
            await stop.wait()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            await self.stop()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The HTTP base URL (``public_url`` or the bound address)."""
        return self.settings.public_url or f"http://{self.settings.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint."""
        return self.url.replace("http", "ws", 1) + "/ws"

    # -- wiring -----------------------------------------------------------------

    async def disconnect_user(
        self, user_id: str, *, code: int = CloseCode.FORBIDDEN, reason: str = "revoked"
    ) -> int:
        """Close every socket of ``user_id``, on every node (4403 ``revoked`` by default).

        Sockets on this node close at once; with the Redis engine every other node is
        told through Redis. The user may reconnect with a token that is still valid:
        to keep them out, stop issuing tokens to them (short lifetimes and the
        refresh flow make that quick). Returns the sockets closed on this node.

        Raises:
            EngineError: the other nodes could not be told (this node's sockets are
                closed anyway).
        """
        closed = self.manager.disconnect_user(UserId(user_id), code, reason)
        log.info("disconnect_user: %d socket(s) closed here", closed, extra={"user_id": user_id})
        if self._control is not None:
            await self._control.disconnect(UserId(user_id), code, reason)
        return closed

    async def _run_finished(self, run: Run, status: str) -> None:
        """A run executed here ended: release it from the lease (if any)."""
        if self.lease is not None:
            await self.lease.finished(run.run_id, published=status != UNPUBLISHED)

    async def publish(self, user_id: UserId, event: Event) -> StoredEvent:
        """Store ``event`` in the user's stream and deliver it (the one publish path)."""
        return await self.pipeline.publish(user_id, event)

    async def presence(self, user_id: str) -> Presence:
        """The open sockets of ``user_id``: on this node, and on every node when a
        control channel joins them (Redis)."""
        here = len(self.manager.connections_of(UserId(user_id)))
        nodes = {self.node_id: here}
        complete = True
        if self._control is not None:
            others, complete = await self._control.presence(UserId(user_id))
            nodes |= others
        nodes = {node: count for node, count in nodes.items() if count}
        return Presence(user_id, sum(nodes.values()), nodes, complete)

    def _server_api(self) -> ServerApi:
        assert self.settings.api_key is not None

        async def start_run(
            user_id: str, content: str, message_id: str, thread_id: str | None
        ) -> StartedRun:
            started = await self.dispatcher.start_run(
                UserId(user_id), content, message_id=message_id, thread_id=thread_id
            )
            if not started.duplicate:
                self.metrics.runs_started.inc()
            return started

        async def cancel(user_id: str, run_id: str) -> bool:
            return await self.dispatcher.cancel(UserId(user_id), run_id)

        async def disconnect(user_id: str, code: int, reason: str) -> int:
            return await self.disconnect_user(user_id, code=code, reason=reason)

        return ServerApi(
            key=self.settings.api_key.get_secret_value(),
            max_message_chars=self.settings.max_message_chars,
            engine_available=lambda: self.engine.available,
            start_run=start_run,
            cancel=cancel,
            disconnect=disconnect,
            presence=self.presence,
        )

    def _frontend_routes(self) -> None:
        """The AI SDK chat stream (``chat_path``) and, with the ``agui`` extra, the
        AG-UI endpoint (``agui_path``); an empty path turns one off (docs/frontends.md)."""
        settings = self.settings
        streams = RunStreams(
            settings,
            self.authenticator,
            self.manager,
            self.dispatcher,
            self.engine,
            self.snapshots,
            self.metrics,
        )
        if settings.chat_path:
            add_chat_routes(self.router, streams, settings.chat_path)
        if settings.agui_path:
            try:
                from runwire.http.agui_routes import add_agui_routes
            except ImportError:
                log.debug("AG-UI endpoint off: the agui extra (ag-ui-protocol) is not installed")
                return
            add_agui_routes(self.router, streams, settings.agui_path)

    def _health(self) -> dict[str, Any]:
        """The state ``GET /healthz`` reports (``engine_available`` decides 200 or 503)."""
        return {
            "engine_available": self.engine.available,
            "mode": self.settings.mode.value,
            "engine": self.settings.engine.partition("://")[0],
            "connections": self.manager.connection_count,
            "active_runs": self.dispatcher.active_runs(),
        }

    def _register_gauges(self) -> None:
        gauges: dict[str, tuple[str, Any]] = {
            "runwire_connections": ("Open connections.", lambda: self.manager.connection_count),
            "runwire_users_connected": (
                "Users with a connection.",
                lambda: self.manager.user_count,
            ),
            "runwire_runs_active": ("Runs in this process.", lambda: self.dispatcher.active_runs()),
            "runwire_engine_available": (
                "1 while the engine can publish, else 0.",
                lambda: int(self.engine.available),
            ),
            "runwire_engine_publish_errors": (
                "Publishes the engine failed (each retry counts).",
                lambda: self.engine.stats().get("publish_errors", 0),
            ),
            "runwire_history_events": (
                "Events held in history.",
                lambda: self.engine.stats().get("events", 0),
            ),
            "runwire_history_bytes": (
                "Bytes held in history.",
                lambda: self.engine.stats().get("bytes", 0),
            ),
            "runwire_history_streams": (
                "User streams held.",
                lambda: self.engine.stats().get("streams", 0),
            ),
            "runwire_history_evicted_events": (
                "Events evicted from history (count, bytes or age bound).",
                lambda: self.engine.stats().get("evicted_events", 0),
            ),
        }
        for name, (documentation, read) in gauges.items():
            self.metrics.gauge(name, documentation, read)


def _listen_error(settings: Settings, exc: OSError) -> str:
    """One line saying why the gateway cannot listen, and which setting to change."""
    where = f"{settings.host}:{settings.port}"
    choose = "choose another with --port N or RUNWIRE_PORT=N (make run PORT=N)"
    if exc.errno == errno.EADDRINUSE:
        return f"RUNWIRE_PORT: port {settings.port} on {settings.host} is already in use; {choose}"
    if exc.errno == errno.EACCES:
        return (
            f"RUNWIRE_PORT: not allowed to listen on {where} (ports below 1024 need root); {choose}"
        )
    if exc.errno == errno.EADDRNOTAVAIL or exc.errno is None or exc.errno < 0:
        # EADDRNOTAVAIL: not an address of this machine; gaierror: not a host name.
        return f"RUNWIRE_HOST: cannot listen on {where}: {exc.strerror or exc}"
    return f"cannot listen on {where}: {exc.strerror or exc}"
