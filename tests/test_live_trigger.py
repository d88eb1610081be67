"""When Live fuses: a slider step after a pause at once, everything else once the user pauses."""

from __future__ import annotations

import pytest

from napari_lightfusion._qt.live import LiveTrigger


@pytest.fixture
def trigger(qtbot):
    """A LiveTrigger counting its jobs, with a settable slice on view and idle state."""
    state = {"fired": 0, "slice": 3, "idle": True}

    def fire():
        state["fired"] += 1

    live = LiveTrigger(fire, lambda: state["slice"], lambda: state["idle"])
    yield live, state
    live.stop()


def _quiet(qtbot, live):
    qtbot.waitUntil(lambda: not live.pending, timeout=5_000)


def test_a_step_after_a_pause_fuses_at_once_and_not_again_for_the_same_slice(qtbot, trigger):
    live, state = trigger
    live.stepped()
    assert state["fired"] == 1 and live.pending  # at once, not after the debounce
    _quiet(qtbot, live)
    assert state["fired"] == 1  # the window's end: that slice is already fused


def test_steps_during_the_window_fuse_the_slice_where_the_slider_rests(qtbot, trigger):
    live, state = trigger
    live.stepped()
    state["slice"] = 4
    live.stepped()
    state["slice"] = 5
    live.stepped()
    assert state["fired"] == 1
    _quiet(qtbot, live)
    assert state["fired"] == 2


@pytest.mark.parametrize("what", ["a change", "a step while a job runs"])
def test_is_debounced_one_job_after_the_pause(qtbot, trigger, what):
    live, state = trigger
    if what == "a change":
        live.changed()
    else:
        state["idle"] = False
        live.stepped()
    assert state["fired"] == 0 and live.pending
    _quiet(qtbot, live)
    assert state["fired"] == 1


def test_a_change_after_a_step_fuses_the_same_slice_again(qtbot, trigger):
    live, state = trigger
    live.stepped()
    live.changed()  # e.g. a contrast drag right after the step
    assert state["fired"] == 1
    _quiet(qtbot, live)
    assert state["fired"] == 2


def test_stop_drops_the_job_to_come(qtbot, trigger):
    live, state = trigger
    live.changed()
    live.stop()
    assert not live.pending
    qtbot.wait(250)  # past the debounce: a timer that was not stopped would have fired by now
    assert state["fired"] == 0
