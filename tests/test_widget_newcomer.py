"""What a newcomer tripped over in the dock (issue 23, items 1, 2 and 13), in a real napari viewer under Xvfb.

1 roles guessed from the images when names say nothing (and said so, with
Swap), a pair no preset fits; 2 the microscopy warning names the layers
open; 13 tiny images, NaN pixels, the CSV of a grey pair, an input deleted
during Compare, ``set_pair`` with a layer that is not an image.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from qtpy.QtWidgets import QFileDialog
from skimage.io import imsave
from synthetic_heads import as_png, ct_like, mr_like

from napari_lightfusion._sample_data import microscopy_pair
from napari_lightfusion.metric_registry import HOT_SPOT_MEASURES
from napari_lightfusion.session.model import JobKind

CT_MR = {
    "HU and float MR": (ct_like(96), mr_like(96)),
    "PNG 0..255": (as_png(ct_like(96), -100, 300), as_png(mr_like(96), 0, 700)),
}


# 1 ------------------------------------------------------------------ roles from the images


@pytest.mark.parametrize("kind", list(CT_MR))
def test_ct_opened_after_the_mr_is_still_functional_and_the_dock_says_why(lightfusion, notes, kind):
    viewer, widget = lightfusion
    ct_data, mr_data = CT_MR[kind]
    mr = viewer.add_image(mr_data, name="a")  # names that say nothing, the MR opened first
    ct = viewer.add_image(ct_data, name="b")
    assert widget.pair() == (mr, ct) and widget.preset.currentText() == "CT-MRI"
    note = widget.pickers.note
    assert note.isVisibleTo(widget) and note.text().startswith("Roles guessed from the images: 'b' looks like CT (")
    assert "'b' looks like CT" in widget.status.text()
    assert not notes["warning"]
    widget.pickers.swap_btn.click()  # one click: the other way round, and the dock says it looks wrong
    assert widget.pair() == (ct, mr) and not note.isVisibleTo(widget)
    assert "'b' looks like CT" in notes["warning"][-1] and "swap the two" in notes["warning"][-1]
    widget.pickers.swap_btn.click()
    assert widget.pair() == (mr, ct)


def test_ct_opened_first_is_functional_too(lightfusion):
    viewer, widget = lightfusion
    ct = viewer.add_image(ct_like(96), name="series 2")
    mr = viewer.add_image(mr_like(96), name="series 1")
    assert widget.pair() == (mr, ct)


def test_two_unnamed_grey_images_say_the_opening_order_decided(lightfusion):
    viewer, widget = lightfusion
    viewer.add_image(mr_like(96), name="a")
    viewer.add_image(mr_like(96, seed=1), name="b")
    assert widget.pickers.note.text().startswith("Roles from the opening order:")


def test_an_mr_pair_is_told_that_no_preset_fits(lightfusion, notes):
    viewer, widget = lightfusion
    viewer.add_image(mr_like(96), name="T1")
    viewer.add_image(mr_like(96, seed=1), name="T2")
    assert "both MRI: no preset fits" in widget.status.text()
    assert any("are both MRI: no preset was trained on MRI + MRI pairs" in w for w in notes["warning"])
    assert not widget.pickers.note.isVisibleTo(widget)  # the names told the roles: nothing was guessed


# 2 ------------------------------------------------------------------ microscopy names the layers open


def test_the_microscopy_warning_names_the_layers_open(lightfusion, notes, tmp_path):
    viewer, widget = lightfusion
    phase, gfp = microscopy_pair(64, seed=1)
    folder = tmp_path / "GFP"
    folder.mkdir()
    imsave(folder / "cells 1.tif", gfp, check_contrast=False)
    pci = viewer.add_image(phase, name="PCI")
    (cells,) = viewer.open(str(folder / "cells 1.tif"))
    widget.set_pair(pci, cells)
    warning = notes["warning"][-1]
    assert warning.startswith(
        "LightFusion: 'PCI' + 'cells 1': a microscopy pair (the folder name of 'cells 1' says GFP)"
    )
    assert "'GFP' +" not in warning and "'MRI'" not in warning


# 13 ----------------------------------------------------------------- odd inputs get a word


def test_a_3_by_3_pair_says_which_metrics_are_undefined(lightfusion, notes, fuse_now):
    viewer, widget = lightfusion
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((3, 3)).astype(np.float32), name="MRI")
    viewer.add_image(rng.random((3, 3)).astype(np.float32), name="CT")
    fuse_now(widget)
    assert any("3 × 3 pixels, smaller than SSIM's 7 × 7 window" in w and "shown as —" in w for w in notes["warning"])
    table = widget.table
    rows = [table.verticalHeaderItem(r).text().split()[0] for r in range(table.rowCount())]
    assert table.item(rows.index("SSIM"), 0).text() == "—" and "nan" not in {
        table.item(r, c).text() for r in range(table.rowCount()) for c in range(table.columnCount())
    }


def test_nan_pixels_are_counted_and_fused_as_black(lightfusion, notes, fuse_now, role):
    viewer, widget = lightfusion
    mri = np.linspace(10, 200, 64 * 64, dtype=np.float32).reshape(64, 64)
    mri[5, 3:8] = np.nan
    viewer.add_image(mri, name="MRI", contrast_limits=(0, 255))
    viewer.add_image(np.full((64, 64), 100, np.float32), name="CT", contrast_limits=(0, 255))
    fuse_now(widget)
    assert "LightFusion: 5 pixels are NaN or infinite in 'MRI': fused as 0 (black)" in notes["warning"]
    assert np.isfinite(role(viewer, "fused").data).all()


def test_the_csv_of_a_grey_pair_has_no_hot_spot_rows(lightfusion, grey_pair, fuse_now, tmp_path, monkeypatch):
    viewer, widget = lightfusion
    viewer.add_image(grey_pair[0], name="MRI")
    viewer.add_image(grey_pair[1], name="CT")
    fuse_now(widget)
    target = tmp_path / "metrics.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    widget.csv_btn.click()
    rows = list(csv.reader(target.open()))
    names = [r[0] for r in rows[1:]]
    assert "SSIM" in names and not set(HOT_SPOT_MEASURES) & set(names)
    assert not any(cell == "nan" for r in rows for cell in r)


def test_an_input_deleted_during_compare_leaves_its_picker_empty(lightfusion, colour_pair, qtbot, wait_idle, gate):
    from napari_lightfusion.fusion import FusionPlan

    viewer, widget = lightfusion
    mri = viewer.add_image(colour_pair[0], name="MRI")
    pet = viewer.add_image(colour_pair[1], name="PET")
    viewer.add_image(colour_pair[0], name="other MRI")  # an unrelated pair the pickers must not jump to
    viewer.add_image(colour_pair[1], name="other PET")
    widget.set_pair(mri, pet)
    held = gate(FusionPlan, "run_slice", passes=0)  # the image's one slice waits until the input is gone
    widget.compare()
    qtbot.waitUntil(lambda: held.held and widget.session.job is JobKind.COMPARE, timeout=60_000)  # Compare runs
    viewer.layers.remove(pet)
    held.open()
    wait_idle(widget)
    assert widget.pair() == (mri, None)
    assert widget.pickers.note.text() == "'PET' was removed: pick the functional image again."
    again = viewer.add_image(colour_pair[1], name="PET again")  # an image opened fills the empty picker
    assert widget.pair() == (mri, again) and not widget.pickers.note.isVisibleTo(widget)


def test_set_pair_with_a_labels_layer_says_so_and_changes_nothing(lightfusion, colour_pair):
    viewer, widget = lightfusion
    mri = viewer.add_image(colour_pair[0], name="MRI")
    pet = viewer.add_image(colour_pair[1], name="PET")
    labels = viewer.add_labels(np.zeros((64, 64), np.uint8), name="labels")
    started = widget.jobs_started
    with pytest.raises(ValueError, match="'labels' is not an image layer"):
        widget.set_pair(mri, labels)
    assert widget.pair() == (mri, pet) and widget.jobs_started == started
