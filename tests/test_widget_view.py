"""What a user of the widget sees (issue 9): one test per finding, in a real napari viewer under Xvfb.

1 readable default view, 2 nothing overwritten, 3 labelled comparisons and
a table that fits, 4 right guesses, 5 progress and timing, 6 no stale
state, 7 no PyQt5 toast, 8 resampling in world coordinates; plus the
scripting surface, the balance slider, the fine-tune section and lazy inputs.
"""

from __future__ import annotations

import os
import re
import threading

import numpy as np
import pytest
from qtpy.QtGui import QFont, QFontMetrics, QFontMetricsF
from qtpy.QtWidgets import QFileDialog, QWidget

from napari_lightfusion import metric_registry
from napari_lightfusion._qt import widget as widget_module
from napari_lightfusion._qt import workers
from napari_lightfusion._qt.table import best_columns
from napari_lightfusion.fusion import FusionPlan
from napari_lightfusion.generators import run_to_end
from napari_lightfusion.metric_registry import ROWS
from napari_lightfusion.resample import iter_resample_layer
from napari_lightfusion.session import jobs
from napari_lightfusion.session.compare import CANVAS_TEXT_SCALE
from napari_lightfusion.session.layer_io import grid_of


@pytest.fixture
def pair(lightfusion, colour_pair):
    viewer, widget = lightfusion
    return viewer, widget, viewer.add_image(colour_pair[0], name="MRI"), viewer.add_image(colour_pair[1], name="PET")


# 1 ------------------------------------------------------------------ readable by default


def test_after_fuse_the_fused_image_shows_and_maps_show_one_at_a_time(pair, qtbot, outputs, fuse_now, role, wait_idle):
    viewer, widget, mri, pet = pair
    fuse_now(widget)
    assert outputs(viewer) == [role(viewer, "fused")]  # no map on show: Fuse computed none
    assert viewer.layers[-1] is role(viewer, "fused")  # on top: nothing covers it
    written = []
    widget.results_written.connect(written.append)
    widget.show_map.setCurrentIndex(widget_module.MAP_TEXT.index("attention: functional"))
    assert widget.busy  # the maps are computed now, in a worker
    wait_idle(widget)
    assert len(written) == 1
    att = role(viewer, "attention:1")
    assert [ly for ly in outputs(viewer) if ly.visible] == [role(viewer, "backdrop"), att]
    assert att.colorbar.visible and not role(viewer, "surprise:1").colorbar.visible
    assert "high" in widget.show_map.toolTip()
    widget.show_map.setCurrentIndex(widget_module.MAP_TEXT.index("surprise: anatomical"))
    assert not widget.busy and len(written) == 1  # from the result's maps: no new fusion
    assert [ly for ly in outputs(viewer) if ly.visible] == [role(viewer, "backdrop"), role(viewer, "surprise:0")]
    widget.show_map.setCurrentIndex(0)
    assert [ly for ly in outputs(viewer) if ly.visible] == [role(viewer, "fused")]


# 2 ------------------------------------------------------------------ never lose a result


def test_a_renamed_result_and_another_pairs_result_are_never_overwritten(
    pair, colour_pair, qtbot, outputs, fuse_now, role
):
    viewer, widget, mri, pet = pair
    fuse_now(widget)
    first = role(viewer, "fused")
    assert first.name == "MRI + PET · PET-MRI"
    first.name = "keep me"
    kept = first.data.copy()
    widget.preset.setCurrentText("SPECT-MRI")
    widget.preset.activated.emit(widget.preset.currentIndex())  # as a user's pick
    fuse_now(widget)
    assert first.name == "keep me" and first in viewer.layers
    np.testing.assert_array_equal(first.data, kept)
    assert role(viewer, "fused").name == "MRI + PET · SPECT-MRI"
    mri2 = viewer.add_image(colour_pair[0][::-1].copy(), name="MRI 2")
    pet2 = viewer.add_image(colour_pair[1][::-1].copy(), name="PET 2")
    widget.set_pair(mri2, pet2)
    fuse_now(widget)
    fused = [ly.name for ly in outputs(viewer) if ly.metadata["lightfusion"]["role"] == "fused"]
    assert fused == ["keep me", "MRI + PET · SPECT-MRI", "MRI 2 + PET 2 · SPECT-MRI"]
    assert len(outputs(viewer)) == 3  # one fused image each (no map on show: no maps)


def test_refusing_the_same_pair_moves_its_layers_with_the_input(pair, qtbot, outputs, fuse_now):
    viewer, widget, mri, pet = pair
    fuse_now(widget)
    layers = list(outputs(viewer))
    mri.scale, mri.translate = (2.0, 3.0), (5.0, -4.0)
    pet.scale, pet.translate = (2.0, 3.0), (5.0, -4.0)
    fuse_now(widget)
    assert list(outputs(viewer)) == layers
    for layer in layers:
        np.testing.assert_allclose(layer.scale, (2.0, 3.0))
        np.testing.assert_allclose(layer.translate, (5.0, -4.0))


def test_swapping_the_pickers_gives_a_new_named_set_without_suffixes(lightfusion, grey_pair, qtbot, fuse_now):
    viewer, widget = lightfusion
    a = viewer.add_image(grey_pair[0], name="MRI")
    b = viewer.add_image(grey_pair[1], name="CT")
    fuse_now(widget)
    widget.set_pair(b, a)
    fuse_now(widget)
    names = [ly.name for ly in viewer.layers]
    assert not any("[" in name for name in names), names
    assert "CT + MRI · CT-MRI" in names and "MRI + CT · CT-MRI" in names


# 3 ------------------------------------------------------------------ comparisons


def test_compare_fits_the_view_labels_tiles_and_the_table_fits(
    make_napari_viewer, colour_pair, qtbot, tmp_path, monkeypatch, wait_idle, role
):
    from skimage.io import imread

    viewer = make_napari_viewer(show=True)  # laid out as a user sees it
    viewer.window.resize(1200, 800)
    widget = widget_module.LightFusionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="LightFusion")
    viewer.add_image(colour_pair[0], name="MRI")
    viewer.add_image(colour_pair[1], name="PET")
    viewer.scene.camera.zoom = 40.0  # zoomed into a corner
    widget.baseline.setCurrentText(widget_module.ALL_BASELINES)
    widget.compare()
    wait_idle(widget)
    assert grid_of(viewer).enabled
    qtbot.waitUntil(lambda: viewer.scene.camera.zoom < 40.0, timeout=5_000)  # fitted, not a crop
    tiles = [ly for ly in viewer.layers if ly.visible]
    assert len(tiles) == 2 + 1 + 4 and all(ly.name_overlay.visible for ly in tiles)
    # every tile label fits its tile: baseline names are short, long names get a smaller font
    assert role(viewer, "baseline:laplacian").name == "laplacian · MRI + PET"
    _, columns = grid_of(viewer).actual_shape(viewer.layers)
    tile = viewer.screenshot(canvas_only=True, flash=False).shape[1] / columns
    for ly in tiles:
        font = QFont(widget.font())
        font.setPointSizeF(ly.name_overlay.font_size)
        assert QFontMetricsF(font).horizontalAdvance(ly.name) * CANVAS_TEXT_SCALE <= tile, (ly.name, tile)
    table = widget.table
    assert table.columnCount() == 5
    widget.setFixedWidth(widget.minimumWidth())  # as narrow as the dock gets
    qtbot.waitUntil(lambda: table.width() < widget.minimumWidth() - 20, timeout=5_000)
    for c in range(5):  # every cell shows its number whole: no elision, no horizontal scrolling
        texts = [table.horizontalHeaderItem(c).text()] + [table.item(r, c).text() for r in range(len(ROWS))]
        table.ensurePolished()
        bold = QFont(table.font())  # napari's style sheet font, as drawn
        bold.setBold(True)
        widest = max(QFontMetrics(bold).horizontalAdvance(t) for t in texts)
        assert widest + 6 <= table.columnWidth(c), (texts, table.columnWidth(c))
    assert sum(table.columnWidth(c) for c in range(5)) <= table.viewport().width()
    last = len(ROWS) - 1  # the time row is not clipped
    assert table.rowViewportPosition(last) + table.rowHeight(last) <= table.viewport().height()
    for row in ROWS:
        assert table.best(row) == best_columns(widget.table_data, row)
        assert table.best(row)
    headers = [table.verticalHeaderItem(r) for r in range(len(ROWS))]
    assert headers[ROWS.index("SSIM")].text() == "SSIM ↑" and headers[-1].text().endswith("↓")
    for name in ("SSIM", "VIF"):
        assert "exceed 1" in headers[ROWS.index(name)].toolTip()
    headers_time = [table.item(len(ROWS) - 1, c).text() for c in range(5)]
    assert all(re.fullmatch(r"[\d.]+ (µs|ms|s)", t) for t in headers_time), headers_time  # "1.2 ms", not "1e-03"
    target = tmp_path / "figure.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    widget.figure_btn.click()
    figure = imread(target)
    assert figure.shape[1] > 5 * 200 and figure[..., :3].std() > 10


# 4 ------------------------------------------------------------------ right guesses


def test_files_named_alike_get_roles_preset_and_names_from_their_folders(
    lightfusion, grey_pair, qtbot, tmp_path, fuse_now, role
):
    from skimage.io import imsave

    viewer, widget = lightfusion
    grey = lambda x: np.repeat((255 * (x - x.min()) / np.ptp(x)).astype(np.uint8)[..., None], 3, -1)  # noqa: E731
    for folder, image in (("CT", grey_pair[1]), ("MRI", grey_pair[0])):  # the CT first
        (tmp_path / folder).mkdir()
        imsave(tmp_path / folder / "23.png", grey(image), check_contrast=False)
        viewer.open(str(tmp_path / folder / "23.png"))
    ct, mri = viewer.layers
    assert ct.rgb and mri.rgb  # equal-channel RGB, as napari opens the Harvard PNGs
    assert widget.pair() == (mri, ct) and widget.preset.currentText() == "CT-MRI"
    fuse_now(widget)
    assert role(viewer, "fused").name == "MRI 23 + CT 23 · CT-MRI"


def test_a_preset_that_looks_wrong_and_a_microscopy_pair_are_notified(lightfusion, grey_pair, qtbot, notes):
    viewer, widget = lightfusion
    a = viewer.add_image(grey_pair[0], name="anatomy")
    viewer.add_image(grey_pair[1], name="tracer")
    widget.preset.setCurrentText("PET-MRI")
    widget.preset.activated.emit(widget.preset.currentIndex())  # as a user's pick
    assert any("grey" in note and "PET-MRI" in note for note in notes["warning"])
    gfp = viewer.add_image(grey_pair[1], name="GFP")
    phase = viewer.add_image(grey_pair[0], name="phase")
    widget.set_pair(phase, gfp)
    assert any("microscopy" in note for note in notes["warning"])
    assert widget.pair() == (phase, gfp) and a in viewer.layers


# 5 ------------------------------------------------------------------ feedback


def test_progress_in_the_dock_and_buttons_while_a_stack_fuses(lightfusion, stack_pair, qtbot, wait_idle, gate):
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    wait_idle(widget)
    held = gate(FusionPlan, "run_slice")  # slice 1 waits until the dock has been looked at mid-stack
    widget.fuse()
    qtbot.waitUntil(lambda: held.held and widget.progress.bar.value() >= 1, timeout=60_000)
    assert widget.progress.isVisibleTo(widget) and widget.progress.bar.maximum() == 5
    assert not widget.fuse_btn.isEnabled() and not widget.compare_btn.isEnabled() and widget.cancel_btn.isEnabled()
    assert widget.progress.elapsed.text().endswith(" s")
    held.open()
    wait_idle(widget)
    assert not widget.progress.isVisibleTo(widget) and widget.fuse_btn.isEnabled()
    assert not widget.cancel_btn.isEnabled()


def test_layers_come_before_the_metrics_and_the_status_gives_both_times(pair, qtbot, monkeypatch, fuse_now):
    viewer, widget, mri, pet = pair
    order, layers_written = [], threading.Event()
    metric_columns = jobs.metric_columns

    def gated_metrics(*args, **kwargs):  # the metrics wait until the layers are there
        assert layers_written.wait(30), "the layers waited for the metrics"
        order.append("metrics")
        yield from metric_columns(*args, **kwargs)

    monkeypatch.setattr(jobs, "metric_columns", gated_metrics)
    widget.results_written.connect(lambda written: (order.append(sorted(written)), layers_written.set()))
    widget.show_map.setCurrentIndex(widget_module.MAP_TEXT.index("surprise: functional"))  # Fuse computes maps
    fuse_now(widget)
    assert order == [
        ["attention:0", "attention:1", "backdrop", "fused", "surprise:0", "surprise:1", "weight"],
        "metrics",
    ]
    assert widget.table.columnCount() == 2
    found = re.search(r"(\d+\.\d+) s from click to layer \(network (\d+\.\d+) s\)", widget.status.text())
    assert found and float(found[1]) >= float(found[2]) > 0


def test_the_network_is_loaded_in_a_worker_when_the_widget_opens(make_napari_viewer, qtbot, monkeypatch, wait_idle):
    calls = []
    monkeypatch.setattr(workers, "warm_up", lambda preset, device: calls.append((preset, device)))
    viewer = make_napari_viewer()
    widget = widget_module.LightFusionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.busy  # started at once, in a worker
    wait_idle(widget)
    assert calls == [(widget.preset.currentText(), "auto")]


# 6 ------------------------------------------------------------------ stale state


def test_no_stale_table_status_or_repeated_toasts(pair, stack_pair, qtbot, notes, wait_idle, fuse_now, gate):
    viewer, widget, mri, pet = pair
    assert widget.table.columnCount() == 0  # no header "1" before the first fusion
    fuse_now(widget)
    assert widget.table.columnCount() == 2 and "Fused" in widget.status.text()
    mri.contrast_limits = (10, 100)
    assert widget.table.columnCount() == 0 and "changed" in widget.status.text()
    stack = viewer.add_image(stack_pair[0], name="mri stack")
    pet_stack = viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    widget.set_pair(stack, pet_stack)
    held = gate(FusionPlan, "run_slice")  # slice 1 waits until the input is gone
    widget.fuse()
    qtbot.waitUntil(lambda: held.held and widget.progress.bar.value() >= 1, timeout=60_000)
    viewer.layers.remove(pet_stack)
    held.open()
    wait_idle(widget)
    assert "'pet stack' was removed" in widget.status.text()
    widget.set_pair(stack, viewer.layers["PET"])  # 2D with 3D: an error in Live, shown once
    widget.live.setChecked(True)
    for z in range(3):
        viewer.dims.set_current_step(0, z)
        wait_idle(widget)  # the debounced Live request is made (and refused: the pair is 3D + 2D)
    viewer.layers.remove(mri)
    wait_idle(widget)
    toasts = notes["warning"] + notes["error"]
    assert len(toasts) == len(set(toasts)), toasts


# 7 ------------------------------------------------------------------ Qt binding


def test_pyqt6_and_no_deprecation_toast(make_napari_viewer):
    import qtpy

    if os.environ.get("QT_API", "").lower() not in ("", "pyqt6"):
        pytest.skip(f"QT_API={os.environ['QT_API']} asks for another binding (tox -e pyqt5)")
    from napari.utils.notifications import notification_manager

    make_napari_viewer(show=True)
    assert qtpy.API_NAME == "PyQt6"
    assert not [n for n in notification_manager.records if "deprecated" in str(n.message)]


# 8 ------------------------------------------------------------------ resampling


def test_resample_uses_world_coordinates_in_a_worker_and_adds_a_layer(lightfusion, colour_pair, qtbot, wait_idle):
    viewer, widget = lightfusion
    mri = viewer.add_image(colour_pair[0], name="MRI", scale=(1.0, 1.0))
    coarse = viewer.add_image(colour_pair[1][::2, ::2].copy(), name="PET", scale=(2.0, 2.0), translate=(6.0, 0.0))
    widget.set_pair(mri, coarse)
    assert widget.resample_btn.isVisibleTo(widget)
    widget.resample_btn.click()
    assert widget.busy  # in a worker
    wait_idle(widget)
    new = viewer.layers["PET resampled"]
    want, _ = run_to_end(iter_resample_layer(coarse, mri))
    np.testing.assert_array_equal(new.data, want)
    assert not new.data[:6].any() and new.data[8:].any()  # shifted by the translate, in world units
    assert widget.pair() == (mri, new) and len(viewer.layers) == 3


# scripting, balance, fine-tuning, lazy inputs --------------------------------------------


def test_the_pickers_offer_the_image_layers_the_plugin_did_not_write(colour_pair):
    from napari.layers import Image, Labels

    from napari_lightfusion._qt.pickers import image_layers
    from napari_lightfusion.session.layer_io import MARK

    mri, pet = Image(colour_pair[0], name="mri"), Image(colour_pair[1], name="pet", rgb=True)
    fused = Image(colour_pair[0], name="x", metadata={MARK: "fused"})
    assert image_layers([fused, pet, Labels(np.zeros((4, 4), int)), mri]) == [pet, mri]


def test_pickers_follow_renames_and_keep_the_users_pick(pair, colour_pair, qtbot):
    viewer, widget, mri, pet = pair
    other = viewer.add_image(colour_pair[1], name="other")
    widget.set_pair(mri, other)
    other.name = "renamed"
    assert widget.pair() == (mri, other)
    assert widget.pickers.functional.current_choice == "renamed" and other in widget.pickers.functional.choices
    viewer.add_image(colour_pair[0], name="later")
    assert widget.pair() == (mri, other)


def test_a_second_pair_opened_is_the_pair_guessed(lightfusion, grey_pair):
    viewer, widget = lightfusion
    viewer.add_image(grey_pair[0], name="MRI 23")
    viewer.add_image(grey_pair[1], name="PET 23")
    mri, ct = viewer.add_image(grey_pair[0], name="MRI 24"), viewer.add_image(grey_pair[1], name="CT 24")
    assert widget.pair() == (mri, ct) and widget.preset.currentText() == "CT-MRI"


def test_the_exported_figure_gives_times_in_milliseconds(pair, qtbot, tmp_path, monkeypatch, fuse_now):
    from napari_lightfusion._qt import figure

    viewer, widget, mri, pet = pair
    fuse_now(widget)
    seen = {}
    monkeypatch.setattr(
        figure, "export_figure", lambda tiles, table, path, **kw: seen.update(table=table, **kw) or path
    )
    widget.export_figure(tmp_path / "f.png")
    shown, network = seen["table"][jobs.NETWORK], widget.table_data[jobs.NETWORK]
    time = metric_registry.TIME
    assert time not in shown and shown["time (ms)"] == pytest.approx(network[time] * 1000)
    assert seen["directions"]["time (ms)"] == "↓"


def test_fine_tuning_starts_from_the_preset_the_widget_fuses_with(pair):
    viewer, widget, mri, pet = pair
    assert widget.finetune.base.currentText() == widget.preset.currentText() == "PET-MRI"
    widget.preset.setCurrentText("CT-MRI")
    assert widget.finetune.base.currentText() == "CT-MRI"


def test_a_short_dock_scrolls_instead_of_squashing_the_fine_tune_rows(pair, qtbot):
    viewer, widget, mri, pet = pair
    widget.finetune_btn.setChecked(True)
    widget.setFixedHeight(300)
    qtbot.waitUntil(lambda: widget.scroll.verticalScrollBar().maximum() > 0, timeout=5_000)
    for child in widget.finetune.findChildren(QWidget):
        if child.isVisibleTo(widget.finetune) and child.minimumSizeHint().height() > 0:
            assert child.height() >= child.minimumSizeHint().height(), type(child).__name__


def test_the_balance_slider_is_for_conditioned_networks_and_refuses_live(
    pair, qtbot, monkeypatch, wait_idle, fuse_now, role
):
    from napari_lightfusion.weights import model_for

    viewer, widget, mri, pet = pair
    wait_idle(widget)
    conditioned = model_for(widget.preset.currentText()).config.balance is not None
    assert widget.balance.isEnabled() == conditioned
    monkeypatch.setattr(workers, "warm_up", lambda preset, device: None)  # the paper's network
    widget.preset.activated.emit(widget.preset.currentIndex())
    wait_idle(widget)
    assert not widget.balance.isEnabled() and widget.balance_value() is None
    assert widget.balance_label.text() == "b —"  # the slider says its value, and when it has none
    seen = []
    plan = jobs.plan_pair
    monkeypatch.setattr(jobs, "plan_pair", lambda *a: (seen.append(a[2].balance), plan(*a))[1])  # a[2]: the options
    monkeypatch.setattr(workers, "warm_up", lambda preset, device: 0.3)  # trained with a balance
    widget.preset.activated.emit(widget.preset.currentIndex())
    wait_idle(widget)
    assert widget.balance.isEnabled() and widget.balance.value() == 30 and widget.balance_label.text() == "b 0.30"
    fuse_now(widget)
    fused = role(viewer, "fused")
    assert fused.name == "MRI + PET · PET-MRI"  # the default b goes without saying
    widget.balance.setValue(80)
    wait_idle(widget)
    assert seen == [0.3, 0.8] and role(viewer, "fused") is fused and widget.balance_label.text() == "b 0.80"
    assert fused.name == "MRI + PET · PET-MRI · b=0.80"  # a moved balance is in the name (screenshots)
    widget.balance.setValue(30)
    wait_idle(widget)
    assert role(viewer, "fused") is fused and fused.name == "MRI + PET · PET-MRI"
    monkeypatch.setattr(workers, "warm_up", lambda preset, device: 0.65)  # a network with another default
    widget.preset.activated.emit(widget.preset.currentIndex())
    wait_idle(widget)
    assert widget.balance.value() == 65  # the slider starts at the new network's default


def test_auto_balance_chooses_b_per_pair_and_the_slider_shows_it(pair, qtbot, monkeypatch, wait_idle, fuse_now, role):
    viewer, widget, mri, pet = pair
    wait_idle(widget)
    assert widget.balance_auto.isEnabled() and not widget.balance_auto.isChecked()  # PET-MRI takes a balance
    seen = []
    plan = jobs.plan_pair
    monkeypatch.setattr(jobs, "plan_pair", lambda *a: (seen.append(a[2].balance), plan(*a))[1])  # a[2]: the options
    widget.balance_auto.setChecked(True)
    assert not widget.balance.isEnabled()
    said = []
    widget.session.events.status.connect(said.append)
    fuse_now(widget)
    assert any(t.startswith("Fusing the image (choosing b for the pair first)") for t in said)  # why it takes longer
    said.clear()
    fuse_now(widget)  # the same pair: its b is kept, not chosen again
    assert any(t.startswith("Fusing the image") for t in said) and not any("choosing b" in t for t in said)
    fused = role(viewer, "fused")
    chosen = fused.metadata["lightfusion"]["balance_chosen"]
    assert seen == ["auto"] and fused.name == "MRI + PET · PET-MRI · b=auto"
    assert widget.balance.value() == round(100 * chosen["balance"]) and not widget.balance.isEnabled()
    assert widget.balance_label.text() == f"b {chosen['balance']:.2f}"
    assert "auto: hot spot vs pixel average" in widget.status.text()
    widget.balance_auto.setChecked(False)  # off: the slider is the user's again, at the b chosen
    wait_idle(widget)
    assert widget.balance.isEnabled() and seen[-1] == chosen["balance"]
    monkeypatch.setattr(workers, "warm_up", lambda preset, device: None)  # a network that takes no balance
    widget.preset.activated.emit(widget.preset.currentIndex())
    wait_idle(widget)
    assert not widget.balance_auto.isEnabled() and not widget.balance.isEnabled()


def test_a_saved_fine_tuned_preset_is_listed_and_picked(pair, monkeypatch):
    viewer, widget, mri, pet = pair
    assert not widget.finetune.isVisibleTo(widget)
    widget.finetune_btn.click()
    assert widget.finetune.isVisibleTo(widget)
    assert widget.finetune.get_pair() == (mri, pet)
    monkeypatch.setattr(widget_module, "all_presets", lambda: ["CT-MRI", "PET-MRI", "SPECT-MRI", "my cells"])
    widget.finetune.on_saved("my cells")
    assert widget.preset.currentText() == "my cells" and widget.preset.count() == 4


def test_lazy_inputs_give_lazy_layers_and_a_volume_export(
    lightfusion, stack_pair, qtbot, fuse_now, role, tmp_path, monkeypatch
):
    import dask.array as da

    viewer, widget = lightfusion
    viewer.add_image(da.from_array(stack_pair[0], chunks=(1, 48, 48)), name="mri stack")
    viewer.add_image(da.from_array(stack_pair[1], chunks=(1, 48, 48, 3)), name="pet stack", rgb=True)
    fuse_now(widget)
    fused = role(viewer, "fused")
    assert isinstance(fused.data, da.Array) and fused.data.shape == (5, 48, 48, 3)
    assert widget.volume_btn.isVisibleTo(widget)
    target = tmp_path / "fused.zarr"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "OME-Zarr folder (*.zarr)"))
    widget.volume_btn.click()  # the slices written show in the dock's progress bar, as every job's do
    assert widget.export_progress.isVisibleTo(widget) and widget.export_progress.bar.maximum() == 5
    qtbot.waitUntil(lambda: not widget.export_progress.isVisibleTo(widget), timeout=60_000)
    assert target.is_dir()


def test_auto_balance_on_lazy_inputs_chooses_once_for_the_stack(lightfusion, stack_pair, fuse_now, role, monkeypatch):
    import dask.array as da

    viewer, widget = lightfusion
    viewer.add_image(da.from_array(stack_pair[0], chunks=(1, 48, 48)), name="mri stack")
    viewer.add_image(da.from_array(stack_pair[1], chunks=(1, 48, 48, 3)), name="pet stack", rgb=True)
    asked = []
    plan = jobs.slice_plan
    monkeypatch.setattr(
        jobs, "slice_plan", lambda a, b, options, *rest: (asked.append(options.balance), plan(a, b, options, *rest))[1]
    )
    from napari_lightfusion import lazy

    choose, chosen_times = lazy._auto_balance, []
    monkeypatch.setattr(lazy, "_auto_balance", lambda *a: (chosen_times.append(1), choose(*a))[1])
    widget.balance_auto.setChecked(True)
    fuse_now(widget)
    chosen = role(viewer, "fused").metadata["lightfusion"]["balance_chosen"]
    assert set(chosen["slices"]) <= set(range(5)) and widget.balance.value() == round(100 * chosen["balance"])
    assert asked == [chosen["balance"]]  # the metric slice is fused at the stack's b, not chosen again
    fuse_now(widget)  # the pair as it was: the b kept is used (Live scrolling asks this at every step)
    assert chosen_times == [1] and asked[-1] == chosen["balance"]
    assert role(viewer, "fused").metadata["lightfusion"]["balance_chosen"] == chosen


def test_screenshots_for_the_readme_and_docs(tmp_path):
    from skimage.io import imread

    from napari_lightfusion.research.screenshot import MAX_BYTES, make_screenshots

    written = make_screenshots(tmp_path / "readme.png")  # the synthetic sample: no data needed
    assert [p.name for p in written] == [
        "widget_fused.png",
        "widget_map.png",
        "widget_auto.png",
        "readme.png",
        "widget_compare.png",
        "comparison_figure.png",
    ]
    for path in written:
        image = imread(path)
        assert path.stat().st_size <= MAX_BYTES and image[..., :3].std() > 10, path.name
    assert imread(written[0]).shape[1] > 1000


# mix weight ------------------------------------------------------------------ which source each pixel came from


@pytest.fixture
def mix_preset(private_presets):
    """A custom preset "mix test": a balance-conditioned network with the mix head (weights scaled so w varies).

    Requested before ``lightfusion`` so that the widget lists it."""
    import torch

    from napari_lightfusion.model import LightFusionNet
    from napari_lightfusion.weights import save_custom_preset

    torch.manual_seed(2)
    net = LightFusionNet(output="mix", balance=0.3).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    # and "intensity test", the paper's intensity head (no bundled preset has one): no weight map
    save_custom_preset("intensity test", model=LightFusionNet(output="intensity", balance=0.3).eval(), sidecar={})
    return save_custom_preset("mix test", model=net, sidecar={})


def map_texts(widget) -> list[str]:
    return [widget.show_map.itemText(i) for i in range(widget.show_map.count())]


def test_a_mix_network_offers_its_weight_map_and_other_networks_do_not(
    mix_preset, lightfusion, colour_pair, qtbot, outputs, fuse_now, role, wait_idle
):
    from qtpy.QtCore import Qt

    from napari_lightfusion import fuse

    viewer, widget = lightfusion
    viewer.add_image(colour_pair[0], name="MRI")
    viewer.add_image(colour_pair[1], name="PET")
    assert "mix weight" not in map_texts(widget)
    widget.preset.setCurrentText("mix test")
    fuse_now(widget)
    assert map_texts(widget) == [*widget_module.MAP_TEXT, "mix weight"]  # offered before it is computed
    tip = widget.show_map.itemData(len(widget_module.MAP_TEXT), Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("1 = this pixel's value comes from MRI, 0 = from PET")
    assert role(viewer, "weight") is None  # no map on show: none computed
    written = []
    widget.results_written.connect(written.append)
    widget.show_map.setCurrentIndex(map_texts(widget).index("mix weight"))
    assert widget.busy  # computed now
    wait_idle(widget)
    weight = role(viewer, "weight")
    assert len(written) == 1 and weight.name.startswith("mix weight · MRI 1, PET 0 · MRI + PET · mix test")
    want = fuse(
        *colour_pair, weights=mix_preset, device="cpu", a_limits=tuple(viewer.layers["MRI"].contrast_limits), maps=True
    )
    assert np.abs(weight.data - want.weight).max() <= 1e-4 and want.weight.std() > 0.01
    assert [ly for ly in outputs(viewer) if ly.visible] == [role(viewer, "backdrop"), weight]
    assert weight.colorbar.visible and weight.colormap.name == "RdBu"
    assert tuple(weight.contrast_limits) == (0.0, 1.0) and widget.show_map.toolTip() == tip
    fuse_now(widget)  # the same pair and network again: the map stays on show, written in place
    assert role(viewer, "weight") is weight and weight.visible and widget.show_map.currentText() == "mix weight"
    widget.preset.setCurrentText("intensity test")  # the paper's intensity head: no weight, no choice
    fuse_now(widget)
    assert map_texts(widget) == list(widget_module.MAP_TEXT) and widget.show_map.currentIndex() == 0
    # the mix network's set keeps its map, hidden: its fused image shows under the new one
    assert [ly for ly in outputs(viewer) if ly.visible] == [role(viewer, "fused", 0), role(viewer, "fused")]
    assert role(viewer, "weight") is weight and not weight.colorbar.visible


def test_live_writes_the_weight_of_each_slice_in_place(mix_preset, lightfusion, stack_pair, qtbot, wait_idle, role):
    from napari_lightfusion.fusion import plan_fusion

    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    widget.preset.setCurrentText("mix test")
    viewer.dims.set_current_step(0, 1)
    widget.live.setChecked(True)
    qtbot.waitUntil(lambda: widget.live_slice == 1, timeout=30_000)
    wait_idle(widget)
    assert role(viewer, "weight") is None  # Live computes no map while none is shown
    widget.show_map.setCurrentIndex(map_texts(widget).index("mix weight"))  # the slice on view gets its maps
    qtbot.waitUntil(lambda: role(viewer, "weight") is not None, timeout=30_000)
    wait_idle(widget)
    weight = role(viewer, "weight")
    assert weight.data.shape == (5, 48, 48) and "mix weight" in map_texts(widget)
    plan = plan_fusion(*stack_pair, None, weights=mix_preset, a_limits=(0.0, 255.0), b_rgb=True, maps=True)
    np.testing.assert_allclose(weight.data[1], plan.run_slice(1).weight, atol=1e-4)
    assert not weight.data[3].any()
    viewer.dims.set_current_step(0, 3)
    qtbot.waitUntil(lambda: widget.live_slice == 3, timeout=30_000)
    wait_idle(widget)
    assert role(viewer, "weight") is weight
    np.testing.assert_allclose(weight.data[3], plan.run_slice(3).weight, atol=1e-4)
