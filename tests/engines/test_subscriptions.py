"""The sans-I/O subscription state of the Redis engine (no server needed)."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from runwire.ids import UserId
from runwire.redis.subscriptions import SubscriptionSet

A, B, C = UserId("a"), UserId("b"), UserId("c")


def confirm(subscriptions: SubscriptionSet, subscribe: list[UserId], unsub: list[UserId]) -> None:
    """The server answers the commands of one ``changes()``, in order."""
    for user in subscribe:
        subscriptions.replied(user, True)
    for user in unsub:
        subscriptions.replied(user, False)


def test_a_user_is_live_only_once_the_server_confirmed_it() -> None:
    subscriptions = SubscriptionSet()
    subscriptions.add(A)
    assert not subscriptions.live(A) and not subscriptions.in_sync
    assert subscriptions.changes() == ([A], [])
    assert not subscriptions.live(A)  # sent, not answered
    assert subscriptions.changes() == ([], [])  # not sent twice
    assert subscriptions.replied(A, True) is True
    assert subscriptions.live(A) and subscriptions.in_sync


def test_subscriptions_are_counted() -> None:
    subscriptions = SubscriptionSet()
    subscriptions.add(A)
    subscriptions.add(A)
    confirm(subscriptions, *subscriptions.changes())
    assert subscriptions.count == 2 and len(subscriptions) == 1
    assert subscriptions.remove(A) is False
    assert subscriptions.changes() == ([], [])  # one socket left: still subscribed
    assert subscriptions.remove(A) is True
    assert A not in subscriptions
    assert subscriptions.changes() == ([], [A])
    assert subscriptions.remove(A) is False  # an extra remove is harmless


def test_a_user_added_while_a_resubscribe_is_in_flight_is_subscribed_too() -> None:
    """The defect of issue #19: a user asked for during the re-subscribe was lost."""
    subscriptions = SubscriptionSet()
    subscriptions.add(A)
    confirm(subscriptions, *subscriptions.changes())
    subscriptions.reset()  # the connection was lost
    resubscribe = subscriptions.changes()
    assert resubscribe == ([A], [])
    subscriptions.add(B)  # a new user's first socket, while SUBSCRIBE a is in flight
    confirm(subscriptions, *resubscribe)
    assert subscriptions.live(A) and not subscriptions.live(B)
    assert not subscriptions.in_sync  # the node knows it is not done
    assert subscriptions.missing() == [B]
    assert subscriptions.changes() == ([B], [])
    subscriptions.replied(B, True)
    assert subscriptions.in_sync and subscriptions.missing() == []


def test_removed_then_added_again_waits_for_the_second_subscribe() -> None:
    subscriptions = SubscriptionSet()
    subscriptions.add(A)
    confirm(subscriptions, *subscriptions.changes())
    subscriptions.remove(A)
    assert subscriptions.changes() == ([], [A])
    subscriptions.add(A)
    assert subscriptions.changes() == ([A], [])
    assert not subscriptions.replied(A, False)  # the UNSUBSCRIBE's reply
    assert subscriptions.replied(A, True)  # only the SUBSCRIBE after it makes A live


def test_reset_forgets_the_connection_but_not_the_users() -> None:
    subscriptions = SubscriptionSet()
    for user in (A, B):
        subscriptions.add(user)
    subscribe, _ = subscriptions.changes()
    subscriptions.replied(A, True)
    subscriptions.reset()
    assert not subscriptions.live(A)
    assert sorted(subscriptions.changes()[0]) == [A, B]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ar!lx"), st.sampled_from([A, B, C])), max_size=60))
def test_any_interleaving_ends_with_confirmed_equal_to_wanted(
    steps: list[tuple[str, UserId]],
) -> None:
    """add / remove / send / answer / lose the connection, in any order: once every
    change is sent and answered, the server holds exactly the wanted users."""
    subscriptions = SubscriptionSet()
    server: set[UserId] = set()  # the channels the server holds
    in_flight: list[tuple[UserId, bool]] = []  # commands sent, in order
    rng = random.Random(len(steps))
    for action, user in steps:
        if action == "a":
            subscriptions.add(user)
        elif action == "r":
            subscriptions.remove(user)
        elif action == "!":
            subscribe, unsubscribe = subscriptions.changes()
            in_flight += [(u, True) for u in subscribe] + [(u, False) for u in unsubscribe]
        elif action == "l" and in_flight:
            for _ in range(rng.randint(1, len(in_flight))):
                target, on = in_flight.pop(0)
                (server.add if on else server.discard)(target)
                subscriptions.replied(target, on)
        elif action == "x":
            subscriptions.reset()
            server.clear()
            in_flight.clear()
        for live in (A, B, C):
            if subscriptions.live(live):
                assert live in server  # live is never a lie
    while True:
        subscribe, unsubscribe = subscriptions.changes()
        in_flight += [(u, True) for u in subscribe] + [(u, False) for u in unsubscribe]
        if not in_flight:
            break
        while in_flight:
            target, on = in_flight.pop(0)
            (server.add if on else server.discard)(target)
            subscriptions.replied(target, on)
    wanted = {user for user in (A, B, C) if user in subscriptions}
    assert subscriptions.in_sync
    assert server == wanted
    assert all(subscriptions.live(user) for user in wanted)
