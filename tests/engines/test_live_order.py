"""Local delivery versus the pub/sub echo (:class:`runwire.redis.live.LiveOrder`),
sans-I/O: each offset handed on once, in order, whichever path comes first."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from runwire.ids import Epoch, UserId
from runwire.redis.live import LiveOrder

A = UserId("a")
E1, E2 = Epoch("e1"), Epoch("e2")


def test_nothing_is_handed_on_locally_before_the_first_echo() -> None:
    live = LiveOrder()
    assert live.local(A, E1, 1) is False  # unknown where the user's stream stands
    assert live.echo(A, E1, 1, 1) == 0
    assert live.local(A, E1, 2) is True


def test_an_echo_of_events_handed_on_locally_is_skipped_even_twice() -> None:
    live = LiveOrder()
    live.echo(A, E1, 1, 1)
    assert [live.local(A, E1, o) for o in (2, 3, 4)] == [True, True, True]
    assert live.echo(A, E1, 2, 3) == 3  # late
    assert live.echo(A, E1, 2, 3) == 3  # and duplicated
    assert live.echo(A, E1, 4, 2) == 1  # overlaps: only offset 5 is new
    assert live.local(A, E1, 5) is False  # handed on by the echo already


def test_a_local_event_after_a_gap_waits_for_the_echoes() -> None:
    live = LiveOrder()
    live.echo(A, E1, 1, 1)
    assert live.local(A, E1, 3) is False  # offset 2 came from another node, not here yet
    assert live.echo(A, E1, 2, 1) == 0
    assert live.echo(A, E1, 3, 1) == 0  # so 3 goes on through its echo, after 2


def test_a_new_epoch_starts_over() -> None:
    live = LiveOrder()
    live.echo(A, E1, 1, 5)
    assert live.local(A, E2, 1) is False
    assert live.echo(A, E2, 1, 1) == 0
    assert live.local(A, E2, 2) is True
    assert live.echo(A, E1, 6, 1) == 0  # an old epoch's echo goes on (the manager decides)


def test_forget_drops_the_user() -> None:
    live = LiveOrder()
    live.echo(A, E1, 1, 1)
    live.forget(A)
    assert len(live) == 0
    assert live.local(A, E1, 2) is False


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_interleaving_hands_each_offset_on_once_in_order(data: st.DataObject) -> None:
    """Offsets 1..n; this node published some of them (their local delivery comes at
    any time after the event exists); every offset echoes, in order, possibly several
    times. Whatever the interleaving, the offsets handed on are 1..n, each once."""
    n = data.draw(st.integers(1, 12))
    mine = data.draw(st.sets(st.integers(1, n)))
    live = LiveOrder()
    handed: list[int] = []
    echoed = 0  # echoes 1..echoed arrived
    pending_local = sorted(mine)
    while echoed < n or pending_local:
        choices = []
        if echoed < n:
            choices.append("echo")
        if pending_local:
            choices.append("local")
        if echoed:
            choices.append("repeat")
        step = data.draw(st.sampled_from(choices))
        if step == "echo":
            echoed += 1
            if live.echo(A, E1, echoed, 1) == 0:
                handed.append(echoed)
        elif step == "repeat":
            again = data.draw(st.integers(1, echoed))
            assert live.echo(A, E1, again, 1) == 1
        else:
            offset = pending_local.pop(0)
            if live.local(A, E1, offset):
                handed.append(offset)
    assert handed == list(range(1, n + 1))
