"""Test doubles for driving WebSocketManager through its public API, without sockets.

``FakeSocket`` is a FrameWriter that records what the manager wrote; ``ToyEngine`` is
an Engine (the port of runwire.engines.base) whose history and live delivery a test
controls: it can lose a user's stream (a new epoch), trim history, drop live
deliveries, fail, or serve a history that cannot fill a gap. ``Harness`` ties them
to a manager made by ``create_manager``, the one factory.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from runwire import WebSocketManager
from runwire.engines.base import (
    DeliverCallback,
    EngineCapabilities,
    EngineListener,
    ResumeFailure,
    ResumeFailureReason,
    StoredEvent,
    StreamPosition,
)
from runwire.events import AgentMessageDelta, Event, encode_envelope
from runwire.exceptions import EngineError
from runwire.ids import Epoch, UserId
from runwire.manager import Connection, Delivery, create_manager
from runwire.metrics import Metrics
from runwire.resume import ResumeRequest
from tests.helpers import make_settings

Frame = dict[str, Any]


class FakeSocket:
    """A FrameWriter: records frames and writes, can stop accepting writes."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.writes = 0
        self.paused = False
        self.closed_with: tuple[int, str] | None = None
        self.aborted = False

    @property
    def writable(self) -> bool:
        return not self.paused

    def write_frames(self, frames: list[bytes]) -> None:
        assert self.closed_with is None, "write after close"
        assert frames, "an empty write"
        self.raw.extend(frames)
        self.writes += 1

    def close(self, code: int, reason: str) -> None:
        assert self.closed_with is None, "closed twice"
        self.closed_with = (code, reason)

    def abort(self) -> None:
        self.aborted = True

    @property
    def frames(self) -> list[Frame]:
        return [msgspec.json.decode(raw) for raw in self.raw]

    def of_type(self, kind: str) -> list[Frame]:
        return [frame for frame in self.frames if frame["type"] == kind]

    @property
    def events(self) -> list[Frame]:
        return [frame for frame in self.frames if "offset" in frame and "seq" in frame]

    @property
    def offsets(self) -> list[int]:
        return [frame["offset"] for frame in self.events]

    @property
    def texts(self) -> list[str]:
        return [frame["data"]["text"] for frame in self.events]


@dataclass
class _Stream:
    epoch: Epoch
    events: list[StoredEvent] = field(default_factory=list)
    last: int = 0
    subscribers: int = 0


class ToyEngine:
    """An in-memory Engine whose failures a test chooses."""

    available = True
    capabilities = EngineCapabilities(shared=False, durable=False, immediate=False)

    def __init__(self) -> None:
        self.streams: dict[UserId, _Stream] = {}
        self._deliver: DeliverCallback | None = None
        self.resync: Callable[[UserId], None] | None = None
        self.on_state: Callable[[bool], None] | None = None
        self.live = True
        """False: publish stores but does not deliver (a lost subscription)."""
        self.fail_subscribe = False
        self.fail_reads = False
        self.stale_history = False
        """True: every read returns a full batch of events the reader already has."""
        self.holes: set[int] = set()
        """Offsets missing from history reads (a stream that cannot fill a gap)."""
        self.read_gate: asyncio.Event | None = None
        """When set to an Event, history reads wait for it (a slow engine)."""
        self.reads = 0
        self.held_subscribes = 0
        """The next this many subscribes wait for ``subscribe_gate`` (a slow engine)."""
        self.subscribe_gate = asyncio.Event()

    async def start(self, listener: EngineListener) -> None:
        self._deliver = listener.deliver
        self.resync = listener.resync
        self.on_state = listener.engine_state_changed

    def mark_unavailable(self) -> None:
        """The toy engine is never unavailable."""

    async def close(self) -> None:
        self._deliver = None

    def stream(self, user_id: UserId) -> _Stream:
        if user_id not in self.streams:
            self.streams[user_id] = _Stream(Epoch(secrets.token_hex(6)))
        return self.streams[user_id]

    def store(self, user_id: UserId, event: Event) -> StoredEvent:
        stream = self.stream(user_id)
        stream.last += 1
        stored = StoredEvent(
            user_id, stream.epoch, stream.last, encode_envelope(event, stream.last), event
        )
        stream.events.append(stored)
        return stored

    def deliver(self, stored: StoredEvent) -> None:
        assert self._deliver is not None
        self._deliver(stored)

    async def publish(self, user_id: UserId, event: Event) -> StoredEvent:
        stored = self.store(user_id, event)
        if self.live and self.stream(user_id).subscribers and self._deliver is not None:
            self._deliver(stored)
        return stored

    def lose(self, user_id: UserId) -> Epoch:
        """The user's stream is lost and starts again (as when Redis restarts)."""
        subscribers = self.stream(user_id).subscribers
        self.streams[user_id] = _Stream(Epoch(secrets.token_hex(6)), subscribers=subscribers)
        return self.streams[user_id].epoch

    def trim(self, user_id: UserId, keep: int) -> None:
        """Keep only the last ``keep`` events of the user's history."""
        stream = self.stream(user_id)
        stream.events = stream.events[len(stream.events) - keep :] if keep else []

    async def position(self, user_id: UserId) -> StreamPosition:
        stream = self.stream(user_id)
        return StreamPosition(stream.epoch, stream.last)

    async def read_after(
        self, user_id: UserId, epoch: Epoch, offset: int, limit: int
    ) -> list[StoredEvent] | ResumeFailure:
        self.reads += 1
        # A read answers what history held when it was asked, some time later.
        answer = self._answer(user_id, epoch, offset, limit)
        await asyncio.sleep(0)
        if self.read_gate is not None:
            await self.read_gate.wait()
        if self.fail_reads:
            raise EngineError("history unavailable")
        return answer

    def _answer(
        self, user_id: UserId, epoch: Epoch, offset: int, limit: int
    ) -> list[StoredEvent] | ResumeFailure:
        stream = self.stream(user_id)
        position = StreamPosition(stream.epoch, stream.last)
        if epoch != stream.epoch:
            return ResumeFailure(ResumeFailureReason.EPOCH_CHANGED, position)
        if offset > stream.last or offset < 0:
            return ResumeFailure(ResumeFailureReason.INVALID_OFFSET, position)
        if self.stale_history:
            return [stream.events[0]] * limit
        first = stream.events[0].offset if stream.events else stream.last + 1
        if offset + 1 < first:
            return ResumeFailure(ResumeFailureReason.OUT_OF_WINDOW, position)
        found = [e for e in stream.events if e.offset > offset and e.offset not in self.holes]
        return found[:limit]

    async def subscribe(self, user_id: UserId) -> None:
        await asyncio.sleep(0)
        if self.held_subscribes:
            self.held_subscribes -= 1
            await self.subscribe_gate.wait()
        if self.fail_subscribe:
            raise EngineError("engine unavailable")
        self.stream(user_id).subscribers += 1

    async def unsubscribe(self, user_id: UserId) -> None:
        self.stream(user_id).subscribers -= 1

    def stats(self) -> dict[str, int]:
        return {"subscriptions": sum(s.subscribers for s in self.streams.values())}


def delta(text: str, run_id: str = "r_1", seq: int = 1) -> Event:
    return Event.of(AgentMessageDelta(text), run_id=run_id, thread_id="t_1", seq=seq, ts=0)


class Harness:
    """A manager from ``create_manager`` over a ToyEngine, with fake sockets."""

    def __init__(self, engine: ToyEngine | None = None, **settings: Any) -> None:
        self.settings = make_settings(**settings)
        self.engine = engine or ToyEngine()
        self.metrics = Metrics()
        self.manager: WebSocketManager = create_manager(
            engine=self.engine, settings=self.settings, metrics=self.metrics
        )
        self.deliveries: list[Delivery] = []
        self.sockets: dict[Connection, FakeSocket] = {}

    async def start(self) -> Harness:
        await self.engine.start(self)
        return self

    # The engine's listener: deliveries go to the manager, and what it did is recorded.
    def deliver(self, stored: StoredEvent) -> None:
        self.deliveries.append(self.manager.deliver(stored))

    def resync(self, user_id: UserId) -> None:
        self.manager.resync(user_id)

    def engine_state_changed(self, available: bool) -> None:
        self.manager.engine_state_changed(available)

    def open(
        self,
        user: str,
        resume: ResumeRequest | None = None,
        expires_at: int | None = None,
    ) -> tuple[Connection, FakeSocket]:
        socket = FakeSocket()
        connection = self.manager.open(UserId(user), socket, resume, expires_at)
        self.sockets[connection] = socket
        return connection, socket

    async def connect(
        self, user: str, resume: ResumeRequest | None = None
    ) -> tuple[Connection, FakeSocket]:
        """Open and wait until ``connected`` (and any handshake replay) is written."""
        connection, socket = self.open(user, resume)
        await self.settle()
        assert socket.of_type("connected"), "never connected"
        return connection, socket

    async def publish(self, user: str, *texts: str, run_id: str = "r_1") -> None:
        for text in texts:
            await self.engine.publish(UserId(user), delta(text, run_id))

    async def settle(self, ticks: int = 2_000) -> None:
        """Run the loop until the manager has no work left: no task, nothing to write.

        Sockets the manager closed are reported gone, as the server does.
        """
        for _ in range(ticks):
            await asyncio.sleep(0)
            stats = self.manager.stats()
            if stats["tasks"] == 0 and stats["dirty"] == 0:
                break
        else:
            raise AssertionError(f"the manager never settled: {self.manager.stats()}")
        for connection, socket in self.sockets.items():
            if socket.closed_with is not None:
                self.manager.closed(connection, socket.closed_with[0])

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value
