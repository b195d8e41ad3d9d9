"""The one WebSocketManager: connections by authenticated user, and delivery to them.

The manager is the only registry of live connections. It creates every
:class:`Connection` (:meth:`WebSocketManager.open` is the one creation path),
subscribes the engine to the users it holds, hands each stored event to every
connection of that event's user and to no other, and removes every entry on every
exit path (:meth:`WebSocketManager.closed` is idempotent).

Writes are batched: events and replies are queued in each connection's sans-I/O
:class:`~runwire.protocol.Session`; one callback per loop iteration writes each
connection's pending frames with one transport write.

Create it with :func:`create_manager` (the composition root does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from runwire.config import Settings
from runwire.engines.base import Engine, ResumeFailure, ResumeFailureReason, StoredEvent
from runwire.events import (
    PROTOCOL_VERSION,
    ClientFrame,
    Connected,
    EngineStatus,
    Limits,
    Resume,
    ResumeFailed,
    TokenExpiring,
)
from runwire.exceptions import CloseCode, EngineError, LimitError
from runwire.ids import ConnectionId, Epoch, UserId, new_connection_id
from runwire.metrics import CLOSE_CODE_LABELS, Metrics, label_of
from runwire.protocol import EventAdmission, Session, SessionLimits, State
from runwire.resume import AfterBatch, LiveAction, ResumeRequest, StreamFollower
from runwire.tokens import EXPIRED_REASON, TokenPolicy, TokenSchedule, TokenTimer

_OPEN = State.OPEN
_CLOSING = State.CLOSING
_QUEUED = EventAdmission.QUEUED

__all__ = [
    "Connection",
    "Delivery",
    "FrameHandler",
    "FrameWriter",
    "WebSocketManager",
    "create_manager",
]

log = logging.getLogger("runwire.manager")

HISTORY_BATCH = 256

MAX_SKIPS = 3
"""Times in a row a live connection's catch-up may find history unable to serve it
(``out_of_window`` / ``invalid_offset``) and move to the head before it is closed
with 1011: each move is progress, so more in a row means a stream gone wrong."""


class FrameWriter(Protocol):
    """What the manager needs from a socket (the server's adapter implements it)."""

    @property
    def writable(self) -> bool:
        """False while the transport's write buffer is over its high-water mark."""
        ...

    def write_frames(self, frames: list[bytes]) -> None:
        """Write text frames, in order, with as few transport writes as possible."""

    def close(self, code: int, reason: str) -> None:
        """Send a close frame; the transport closes once the peer answers, or is aborted."""

    def abort(self) -> None:
        """Drop the transport now, without waiting for the peer's close frame."""


FrameHandler = Callable[["Connection", ClientFrame], None]
"""Handles one valid client frame of an open connection (``user_message``, ``cancel``...)."""


class Delivery(msgspec.Struct, frozen=True, gc=False):
    """What became of one event: the truth, never an optimistic "sent"."""

    offset: int
    queued: int = 0
    """Connections of the user that queued it."""
    skipped: int = 0
    """Connections that already had it, are not open yet, or are closing."""
    overflowed: int = 0
    """Connections closed with 4409 because their queue was full."""

    @property
    def connections(self) -> int:
        """Connections of the user on this node when the event arrived."""
        return self.queued + self.skipped + self.overflowed


@dataclass(eq=False, slots=True)
class Connection:
    """One authenticated WebSocket, as the manager tracks it."""

    id: ConnectionId
    user_id: UserId
    session: Session
    writer: FrameWriter
    resume: ResumeRequest | None
    follower: StreamFollower = field(default_factory=StreamFollower)
    """Where the connection stands in its user's stream (sans-I/O resume decisions)."""
    subscribed: bool = False
    close_sent: bool = False
    closed: bool = False
    drained: asyncio.Event | None = None
    reply_tail: asyncio.Task[Any] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    token: TokenTimer[Connection] | None = None
    """The token's lifetime (warning, 4401 at ``exp``); cancelled in ``closed``."""


class WebSocketManager:
    """Registry of live connections by user, and the delivery path to them."""

    def __init__(
        self,
        *,
        engine: Engine,
        session_limits: SessionLimits,
        max_connections_per_user: int,
        max_connections: int,
        max_concurrent_runs: int,
        user_queue_budget_bytes: int,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        token_policy: TokenPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.session_limits = session_limits
        self.max_connections_per_user = max_connections_per_user
        self.max_connections = max_connections
        self.user_queue_budget_bytes = user_queue_budget_bytes
        self.metrics = metrics
        self._clock = clock
        self.token_policy = token_policy
        self._limits_frame = Limits(
            session_limits.max_frame_bytes,
            session_limits.max_message_chars,
            session_limits.messages_per_s,
            max_concurrent_runs,
        )
        self._handler: FrameHandler | None = None
        self._by_user: dict[UserId, dict[ConnectionId, Connection]] = {}
        self._count = 0
        self._dirty: set[Connection] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._closing = False
        self._background: set[asyncio.Task[Any]] = set()
        self._all_closed = asyncio.Event()
        # One bound method each for every connection's token timer (not two closures
        # per socket).
        self._on_token_expiring = self._token_expiring
        self._on_token_expired = self._token_expired

    def set_frame_handler(self, handler: FrameHandler) -> None:
        """Route valid client frames (other than ``resume``) to ``handler``."""
        self._handler = handler

    # -- registry ---------------------------------------------------------------

    def open(
        self,
        user_id: UserId,
        writer: FrameWriter,
        resume: ResumeRequest | None = None,
        expires_at: int | None = None,
    ) -> Connection:
        """Register a new authenticated socket; the one way a Connection is created.

        Client frames are accepted from this moment (buffered until ``connected`` is
        sent, so nothing the client sends early is lost). With ``expires_at`` (the
        token's ``exp``) and a token policy, the socket is warned before and closed
        with 4401 at that moment unless a ``refresh`` moves it (runwire.tokens).

        Raises:
            LimitError: ``too_many_connections`` (per user or per process), or
                ``shutting_down``; the caller closes the socket with 4429 / 1001.
        """
        if self._closing:
            raise LimitError("shutting_down", "the gateway is shutting down")
        user_connections = self._by_user.get(user_id)
        if user_connections is not None and len(user_connections) >= self.max_connections_per_user:
            raise LimitError("too_many_connections", "too many connections for this user")
        if self._count >= self.max_connections:
            raise LimitError("too_many_connections", "too many connections on this gateway")
        session = Session(self.session_limits, cursor=0, now=self._clock())
        connection = Connection(new_connection_id(), user_id, session, writer, resume)
        self._by_user.setdefault(user_id, {})[connection.id] = connection
        self._count += 1
        self.metrics.connections_opened.inc()
        if expires_at is not None and self.token_policy is not None:
            connection.token = TokenTimer(
                TokenSchedule(self.token_policy, expires_at),
                connection,
                self._on_token_expiring,
                self._on_token_expired,
            )
        self._spawn(connection, self._start(connection))
        return connection

    def _token_expiring(self, connection: Connection, expires_at: int) -> None:
        self.send(connection, TokenExpiring(expires_at))

    def _token_expired(self, connection: Connection) -> None:
        self.close_connection(connection, CloseCode.UNAUTHORIZED, EXPIRED_REASON)

    def closed(self, connection: Connection, code: int = 1006) -> None:
        """Forget a connection whose socket is gone; idempotent, safe on every exit path."""
        if connection.closed:
            return
        connection.closed = True
        connection.session.connection_lost()
        if connection.token is not None:
            connection.token.cancel()
        if connection.drained is not None:
            connection.drained.set()
        self._dirty.discard(connection)
        user_connections = self._by_user.get(connection.user_id)
        if user_connections is not None and user_connections.pop(connection.id, None) is not None:
            self._count -= 1
            if not user_connections:
                del self._by_user[connection.user_id]
        if self._count == 0:
            self._all_closed.set()
        for task in list(connection.tasks):
            task.cancel()
        if connection.subscribed:
            connection.subscribed = False
            self._spawn(None, self.engine.unsubscribe(connection.user_id))
        self.metrics.connections_closed.labels(label_of(code, CLOSE_CODE_LABELS)).inc()

    def disconnect_user(self, user_id: UserId, code: int, reason: str) -> int:
        """Close every connection of ``user_id`` on this node; returns how many."""
        connections = self.connections_of(user_id)
        for connection in connections:
            self.close_connection(connection, code, reason)
        return len(connections)

    def connections_of(self, user_id: UserId) -> list[Connection]:
        """The live connections of one user."""
        return list(self._by_user.get(user_id, {}).values())

    @property
    def connection_count(self) -> int:
        """Live connections on this node."""
        return self._count

    @property
    def user_count(self) -> int:
        """Users with at least one live connection on this node."""
        return len(self._by_user)

    def stats(self) -> dict[str, int]:
        """Sizes of every structure the manager holds (for metrics and leak tests)."""
        return {
            "connections": self._count,
            "users": len(self._by_user),
            "dirty": len(self._dirty),
            "tasks": len(self._background)
            + sum(len(c.tasks) for conns in self._by_user.values() for c in conns.values()),
            "queued_frames": sum(
                c.session.pending for conns in self._by_user.values() for c in conns.values()
            ),
        }

    # -- connection start and resume --------------------------------------------

    async def _start(self, connection: Connection) -> None:
        try:
            await self._open(connection)
        except EngineError as exc:
            log.warning("connection not opened: %s", exc)
            self.close_connection(connection, CloseCode.GOING_AWAY, "engine unavailable; retry")

    async def _open(self, connection: Connection) -> None:
        user_id = connection.user_id
        await self.engine.subscribe(user_id)
        connection.subscribed = True
        if connection.closed:  # closed while subscribing: undo
            connection.subscribed = False
            await self.engine.unsubscribe(user_id)
            return
        position = await self.engine.position(user_id)
        session = connection.session
        if session.state is not State.CONNECTING:
            return  # closed while opening (token expired, limit, shutdown): nothing to open
        session.cursor = connection.follower.connected(position.epoch, position.offset)
        session.open(
            Connected(
                connection.id,
                user_id,
                position.epoch,
                position.offset,
                PROTOCOL_VERSION,
                self._limits_frame,
                connection.token.expires_at if connection.token is not None else None,
            )
        )
        self._mark_dirty(connection)
        if connection.resume is not None:
            connection.follower.replaying = True
            try:
                await self._replay(connection, connection.resume)
            finally:
                connection.follower.replaying = False
        else:
            await self._keep_up(connection)
        self._handle_frames(connection)

    async def _replay(self, connection: Connection, request: ResumeRequest) -> None:
        """Rewind to the client's position, replay history, then say ``resumed``."""
        session, follower = connection.session, connection.follower
        head = session.cursor
        start = follower.replay_start(request, head)
        session.cursor = start.cursor
        failure = await self._catch_up(connection, start.epoch)
        if failure is not None:
            frame, session.cursor = follower.replay_failed(
                ResumeFailed(failure.reason.value, failure.position.epoch, failure.position.offset),
                start=start.cursor,
                cursor=session.cursor,
                head=head,
            )
            session.send_frame(frame)
            await self._keep_up(connection)
        elif session.state is State.OPEN:
            session.send_frame(follower.replay_done(request, session.cursor))
        self._mark_dirty(connection)

    async def _catch_up(
        self, connection: Connection, epoch: Epoch | None = None
    ) -> ResumeFailure | None:
        """Queue retained events after the connection's cursor until it is current.

        Replay is flow-controlled: it queues only what fits in the connection's
        outbound queue, then waits for the socket to drain before reading more, so a
        long replay never trips the slow-consumer limit by itself.
        """
        session, follower = connection.session, connection.follower
        follower.catch_up_started()
        try:
            while session.state is State.OPEN:
                follower.batch_read()
                before = session.cursor
                batch = await self.engine.read_after(
                    connection.user_id, epoch or follower.epoch, session.cursor, HISTORY_BATCH
                )
                if isinstance(batch, ResumeFailure):
                    return batch
                for stored in batch:
                    if stored.offset <= session.cursor:
                        continue  # delivered live while we were reading
                    if not session.has_room(len(stored.frame)):
                        await self._drained(connection)
                        if session.state is not State.OPEN:
                            return None
                    self._admit(connection, stored)
                self._mark_dirty(connection)
                next_step = follower.after_batch(
                    size=len(batch), limit=HISTORY_BATCH, progressed=session.cursor != before
                )
                if next_step is AfterBatch.DONE:
                    return None
                if next_step is AfterBatch.GIVE_UP:
                    # History cannot fill the gap a live event revealed: never spin.
                    log.error(
                        "stream has a gap after offset %d; closing the connection",
                        session.cursor,
                        extra={"connection_id": connection.id},
                    )
                    self.close_connection(
                        connection, CloseCode.INTERNAL_ERROR, "stream inconsistent; reconnect"
                    )
                    return None
                await asyncio.sleep(0)  # every other connection gets its turn between reads
            return None
        finally:
            follower.catch_up_ended()

    async def _drained(self, connection: Connection) -> None:
        """Wait until the connection's queue is written out (or it closes)."""
        self._mark_dirty(connection)
        while connection.session.state is State.OPEN and connection.session.pending:
            if connection.drained is None:
                connection.drained = asyncio.Event()
            connection.drained.clear()
            await connection.drained.wait()

    def _resume_in_band(self, connection: Connection, frame: Resume) -> None:
        decision = connection.follower.in_band(frame, connection.session.cursor)
        if isinstance(decision, ResumeFailed):
            # Live events already went out after `connected`; replaying older ones now
            # would break offset order. Clients resume race-free with ?epoch=&offset=.
            connection.session.send_frame(decision)
            self._mark_dirty(connection)
            return
        self._spawn(connection, self._replay(connection, decision))

    def resync(self, user_id: UserId) -> None:
        """Live delivery may have missed events of ``user_id``: catch its sockets up."""
        for connection in self._by_user.get(user_id, {}).values():
            if connection.session.state is not State.OPEN:
                continue
            if connection.follower.resync() is LiveAction.CATCH_UP:
                self._spawn(connection, self._catch_up_or_follow(connection))
            # else READ_AGAIN: the running catch-up reads history again

    async def _catch_up_or_follow(self, connection: Connection) -> None:
        """:meth:`_keep_up`, for a resync: an engine failure waits for the next one."""
        try:
            await self._keep_up(connection)
        except EngineError as exc:
            # The engine will call resync() again once it is back.
            log.warning("catch-up failed: %s", exc)

    async def _keep_up(self, connection: Connection) -> None:
        """Catch a live connection up from history, whatever history answers.

        The one path for every catch-up of an open connection (after ``connected``, a
        failed replay, a live gap, a resync): if the stream's epoch changed it moves to
        the new one; if history no longer holds what follows the cursor (those events
        were evicted while the connection fell behind, or the stream lost its last
        events) the client gets ``resume_failed`` (``out_of_window`` /
        ``invalid_offset``) and the connection goes on from the stream's head. It never
        stays behind a position history cannot serve (it would get nothing again).
        """
        session, follower = connection.session, connection.follower
        for _ in range(MAX_SKIPS):
            failure = await self._catch_up(connection)
            if failure is None or session.state is not State.OPEN:
                return
            if failure.reason is ResumeFailureReason.EPOCH_CHANGED:
                await self._follow_epoch(connection)
                return
            frame = follower.skip_to_head(failure.reason.value, failure.position.offset)
            session.send_frame(frame)
            session.cursor = frame.offset
            self._mark_dirty(connection)
        log.error(
            "history kept failing under the connection; closing it",
            extra={"connection_id": connection.id},
        )
        self.close_connection(
            connection, CloseCode.INTERNAL_ERROR, "stream inconsistent; reconnect"
        )

    async def _follow_epoch(self, connection: Connection) -> None:
        """The user's stream was lost and restarted (for example Redis restarted).

        The client gets ``resume_failed`` (``epoch_changed``) and must rebuild its view
        of earlier runs from snapshots. The new epoch is delivered from its start when
        its history still holds it (``offset`` 0 in the frame), else from its head.
        While it runs, later events of the new epoch start no second follow (they are
        read from history by this one).
        """
        session, follower = connection.session, connection.follower
        follower.following = True
        try:
            position = await self.engine.position(connection.user_id)
            if position.epoch == follower.epoch or session.state is not State.OPEN:
                return
            probe = await self.engine.read_after(connection.user_id, position.epoch, 0, 1)
            if session.state is not State.OPEN:
                return
            frame = follower.follow(
                position.epoch,
                retained_from_start=not isinstance(probe, ResumeFailure),
                head=position.offset,
            )
            session.send_frame(frame)
            session.cursor = frame.offset
            self._mark_dirty(connection)
        finally:
            follower.following = False
        await self._keep_up(connection)

    def engine_state_changed(self, available: bool) -> None:
        """Tell every open socket whether the engine is available (``engine_status``).

        Sockets stay open: when the engine returns, each subscribed user is resynced
        from history, so nothing within the history window is lost.
        """
        frame = EngineStatus("available" if available else "unavailable")
        for connections in self._by_user.values():
            for connection in connections.values():
                if connection.session.state is State.OPEN:
                    connection.session.send_frame(frame)
                    self._mark_dirty(connection)

    # -- inbound ----------------------------------------------------------------

    def receive(self, connection: Connection, payload: bytes | str) -> None:
        """Feed one client text frame; valid frames are handled once the session is open."""
        connection.session.receive_text(payload, self._clock())
        if connection.session.state is State.OPEN:
            self._handle_frames(connection)
        self._mark_dirty(connection)

    def _handle_frames(self, connection: Connection) -> None:
        if connection.follower.replaying:
            return  # handled when the handshake replay completes, after `resumed`
        for frame in connection.session.frames_received():
            if isinstance(frame, Resume):
                self._resume_in_band(connection, frame)
            elif self._handler is not None:
                self._handler(connection, frame)
        self._mark_dirty(connection)

    # -- delivery ---------------------------------------------------------------

    def deliver(self, stored: StoredEvent) -> Delivery:
        """Queue ``stored`` on every connection of its user, and on no other; say what
        became of it.

        The hot path: the common case (the next event, in the connection's epoch,
        queued) is handled inline; everything else goes through :meth:`_admit`.
        """
        connections = self._by_user.get(stored.user_id)
        if not connections:
            return Delivery(stored.offset)
        queued = skipped = overflowed = 0
        epoch, offset, frame, event = stored.epoch, stored.offset, stored.frame, stored.event
        dirty = self._dirty
        for connection in connections.values():
            if epoch == connection.follower.epoch:
                session = connection.session
                coalesced = session.coalesced
                admission = session.send_event(offset, frame, event)
                if admission is _QUEUED:
                    queued += 1
                    dirty.add(connection)  # queued implies open, so never a closed connection
                    continue
                self._admitted(connection, admission, coalesced, epoch)
            else:
                admission = self._admit(connection, stored)  # not open yet, or another epoch
            if admission is EventAdmission.COALESCED:
                queued += 1
            elif admission is EventAdmission.OVERFLOW:
                overflowed += 1
            else:
                skipped += 1
        if queued:
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)
            self.metrics.delivered.pending += queued
            if len(connections) > 1:
                self._enforce_user_budget(connections)
        return Delivery(offset, queued, skipped, overflowed)

    def _enforce_user_budget(self, connections: dict[ConnectionId, Connection]) -> None:
        """Keep the bytes queued for one user under budget: close the biggest queue (4409)."""
        if len(connections) < 2:
            return  # one connection is bounded by its own queue limits
        total = sum(c.session.pending_bytes for c in connections.values())
        while total > self.user_queue_budget_bytes:
            biggest = max(connections.values(), key=lambda c: c.session.pending_bytes)
            total -= biggest.session.pending_bytes
            biggest.session.close(CloseCode.SLOW_CONSUMER, "user queue budget exceeded")
            self._mark_dirty(biggest)

    def _admit(self, connection: Connection, stored: StoredEvent) -> EventAdmission:
        """Offer ``stored`` to one connection (history replay, and the rare live cases)."""
        session = connection.session
        if stored.epoch != connection.follower.epoch:
            self._act(connection, stored.epoch, EventAdmission.CLOSED)
            return EventAdmission.CLOSED  # not open yet, or another epoch
        coalesced = session.coalesced
        admission = session.send_event(stored.offset, stored.frame, stored.event)
        if admission is not _QUEUED:
            self._admitted(connection, admission, coalesced, stored.epoch)
        return admission

    def _admitted(
        self, connection: Connection, admission: EventAdmission, coalesced: int, epoch: Epoch
    ) -> None:
        """Act on an admission other than a plain ``QUEUED`` (the rare cases)."""
        session = connection.session
        if session.coalesced != coalesced:
            self.metrics.deltas_coalesced.inc(session.coalesced - coalesced)
        if admission is EventAdmission.COALESCED:
            self._mark_dirty(connection)
        elif admission is EventAdmission.OVERFLOW:
            log.info("slow consumer closed", extra={"connection_id": connection.id})
            self._mark_dirty(connection)
        else:
            self._act(connection, epoch, admission)

    def _act(self, connection: Connection, epoch: Epoch, admission: EventAdmission) -> None:
        """Do what the follower decides about a live event the session did not queue."""
        action = connection.follower.live(
            epoch=epoch,
            gap=admission is EventAdmission.GAP,
            is_open=connection.session.state is State.OPEN,
        )
        if action is LiveAction.CATCH_UP:
            self._spawn(connection, self._keep_up(connection))
        elif action is LiveAction.FOLLOW_EPOCH:
            # A newer epoch: the user's stream restarted under this connection.
            connection.follower.following = True  # before its task starts: one follow
            self._spawn(connection, self._follow_epoch(connection))

    # -- writing ----------------------------------------------------------------

    def _mark_dirty(self, connection: Connection) -> None:
        if connection.closed:
            return
        self._dirty.add(connection)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def writable_again(self, connection: Connection) -> None:
        """The transport drained below its low-water mark: write what is queued."""
        self._mark_dirty(connection)

    def flush(self) -> None:
        """Write every dirty connection's queued frames (one transport write each)."""
        self._flush_handle = None
        dirty, self._dirty = self._dirty, set()
        frames_written = writes = 0
        for connection in dirty:
            session = connection.session
            state = session.state
            try:
                if state is _OPEN:
                    writer = connection.writer
                    if writer.writable:
                        frames = session.data_to_send()
                        if frames:
                            writer.write_frames(frames)
                            frames_written += len(frames)
                            writes += 1
                            if connection.drained is not None:
                                connection.drained.set()
                elif state is _CLOSING:
                    if not connection.close_sent:
                        connection.close_sent = True
                        if session.close_code is CloseCode.SLOW_CONSUMER:
                            self.metrics.slow_consumer_closes.inc()  # events, replies or budget
                        connection.writer.close(session.close_code or 1000, session.close_reason)
                    if connection.drained is not None:
                        connection.drained.set()
            except Exception:  # one broken writer must not stop everyone else's writes
                log.exception(
                    "writing to a socket failed; dropping it",
                    extra={"connection_id": connection.id},
                )
                self._drop(connection)
        if writes:
            metrics = self.metrics
            metrics.written.pending += frames_written
            metrics.writes.pending += writes

    @staticmethod
    def _drop(connection: Connection) -> None:
        """Abort the socket of ``connection`` (its close handshake cannot be trusted)."""
        session = connection.session
        session.close(CloseCode.INTERNAL_ERROR, "internal error")
        try:
            connection.writer.abort()
        except Exception:
            log.exception("aborting a socket failed", extra={"connection_id": connection.id})

    def close_connection(self, connection: Connection, code: int, reason: str) -> None:
        """Ask one connection to close with ``code`` (sent on the next flush)."""
        connection.session.close(code, reason)
        self._mark_dirty(connection)

    async def close_all(self, code: CloseCode, reason: str, timeout_s: float) -> None:
        """Refuse new connections, close every connection, wait up to ``timeout_s``."""
        self._closing = True
        for connections in list(self._by_user.values()):
            for connection in list(connections.values()):
                self.close_connection(connection, code, reason)
        self.flush()
        if self._count:
            self._all_closed.clear()
            try:
                await asyncio.wait_for(self._all_closed.wait(), timeout_s)
            except TimeoutError:
                log.warning("connections still open after %.1f s; dropping them", timeout_s)
        for connections in list(self._by_user.values()):
            for connection in list(connections.values()):
                connection.writer.abort()
                self.closed(connection, code)

    def spawn_in_order(self, connection: Connection, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run work for one connection after the work spawned before it (so replies keep
        the order of the client's frames), as a task the connection owns."""
        previous = connection.reply_tail

        async def after_previous() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            await coroutine

        task = self._spawn(connection, after_previous())
        # Cancelled before it ran (the connection closed): `coroutine` never started;
        # close it, or it warns "never awaited" when collected. A no-op otherwise.
        task.add_done_callback(lambda _: coroutine.close())
        connection.reply_tail = task

    def send(self, connection: Connection, frame: msgspec.Struct | None) -> None:
        """Queue a control frame (``None``: only flush what is queued) on one connection."""
        if frame is not None:
            connection.session.send_frame(frame)
        self._mark_dirty(connection)

    # -- background work --------------------------------------------------------

    def _spawn(
        self, connection: Connection | None, coroutine: Coroutine[Any, Any, Any]
    ) -> asyncio.Task[Any]:
        """Run ``coroutine`` as a task owned by ``connection`` (cancelled when it closes)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        owner = connection.tasks if connection is not None else self._background
        owner.add(task)
        task.add_done_callback(lambda done: self._task_done(owner, done))
        return task

    def _task_done(self, owner: set[asyncio.Task[Any]], task: asyncio.Task[Any]) -> None:
        owner.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("connection task failed", exc_info=task.exception())


def create_manager(*, engine: Engine, settings: Settings, metrics: Metrics) -> WebSocketManager:
    """The one factory of :class:`WebSocketManager`, configured from ``settings``."""
    limits = SessionLimits(
        max_frame_bytes=settings.max_frame_bytes,
        max_message_chars=settings.max_message_chars,
        messages_per_s=settings.client_messages_per_s,
        queue_events=settings.outbound_queue_events,
        queue_bytes=settings.outbound_queue_bytes,
    )
    return WebSocketManager(
        engine=engine,
        session_limits=limits,
        max_connections_per_user=settings.max_connections_per_user,
        max_connections=settings.max_connections,
        max_concurrent_runs=settings.max_concurrent_runs_per_user,
        user_queue_budget_bytes=settings.user_queue_budget_bytes,
        metrics=metrics,
        token_policy=TokenPolicy(settings.token_refresh_window_s, settings.auth_leeway_s),
    )
