"""The widget under abuse: deleted inputs, closing mid-run, hammering, and a responsive GUI thread."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import wait_idle
from qtpy.QtCore import QThreadPool, QTimer

from napari_lightfusion import _widget
from napari_lightfusion.fusion import FusionPlan
from napari_lightfusion.layers import FUSED, MARK


def outputs(viewer) -> list:
    return [ly for ly in viewer.layers if MARK in ly.metadata]


@pytest.fixture
def slow_slices(monkeypatch):
    """Make every fused slice take 0.2 s longer, so that there is time to interfere."""
    slow = FusionPlan.run_slice
    calls = []
    monkeypatch.setattr(FusionPlan, "run_slice", lambda self, i: (calls.append(i), time.sleep(0.2), slow(self, i))[2])
    return calls


@pytest.fixture
def errors(monkeypatch):
    """Exceptions that reach the thread hook or napari's error notification during the test."""
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    monkeypatch.setattr(_widget, "show_error", seen.append)
    return seen


def _workers_alive() -> int:
    """Running napari workers (they run in Qt's global thread pool)."""
    return QThreadPool.globalInstance().activeThreadCount()


def test_deleting_an_input_mid_run_leaves_no_stale_layer(lightfusion, stack_pair, qtbot, slow_slices, errors):
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    widget.fuse_btn.click()
    with qtbot.waitSignal(widget._worker.yielded, timeout=10_000):
        pass
    viewer.layers.remove("pet stack")
    wait_idle(qtbot, widget)
    assert outputs(viewer) == []  # the result belonged to a pair that no longer exists
    assert widget.pair()[1] is None or widget.pair()[1].name != "pet stack"
    assert not errors
    viewer.add_image(stack_pair[1], name="pet again", rgb=True)  # still usable
    widget.set_pair(viewer.layers["mri stack"], viewer.layers["pet again"])
    widget.fuse_btn.click()
    wait_idle(qtbot, widget)
    assert FUSED in viewer.layers


def test_hammering_fuse_runs_at_most_one_job_and_one_waiting(lightfusion, colour_pair, qtbot, monkeypatch, errors):
    viewer, widget = lightfusion
    viewer.add_image(colour_pair[0], name="mri")
    viewer.add_image(colour_pair[1], name="pet")
    started = []
    original = widget._start
    monkeypatch.setattr(widget, "_start", lambda kind: (started.append(kind), original(kind)))
    for _ in range(30):
        widget.fuse_btn.click()
    wait_idle(qtbot, widget)
    assert len(started) == 2 and not errors
    assert len(outputs(viewer)) == 5  # fused, 2 surprise, 2 attention: no pile-up


@pytest.mark.parametrize("close", ["viewer", "dock"])
def test_closing_mid_run_stops_the_worker(make_napari_viewer, stack_pair, qtbot, slow_slices, errors, close):
    viewer = make_napari_viewer()
    widget = _widget.LightFusionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="LightFusion")
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    widget.fuse_btn.click()
    with qtbot.waitSignal(widget._worker.yielded, timeout=10_000):
        pass
    assert _workers_alive() == 1
    if close == "viewer":
        viewer.close()
    else:
        viewer.window.remove_dock_widget(widget)
        widget.deleteLater()
    qtbot.waitUntil(lambda: _workers_alive() == 0, timeout=10_000)
    assert len(slow_slices) < stack_pair[0].shape[0]  # stopped between slices, not run to the end
    qtbot.wait(300)  # any late signal of the finished worker arrives now
    assert not errors
    if close == "dock":
        assert [ly for ly in viewer.layers if MARK in ly.metadata] == []


def test_the_gui_thread_is_never_blocked_long_by_a_stack_with_live(lightfusion, stack_pair, qtbot):
    """A 10 ms timer keeps ticking while a stack fuses and the slider moves with Live on.

    The gap between ticks is the longest the GUI thread was busy; our slots
    (layer writes included) must keep it under 100 ms after the first
    result (the first one creates the layers' GL visuals, which is napari's).
    """
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    widget.fuse_btn.click()
    wait_idle(qtbot, widget)  # layers exist; later writes update them in place
    ticks = []
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    widget.live.setChecked(True)
    widget.fuse_btn.click()
    for z in range(stack_pair[0].shape[0]):
        viewer.dims.set_current_step(0, z)
        qtbot.wait(30)
    wait_idle(qtbot, widget)
    timer.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(gaps) > 20
    assert max(gaps) < 0.1, f"GUI thread blocked for {max(gaps) * 1000:.0f} ms"
