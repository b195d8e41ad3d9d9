"""Heartbeats for every socket of the standalone server, on one timer.

picows can ping each idle connection itself, but it does so with a task sleeping on a
timer per connection: about ten GC-tracked objects per socket, each walked by every
full collection of the garbage collector (tens of milliseconds per 10,000 sockets on
a small VM). :class:`Heartbeats` keeps one heap of deadlines and one loop timer for
all of them: one tracked list per socket.

Contract (docs/protocol.md, section 14):

* A peer from which nothing has been received for ``interval_s`` is sent a Ping
  (``HeartbeatPeer.send_ping``).
* A peer that has not answered with a Pong ``timeout_s`` after its Ping is failed
  (``HeartbeatPeer.heartbeat_failed``: the server closes it with 1001).
* Every complete frame received counts as life for the idle time (a frame still
  arriving does not); only a Pong answers a Ping.
* A socket that is closing is not pinged and leaves the heartbeat (its closing
  handshake has ``close_timeout_s``); one whose check raises leaves it too (logged),
  and the others go on.
* At most ``BATCH`` deadlines are handled per loop callback (the rest on the next
  iteration), so a heap of 100,000 sockets never stalls the loop.

Bound: one heap entry per watched peer, the same list for its life; a peer that is
gone is forgotten (:meth:`Heartbeats.forget` clears its entry's reference to it), and
the entry leaves the heap when its deadline comes, at most ``interval_s`` later.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from typing import Protocol, cast

__all__ = ["BATCH", "HeartbeatPeer", "Heartbeats"]

BATCH = 1000
"""The most deadlines handled in one loop callback."""

log = logging.getLogger(__name__)

_IDLE, _PONG = 0, 1
"""What a deadline checks: idle long enough for a Ping, or the Pong overdue."""


class HeartbeatPeer(Protocol):
    """One socket, as the heartbeats see it (the standalone server's listener)."""

    last_seen: float
    """Loop time when something was last received from the peer."""
    awaiting_pong: bool
    """A Ping was sent and no Pong came yet (the peer clears it on a Pong)."""
    heartbeat_entry: list[object] | None
    """The peer's entry in the heap (set by :class:`Heartbeats`; one list for life)."""

    def send_ping(self) -> bool:
        """Send a Ping frame (empty payload); ``False`` if the socket is closing (its
        closing handshake has a timeout of its own: the heartbeat stops)."""

    def heartbeat_failed(self) -> None:
        """No Pong within the timeout: close the connection (1001)."""


class Heartbeats:
    """The heartbeat deadlines of many peers, on the running loop's one timer.

    Args:
        interval_s: idle time before a Ping.
        timeout_s: time a Ping waits for its Pong.
    """

    def __init__(self, interval_s: float, timeout_s: float) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._heap: list[list[object]] = []
        """Entries ``[deadline, number, kind, peer or None]``, the earliest first."""
        self._numbers = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._checking = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        """The loop's clock (what ``last_seen`` is measured in)."""
        return self._running_loop().time()

    def watch(self, peer: HeartbeatPeer) -> None:
        """Start the heartbeat of ``peer``, idle from now."""
        now = self.now()
        peer.last_seen = now
        peer.awaiting_pong = False
        entry: list[object] = [0.0, 0, _IDLE, peer]
        peer.heartbeat_entry = entry
        self._push(entry, now + self.interval_s, _IDLE)

    @staticmethod
    def forget(peer: HeartbeatPeer) -> None:
        """``peer`` is gone: its entry leaves the heap when due, without calling it
        (and without holding it meanwhile)."""
        entry = peer.heartbeat_entry
        if entry is not None:
            entry[3] = None
            peer.heartbeat_entry = None

    @property
    def watched(self) -> int:
        """Peers with a heartbeat now (O(n): for tests and stats, not hot paths)."""
        return sum(1 for entry in self._heap if entry[3] is not None)

    def __len__(self) -> int:
        """Entries in the heap (watched peers, and forgotten ones not yet due)."""
        return len(self._heap)

    def close(self) -> None:
        """Stop: no more Pings or timeouts for anyone."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for entry in self._heap:
            entry[3] = None
        self._heap.clear()

    # -- the heap ---------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _push(self, entry: list[object], deadline: float, kind: int) -> None:
        entry[0], entry[1], entry[2] = deadline, next(self._numbers), kind
        heapq.heappush(self._heap, entry)
        if not self._checking and (self._timer is None or deadline < self._timer_at):
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._running_loop().call_at(deadline, self._due)

    def _due(self) -> None:
        self._timer = None
        heap = self._heap
        now = self.now()
        self._checking = True
        try:
            for _ in range(BATCH):
                if not heap or cast(float, heap[0][0]) > now:
                    break
                entry = heapq.heappop(heap)
                peer = cast("HeartbeatPeer | None", entry[3])
                if peer is None:
                    continue
                try:
                    self._check(now, entry, peer)
                except Exception:  # one broken socket must not stop everyone's heartbeat
                    log.exception("heartbeat of a socket failed; it gets no more")
                    self.forget(peer)
        finally:
            self._checking = False
            if heap:
                # Ones still due wait one loop iteration (the rest of the loop goes first).
                self._arm(max(cast(float, heap[0][0]), now))

    def _check(self, now: float, entry: list[object], peer: HeartbeatPeer) -> None:
        if entry[2] == _IDLE:
            idle_until = peer.last_seen + self.interval_s
            if idle_until > now:  # something arrived meanwhile
                self._push(entry, idle_until, _IDLE)
                return
            peer.awaiting_pong = True
            if not peer.send_ping():
                self.forget(peer)
                return
            self._push(entry, now + self.timeout_s, _PONG)
        elif peer.awaiting_pong:
            self.forget(peer)
            peer.heartbeat_failed()
        else:
            self._push(entry, max(peer.last_seen + self.interval_s, now), _IDLE)
