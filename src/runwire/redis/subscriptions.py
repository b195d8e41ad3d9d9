"""Which users a node must receive, and which of them its subscription really has.

:class:`SubscriptionSet` is sans-I/O: it sends and reads nothing. The Redis engine
owns one and is its only writer; every subscribe, unsubscribe and re-subscribe is
derived from it:

* ``add`` / ``remove`` count the node's sockets per user (the *wanted* users);
* ``changes`` gives the commands that bring the subscription connection to the
  wanted set, and records them as sent;
* ``replied`` records each reply the server sends for one channel, in order;
* ``reset`` forgets the connection (it was lost): nothing is confirmed any more,
  and the next ``changes`` subscribes every wanted user again.

A user is *live* when it is wanted, its channel is confirmed by the server, and no
command for it is still unanswered: from then on every publish on its channel
reaches the node. ``in_sync`` says the confirmed channels equal the wanted users.
Because a change made while commands are in flight is only a new difference,
nothing asked during a (re-)subscribe is lost.
"""

from __future__ import annotations

from runwire.ids import UserId

__all__ = ["SubscriptionSet"]


class SubscriptionSet:
    """Wanted users (counted) versus the channels one connection has confirmed."""

    def __init__(self) -> None:
        self._counts: dict[UserId, int] = {}
        self._sent: set[UserId] = set()
        """Subscribed once every command sent so far has been processed."""
        self._confirmed: set[UserId] = set()
        """Subscribed as of the last reply read."""
        self._in_flight: dict[UserId, int] = {}
        """Commands sent per user whose reply has not been read yet."""
        self._changed: set[UserId] = set()
        """Users that became wanted or unwanted since the last :meth:`changes`."""

    # -- wanted users -------------------------------------------------------------

    def add(self, user_id: UserId) -> None:
        """One more socket of ``user_id`` on this node."""
        count = self._counts.get(user_id, 0)
        self._counts[user_id] = count + 1
        if not count:
            self._changed.add(user_id)

    def remove(self, user_id: UserId) -> bool:
        """One socket fewer; ``True`` when that was the user's last one (no longer
        wanted). Removing a user that is not wanted does nothing."""
        count = self._counts.get(user_id, 0)
        if count > 1:
            self._counts[user_id] = count - 1
            return False
        if self._counts.pop(user_id, None) is None:
            return False
        self._changed.add(user_id)
        return True

    def __contains__(self, user_id: object) -> bool:
        """Whether the node wants ``user_id``'s events."""
        return user_id in self._counts

    def users(self) -> list[UserId]:
        """Every wanted user."""
        return list(self._counts)

    @property
    def count(self) -> int:
        """Sockets counted over all users."""
        return sum(self._counts.values())

    def __len__(self) -> int:
        """Wanted users."""
        return len(self._counts)

    # -- the connection -----------------------------------------------------------

    def changes(self) -> tuple[list[UserId], list[UserId]]:
        """``(subscribe, unsubscribe)``: the users whose channel must be subscribed or
        unsubscribed so the server ends with exactly the wanted users. They are
        recorded as sent: the caller sends them now, on the current connection, in
        this order (or, if it cannot, loses the connection and calls :meth:`reset`)."""
        changed, self._changed = self._changed, set()
        subscribe = [u for u in changed if u in self._counts and u not in self._sent]
        unsubscribe = [u for u in changed if u not in self._counts and u in self._sent]
        self._sent.update(subscribe)
        self._sent.difference_update(unsubscribe)
        for user_id in (*subscribe, *unsubscribe):
            self._in_flight[user_id] = self._in_flight.get(user_id, 0) + 1
        return subscribe, unsubscribe

    def replied(self, user_id: UserId, subscribed: bool) -> bool:
        """The server answered one command for ``user_id`` (``subscribe`` or
        ``unsubscribe``); replies come in the order the commands were sent. ``True``
        when this made the user live."""
        waiting = self._in_flight.get(user_id, 0)
        if waiting <= 1:
            self._in_flight.pop(user_id, None)
        else:
            self._in_flight[user_id] = waiting - 1
        if subscribed:
            self._confirmed.add(user_id)
        else:
            self._confirmed.discard(user_id)
        return self.live(user_id)

    def awaiting(self, user_id: UserId) -> bool:
        """Whether a command for ``user_id`` is still unanswered (a reply for a user
        that is not awaiting one came from the server unasked: a ``sunsubscribe`` sent
        because the user's slot moved to another shard)."""
        return user_id in self._in_flight

    def counts(self) -> dict[UserId, int]:
        """Sockets per wanted user (to hand the users on to another connection)."""
        return dict(self._counts)

    def live(self, user_id: UserId) -> bool:
        """Wanted, confirmed, and no command for it unanswered."""
        return (
            user_id in self._counts
            and user_id in self._confirmed
            and user_id not in self._in_flight
        )

    @property
    def in_sync(self) -> bool:
        """Nothing to send, nothing unanswered: the confirmed channels are exactly the
        wanted users."""
        return not self._in_flight and all(
            (user in self._counts) == (user in self._sent) for user in self._changed
        )

    def reset(self) -> None:
        """The connection is gone: nothing is subscribed or in flight any more (the
        wanted users stay, and the next :meth:`changes` subscribes them all)."""
        self._sent.clear()
        self._confirmed.clear()
        self._in_flight.clear()
        self._changed = set(self._counts)

    def missing(self) -> list[UserId]:
        """Wanted users that are not live."""
        return [user for user in self._counts if not self.live(user)]
