"""``python -m bench``: runwire against three baselines, measured in the same invocation.

Scenarios (each stack in a fresh server process pinned to core 0; the C load client
``bench/wsload.c``, compiled at run time, pinned to core 1):

1. fan-out: events round-robin over N users, one event per user per loop iteration.
2. bursts: the same, 8 events to each user back to back per loop iteration.
3. latency: 1,000 users (200 with --quick) at 20,000 events/s, arrival -> receive.
4. memory: RSS per idle authenticated connection (5,000; 10,000 for runwire).
5. end to end: concurrent demo-agent runs started by ``user_message`` frames (runwire).
6. redis: runwire on the Redis engine, two gateway nodes (both on core 0), clients split
   between them, every event published on node A; fan-out and latency at fixed rates,
   next to the memory engine (one node) under the same publishers. A private
   ``redis-server`` (no persistence, core 1) is started for it and killed after.
7. cluster: the same on a Redis Cluster (``redis+cluster://``): 3 masters, no replicas,
   no persistence, all on core 1 (``--only cluster``; formed by ``tests/redis_cluster.py``).
8. sqlite: runwire on the durable SQLite engine (a file in the bench's temp folder),
   fan-out and latency at 10,000 events/s, next to the memory engine.

Baselines: websockets, a raw asyncio writer ("the Python bound") and python-socketio
(ASGI under uvicorn; measured when ``python-socketio`` and ``uvicorn`` are installed).

Options: ``--quick`` (small, < 60 s), ``--only fanout,burst,...,redis``, ``--kinds
runwire,websockets,...`` (servers to run), ``--profile DIR`` (record the runwire server in
the fan-out, burst and latency cells, and in the redis scenario each node, with py-spy
into DIR, if py-spy is installed).
Traffic stays on 127.0.0.1; every step has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import queue
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
SECRET = "bench-secret-" + "x" * 48
SOCKETIO = all(importlib.util.find_spec(m) is not None for m in ("socketio", "uvicorn"))
KINDS = ("runwire", "websockets", "raw", *(("socketio",) if SOCKETIO else ()))
BASELINES = KINDS[1:]
SERVER_CORE, CLIENT_CORE = 0, 1
SCENARIOS = ("fanout", "burst", "latency", "memory", "e2e", "redis", "cluster", "sqlite")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CORE = CLIENT_CORE  # see docs/benchmarks.md, "Redis mode": core 0 is the gateways'
NODES_CORES = (SERVER_CORE, SERVER_CORE)  # node A, node B


@dataclass(frozen=True)
class Sizes:
    users: int
    fanout_events: int
    burst_events: int
    latency_users: int
    latency_rate: int
    latency_s: float
    memory_conns: tuple[int, ...]
    e2e_runs: int
    redis_events: int
    redis_rates: tuple[int, ...]
    redis_s: float


REDIS_RATES = (2000, 5000, 10_000, 20_000)
FULL = Sizes(
    1000, 300_000, 400_000, 1000, 20_000, 3.0, (5000, 10_000), 500, 60_000, REDIS_RATES, 3.0
)
QUICK = Sizes(200, 60_000, 96_000, 200, 20_000, 1.5, (1000,), 100, 20_000, REDIS_RATES, 1.0)
PUBLISHERS = 32  # concurrent publishers in the redis scenario (= the engine's pool size)


def pin(core: int) -> Any:
    def apply() -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {core})

    return apply if (os.cpu_count() or 1) > core else None


def free_port() -> int:
    """A free port below the ephemeral range (the client uses thousands of those)."""
    for port in range(21000 + os.getpid() % 500 * 10, 32000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def core_times(core: int) -> tuple[float, float]:
    """Seconds core ``core`` spent in user+nice+system, and in softirq (/proc/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{core} "):
                fields = [int(x) for x in line.split()[1:]]
                return (fields[0] + fields[1] + fields[2]) / tick, fields[6] / tick
    return 0.0, 0.0


def spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


class Child:
    """A child process spoken to by lines on stdin/stdout, with timeouts."""

    def __init__(self, argv: list[str], core: int, cwd: Path = ROOT) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=cwd,
            preexec_fn=pin(core),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.lines.put(line.strip())
        self.lines.put(None)

    def read(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.proc.args[:3]}: no answer in {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"{self.proc.args[:3]} exited ({self.proc.poll()})")
        return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ask(self, line: str, timeout: float = 60.0) -> str:
        self.send(line)
        return self.read(timeout)

    def finish(self, timeout: float = 15.0) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Bench:
    def __init__(self, sizes: Sizes, workdir: Path, profile: Path | None) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.profile = profile
        self.client = self._compile()
        self._tokens: list[str] = []

    def _compile(self) -> str:
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            sys.exit(
                "bench: gcc not found. The C load client (bench/wsload.c) is required; "
                "a Python load client could not keep up with these servers, so none is "
                "provided (see docs/benchmarks.md)."
            )
        binary = self.workdir / "wsload"
        subprocess.run(
            [gcc, "-O2", "-o", str(binary), str(HERE / "wsload.c")], check=True, cwd=self.workdir
        )
        return str(binary)

    def tokens(self, n: int) -> Path:
        from runwire.auth import issue_token
        from runwire.config import load_settings

        settings = load_settings(auth_secret=SECRET)
        while len(self._tokens) < n:
            user = f"u{len(self._tokens)}"
            self._tokens.append(f"{user} {issue_token(settings, user, 3600)}")
        path = self.workdir / f"tokens-{n}.txt"
        path.write_text("\n".join(self._tokens[:n]) + "\n")
        return path

    def server(
        self,
        kind: str,
        users: int,
        profile: Path | None = None,
        extra: tuple[str, ...] = (),
        core: int = SERVER_CORE,
    ) -> tuple[Child, int]:
        port = free_port()
        argv = [sys.executable, "-m", "bench.servers", kind, "--port", str(port)]
        argv += ["--users", str(users), "--secret", SECRET, *extra]
        if profile is not None:
            argv = [spy(), "record", "--nonblocking", "-r", "200", "-f", "raw", "-o", str(profile)]
            argv += ["--", sys.executable, "-m", "bench.servers", kind, "--port", str(port)]
            argv += ["--users", str(users), "--secret", SECRET, *extra]
        child = Child(argv, core)
        line = child.read(30)
        while line.startswith("py-spy>"):  # py-spy's banner
            line = child.read(30)
        if line != "listening":
            raise RuntimeError(f"{kind} server: {line}")
        return child, port

    def client_proc(
        self,
        mode: str,
        port: int | str,
        users: int,
        expect: int,
        sleep_us: int,
        kind: str = "runwire",
    ) -> Child:
        argv = [self.client, mode, str(port), str(self.tokens(users)), str(expect), "300"]
        argv += [str(sleep_us), "sio" if kind == "socketio" else "ws"]
        return Child(argv, CLIENT_CORE, self.workdir)

    def connect(self, client: Child, server: Child, users: int) -> dict[str, int]:
        _, opened, failed, connect_ms = client.read(180).split()
        if int(opened) == 0:
            raise RuntimeError(f"no connection succeeded ({failed} failed)")
        answer = server.ask(f"wait {opened}", 150)
        if not answer.startswith("conns"):
            raise RuntimeError(f"server did not see {opened} connections: {answer}")
        return {"opened": int(opened), "failed": int(failed), "connect_ms": int(connect_ms)}

    def stream(
        self, kind: str, users: int, spec: dict[str, Any], sleep_us: int, profile: bool = False
    ) -> dict[str, Any]:
        """One server, one client; publish ``spec``; return everything measured."""
        prof = None
        if profile and self.profile is not None:
            prof = self.profile / f"{kind}-{spec['pattern']}.collapsed.txt"
        server, port = self.server(kind, users, prof)
        events = spec["events"] if "events" in spec else int(spec["rate"] * spec["duration"])
        client = self.client_proc("stream", port, users, events // users, sleep_us, kind)
        try:
            self.connect(client, server, users)
            busy0, softirq0 = core_times(SERVER_CORE)
            done = json.loads(server.ask("run " + json.dumps(spec), 300).split(" ", 1)[1])
            result = json.loads(client.read(300))
            cpu = json.loads(server.ask("cpu").split(" ", 1)[1])
            busy1, softirq1 = core_times(SERVER_CORE)
        finally:
            client.finish()
            with contextlib.suppress(OSError):
                server.send("quit")
            server.finish(30)
        result.update(done)
        result.update(cpu)
        result["expected"] = events
        wall = (result["last_us"] - result["first_us"]) / 1e6
        result["rate"] = result["received"] / wall if wall > 0 else 0.0
        result["us_per_event"] = 1e6 * cpu["cpu_s"] / max(done["published"], 1)
        result["server_cpu_pct"] = 100 * cpu["cpu_s"] / max(cpu["wall_s"], 1e-9)
        result["gc_summary"] = f"{cpu['gc_total_ms']:,.0f} / {cpu['gc_gen2']}"
        others = max(busy1 - busy0 - cpu["cpu_s"], 0.0)
        result["core0_others_pct"] = 100 * others / max(cpu["wall_s"], 1e-9)
        result["core0_softirq_pct"] = 100 * (softirq1 - softirq0) / max(cpu["wall_s"], 1e-9)
        return result

    def repeated(self, repeat: int, *args: Any) -> dict[str, Any]:
        """The run with the median rate (p99 for latency runs) of ``repeat`` runs."""
        runs = [self.stream(*args) for _ in range(repeat)]
        key = "lat_p99" if args[2]["pattern"] == "rate" else "rate"
        runs.sort(key=lambda r: r[key])
        best = runs[len(runs) // 2]
        best["runs"] = repeat
        best["spread"] = (runs[-1][key] - runs[0][key]) / max(best[key], 1e-9)
        return best

    def engine_stream(
        self,
        redis: Redis | None,
        users: int,
        spec: dict[str, Any],
        sleep_us: int,
        engine: str | None = None,
    ) -> dict[str, Any]:
        """runwire on the memory engine (one node; ``engine``: another one-node engine
        URL, such as ``sqlite:///...``), or on ``redis`` with two nodes: the clients
        split between them (user ``u{j}`` on node ``j % 2``), every event published on
        node A (so half the users are reached through the other node)."""
        nodes: list[Child] = []
        client = None
        prof = None
        if self.profile is not None and spec["pattern"] in ("fanout", "rate"):
            name = "redis-node-a" if redis else (engine or "memory").partition(":")[0]
            label = "fanout" if spec["pattern"] == "fanout" else f"rate{spec['rate']}"
            prof = self.profile / f"{name}-{label}.collapsed.txt"
        try:
            if redis is None:
                extra = ("--engine", engine) if engine else ()
                node, port = self.server("runwire", users, prof, extra=extra)
                nodes.append(node)
                ports = str(port)
            else:
                redis.flush()
                port_list = []
                for i, core in enumerate(NODES_CORES):
                    extra = ("--engine", redis.url, "--node", str(i), "--nodes", "2")
                    node_prof = None
                    if prof is not None:
                        node_prof = prof.with_name(prof.name.replace("node-a", f"node-{'ab'[i]}"))
                    node, port = self.server("runwire", users, node_prof, extra=extra, core=core)
                    nodes.append(node)
                    port_list.append(str(port))
                ports = ",".join(port_list)
            events = spec["events"] if "events" in spec else int(spec["rate"] * spec["duration"])
            client = self.client_proc("stream", ports, users, events // users, sleep_us)
            _, opened, failed, connect_ms = client.read(180).split()
            if int(opened) != users:
                raise RuntimeError(f"{opened}/{users} connections ({failed} failed)")
            for i, node in enumerate(nodes):
                share = len(range(i, users, len(nodes)))
                answer = node.ask(f"wait {share}", 150)
                if not answer.startswith("conns"):
                    raise RuntimeError(f"node {i} did not see {share} connections: {answer}")
            cores0 = [core_times(c) for c in (SERVER_CORE, CLIENT_CORE)]
            redis0 = redis.sample() if redis is not None else None
            for node in nodes[1:]:
                node.ask('run {"pattern":"none"}')
            done = json.loads(nodes[0].ask("run " + json.dumps(spec), 300).split(" ", 1)[1])
            result = json.loads(client.read(300))
            cpus = [json.loads(node.ask("cpu").split(" ", 1)[1]) for node in nodes]
            redis1 = redis.sample() if redis is not None else None
            cores1 = [core_times(c) for c in (SERVER_CORE, CLIENT_CORE)]
        finally:
            if client is not None:
                client.finish()
            for node in nodes:
                with contextlib.suppress(OSError):
                    node.send("quit")
            for node in nodes:
                node.finish(30)
        result.update(done)
        result["connect_ms"] = int(connect_ms)
        result["expected"] = events
        wall = (result["last_us"] - result["first_us"]) / 1e6
        result["rate"] = result["received"] / wall if wall > 0 else 0.0
        span = max(cpus[0]["wall_s"], 1e-9)
        node_cpu = sum(c["cpu_s"] for c in cpus)
        result["us_per_event"] = 1e6 * node_cpu / max(done["published"], 1)
        result["node_a_pct"] = 100 * cpus[0]["cpu_s"] / span
        result["node_b_pct"] = 100 * cpus[1]["cpu_s"] / span if len(cpus) > 1 else None
        result["waits"] = " / ".join(f"{c['waited_ms']:,.0f} ms, {c['preempted']:,}" for c in cpus)
        result["gc_max_ms"] = max(c["gc_max_ms"] for c in cpus)
        result["gc_summary"] = (
            f"{sum(c['gc_total_ms'] for c in cpus):,.0f} / {sum(c['gc_gen2'] for c in cpus)}"
        )
        busy = [b1 - b0 for (b0, _), (b1, _) in zip(cores0, cores1, strict=True)]
        result["core0_busy_pct"] = 100 * busy[0] / span
        result["core1_busy_pct"] = 100 * busy[1] / span
        result["core0_others_pct"] = 100 * max(busy[0] - node_cpu, 0.0) / span
        if redis0 is not None and redis1 is not None:
            redis_cpu = redis1["cpu_s"] - redis0["cpu_s"]
            result["redis_cpu_pct"] = 100 * redis_cpu / span
            result["redis_us_per_event"] = 1e6 * redis_cpu / max(done["published"], 1)
            calls = redis1["evalsha_calls"] - redis0["evalsha_calls"]
            usec = redis1["evalsha_usec"] - redis0["evalsha_usec"]
            result["redis_script_us"] = usec / max(calls, 1)
            result["redis_publishes"] = calls
            ops = redis1["commands"] - redis0["commands"]
            result["redis_ops_s"] = ops / span
            result["redis_inst_ops"] = redis1["instantaneous_ops_per_sec"]
        return result

    def engine_repeated(self, repeat: int, *args: Any, **kwargs: Any) -> dict[str, Any]:
        runs = [self.engine_stream(*args, **kwargs) for _ in range(repeat)]
        key = "lat_p99" if args[2]["pattern"] == "rate" else "rate"
        runs.sort(key=lambda r: r[key])
        best = runs[len(runs) // 2]
        best["runs"] = repeat
        best["spread"] = (runs[-1][key] - runs[0][key]) / max(best[key], 1e-9)
        return best

    def idle(self, kind: str, conns: int) -> dict[str, Any]:
        server, port = self.server(kind, conns)
        client = None
        try:
            _, rss0, _, objects0 = server.ask("rss", 30).split()
            client = self.client_proc("idle", port, conns, 0, 0, kind)
            connected = self.connect(client, server, conns)
            _, rss, full_ms, objects = server.ask("rss", 30).split()
            before, after = int(rss0), int(rss)
        finally:
            if client is not None:
                client.finish()
            with contextlib.suppress(OSError):
                server.send("quit")
            server.finish(60)
        opened = max(connected["opened"], 1)
        per_conn = (after - before) / opened
        return {
            **connected,
            "rss0_kib": before,
            "rss_kib": after,
            "kib_per_conn": per_conn,
            "gc_full_ms": float(full_ms),
            "tracked_per_conn": (int(objects) - int(objects0)) / opened,
        }

    def e2e(self, runs: int) -> dict[str, Any]:
        server, port = self.server("runwire", runs)
        client = self.client_proc("e2e", port, runs, 0, 0)
        try:
            self.connect(client, server, runs)
            server.ask('run {"pattern":"none"}')
            client.send("GO")
            result = json.loads(client.read(150))
            cpu = json.loads(server.ask("cpu").split(" ", 1)[1])
        finally:
            client.finish()
            with contextlib.suppress(OSError):
                server.send("quit")
            server.finish(30)
        wall = (result["last_us"] - result["first_us"]) / 1e6
        result["rate"] = result["received"] / wall if wall > 0 else 0.0
        result.update(cpu)
        return result


def server_sample(pid: int, client: Any) -> dict[str, float]:
    """One Redis server's CPU seconds (from /proc), script calls and commands so far."""
    tick = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    commands = client.info("commandstats")
    evalsha = commands.get("cmdstat_evalsha", {})
    stats = client.info("stats")
    return {
        "cpu_s": (int(fields[11]) + int(fields[12])) / tick,
        "evalsha_calls": evalsha.get("calls", 0),
        "evalsha_usec": evalsha.get("usec", 0),
        "commands": stats["total_commands_processed"],
        "instantaneous_ops_per_sec": stats["instantaneous_ops_per_sec"],
    }


class Cluster:
    """A private Redis Cluster (3 masters, no replicas, no persistence) pinned to core
    ``REDIS_CORE``; the same interface as :class:`Redis` (samples summed over masters)."""

    def __init__(self, workdir: Path) -> None:
        import redis

        sys.path.insert(0, str(ROOT))
        from tests.redis_cluster import RedisCluster

        self.cluster = RedisCluster(workdir / "cluster", masters=3, replicas=0)
        self.cluster.start()
        self.url = self.cluster.url
        self.masters = [m for m in self.cluster.masters if m.process is not None]
        for master in self.masters:
            assert master.process is not None
            os.sched_setaffinity(master.process.pid, {REDIS_CORE})
        self.clients = [redis.Redis(port=m.port, socket_timeout=10) for m in self.masters]
        self.version = self.clients[0].info("server")["redis_version"]

    def flush(self) -> None:
        for client in self.clients:
            client.flushall()
            client.config_resetstat()

    def sample(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for master, client in zip(self.masters, self.clients, strict=True):
            assert master.process is not None
            for key, value in server_sample(master.process.pid, client).items():
                total[key] = total.get(key, 0) + value
        return total

    def stop(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
        self.cluster.stop()


class Redis:
    """A private ``redis-server`` (no persistence) in a temp dir, on a free port."""

    def __init__(self, workdir: Path) -> None:
        import redis

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        directory = workdir / "redis"
        directory.mkdir()
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(directory)]
        argv += ["--daemonize", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin(REDIS_CORE)
        )
        self.client = redis.Redis(port=self.port, socket_timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client.ping():
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        self.version = self.client.info("server")["redis_version"]

    def flush(self) -> None:
        self.client.flushall()
        self.client.config_resetstat()

    def sample(self) -> dict[str, float]:
        return server_sample(self.proc.pid, self.client)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


# -- reporting -------------------------------------------------------------------------


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def ratio(a: Any, b: Any) -> str:
    if not a or not b or isinstance(a, str) or isinstance(b, str):
        return "-"
    return f"{a / b:.2f}x"


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"\n### {title}\n"]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = [
            str(c).rjust(w) if i else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def integrity(result: dict[str, Any]) -> str:
    bad = [
        f"{key} {result[key]}"
        for key in ("lost", "reordered", "misrouted", "closed_early", "failed")
        if result.get(key)
    ]
    if result.get("expected") and result["received"] != result["expected"]:
        bad.append(f"received {result['received']}/{result['expected']}")
    return "ok" if not bad else ", ".join(bad)


def rate_rows(row: Callable[..., list[str]], latency: bool) -> list[list[str]]:
    """The first rows of a throughput or latency table (shared by every scenario)."""
    if not latency:
        return [row("events/s at clients", "rate")]
    return [
        row("delivered ev/s", "rate", ratios=False),
        row("latency p50 us", "lat_p50"),
        row("latency p99 us", "lat_p99"),
        row("latency p99.9 us", "lat_p999"),
        row("latency max us", "lat_max"),
        row("publisher lag max us", "lag_max_us", ratios=False),
    ]


def stream_table(title: str, results: dict[str, dict[str, Any]], latency: bool) -> str:
    baselines = [k for k in BASELINES if k in results]
    header = ["metric", *results, *(f"runwire/{k}" for k in baselines)]
    rw = results.get("runwire", {})

    def row(name: str, key: str, digits: int = 0, ratios: bool = True) -> list[str]:
        cells = [fmt(results[k].get(key), digits) for k in results]
        extra = [ratio(rw.get(key), results[k].get(key)) if ratios else "" for k in baselines]
        return [name, *cells, *extra]

    rows = rate_rows(row, latency)
    rows += [
        row("server CPU us/event", "us_per_event", 2),
        row("server CPU % of core 0", "server_cpu_pct", ratios=False),
        row("GC: longest pause ms", "gc_max_ms", 1, ratios=False),
        row("GC: total pause ms / full collections", "gc_summary", ratios=False),
        row("core 0: softirq %", "core0_softirq_pct", ratios=False),
        row("core 0: other processes %", "core0_others_pct", ratios=False),
        row("(max-min)/median of runs", "spread", 2, ratios=False),
        row("load client CPU %", "client_cpu_pct", ratios=False),
        ["delivery check", *(integrity(results[k]) for k in results), *([""] * len(baselines))],
    ]
    return table(title, header, rows)


def redis_table(
    title: str,
    mem: dict[str, Any],
    red: dict[str, Any] | None,
    latency: bool,
    store: str = "redis",
) -> str:
    """memory engine (one node) next to the Redis engine (two nodes), ratio redis/memory
    (``store``: ``redis`` or ``cluster``, the column's name)."""
    red = red or {}

    def row(name: str, key: str, digits: int = 0, ratios: bool = True) -> list[str]:
        a, b = mem.get(key), red.get(key)
        return [name, fmt(a, digits), fmt(b, digits), ratio(b, a) if ratios else ""]

    rows = rate_rows(row, latency)
    if latency:
        rows.append(
            [
                "latency p99 us, users of node A / node B",
                "",
                " / ".join(fmt(v) for v in red.get("lat_p99_by_port", [])),
                "",
            ]
        )
    rows += [
        row("gateway CPU us/event (all nodes)", "us_per_event", 2),
        row("node A CPU % (publishes all)", "node_a_pct", ratios=False),
        row("node B CPU %", "node_b_pct", ratios=False),
        row("waited for a CPU, preempted (node A / node B)", "waits", ratios=False),
        row("redis-server CPU % (core 1)", "redis_cpu_pct", ratios=False),
        row("redis-server CPU us/event", "redis_us_per_event", 1, ratios=False),
        row("redis: publish script us/call", "redis_script_us", 1, ratios=False),
        row("redis: commands/s (INFO stats)", "redis_ops_s", ratios=False),
        row("GC: longest pause ms", "gc_max_ms", 1, ratios=False),
        row("GC: total pause ms / full collections (all nodes)", "gc_summary", ratios=False),
        row("core 0: busy %", "core0_busy_pct", ratios=False),
        row("core 0: other processes %", "core0_others_pct", ratios=False),
        row("core 1: busy % (client, redis, others)", "core1_busy_pct", ratios=False),
        row("load client CPU %", "client_cpu_pct", ratios=False),
        row("connect ms", "connect_ms", ratios=False),
        row("(max-min)/median of runs", "spread", 2, ratios=False),
        ["delivery check", integrity(mem), integrity(red) if red else "not run", ""],
    ]
    header = ["metric", "memory, 1 node", f"{store}, 2 nodes", f"{store}/memory"]
    return table(title, header, rows)


def sqlite_scenario(bench: Bench, sizes: Sizes, repeat: int, workdir: Path) -> list[str]:
    """Scenario 8: the durable SQLite engine next to the memory engine, one node each,
    the same publishers, with ``sqlite_synchronous`` ``full`` (the default: an fsync per
    commit) and ``normal``; targets fan-out >= 0.5x memory, p99 <= 2 ms at 10,000 ev/s."""
    out: list[str] = []
    n, w = sizes.users, PUBLISHERS
    verdicts: list[tuple[str, str, bool]] = []
    for name, spec, sleep_us in (
        ("fan-out", {"pattern": "fanout", "events": sizes.redis_events, "publishers": w}, 1000),
        (
            "latency at 10,000 events/s",
            {"pattern": "rate", "rate": 10_000, "duration": sizes.redis_s, "publishers": w},
            0,
        ),
    ):
        mem = bench.engine_repeated(repeat, None, n, spec, sleep_us)
        lite: dict[str, dict[str, Any]] = {}
        for synchronous in ("full", "normal"):
            os.environ["RUNWIRE_SQLITE_SYNCHRONOUS"] = synchronous  # read by the node
            database = workdir / f"sqlite-{name.split()[0]}-{synchronous}.db"
            try:
                lite[synchronous] = bench.engine_repeated(
                    repeat, None, n, spec, sleep_us, engine=f"sqlite:///{database}"
                )
            finally:
                del os.environ["RUNWIRE_SQLITE_SYNCHRONOUS"]
        latency = spec["pattern"] == "rate"
        full, normal = lite["full"], lite["normal"]

        def row(
            label: str,
            key: str,
            digits: int = 0,
            ratios: bool = True,
            mem: dict[str, Any] = mem,
            full: dict[str, Any] = full,
            normal: dict[str, Any] = normal,
        ) -> list[str]:
            a, b, c = mem.get(key), full.get(key), normal.get(key)
            return [
                label,
                fmt(a, digits),
                fmt(b, digits),
                fmt(c, digits),
                ratio(b, a) if ratios else "",
                ratio(c, a) if ratios else "",
            ]

        rows = rate_rows(row, latency)
        rows += [
            row("gateway CPU us/event", "us_per_event", 2),
            ["delivery check", integrity(mem), integrity(full), integrity(normal), "", ""],
        ]
        title = f"8. sqlite {name}: {n} users (one node each, {w} publishers)"
        header = ["metric", "memory", "sqlite full", "sqlite normal", "full/mem", "normal/mem"]
        out.append(table(title, header, rows))
        print(out[-1], flush=True)
        for synchronous, result in lite.items():
            if latency:
                p99 = result.get("lat_p99", 0)
                target = f"sqlite ({synchronous}) p99 <= 2 ms at 10,000 ev/s"
                verdicts.append((target, f"{p99:,.0f} us", p99 <= 2000))
            else:
                value = result["rate"] / max(mem["rate"], 1)
                target = f"sqlite ({synchronous}) fan-out >= 0.5x memory"
                verdicts.append((target, f"{value:.2f}x", value >= 0.5))
    rows = [[label, value, "PASS" if ok else "MISS"] for label, value, ok in verdicts]
    out.append(table("sqlite targets", ["target", "measured", "verdict"], rows))
    print(out[-1], flush=True)
    return out


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    packages = ("runwire", "picows", "uvloop", "websockets", "msgspec", "python-socketio")
    for package in (*packages, "python-engineio", "uvicorn"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} ?")
    return (
        f"machine: {os.cpu_count()} CPUs, {model}; Linux {platform.release()}; "
        f"Python {platform.python_version()}\n" + "versions: " + ", ".join(versions)
    )


def redis_scenario(
    bench: Bench,
    sizes: Sizes,
    repeat: int,
    workdir: Path,
    verdicts: list[tuple[str, str, bool | None]],
    store: str = "redis",
) -> list[str]:
    """Scenario 6 (``store`` ``redis``): the Redis engine across two nodes next to the
    memory engine; adds the issue-16 targets to ``verdicts``. Scenario 7 (``cluster``):
    the same on a 3-master Redis Cluster (no verdicts: the targets are for one server)."""
    number = "6" if store == "redis" else "7"
    if not Path(REDIS_SERVER).exists() or importlib.util.find_spec("redis") is None:
        line = f"\n### {number}. {store}: skipped (needs redis-server and the redis extra)"
        print(line, flush=True)
        return [line]
    out: list[str] = []
    n, w = sizes.users, PUBLISHERS
    started = time.monotonic()
    redis: Redis | Cluster = Redis(workdir) if store == "redis" else Cluster(workdir)
    where = "redis-server" if store == "redis" else "a Redis Cluster of 3 masters, redis-server"
    try:
        head = (
            f"\n{number}. {store} mode: {where} {redis.version} (no persistence) on core "
            f"{REDIS_CORE}; nodes A and B on cores {NODES_CORES[0]}/{NODES_CORES[1]}; "
            f"{n} users split A/B; every event published on node A by {w} concurrent "
            "publishers (the memory engine gets the same publishers)"
        )
        out.append(head)
        print(head, flush=True)
        spec: dict[str, Any] = {"pattern": "fanout", "events": sizes.redis_events}
        spec["publishers"] = w
        mem = bench.engine_repeated(repeat, None, n, spec, 1000)
        red = bench.engine_repeated(repeat, redis, n, spec, 1000)
        title = f"{number}a. {store} fan-out: {n} users, {sizes.redis_events:,} events"
        out.append(redis_table(title, mem, red, latency=False, store=store))
        print(out[-1], flush=True)
        ratio = red["rate"] / max(mem["rate"], 1)
        redis_us = red.get("redis_us_per_event", 0.0)
        if store == "redis":
            verdicts.append(("redis fan-out >= 0.5x memory", f"{ratio:.2f}x", ratio >= 0.5))
            verdicts.append(("redis CPU <= 8 us/event", f"{redis_us:.1f}", redis_us <= 8))
        ceiling = red["rate"]
        for rate in sizes.redis_rates:
            title = (
                f"{number}b. {store} latency: {n} users at {rate:,} events/s for {sizes.redis_s} s"
            )
            if rate > 0.9 * ceiling:
                line = f"{title}: not run (above 90% of {store} mode's fan-out, {ceiling:,.0f})"
                out.append("\n### " + line)
                print(out[-1], flush=True)
                if rate == 10_000 and store == "redis":
                    verdicts.append(("redis p99 <= 2 ms at 10,000 ev/s", "not sustained", False))
                continue
            spec = {"pattern": "rate", "rate": rate, "duration": sizes.redis_s, "publishers": w}
            mem = bench.engine_repeated(repeat, None, n, spec, 0)
            red = bench.engine_repeated(repeat, redis, n, spec, 0)
            out.append(redis_table(title, mem, red, latency=True, store=store))
            print(out[-1], flush=True)
            if rate == 10_000 and store == "redis":
                p99, ok = red["lat_p99"], integrity(red) == "ok"
                verdicts.append(
                    ("redis p99 <= 2 ms at 10,000 ev/s", f"{p99:,} us", p99 <= 2000 and ok)
                )
    finally:
        redis.stop()
    out.append(f"{store} scenario: {time.monotonic() - started:.0f} s")
    print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 60 s")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell (median kept)")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated servers (runwire is always run)"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the runwire fan-out and fixed-rate servers into DIR"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    only = set(args.only.split(","))
    kinds = ("runwire", *(k for k in BASELINES if k in args.kinds.split(",")))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if (os.cpu_count() or 1) > CLIENT_CORE:
        os.sched_setaffinity(0, {CLIENT_CORE})
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        if not Path(spy()).exists():
            sys.exit("bench: --profile needs py-spy on PATH (pip install py-spy)")

    started = time.monotonic()
    out: list[str] = [machine()]
    out.append(
        f"mode: {'quick' if args.quick else 'full'}; server on core {SERVER_CORE}, "
        f"C epoll load client on core {CLIENT_CORE}; {args.repeat} run(s) per cell, "
        "median kept (expect 10-40% run-to-run noise, see docs/benchmarks.md)"
    )
    print(out[0] + "\n" + out[1], flush=True)
    verdicts: list[tuple[str, str, bool | None]] = []
    sys.path.insert(0, str(ROOT / "src"))
    with tempfile.TemporaryDirectory(prefix="runwire-bench-") as tmp:
        bench = Bench(sizes, Path(tmp), args.profile)

        if "fanout" in only:
            n = sizes.users
            spec = {"pattern": "fanout", "events": sizes.fanout_events, "yield_rounds": 1}
            res = {k: bench.repeated(args.repeat, k, n, spec, 1000, k == "runwire") for k in kinds}
            title = f"1. fan-out: {n} users, {sizes.fanout_events:,} events round-robin"
            out.append(stream_table(title, res, latency=False))
            print(out[-1], flush=True)
            if "websockets" in res:
                value = res["runwire"]["rate"] / max(res["websockets"]["rate"], 1)
                verdicts.append(("fan-out >= 1.5x websockets", f"{value:.2f}x", value >= 1.5))

        if "burst" in only:
            n = sizes.users
            spec = {"pattern": "burst", "events": sizes.burst_events, "depth": 8}
            res = {k: bench.repeated(args.repeat, k, n, spec, 1000, k == "runwire") for k in kinds}
            title = (
                f"2. bursts: {n} users, runs of 8 events per user, {sizes.burst_events:,} events"
            )
            out.append(stream_table(title, res, latency=False))
            print(out[-1], flush=True)
            if "raw" in res:
                value = res["runwire"]["rate"] / max(res["raw"]["rate"], 1)
                verdicts.append(("bursts >= 0.6x raw batched", f"{value:.2f}x", value >= 0.6))

        if "latency" in only:
            n, rate = sizes.latency_users, sizes.latency_rate
            spec = {"pattern": "rate", "rate": rate, "duration": sizes.latency_s}
            res = {k: bench.repeated(args.repeat, k, n, spec, 0, k == "runwire") for k in kinds}
            title = f"3. latency: {n} users at {rate:,} events/s for {sizes.latency_s} s"
            out.append(stream_table(title, res, latency=True))
            print(out[-1], flush=True)
            p99 = res["runwire"]["lat_p99"]
            ok = p99 <= 2000 and integrity(res["runwire"]) == "ok"
            verdicts.append((f"latency p99 <= 2 ms at {rate:,} ev/s", f"{p99:,} us", ok))

        if "memory" in only:
            rows = []
            mem: dict[tuple[str, int], dict[str, Any]] = {}
            for conns in sizes.memory_conns:
                if hard < conns + 200:
                    rows.append([f"{conns:,} conns", f"skipped: ulimit -n hard limit {hard}"])
                    continue
                for kind in kinds if conns == sizes.memory_conns[0] else ("runwire",):
                    mem[kind, conns] = result = bench.idle(kind, conns)
                    rows.append(
                        [
                            f"{kind}, {conns:,} conns",
                            f"{result['opened']:,}/{conns:,}",
                            fmt(result["rss0_kib"] / 1024, 1),
                            fmt(result["rss_kib"] / 1024, 1),
                            fmt(result["kib_per_conn"], 1),
                            fmt(result["tracked_per_conn"], 1),
                            fmt(result["gc_full_ms"], 1),
                            fmt(result["connect_ms"]),
                        ]
                    )
            header = [
                "server",
                "connected",
                "RSS idle MiB",
                "RSS MiB",
                "KiB/conn",
                "GC-tracked objects/conn",
                "full collection ms",
                "connect ms",
            ]
            out.append(table("4. memory: RSS per idle authenticated connection", header, rows))
            print(out[-1], flush=True)
            first = sizes.memory_conns[0]
            if ("runwire", first) in mem:
                kib = mem["runwire", first]["kib_per_conn"]
                verdicts.append(
                    (f"<= 20 KiB RSS per idle conn ({first:,})", f"{kib:.1f}", kib <= 20)
                )
            if ("runwire", 10_000) in mem:
                opened = mem["runwire", 10_000]["opened"]
                verdicts.append(
                    ("10,000 connections in one process", f"{opened:,}", opened == 10_000)
                )
            else:
                verdicts.append(("10,000 connections in one process", "not run", None))

        if "e2e" in only:
            result = bench.e2e(sizes.e2e_runs)
            rows = [
                ["runs completed", f"{result['done_conns']:,}/{sizes.e2e_runs:,}"],
                ["events received", fmt(result["received"])],
                ["events/s at clients", fmt(result["rate"])],
                ["time to first event p50 us", fmt(result["ttfe_p50"])],
                ["time to first event p99 us", fmt(result["ttfe_p99"])],
                ["server CPU s", fmt(result["cpu_s"], 2)],
                ["load client CPU %", fmt(result["client_cpu_pct"])],
                ["delivery check", integrity(result)],
            ]
            title = f"5. end to end: {sizes.e2e_runs} concurrent demo-agent runs (runwire only)"
            out.append(table(title, ["metric", "runwire"], rows))
            print(out[-1], flush=True)

        if "redis" in only:
            out += redis_scenario(bench, sizes, args.repeat, Path(tmp), verdicts)

        if "cluster" in only:
            out += redis_scenario(bench, sizes, args.repeat, Path(tmp), verdicts, "cluster")
        if "sqlite" in only:
            out += sqlite_scenario(bench, sizes, args.repeat, Path(tmp))

    labels = {True: "PASS", False: "MISS", None: "SKIP (--quick or ulimit)"}
    rows = [[name, value, labels[ok]] for name, value, ok in verdicts]
    out.append(table("targets", ["target", "measured", "verdict"], rows))
    missing = (
        "" if SOCKETIO else "not measured: python-socketio (install python-socketio, uvicorn). "
    )
    out.append(f"\n{missing}Total time {time.monotonic() - started:.0f} s.")
    print("\n".join(out[-2:]), flush=True)


if __name__ == "__main__":
    main()
