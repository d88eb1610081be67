"""The LightFusion dock widget in a real napari viewer (run under Xvfb): what it computes and writes.

Every fusion runs in a worker thread; tests wait for it with qtbot.waitUntil
and drive the widget through its scripting surface (``set_pair``, ``fuse``,
``compare``, ``busy``, ``results_written``). The bundled weights may be
placeholders: nothing here judges fusion quality, only that the widget
shows exactly what the Qt-free functions compute. What a user sees (default
view, names, labels, progress, stale state) is in test_widget_view.py. A
fusion computes the maps only while one is shown: tests of maps pick one
first (:func:`show_map`).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QFileDialog

from napari_lightfusion import fuse, plan_fusion
from napari_lightfusion._qt import widget as widget_module
from napari_lightfusion.baselines import fuse_baseline
from napari_lightfusion.fusion import FusionPlan
from napari_lightfusion.metric_registry import ROWS, TIME
from napari_lightfusion.metrics import METRICS, evaluate, hot_spot_scores
from napari_lightfusion.resample import resample
from napari_lightfusion.session.jobs import NETWORK
from napari_lightfusion.session.layer_io import grid_of
from napari_lightfusion.session.table_text import to_tsv
from napari_lightfusion.weights import WeightError


def show_map(widget, text: str = "attention: functional") -> None:
    """Pick a map in "Show map" (before a Fuse: the Fuse computes the maps)."""
    widget.show_map.setCurrentIndex(widget_module.MAP_TEXT.index(text))


def assert_shown(data, want, atol: float) -> None:
    """A map layer as the widget shows it: the network's map inside the object, NaN elsewhere (issue 23)."""
    shown = np.isfinite(data)
    assert shown.any() and not shown.all()  # the edges, at least, show no map
    np.testing.assert_allclose(np.asarray(data)[shown], np.asarray(want)[shown], atol=atol)


def test_manifest_docks_the_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-lightfusion", "LightFusion")
    assert isinstance(widget, widget_module.LightFusionWidget)
    assert widget.device.itemText(0) == "auto"
    assert widget.channel.count() == 17  # mean + 16 channels


def test_grey_pair_fuses_what_is_seen(lightfusion, grey_pair, qtbot, outputs, fingerprint, fuse_now, role, wait_idle):
    viewer, widget = lightfusion
    a = viewer.add_image(grey_pair[0], name="mri", contrast_limits=(20, 200), scale=(0.5, 0.7), translate=(3, -2))
    b = viewer.add_image(
        grey_pair[1], name="ct", contrast_limits=(0, 500), visible=False, scale=(0.5, 0.7), translate=(3, -2)
    )  # the same grid in the world: fused pixel by pixel
    widget.set_pair(a, b)
    before = [fingerprint(a), fingerprint(b)]
    fuse_now(widget)
    assert [ly.name for ly in outputs(viewer)] == ["mri + ct · CT-MRI"]  # no map on show: the fused image alone
    show_map(widget)  # a map picked after the fusion: the maps are computed now
    assert widget.busy
    wait_idle(widget)
    expected = fuse(grey_pair[0], grey_pair[1], "CT-MRI", "auto", a_limits=(20, 200), b_limits=(0, 500), maps=True)
    fused = role(viewer, "fused")
    assert not fused.rgb and fused.name == "mri + ct · CT-MRI"
    np.testing.assert_allclose(fused.data, expected.fused, atol=1e-6)
    np.testing.assert_allclose(fused.scale, a.scale)
    np.testing.assert_allclose(fused.translate, a.translate)
    names = {ly.name for ly in outputs(viewer)}
    assert names == {
        "mri + ct · CT-MRI",
        "grey · mri · mri + ct · CT-MRI",
        "mix weight · mri 1, ct 0 · mri + ct · CT-MRI",
    } | {f"{k} · {n} · mri + ct · CT-MRI" for k in ("surprise", "attention") for n in ("mri", "ct")}
    att = role(viewer, "attention:1")
    assert_shown(att.data, expected.attention[1], atol=1e-6)
    assert att.colormap.name == "inferno" and role(viewer, "surprise:1").colormap.name == "magma"
    assert role(viewer, "backdrop").data is a.data  # the maps' backdrop is the input's own data, no copy
    assert [fingerprint(a), fingerprint(b)] == before
    hidden = [row for r, row in enumerate(ROWS) if widget.table.isRowHidden(r)]
    assert hidden == ["anatomy kept", "function kept"]  # a grey pair has no hot spot rows, not "nan"


def test_colour_pair_twice_updates_layers_in_place(lightfusion, colour_pair, qtbot, fingerprint, fuse_now, role):
    viewer, widget = lightfusion
    a = viewer.add_image(colour_pair[0], name="mri")
    b = viewer.add_image(colour_pair[1], name="pet")
    before = [fingerprint(a), (b.data.tobytes(), b.visible)]
    fuse_now(widget)
    first = list(viewer.layers)
    fused = role(viewer, "fused")
    assert fused.rgb and fused.data.shape == (64, 64, 3)
    expected = fuse(*colour_pair, "PET-MRI", "auto", a_limits=tuple(a.contrast_limits), b_rgb=True)
    np.testing.assert_allclose(fused.data, expected.fused, atol=1e-6)
    fuse_now(widget)
    assert list(viewer.layers) == first and len(first) == 3  # same objects, no "[1]" (no map on show: no maps)
    assert [fingerprint(a), (b.data.tobytes(), b.visible)] == before


def test_stack_is_fused_whole(lightfusion, stack_pair, qtbot, fuse_now, role):
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    show_map(widget)
    fuse_now(widget)
    expected = fuse(*stack_pair, "PET-MRI", "auto", a_limits=(0.0, 255.0), b_rgb=True)
    fused = role(viewer, "fused")
    assert fused.data.shape == (5, 48, 48, 3)
    np.testing.assert_allclose(fused.data, expected.fused, atol=1e-6)
    assert role(viewer, "attention:1").data.shape == (5, 48, 48)


def test_metric_table_shows_evaluate(lightfusion, colour_pair, qtbot, tmp_path, monkeypatch, fuse_now):
    viewer, widget = lightfusion
    viewer.add_image(colour_pair[0], name="mri")
    viewer.add_image(colour_pair[1], name="pet")
    widget.baseline.setCurrentText("max")
    fuse_now(widget)
    plan = plan_fusion(*colour_pair, "PET-MRI", a_limits=(0.0, 255.0), b_rgb=True)
    anat, func = plan.pair.anatomical[0] * 255, plan.pair.functional[0] * 255
    want = {
        NETWORK: evaluate(plan.run_slice(0).fused * 255, anat, func),
        "max": evaluate(fuse_baseline("max", *colour_pair) * 255, anat, func),
    }
    headers = [widget.table.horizontalHeaderItem(c).toolTip() for c in range(widget.table.columnCount())]
    assert headers == [NETWORK, "max"]
    for c, column in enumerate(headers):
        for r, metric in enumerate(METRICS):
            shown = widget.table.item(r, c).data(Qt.ItemDataRole.UserRole)
            np.testing.assert_allclose(shown, want[column][metric], rtol=1e-5, atol=1e-6, err_msg=metric)
    time_cell = widget.table.item(ROWS.index(TIME), 0).data(Qt.ItemDataRole.UserRole)
    assert widget.table.rowCount() == len(ROWS) and time_cell > 0
    hot = hot_spot_scores(plan.run_slice(0).fused * 255, anat, func)  # a colour pair: the hot-spot rows show
    for name, value in hot.items():
        r = ROWS.index(name)
        assert not widget.table.isRowHidden(r)
        np.testing.assert_allclose(widget.table.item(r, 0).data(Qt.ItemDataRole.UserRole), value, rtol=1e-5)
    widget.copy_btn.click()
    assert QApplication.clipboard().text() == to_tsv(widget.table_data)
    target = tmp_path / "metrics.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    widget.csv_btn.click()
    lines = target.read_text().splitlines()
    assert lines[0] == f"metric,{NETWORK},max" and len(lines) == len(ROWS) + 1


def _held_after_one_slice(qtbot, widget, held) -> None:
    """Wait until the first slice is done (and shown) and the second waits at the gate ``held``."""
    qtbot.waitUntil(lambda: held.held and widget.progress.bar.value() >= 1, timeout=60_000)


def test_cancel_mid_stack_leaves_layers_as_they_were(
    lightfusion, stack_pair, qtbot, outputs, wait_idle, fuse_now, role, gate
):
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    fuse_now(widget)
    fused = role(viewer, "fused")
    kept = fused.data.copy()
    held = gate(FusionPlan, "run_slice")  # slice 0 goes through, slice 1 waits until the cancel is in
    widget.channel.setCurrentIndex(4)  # another channel: a different result if it got through
    widget.fuse()
    _held_after_one_slice(qtbot, widget, held)
    widget.cancel_btn.click()
    held.open()
    wait_idle(widget)
    assert role(viewer, "fused") is fused and len(outputs(viewer)) == 1  # the fused image (no map on show)
    np.testing.assert_array_equal(fused.data, kept)
    assert "Cancelled" in widget.status.text()


def test_cancel_before_first_result_adds_no_layer(lightfusion, stack_pair, qtbot, outputs, wait_idle, gate):
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    held = gate(FusionPlan, "run_slice")
    widget.fuse()
    _held_after_one_slice(qtbot, widget, held)
    widget.cancel()
    held.open()
    wait_idle(widget)
    assert outputs(viewer) == []


def test_a_pair_on_other_grids_fuses_on_the_anatomical_grid_and_offers_a_resample(
    lightfusion, colour_pair, qtbot, notes, outputs, wait_idle, fingerprint, fuse_now, role
):
    viewer, widget = lightfusion
    a = viewer.add_image(colour_pair[0], name="mri")
    b = viewer.add_image(colour_pair[1][::2, ::2].copy(), name="pet", scale=(2.0, 2.0))  # half the pixels
    before = fingerprint(b)
    assert "Fuse resamples it onto the grid of 'mri'" in widget.status.text()
    assert widget.resample_btn.isVisibleTo(widget)
    fuse_now(widget)
    fused = role(viewer, "fused")
    assert fused.data.shape == (64, 64, 3) and not notes["warning"] and fingerprint(b) == before
    on_grid = resample(colour_pair[1][::2, ::2], np.diag([2.0, 2.0, 1.0]), (64, 64), np.eye(3), rgb=True)
    np.testing.assert_allclose(fused.data, fuse(colour_pair[0], on_grid, "PET-MRI").fused, atol=1e-5)
    widget.resample_btn.click()
    wait_idle(widget)
    new = viewer.layers["pet resampled"]
    assert new.rgb and new.data.shape == (64, 64, 3) and new.data.dtype == np.uint8
    assert widget.pair() == (a, new) and fingerprint(b) == before
    assert not widget.resample_btn.isVisibleTo(widget)


def test_different_dimensionality_is_a_clear_error(
    lightfusion, colour_pair, stack_pair, qtbot, notes, outputs, fuse_now, role
):
    viewer, widget = lightfusion
    a = viewer.add_image(colour_pair[0], name="mri")
    s = viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    widget.set_pair(a, s)
    fuse_now(widget)
    assert notes["error"] and "2D" in notes["error"][0] and "3D" in notes["error"][0]
    assert outputs(viewer) == []
    widget.set_pair(viewer.add_image(colour_pair[1], name="pet"), a)  # still usable
    fuse_now(widget)
    assert role(viewer, "fused") is not None


def test_weight_errors_are_notified_not_raised(
    lightfusion, colour_pair, qtbot, notes, monkeypatch, outputs, wait_idle, fuse_now, role
):
    viewer, widget = lightfusion
    viewer.add_image(colour_pair[0], name="mri")
    viewer.add_image(colour_pair[1], name="pet")
    wait_idle(widget)

    def broken(*args, **kwargs):
        raise WeightError("weight file PET-MRI.pt does not match the sha256 in its sidecar")

    monkeypatch.setattr("napari_lightfusion.fusion.model_for", broken)
    fuse_now(widget)
    assert notes["error"] == ["LightFusion: weight file PET-MRI.pt does not match the sha256 in its sidecar"]
    assert outputs(viewer) == [] and widget.fuse_btn.isEnabled()
    monkeypatch.undo()
    fuse_now(widget)
    assert role(viewer, "fused") is not None


def _pick_channel(widget, k: int | None) -> None:
    """Choose Map channel ``k`` (None: the mean) as a user's pick does."""
    index = widget.channel.findData(k)
    widget.channel.setCurrentIndex(index)
    widget.channel.activated.emit(index)


def test_channel_choice_switches_the_maps_at_once_without_a_fusion(lightfusion, colour_pair, qtbot, fuse_now, role):
    viewer, widget = lightfusion
    a = viewer.add_image(colour_pair[0], name="mri")
    viewer.add_image(colour_pair[1], name="pet")
    show_map(widget)
    fuse_now(widget)
    att, sur = role(viewer, "attention:0"), role(viewer, "surprise:1")
    started = widget.jobs_started
    for k in (3, None):
        _pick_channel(widget, k)
        assert not widget.busy and widget.jobs_started == started  # no job: the kept maps are shown
        expected = fuse(*colour_pair, "PET-MRI", "auto", channel=k, a_limits=tuple(a.contrast_limits), maps=True)
        assert role(viewer, "attention:0") is att and role(viewer, "surprise:1") is sur  # in place
        assert_shown(att.data, expected.attention[0], atol=1e-5)
        assert_shown(sur.data, expected.surprise[1], atol=1e-5)


def test_channel_choice_on_a_stack_switches_the_displayed_slice_at_once(
    lightfusion, stack_pair, qtbot, wait_idle, fuse_now, role
):
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    viewer.dims.set_current_step(0, 2)
    show_map(widget)
    fuse_now(widget)
    att = role(viewer, "attention:1")
    before = att.data.copy()
    started = widget.jobs_started
    _pick_channel(widget, 5)
    assert not widget.busy and widget.jobs_started == started
    plan = plan_fusion(*stack_pair, "PET-MRI", channel=5, a_limits=(0.0, 255.0), b_rgb=True, maps=True)
    assert_shown(att.data[2], plan.run_slice(2).attention[1], atol=1e-5)
    np.testing.assert_array_equal(att.data[0], before[0])  # other slices wait for the next Fuse
    assert "slice 2" in widget.status.text()
    viewer.dims.set_current_step(0, 0)  # another slice than the kept one: the network runs again
    _pick_channel(widget, 1)
    assert widget.busy
    wait_idle(widget)
    assert_shown(
        att.data[0],
        plan_fusion(*stack_pair, "PET-MRI", channel=1, a_limits=(0.0, 255.0), b_rgb=True, maps=True)
        .run_slice(0)
        .attention[1],
        atol=1e-5,
    )


def test_live_follows_the_slider_and_contrast(lightfusion, stack_pair, qtbot, outputs, wait_idle, role):
    viewer, widget = lightfusion
    a = viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    viewer.dims.set_current_step(0, 1)
    widget.live.setChecked(True)
    qtbot.waitUntil(lambda: role(viewer, "fused") is not None and widget.live_slice == 1, timeout=30_000)
    wait_idle(widget)
    fused = role(viewer, "fused")
    assert fused.data.shape == (5, 48, 48, 3)
    plan = plan_fusion(*stack_pair, "PET-MRI", a_limits=(0.0, 255.0), b_rgb=True)
    np.testing.assert_allclose(fused.data[1], plan.run_slice(1).fused, atol=1e-6)
    assert not fused.data[3].any()
    started = widget.jobs_started
    viewer.dims.set_current_step(0, 3)
    assert widget.jobs_started == started + 1  # a step after a pause fuses at once, not after the debounce
    qtbot.waitUntil(lambda: widget.live_slice == 3, timeout=30_000)
    wait_idle(widget)
    assert widget.jobs_started == started + 1  # ... and the window's end does not fuse that slice again
    assert role(viewer, "fused") is fused and len(outputs(viewer)) == 1  # Live computes no map none shows
    np.testing.assert_allclose(fused.data[3], plan.run_slice(3).fused, atol=1e-6)
    a.contrast_limits = (0, 120)  # a contrast change re-fuses the current slice
    replan = plan_fusion(*stack_pair, "PET-MRI", a_limits=(0.0, 120.0), b_rgb=True)
    want = replan.run_slice(3).fused
    qtbot.waitUntil(lambda: np.allclose(fused.data[3], want, atol=1e-6), timeout=30_000)


def test_a_newer_live_slice_stops_the_one_holding_its_metric_table(lightfusion, stack_pair, qtbot, wait_idle):
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    wait_idle(widget)
    holding = [True]
    widget.jobs.hold = lambda: holding[0]  # every Live job holds its table until told: only a newer slice stops it
    widget.live.setChecked(True)
    first = viewer.dims.current_step[0]
    qtbot.waitUntil(lambda: widget.live_slice == first and widget.session.job is not None, timeout=30_000)
    started, other = widget.jobs_started, (first + 2) % 5
    viewer.dims.set_current_step(0, other)  # the job still runs (holding): this slice waits out the debounce
    qtbot.waitUntil(lambda: widget.live_slice == other, timeout=30_000)
    assert widget.jobs_started == started + 1 and "cancel" not in widget.status.text().lower()
    holding[0] = False
    wait_idle(widget)
    assert widget.table.columnCount() == 2  # the newer slice's table, once nothing more may come


def test_requests_never_queue_up(lightfusion, colour_pair, qtbot, monkeypatch, wait_idle):
    viewer, widget = lightfusion
    viewer.add_image(colour_pair[0], name="mri")
    viewer.add_image(colour_pair[1], name="pet")
    wait_idle(widget)
    before = widget.jobs_started
    widget.live.setChecked(True)
    for step in range(20):  # a burst of contrast drags
        viewer.layers["mri"].contrast_limits = (0, 255 - step)
        if step == 10:  # one debounced request fires in the middle
            qtbot.waitUntil(lambda: widget.jobs_started > before, timeout=10_000)
    wait_idle(widget)
    assert 1 <= widget.jobs_started - before <= 2


def test_compare_adds_baselines_in_a_labelled_grid(lightfusion, colour_pair, qtbot, wait_idle, role):
    viewer, widget = lightfusion
    other = viewer.add_image(colour_pair[0][::2, ::2], name="another image")  # an unrelated visible layer
    mri = viewer.add_image(colour_pair[0], name="mri")
    pet = viewer.add_image(colour_pair[1], name="pet")
    widget.baseline.setCurrentText("laplacian")
    widget.compare()
    wait_idle(widget)
    assert grid_of(viewer).enabled and not other.visible  # it would be an unlabelled tile
    baseline = role(viewer, "baseline:laplacian")
    assert baseline.name == "laplacian · mri + pet"
    np.testing.assert_allclose(baseline.data, fuse_baseline("laplacian", *colour_pair), atol=1e-5)
    visible = [ly for ly in viewer.layers if ly.visible]
    assert visible == [mri, pet, role(viewer, "fused"), baseline]  # the tiles, in order
    assert all(ly.name_overlay.visible for ly in visible)
    grid_of(viewer).enabled = False  # back to one view: the labels go, the other layer comes back
    assert not any(ly.name_overlay.visible for ly in viewer.layers) and other.visible
    grid_of(viewer).enabled = True
    widget.compare()
    wait_idle(widget)
    assert role(viewer, "baseline:laplacian") is baseline and len(viewer.layers) == 5  # 3 inputs, fused, baseline


def test_save_screenshot_writes_a_picture(make_napari_viewer, colour_pair, qtbot, tmp_path, monkeypatch, fuse_now):
    from skimage.io import imread

    viewer = make_napari_viewer(show=True)  # a hidden canvas is never drawn
    widget = widget_module.LightFusionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    viewer.add_image(colour_pair[0], name="mri")
    viewer.add_image(colour_pair[1], name="pet")
    fuse_now(widget)
    target = tmp_path / "shot.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    widget.shot_btn.click()
    assert imread(target)[..., :3].std() > 0


def test_view_command_opens_the_sample_with_the_widget_docked(make_napari_viewer, monkeypatch):
    import napari

    from napari_lightfusion.cli import main

    viewer = make_napari_viewer()  # the fixture's viewer, so that the fixture cleans it up
    monkeypatch.setattr(napari, "Viewer", lambda *a, **k: viewer)
    monkeypatch.setattr(napari, "run", lambda *a, **k: None)
    assert main(["view"]) == 0
    assert {"phantom MRI", "phantom PET"} <= {ly.name for ly in viewer.layers}
    docked = [w for w in viewer.window.dock_widgets.values() if isinstance(w, widget_module.LightFusionWidget)]
    assert docked
    window = docked[0].window()  # the screen under xvfb is 1600 x 1000: the canvas gets most of the width
    assert window.width() >= 1400 and window.height() >= 900 and docked[0].minimumWidth() < window.width() / 3
