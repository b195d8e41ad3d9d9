"""Which events of a user this node has handed on, so each goes on once and in order.

A node gets its users' events two ways: an event it published itself is known as
soon as the publish script answers (delivered *locally*, without waiting), and every
event of a subscribed user comes back through pub/sub (the *echo*), including the
node's own. :class:`LiveOrder` (sans-I/O) decides, per event, whether it goes on:

* per wanted user it holds the ``(epoch, offset)`` of the last event handed on;
* an echo goes on unless that offset (same epoch) was handed on already; it is the
  source of truth: every event of a live subscription echoes, in offset order;
* a local event goes on only when it is the very next offset of the same epoch;
  otherwise (an earlier event, published elsewhere, has not echoed yet, or nothing
  was handed on for the user yet) it waits for its echo. So the listener sees each
  user's offsets increasing, never twice, whichever of the two paths is first.

Memory: one entry per wanted user, dropped by :meth:`forget` when the node's last
socket of the user goes.
"""

from __future__ import annotations

from runwire.ids import Epoch, UserId

__all__ = ["LiveOrder"]


class _Last:
    __slots__ = ("epoch", "offset")

    def __init__(self, epoch: Epoch, offset: int) -> None:
        self.epoch = epoch
        self.offset = offset


class LiveOrder:
    """The last offset handed on per user, shared by local delivery and the echo."""

    def __init__(self) -> None:
        self._last: dict[UserId, _Last] = {}

    def local(self, user_id: UserId, epoch: Epoch, offset: int) -> bool:
        """Whether an event this node just stored may be handed on now (it is then
        recorded as handed on)."""
        last = self._last.get(user_id)
        if last is None or last.offset + 1 != offset or last.epoch != epoch:
            return False
        last.offset = offset
        return True

    def echo(self, user_id: UserId, epoch: Epoch, first: int, count: int) -> int:
        """Echoed events at offsets ``first .. first + count - 1``: how many of the
        first ones to skip (handed on already); the rest are recorded as handed on."""
        last = self._last.get(user_id)
        if last is None:
            self._last[user_id] = _Last(epoch, first + count - 1)
            return 0
        if last.epoch != epoch:
            last.epoch, last.offset = epoch, first + count - 1
            return 0
        skip = min(max(last.offset - first + 1, 0), count)
        if skip < count:
            last.offset = first + count - 1
        return skip

    def forget(self, user_id: UserId) -> None:
        """The node no longer wants ``user_id``'s events."""
        self._last.pop(user_id, None)

    def __len__(self) -> int:
        return len(self._last)
