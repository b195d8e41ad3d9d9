"""Servers under test for ``python -m bench``: runwire and two baselines, one per process.

Usage: ``python -m bench.servers KIND --port P --users N --secret S``, KIND one of
``runwire``, ``websockets``, ``raw``, ``socketio``. Users are ``u0`` .. ``u{N-1}``; every client
authenticates with ``Authorization: Bearer <jwt>`` (verified by every server).

runwire only: ``--engine redis://...`` (default ``memory://``) and ``--node I --nodes K``:
this process is gateway node I of K on a shared engine and holds the connections of
users ``u{j}`` with ``j % K == I`` (``wait`` counts those); it can still publish for
every user (``gateway.publish`` reaches the other nodes through the engine).

Commands on stdin, one per line, each answered with one line on stdout:

- ``rss`` -> ``rss <KiB>`` (after a GC)
- ``wait N`` -> ``conns N`` once N users are connected (runwire: and subscribed)
- ``run <json>`` -> ``done <json>``: publish a workload (see :func:`drive`);
  ``{"pattern":"none"}`` only restarts the CPU count
- ``cpu`` -> ``cpu <json>``: CPU seconds and wall seconds since the last ``run``
  (and the loop thread's time waiting for a CPU, its preemptions)
- ``quit`` (or EOF) -> exit

The event frame is the runwire envelope of an ``agent_message_delta`` whose text is
``<user>|<seq>|<t_us>``; the websockets and raw baselines build the same JSON with an
f-string; the socketio baseline emits the same envelope as a dict (python-socketio
serializes it, compact, to the same JSON inside ``42["ev",...]``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import gc
import hashlib
import json
import logging
import resource
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvloop

from runwire.auth import Authenticator, token_from_headers
from runwire.config import load_settings
from runwire.exceptions import AuthError

Send = Callable[[int, int, int], Any]


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def waits() -> tuple[float, int]:
    """``(ms, count)``: how long the loop's thread was runnable but waiting for a CPU
    (``/proc/thread-self/schedstat``, 0 where the kernel keeps no such figure), and
    how often it was preempted (involuntary context switches)."""
    try:
        with open("/proc/thread-self/schedstat") as schedstat:
            delay_ms = int(schedstat.read().split()[1]) / 1e6
    except (OSError, IndexError, ValueError):
        delay_ms = 0.0
    return delay_ms, resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw


class GcWatch:
    """Longest garbage-collector pause and collections per generation since ``reset``."""

    def __init__(self) -> None:
        self.started = 0.0
        self.reset()
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.max_pause_s = 0.0
        self.total_s = 0.0
        self.collections = [0, 0, 0]

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        pause = time.perf_counter() - self.started
        self.max_pause_s = max(self.max_pause_s, pause)
        self.total_s += pause
        self.collections[info["generation"]] += 1

    def stats(self) -> dict[str, Any]:
        return {
            "gc_max_ms": 1000 * self.max_pause_s,
            "gc_total_ms": 1000 * self.total_s,
            "gc_gen2": self.collections[2],
        }


def baseline_frame(user: str, seq: int, t_us: int) -> str:
    """The same bytes runwire's envelope has for the same event (offset == seq)."""
    return (
        f'{{"type":"agent_message_delta","offset":{seq},"run_id":"r_{user}",'
        f'"thread_id":"t","seq":{seq},"ts":0,"data":{{"text":"{user}|{seq}|{t_us}"}}}}'
    )


class RunwireServer:
    """The real thing: ``runwire.Gateway`` publishing through ``gateway.publish``."""

    is_async = True

    def __init__(self, args: argparse.Namespace) -> None:
        from runwire import Gateway
        from runwire.agents.demo import DemoAgent

        settings = load_settings(
            host="127.0.0.1",
            port=args.port,
            auth_secret=args.secret,
            max_connections=args.users + 100,
            outbound_queue_events=100_000,
            outbound_queue_bytes=64 * 1024 * 1024,
            user_queue_budget_bytes=64 * 1024 * 1024,
            heartbeat_interval_s=300.0,
            max_active_runs=args.users + 100,
            log_level="warning",
            engine=args.engine,
        )
        self.gateway = Gateway(settings, agent=DemoAgent(word_delay_s=0))
        self.users = [f"u{i}" for i in range(args.users)]
        self.local = self.users[args.node :: args.nodes]  # users connected to this node
        self.publishers: list[Any] = []

    async def start(self) -> None:
        await self.gateway.start()

    async def stop(self) -> None:
        await self.gateway.stop()

    def ready(self, n: int) -> bool:
        from runwire.ids import UserId
        from runwire.protocol import State

        manager = self.gateway.manager
        if manager.connection_count < n:
            return False
        return all(
            c.session.state is State.OPEN and not c.follower.catching_up and c.subscribed
            for user in self.local[:n]
            for c in manager.connections_of(UserId(user))
        )

    def make_send(self) -> Send:
        from runwire.events import AgentMessageDelta, Event
        from runwire.ids import UserId
        from runwire.publisher import OrderedPublisher

        # Each user's events are one run's, published as the runtime publishes a run's
        # events: through an OrderedPublisher (one round trip per event only on an
        # engine that is not pipelined; see docs/benchmarks.md, "Redis mode").
        pipeline = self.gateway.pipeline
        window = self.gateway.settings.run_publish_window
        if (
            pipeline.pipelined and not self.publishers
        ):  # made once: new long-lived objects per cell would
            # bring on a full GC collection in a later cell
            self.publishers = [
                OrderedPublisher(pipeline.publish, pipeline.submitter, window=window, retry_s=0)
                for _ in self.users
            ]
        publishers = (
            [p.publish for p in self.publishers]
            if pipeline.pipelined
            else [pipeline.publish] * len(self.users)  # what OrderedPublisher does there
        )
        ids = [UserId(u) for u in self.users]
        run_ids = [f"r_{u}" for u in self.users]
        users = self.users
        of = Event.of

        async def send(u: int, seq: int, t_us: int) -> None:
            event = of(
                AgentMessageDelta(f"{users[u]}|{seq}|{t_us}"),
                run_id=run_ids[u],
                thread_id="t",
                seq=seq,
                ts=0,
            )
            await publishers[u](ids[u], event)

        return send

    async def flush(self) -> None:
        """Wait until every event sent is stored (the runs' unconfirmed windows)."""
        for publisher in self.publishers:
            await publisher.flush()


class WebsocketsServer:
    """Baseline (a): the ``websockets`` asyncio server, one ``await ws.send`` per event."""

    is_async = True

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.users = [f"u{i}" for i in range(args.users)]
        self.index = {u: i for i, u in enumerate(self.users)}
        self.auth = Authenticator(load_settings(auth_secret=args.secret))
        self.conns: dict[int, Any] = {}
        self.server: Any = None

    async def start(self) -> None:
        from websockets.asyncio.server import ServerConnection, serve

        async def handler(ws: ServerConnection) -> None:
            try:
                user = self.auth.verify(token_from_headers(ws.request.headers))  # type: ignore[union-attr]
            except AuthError:
                await ws.close(4401, "unauthorized")
                return
            index = self.index[user]
            self.conns[index] = ws
            try:
                await ws.wait_closed()
            finally:
                self.conns.pop(index, None)

        self.server = await serve(
            handler,
            "127.0.0.1",
            self.args.port,
            compression=None,
            ping_interval=None,
            backlog=4096,
        )

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    def ready(self, n: int) -> bool:
        return len(self.conns) >= n

    def make_send(self) -> Send:
        conns, users = self.conns, self.users

        async def send(u: int, seq: int, t_us: int) -> None:
            await conns[u].send(baseline_frame(users[u], seq, t_us))

        return send


_HEADERS = [bytes((0x81, n)) for n in range(126)]
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"


class _RawConnection(asyncio.Protocol):
    def __init__(self, server: RawServer) -> None:
        self.server = server
        self.transport: Any = None
        self.buffer = b""
        self.index = -1
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.index >= 0:
            if data and data[0] & 0x0F == 8:  # close
                self.transport.close()
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        headers: dict[str, str] = {}
        for line in self.buffer[:end].decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.buffer = b""
        try:
            user = self.server.auth.verify(
                token_from_headers({"Authorization": headers.get("authorization", "")})
            )
        except AuthError:
            self.transport.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()
            return
        key = headers.get("sec-websocket-key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.index = self.server.index[user]
        self.server.conns[self.index] = self

    def connection_lost(self, exc: Exception | None) -> None:
        if self.index >= 0:
            self.server.conns.pop(self.index, None)


class RawServer:
    """Baseline (b), "the Python bound": hand-made upgrade, hand-framed text frames,
    each connection's pending frames written with one ``transport.write`` per loop
    iteration."""

    is_async = False

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.users = [f"u{i}" for i in range(args.users)]
        self.index = {u: i for i, u in enumerate(self.users)}
        self.auth = Authenticator(load_settings(auth_secret=args.secret))
        self.conns: dict[int, _RawConnection] = {}
        self.server: asyncio.Server | None = None
        self._dirty: list[_RawConnection] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _RawConnection(self), "127.0.0.1", self.args.port, backlog=4096
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    def ready(self, n: int) -> bool:
        return len(self.conns) >= n

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.transport.write(b"".join(conn.pending))
            conn.pending = []

    def make_send(self) -> Send:
        conns, users = self.conns, self.users
        loop = asyncio.get_running_loop()
        pack = struct.pack

        def send(u: int, seq: int, t_us: int) -> None:
            conn = conns[u]
            payload = baseline_frame(users[u], seq, t_us).encode()
            n = len(payload)
            header = _HEADERS[n] if n < 126 else pack("!BBH", 0x81, 126, n)
            if not conn.pending:
                if not self._dirty:
                    loop.call_soon(self._flush)
                self._dirty.append(conn)
            conn.pending.append(header)
            conn.pending.append(payload)

        return send


class SocketioServer:
    """Baseline (c): python-socketio ``AsyncServer`` as an ASGI app under uvicorn (uvloop,
    WebSocket transport only), one ``await sio.emit("ev", envelope, to=sid)`` per event.

    The JWT is verified in the ``connect`` handler from the upgrade's ``Authorization``
    header (the same check the other servers make at the upgrade).
    """

    is_async = True

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.users = [f"u{i}" for i in range(args.users)]
        self.index = {u: i for i, u in enumerate(self.users)}
        self.auth = Authenticator(load_settings(auth_secret=args.secret))
        self.sids: dict[int, str] = {}
        self.sio: Any = None
        self.server: Any = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import socketio
        import uvicorn

        sio = socketio.AsyncServer(
            async_mode="asgi", transports=["websocket"], ping_interval=300, ping_timeout=60
        )
        by_sid: dict[str, int] = {}

        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
            headers = {"Authorization": environ.get("HTTP_AUTHORIZATION", "")}
            try:
                user = self.auth.verify(token_from_headers(headers))
            except AuthError:
                return False
            by_sid[sid] = self.index[user]
            self.sids[by_sid[sid]] = sid
            return True

        async def disconnect(sid: str, *_: Any) -> None:
            index = by_sid.pop(sid, None)
            if index is not None and self.sids.get(index) == sid:
                del self.sids[index]

        sio.on("connect", connect)
        sio.on("disconnect", disconnect)
        self.sio = sio
        config = uvicorn.Config(
            socketio.ASGIApp(sio),
            host="127.0.0.1",
            port=self.args.port,
            loop="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            backlog=4096,
            ws_ping_interval=None,
            ws_ping_timeout=None,
            ws_per_message_deflate=False,
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.get_running_loop().create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raise the startup error
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)

    def ready(self, n: int) -> bool:
        return len(self.sids) >= n

    def make_send(self) -> Send:
        emit, sids, users = self.sio.emit, self.sids, self.users

        async def send(u: int, seq: int, t_us: int) -> None:
            user = users[u]
            envelope = {
                "type": "agent_message_delta",
                "offset": seq,
                "run_id": f"r_{user}",
                "thread_id": "t",
                "seq": seq,
                "ts": 0,
                "data": {"text": f"{user}|{seq}|{t_us}"},
            }
            await emit("ev", envelope, to=sids[u])

        return send


SERVERS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "runwire": RunwireServer,
    "websockets": WebsocketsServer,
    "raw": RawServer,
    "socketio": SocketioServer,
}


class Pacer:
    """1 ms ticks for ``duration`` s, each at its scheduled time (or late, recorded)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.ticks_total = int(float(spec["duration"]) * 1000)
        self.lag_max_us = 0

    async def ticks(self) -> AsyncIterator[int]:
        """Yield each tick's actual start time, in microseconds."""
        base = time.time_ns() // 1000 + 2000
        for k in range(self.ticks_total):
            scheduled = base + k * 1000
            delay = scheduled - time.time_ns() // 1000
            if delay > 0:
                await asyncio.sleep(delay / 1e6)
            t_us = time.time_ns() // 1000
            self.lag_max_us = max(self.lag_max_us, t_us - scheduled)
            yield t_us


async def drive(server: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Publish a workload; every user gets the same number of events.

    ``fanout``: ``events`` round-robin, one event per user per round, a yield to the
    loop after every ``yield_rounds`` rounds. ``burst``: the same, but ``depth``
    events to each user back to back. ``rate``: ``rate`` events/s round-robin in 1 ms
    ticks for ``duration`` s; each event carries the tick's actual start time
    (arrival), so queueing inside a tick and any backlog show in the latency.
    """
    if spec["pattern"] == "none":
        return {"published": 0, "publish_s": 0.0, "lag_max_us": 0}
    if int(spec.get("publishers", 1)) > 1:
        return await drive_parallel(server, spec, int(spec["publishers"]))
    send = server.make_send()
    is_async = server.is_async
    n = len(server.users)
    seq = [0] * n
    published = 0
    pacer: Pacer | None = None
    started = time.perf_counter()
    if spec["pattern"] in ("fanout", "burst"):
        depth = int(spec.get("depth", 1))
        yield_rounds = int(spec.get("yield_rounds", 1))
        rounds = int(spec["events"]) // (n * depth)
        for r in range(rounds):
            t_us = time.time_ns() // 1000
            for u in range(n):
                for _ in range(depth):
                    seq[u] += 1
                    if is_async:
                        await send(u, seq[u], t_us)
                    else:
                        send(u, seq[u], t_us)
            published += n * depth
            if (r + 1) % yield_rounds == 0:
                await asyncio.sleep(0)
    elif spec["pattern"] == "rate":
        per_tick = int(spec["rate"]) // 1000
        pacer = Pacer(spec)
        u = 0
        async for t_us in pacer.ticks():
            for _ in range(per_tick):
                seq[u] += 1
                if is_async:
                    await send(u, seq[u], t_us)
                else:
                    send(u, seq[u], t_us)
                u = u + 1 if u + 1 < n else 0
            published += per_tick
    await flushed(server)
    return {
        "published": published,
        "publish_s": time.perf_counter() - started,
        "lag_max_us": pacer.lag_max_us if pacer is not None else 0,
    }


async def drive_parallel(server: Any, spec: dict[str, Any], workers: int) -> dict[str, Any]:
    """:func:`drive` with ``workers`` concurrent publishers (async servers only), like
    as many agent runs publishing at once: worker ``w`` publishes, in order, for the
    users ``u`` with ``u % workers == w``, so each user's events stay in sequence.

    ``fanout``: each worker goes round-robin over its users, yielding to the loop
    after each round. ``rate``: one ticker makes the same 1 ms ticks as :func:`drive`
    and hands each event (with the tick's actual start time) to its user's worker;
    time spent waiting for a busy worker counts in the latency.
    """
    send = server.make_send()
    n = len(server.users)
    seq = [0] * n
    pacer: Pacer | None = None
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    if spec["pattern"] == "fanout":
        rounds = int(spec["events"]) // n

        async def rounds_of(w: int) -> None:
            mine = range(w, n, workers)
            for _ in range(rounds):
                t_us = time.time_ns() // 1000
                for u in mine:
                    seq[u] += 1
                    await send(u, seq[u], t_us)
                await asyncio.sleep(0)

        await asyncio.gather(*(rounds_of(w) for w in range(workers)))
        published = rounds * n
    else:
        queues: list[collections.deque[tuple[int, int, int]]] = [
            collections.deque() for _ in range(workers)
        ]
        idle: list[asyncio.Future[None] | None] = [None] * workers
        finished = False

        async def consume(w: int) -> None:
            queue = queues[w]
            while True:
                while queue:
                    await send(*queue.popleft())
                if finished:
                    return
                idle[w] = waiter = loop.create_future()
                await waiter

        def wake(w: int) -> None:
            waiter = idle[w]
            if waiter is not None:
                idle[w] = None
                if not waiter.done():
                    waiter.set_result(None)

        tasks = [loop.create_task(consume(w)) for w in range(workers)]
        per_tick = int(spec["rate"]) // 1000
        pacer = Pacer(spec)
        u = 0
        async for t_us in pacer.ticks():
            for _ in range(per_tick):
                seq[u] += 1
                w = u % workers
                queues[w].append((u, seq[u], t_us))
                wake(w)
                u = u + 1 if u + 1 < n else 0
        finished = True
        for w in range(workers):
            wake(w)
        await asyncio.gather(*tasks)
        published = per_tick * pacer.ticks_total
    await flushed(server)
    return {
        "published": published,
        "publish_s": time.perf_counter() - started,
        "lag_max_us": pacer.lag_max_us if pacer is not None else 0,
    }


async def flushed(server: Any) -> None:
    """Wait until ``server`` stored everything sent (runwire's publish windows)."""
    flush = getattr(server, "flush", None)
    if flush is not None:
        await flush()


async def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def serve(args: argparse.Namespace) -> None:
    server = SERVERS[args.kind](args)
    await server.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("listening", flush=True)
    cpu0, wall0 = cpu_s(), time.perf_counter()
    waited0 = waits()
    watch = GcWatch()
    while line := await reader.readline():
        command, _, argument = line.decode().strip().partition(" ")
        if command == "rss":
            gc.collect()
            await asyncio.sleep(0.2)
            started = time.perf_counter()
            gc.collect()  # a full collection of this heap: what a pause of it costs
            full_ms = 1000 * (time.perf_counter() - started)
            print("rss", rss_kib(), f"{full_ms:.1f}", len(gc.get_objects()), flush=True)
        elif command == "wait":
            wanted = int(argument)
            ok = await wait_until(lambda: server.ready(wanted), 120)  # noqa: B023
            print("conns" if ok else "timeout", wanted, flush=True)
        elif command == "run":
            cpu0, wall0 = cpu_s(), time.perf_counter()
            waited0 = waits()
            watch.reset()
            stats = await drive(server, json.loads(argument))
            print("done", json.dumps(stats), flush=True)
        elif command == "cpu":
            usage = {"cpu_s": cpu_s() - cpu0, "wall_s": time.perf_counter() - wall0}
            waited = waits()
            usage["waited_ms"] = waited[0] - waited0[0]
            usage["preempted"] = waited[1] - waited0[1]
            usage.update(watch.stats())
            print("cpu", json.dumps(usage), flush=True)
        elif command == "quit":
            break
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--engine", default="memory://", help="runwire: engine URL")
    parser.add_argument("--node", type=int, default=0, help="runwire: this node's index")
    parser.add_argument("--nodes", type=int, default=1, help="runwire: gateway nodes")
    args = parser.parse_args()
    raise_nofile()
    logging.basicConfig(level=logging.ERROR)
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
