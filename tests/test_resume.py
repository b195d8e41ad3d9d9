"""Every resume decision, without sockets: runwire.resume.StreamFollower."""

from __future__ import annotations

import pytest

from runwire.events import Resume, Resumed, ResumeFailed
from runwire.ids import Epoch
from runwire.resume import (
    MAX_STALLED_READS,
    AfterBatch,
    LiveAction,
    ReplayStart,
    ResumeRequest,
    StreamFollower,
)

E1, E2 = Epoch("e1"), Epoch("e2")


def follower(offset: int = 10) -> StreamFollower:
    state = StreamFollower()
    assert state.connected(E1, offset) == offset
    return state


# -- replay -----------------------------------------------------------------------------


def test_a_replay_in_the_same_epoch_rewinds_to_the_clients_offset() -> None:
    assert follower().replay_start(ResumeRequest(E1, 4), head=10) == ReplayStart(E1, 4)


def test_a_replay_of_another_epoch_stays_at_the_head() -> None:
    assert follower().replay_start(ResumeRequest(E2, 4), head=10) == ReplayStart(E2, 10)


def test_a_failed_replay_that_sent_nothing_goes_back_to_the_head() -> None:
    failure = ResumeFailed("out_of_window", E1, 10)
    sent, cursor = follower().replay_failed(failure, start=4, cursor=4, head=10)
    assert (sent, cursor) == (failure, 10)


def test_a_replay_overtaken_by_lost_history_goes_on_from_the_frames_offset() -> None:
    for reason, offset in (("out_of_window", 12), ("invalid_offset", 6)):
        failure = ResumeFailed(reason, E1, offset)
        assert follower().replay_failed(failure, start=4, cursor=7, head=10)[1] == offset


def test_a_replay_cut_by_an_epoch_change_keeps_its_place_until_it_follows() -> None:
    failure = ResumeFailed("epoch_changed", E2, 3)
    assert follower().replay_failed(failure, start=4, cursor=7, head=10)[1] == 7


def test_a_successful_replay_says_from_and_to() -> None:
    assert follower().replay_done(ResumeRequest(E1, 4), cursor=10) == Resumed(E1, 4, 10)


# -- in-band resume ---------------------------------------------------------------------


def test_in_band_resume_before_any_live_event_is_replayed() -> None:
    assert follower().in_band(Resume("e1", 3), cursor=10) == ResumeRequest(E1, 3)


def test_in_band_resume_of_another_epoch_before_live_is_replayed() -> None:
    assert follower().in_band(Resume("e2", 3), cursor=10) == ResumeRequest(E2, 3)


def test_in_band_resume_after_live_events_is_refused_live_started() -> None:
    assert follower().in_band(Resume("e1", 3), cursor=12) == ResumeFailed("live_started", E1, 12)


def test_in_band_resume_after_live_asking_nothing_old_is_replayed() -> None:
    assert follower().in_band(Resume("e1", 12), cursor=12) == ResumeRequest(E1, 12)
    assert follower().in_band(Resume("e1", 15), cursor=12) == ResumeRequest(E1, 15)


def test_in_band_resume_of_another_epoch_after_live_is_refused() -> None:
    assert isinstance(follower().in_band(Resume("e2", 15), cursor=12), ResumeFailed)


# -- live events ------------------------------------------------------------------------


def test_a_queued_or_duplicate_event_needs_nothing() -> None:
    assert follower().live(epoch=E1, gap=False, is_open=True) is LiveAction.NOTHING


def test_a_gap_starts_a_catch_up() -> None:
    assert follower().live(epoch=E1, gap=True, is_open=True) is LiveAction.CATCH_UP


def test_a_gap_during_a_catch_up_makes_it_read_again() -> None:
    state = follower()
    state.catch_up_started()
    assert state.live(epoch=E1, gap=True, is_open=True) is LiveAction.READ_AGAIN
    # The running catch-up may not end on a short batch now.
    assert state.after_batch(size=0, limit=256, progressed=True) is AfterBatch.READ_MORE


def test_an_event_of_a_newer_epoch_moves_an_open_connection_to_it() -> None:
    assert follower().live(epoch=E2, gap=False, is_open=True) is LiveAction.FOLLOW_EPOCH


@pytest.mark.parametrize(("is_open", "catching_up"), [(False, False), (True, True)])
def test_another_epoch_while_not_open_or_catching_up_is_ignored(
    is_open: bool, catching_up: bool
) -> None:
    state = follower()
    if catching_up:
        state.catch_up_started()
    assert state.live(epoch=E2, gap=True, is_open=is_open) is LiveAction.NOTHING


def test_resync_catches_up_or_marks_the_running_catch_up() -> None:
    state = follower()
    assert state.resync() is LiveAction.CATCH_UP
    state.catch_up_started()
    assert state.resync() is LiveAction.READ_AGAIN


# -- the catch-up loop ------------------------------------------------------------------


def test_a_short_batch_ends_the_catch_up_and_a_full_one_reads_more() -> None:
    state = follower()
    state.catch_up_started()
    state.batch_read()
    assert state.after_batch(size=256, limit=256, progressed=True) is AfterBatch.READ_MORE
    state.batch_read()
    assert state.after_batch(size=3, limit=256, progressed=True) is AfterBatch.DONE
    state.catch_up_ended()
    assert not state.catching_up


def test_a_gap_history_cannot_fill_gives_up_instead_of_spinning() -> None:
    """cd924f8: a gap in history made the catch-up loop forever without yielding."""
    state = follower()
    state.catch_up_started()
    outcomes = []
    for _ in range(MAX_STALLED_READS):
        state.batch_read()
        state.live(epoch=E1, gap=True, is_open=True)  # the gap shows up again
        outcomes.append(state.after_batch(size=1, limit=256, progressed=False))
    assert outcomes == [AfterBatch.READ_MORE] * (MAX_STALLED_READS - 1) + [AfterBatch.GIVE_UP]


def test_progress_resets_the_stall_count() -> None:
    state = follower()
    state.catch_up_started()
    for progressed in [False, False, True, False, False]:
        state.batch_read()
        state.live(epoch=E1, gap=True, is_open=True)
        assert state.after_batch(size=1, limit=256, progressed=progressed) is AfterBatch.READ_MORE


# -- epochs -----------------------------------------------------------------------------


def test_following_a_new_epoch_from_its_start_when_retained() -> None:
    state = follower()
    assert state.follow(E2, retained_from_start=True, head=7) == ResumeFailed(
        "epoch_changed", E2, 0
    )
    assert (state.epoch, state.connected_offset) == (E2, 0)


def test_following_a_new_epoch_from_its_head_when_its_start_is_gone() -> None:
    state = follower()
    assert state.follow(E2, retained_from_start=False, head=7).offset == 7
    assert state.connected_offset == 7
