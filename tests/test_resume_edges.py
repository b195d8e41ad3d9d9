"""StreamFollower edges test_resume.py leaves open: the state of a new follower, the
end of a catch-up, and the connection that has not been told its position yet.

Written against the mutants that survived ``make mutate`` (docs/architecture.md,
"Mutation testing").
"""

from __future__ import annotations

from runwire.events import Resume, ResumeFailed
from runwire.ids import Epoch
from runwire.resume import AfterBatch, LiveAction, ResumeRequest, StreamFollower

E1 = Epoch("e1")


def test_a_new_follower_follows_no_epoch_and_runs_nothing() -> None:
    follower = StreamFollower()
    assert follower.epoch == Epoch("")
    assert follower.connected_offset == 0
    assert follower.catching_up is False
    assert follower.replaying is False


def test_a_follower_not_connected_yet_ignores_live_events_of_any_epoch() -> None:
    follower = StreamFollower()
    assert follower.live(epoch=E1, gap=True, is_open=False) is LiveAction.NOTHING


def test_an_in_band_resume_before_connected_moves_nothing_and_is_replayed() -> None:
    assert StreamFollower().in_band(Resume(E1, 3), cursor=0) == ResumeRequest(E1, 3)


def test_a_catch_up_that_ended_is_not_running() -> None:
    follower = StreamFollower()
    follower.connected(E1, 5)
    follower.catch_up_started()
    assert follower.catching_up is True
    follower.catch_up_ended()
    assert follower.catching_up is False
    # With no catch-up running, a gap starts one (rather than asking to read again).
    assert follower.live(epoch=E1, gap=True, is_open=True) is LiveAction.CATCH_UP
    assert follower.resync() is LiveAction.CATCH_UP


def test_a_new_catch_up_forgets_the_previous_ones_stalls_and_misses() -> None:
    follower = StreamFollower()
    follower.connected(E1, 0)
    follower.catch_up_started()
    follower.batch_read()
    follower.after_batch(size=10, limit=10, progressed=False)
    follower.after_batch(size=10, limit=10, progressed=False)
    assert follower.live(epoch=E1, gap=True, is_open=True) is LiveAction.READ_AGAIN
    follower.catch_up_ended()

    follower.catch_up_started()
    follower.batch_read()
    # Two stalls before would make this third one give up; a new catch-up starts at 0.
    assert follower.after_batch(size=10, limit=10, progressed=False) is AfterBatch.READ_MORE
    follower.batch_read()
    assert follower.after_batch(size=3, limit=10, progressed=True) is AfterBatch.DONE


def test_following_a_new_epoch_moves_the_follower_and_leaves_replaying_alone() -> None:
    follower = StreamFollower()
    follower.connected(E1, 4)
    frame = follower.follow(Epoch("e2"), retained_from_start=True, head=9)
    assert frame == ResumeFailed("epoch_changed", Epoch("e2"), 0)
    assert (follower.epoch, follower.connected_offset) == (Epoch("e2"), 0)
    assert follower.replaying is False
