"""The widget under abuse: deleted inputs, closing mid-run, hammering, and a responsive GUI thread."""

from __future__ import annotations

import threading

import pytest
from qtpy.QtCore import QCoreApplication, QThreadPool

from napari_lightfusion._qt import widget as widget_module
from napari_lightfusion.fusion import FusionPlan


@pytest.fixture
def slow_slices(gate):
    """Hold every fused slice after the first at a gate (``.calls``: the slices begun), so that a test can
    interfere mid-stack whatever the machine's speed; it opens the gate (``.open()``) once it has acted."""
    return gate(FusionPlan, "run_slice")


def _held_mid_stack(qtbot, widget, held) -> None:
    """Wait until slice 0 is done (and shown) and slice 1 waits at the gate ``held``."""
    qtbot.waitUntil(lambda: held.held and widget.progress.bar.value() >= 1, timeout=60_000)


@pytest.fixture
def errors(monkeypatch):
    """Exceptions that reach the thread hook or napari's error notification during the test."""
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    monkeypatch.setattr(widget_module, "show_error", seen.append)
    return seen


def _workers_alive() -> int:
    """Running napari workers (they run in Qt's global thread pool)."""
    return QThreadPool.globalInstance().activeThreadCount()


def test_deleting_an_input_mid_run_leaves_no_stale_layer(
    lightfusion, stack_pair, qtbot, slow_slices, errors, outputs, wait_idle
):
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    widget.fuse()
    _held_mid_stack(qtbot, widget, slow_slices)
    viewer.layers.remove("pet stack")
    slow_slices.open()
    wait_idle(widget)
    assert outputs(viewer) == []  # the result belonged to a pair that no longer exists
    assert widget.pair()[1] is None or widget.pair()[1].name != "pet stack"
    assert not errors
    viewer.add_image(stack_pair[1], name="pet again", rgb=True)  # still usable
    widget.set_pair(viewer.layers["mri stack"], viewer.layers["pet again"])
    widget.fuse()
    wait_idle(widget)
    assert len(outputs(viewer)) == 1  # the fused image (no map on show: no maps)


def test_hammering_fuse_runs_at_most_one_job_and_one_waiting(
    lightfusion, colour_pair, qtbot, monkeypatch, errors, outputs, wait_idle
):
    viewer, widget = lightfusion
    viewer.add_image(colour_pair[0], name="mri")
    viewer.add_image(colour_pair[1], name="pet")
    wait_idle(widget)
    before = widget.jobs_started
    for _ in range(30):
        widget.fuse()  # from a script: the button is disabled while a job runs
    wait_idle(widget)
    assert widget.jobs_started - before == 2 and not errors
    assert len(outputs(viewer)) == 1  # one fused image: no pile-up


@pytest.mark.parametrize("close", ["viewer", "dock"])
def test_closing_mid_run_stops_the_worker(
    make_napari_viewer, stack_pair, qtbot, slow_slices, errors, close, outputs, wait_idle
):
    viewer = make_napari_viewer()
    widget = widget_module.LightFusionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="LightFusion")
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    wait_idle(widget)  # the network's warm-up
    widget.fuse()
    _held_mid_stack(qtbot, widget, slow_slices)
    assert _workers_alive() == 1
    with qtbot.waitSignal(widget.jobs.destroyed, timeout=60_000):  # the job runner goes with its dock
        if close == "viewer":
            viewer.close()
        else:
            viewer.window.remove_dock_widget(widget)
            widget.deleteLater()
    slow_slices.open()  # only now: the job has been told to stop
    qtbot.waitUntil(lambda: _workers_alive() == 0, timeout=60_000)
    assert len(slow_slices.calls) < stack_pair[0].shape[0]  # stopped between slices, not run to the end
    QCoreApplication.processEvents()  # the finished worker's queued signals, if any, arrive now
    QCoreApplication.sendPostedEvents()
    assert not errors
    if close == "dock":
        assert outputs(viewer) == []


def test_our_gui_thread_slots_never_block_for_100_ms(lightfusion, stack_pair, qtbot, wait_idle, time_slots):
    """Every slot the widget runs on the GUI thread while a stack fuses and Live follows the slider.

    Measured per call as CPU time of the GUI thread (``time.thread_time``,
    which a busy machine's scheduler does not inflate) under 100 ms, and as
    wall time under 500 ms (a slot that waited for the worker would take
    seconds). The first fusion creates the layers' GL visuals and showing
    each map the first time creates its colour-bar visual (napari's work,
    once per layer); they are not measured.
    """
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    widget.fuse()
    wait_idle(widget)
    widget.show_map.setCurrentIndex(1)  # the maps of the whole stack, computed now
    wait_idle(widget)
    for choice in (2, 3, 4, 0):  # napari builds each map's colour-bar visual once (up to ~0.5 s)
        widget.show_map.setCurrentIndex(choice)
    job_calls = time_slots(widget.jobs, ("submit", "_start", "_on_yielded", "_on_outcome", "_on_finished"))
    widget_calls = time_slots(widget, ("request_live", "_on_map_choice"))
    widget.live.setChecked(True)
    widget.fuse()
    for z in range(stack_pair[0].shape[0]):
        viewer.dims.set_current_step(0, z)
        widget.show_map.setCurrentIndex(z % len(widget_module.MAP_TEXT))  # maps computed while one is shown
        qtbot.waitUntil(lambda z=z: widget.live_slice == z and not widget.busy, timeout=30_000)
    calls = job_calls + widget_calls
    names = {name for name, _, _ in calls}
    assert {"_on_yielded", "_on_outcome", "_start", "_on_map_choice"} <= names
    worst_cpu = max(calls, key=lambda c: c[1])
    worst_wall = max(calls, key=lambda c: c[2])
    assert worst_cpu[1] < 0.1, f"{worst_cpu[0]} took {worst_cpu[1] * 1000:.0f} ms of GUI-thread CPU"
    assert worst_wall[2] < 0.5, f"{worst_wall[0]} blocked the GUI thread for {worst_wall[2] * 1000:.0f} ms"


def test_live_latency_benchmark_measures_every_slider_move(make_napari_viewer):
    from napari_lightfusion.research.bench_live import format_rows, measure

    rows = measure(sizes=(32,), slices=3, make_viewer=lambda: make_napari_viewer(show=True))
    assert rows[0]["moves"] == 3 and 0 < rows[0]["median_ms"] <= rows[0]["max_ms"]
    assert rows[0]["table_ms"] >= rows[0]["median_ms"]  # the table is filled after the layers
    assert "| 32x32 | 3 |" in format_rows(rows)


def test_closing_napari_while_the_network_loads_exits_cleanly(tmp_path):
    """The warm-up starts when the widget opens; quitting at once must not abort the process."""
    import os
    import subprocess
    import sys

    script = tmp_path / "close.py"
    script.write_text(
        "import napari\n"
        "from napari_lightfusion._qt.widget import LightFusionWidget\n"
        "from napari_lightfusion.weights import _cached_model\n"
        "for show in (False, True):\n"
        "    _cached_model.cache_clear()\n"
        "    viewer = napari.Viewer(show=show)\n"
        "    viewer.window.add_dock_widget(LightFusionWidget(viewer))\n"
        "    viewer.close()\n"
        "print('closed')\n"
    )
    run = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_API": os.environ.get("QT_API", "pyqt6")},
    )
    assert run.returncode == 0 and "closed" in run.stdout, run.stderr[-2000:]
    assert "has been deleted" not in run.stderr
