"""What a newcomer still tripped over (issue 23, items 4-7), in a real napari viewer under Xvfb; maps only when asked.

4 the maps show inside the object only, with contrast from there, no edge
stripes and their colour bar beside the image; 5 Compare and the metric
table on a lazy (dask) stack; 6 the metric group says which slice its
numbers are for, and when the view shows another plane; 7 one naming rule,
the anatomical input first, in the layers, the Compare tiles and the figure.
Issue 22: a fusion computes the maps only while one is shown; a map picked
after a fusion without them is computed then.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image
from qtpy.QtWidgets import QGroupBox

from napari_lightfusion import fuse, metric_registry, plan_fusion
from napari_lightfusion._qt import widget as widget_module
from napari_lightfusion._sample_data import make_sample_pair
from napari_lightfusion.baselines import fuse_baseline
from napari_lightfusion.engine import run_slice
from napari_lightfusion.inputs import to_unit
from napari_lightfusion.session import jobs, layer_io, map_view
from napari_lightfusion.session.layer_io import grid_of
from napari_lightfusion.session.model import JobKind
from napari_lightfusion.weights import model_for


def choose_map(widget, text: str) -> None:
    widget.show_map.setCurrentIndex(widget_module.MAP_TEXT.index(text))


def canvas_box(viewer, layer) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of ``layer``'s image on the canvas, pixels."""
    height, width = viewer.canvas.size
    (y0, x0), (y1, x1) = np.asarray(layer.extent.world)[:, -2:] + [[-0.5, -0.5], [0.5, 0.5]]  # pixel edges
    cy, cx = viewer.scene.camera.center[-2:]
    zoom = viewer.scene.camera.zoom
    return (
        width / 2 + (x0 - cx) * zoom,
        height / 2 + (y0 - cy) * zoom,
        width / 2 + (x1 - cx) * zoom,
        height / 2 + (y1 - cy) * zoom,
    )


def canvas_pixel(viewer, layer, shot, point) -> np.ndarray:
    """The screenshot's RGB at data ``point`` (row, column) of ``layer``."""
    height, width = viewer.canvas.size
    y, x = np.asarray(layer.data_to_world(point))[-2:]
    cy, cx = viewer.scene.camera.center[-2:]
    zoom = viewer.scene.camera.zoom
    row = int(round((height / 2 + (y - cy) * zoom) * shot.shape[0] / height))
    col = int(round((width / 2 + (x - cx) * zoom) * shot.shape[1] / width))
    return shot[row, col, :3].astype(int)


@pytest.fixture
def shown_viewer(make_napari_viewer, wait_idle):
    """A shown viewer (a real canvas size) with the widget docked and the synthetic sample pair open."""
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1200, 800)
    widget = widget_module.LightFusionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="LightFusion")
    for image, kwargs, _ in make_sample_pair():
        viewer.add_image(image, **kwargs)
    yield viewer, widget
    widget.cancel()
    wait_idle(widget)


# 4 ------------------------------------------------------------------ readable maps


def test_a_map_shows_inside_the_head_with_its_contrast_from_there_and_its_colour_bar_beside_it(
    shown_viewer, qtbot, fuse_now, role, wait_idle
):
    viewer, widget = shown_viewer
    mri, pet = viewer.layers
    fuse_now(widget)
    viewer.reset_view()
    qtbot.waitUntil(lambda: viewer.canvas.size[1] > 2 * map_view.COLORBAR_ROOM, timeout=5_000)  # laid out
    want = fuse(mri.data, pet.data, "PET-MRI", "auto", a_limits=tuple(mri.contrast_limits), b_rgb=True, maps=True)
    np.testing.assert_allclose(role(viewer, "fused").data, want.fused, atol=1e-6)  # the fused image as fuse() gives it
    choose_map(widget, "attention: functional")
    wait_idle(widget)  # the maps, computed now
    att = role(viewer, "attention:1")
    band = model_for("PET-MRI").maps_radius
    inside = map_view.object_mask(to_unit(mri.data, tuple(mri.contrast_limits)), band)
    shown = np.isfinite(att.data)
    np.testing.assert_array_equal(shown, inside)  # NaN (drawn transparent) off the head and along the edges
    assert not shown[:band].any() and not shown[-band:].any() and not shown[:, :band].any()
    assert 0.2 < shown.mean() < 0.9  # the head, not the whole canvas
    np.testing.assert_allclose(att.data[shown], want.attention[1][shown], atol=1e-5)
    lo, hi = np.percentile(want.attention[1][shown], map_view.LIMIT_PERCENTILES)
    np.testing.assert_allclose(att.contrast_limits, (lo, hi), rtol=1e-5)
    # the colour bar: small, visible and clear of the image
    bar = att.colorbar
    assert bar.visible and tuple(bar.size) == map_view.COLORBAR["size"]
    height, width = viewer.canvas.size
    left, top, right, bottom = canvas_box(viewer, att)
    assert left >= -1 and bottom <= height + 1  # the whole image still in view
    assert right <= width - map_view.COLORBAR_ROOM + 1 or top >= bar.size[1] + 3 * bar.font_size + 10


@pytest.fixture
def pair_viewer(lightfusion, colour_pair):
    viewer, widget = lightfusion
    viewer.add_image(colour_pair[0], name="MRI")
    viewer.add_image(colour_pair[1], name="PET")
    return viewer, widget


def test_a_zoomed_view_is_kept_when_a_map_is_shown(pair_viewer, fuse_now, wait_idle):
    viewer, widget = pair_viewer
    fuse_now(widget)
    viewer.scene.camera.zoom = 40.0  # into a detail: the user's view
    center = tuple(viewer.scene.camera.center)
    choose_map(widget, "surprise: anatomical")
    wait_idle(widget)
    assert viewer.scene.camera.zoom == 40.0 and tuple(viewer.scene.camera.center) == center


def test_fuse_computes_maps_only_while_one_is_shown_and_a_map_picked_later_is_computed_then(
    pair_viewer, fuse_now, wait_idle, role, outputs, colour_pair
):
    viewer, widget = pair_viewer
    fuse_now(widget)
    assert outputs(viewer) == [role(viewer, "fused")] and not widget.session.result.maps
    started = widget.jobs_started
    choose_map(widget, "surprise: functional")
    assert widget.busy and widget.jobs_started == started + 1  # the maps are computed now, in a worker
    assert role(viewer, "fused").visible  # the fused image stays until they are there
    wait_idle(widget)
    sur = role(viewer, "surprise:1")
    want = fuse(*colour_pair, "PET-MRI", "auto", a_limits=tuple(viewer.layers["MRI"].contrast_limits), maps=True)
    shown = np.isfinite(sur.data)
    np.testing.assert_allclose(sur.data[shown], want.surprise[1][shown], atol=1e-5)
    assert sur.visible and not role(viewer, "fused").visible and widget.session.result.maps
    choose_map(widget, "attention: anatomical")  # the result has its maps now: shown at once
    assert not widget.busy and widget.jobs_started == started + 1 and role(viewer, "attention:0").visible
    fuse_now(widget)  # a map on show: Fuse computes the maps
    assert widget.session.result.maps and role(viewer, "attention:0").visible
    choose_map(widget, "none (fused image)")
    fuse_now(widget)
    assert not widget.session.result.maps and role(viewer, "fused").visible


def test_a_map_picked_while_fuse_runs_is_computed_after_it(pair_viewer, qtbot, wait_idle, role, gate):
    from napari_lightfusion.fusion import FusionPlan

    viewer, widget = pair_viewer
    wait_idle(widget)
    held = gate(FusionPlan, "run_slice", passes=0)  # the image's one slice waits until the map is picked
    widget.fuse()
    qtbot.waitUntil(lambda: held.held and widget.session.job is JobKind.FUSE, timeout=60_000)
    choose_map(widget, "attention: functional")  # no result yet: nothing to show it on
    held.open()
    wait_idle(widget)
    assert role(viewer, "attention:1").visible and widget.session.result.maps


def test_live_computes_maps_only_while_one_is_shown(lightfusion, stack_pair, qtbot, wait_idle, role):
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    viewer.dims.set_current_step(0, 1)
    widget.live.setChecked(True)
    qtbot.waitUntil(lambda: widget.live_slice == 1, timeout=30_000)
    wait_idle(widget)
    assert role(viewer, "attention:1") is None and not widget.session.result.maps
    choose_map(widget, "attention: functional")  # the slice on view gets its maps
    qtbot.waitUntil(lambda: role(viewer, "attention:1") is not None, timeout=30_000)
    wait_idle(widget)
    att = role(viewer, "attention:1")
    assert np.isfinite(att.data[1]).any() and not att.data[3].any()
    viewer.dims.set_current_step(0, 3)  # Live, with a map on show: the new slice comes with its maps
    qtbot.waitUntil(lambda: widget.live_slice == 3, timeout=30_000)
    wait_idle(widget)
    assert role(viewer, "attention:1") is att and np.isfinite(att.data[3]).any()


def test_the_edge_stripes_are_the_padding_and_the_band_covers_them():
    """On a flat image the maps are flat except within ``maps_radius`` of the edges: the zero padding."""
    model = model_for("PET-MRI")
    flat = np.zeros((64, 64), np.float32)
    out = run_slice(model, flat, flat + 0.5, "cpu", backend="torch")
    r = model.maps_radius
    for maps in (out.surprise, out.attention):
        for m in maps:
            centre = m[32, 32]
            np.testing.assert_allclose(m[r:-r, r:-r], centre, atol=1e-5)  # inside the band: no stripe
            assert np.abs(m[:r] - centre).max() > 1e-4 or np.abs(m[:, :r] - centre).max() > 1e-4
    assert np.abs(out.surprise[0][:r] - out.surprise[0][32, 32]).max() > 1e-3  # the stripe a user saw


# 5 ------------------------------------------------------------------ lazy volumes


def test_compare_on_a_stack_opened_lazily_gives_a_grid_baselines_and_metrics_of_the_slice(
    lightfusion, stack_pair, qtbot, wait_idle, role
):
    import dask.array as da

    viewer, widget = lightfusion
    mri = viewer.add_image(da.from_array(stack_pair[0], chunks=(1, 48, 48)), name="mri stack")
    viewer.add_image(da.from_array(stack_pair[1], chunks=(1, 48, 48, 3)), name="pet stack", rgb=True)
    viewer.dims.set_current_step(0, 2)
    widget.baseline.setCurrentText("laplacian")
    widget.compare()
    wait_idle(widget)
    assert role(viewer, "attention:1") is None  # no map on show: none computed
    fused, baseline = role(viewer, "fused"), role(viewer, "baseline:laplacian")
    assert isinstance(fused.data, da.Array) and isinstance(baseline.data, da.Array)  # the layers stay lazy
    assert grid_of(viewer).enabled and [ly for ly in viewer.layers if ly.visible] == [
        mri,
        viewer.layers["pet stack"],
        fused,
        baseline,
    ]
    np.testing.assert_allclose(
        np.asarray(baseline.data[2]), fuse_baseline("laplacian", *(x[2] for x in stack_pair)), atol=1e-5
    )
    plan = plan_fusion(stack_pair[0][2], stack_pair[1][2], "PET-MRI", a_limits=tuple(mri.contrast_limits), b_rgb=True)
    want = jobs.metric_rows(plan.run_slice(0), plan, 0, ("laplacian",))
    assert list(widget.table_data) == [jobs.NETWORK, "laplacian"]
    for column, row in want.items():
        for metric, value in row.items():
            if metric != metric_registry.TIME:
                np.testing.assert_allclose(widget.table_data[column][metric], value, rtol=1e-5, err_msg=metric)
    assert "metrics: the current slice" in widget.status.text()
    assert metric_box(widget).title() == "Metrics (axial slice 2)"
    choose_map(widget, "attention: functional")  # computed now (lazily), the baselines kept in the result
    wait_idle(widget)
    att = role(viewer, "attention:1")
    assert isinstance(att.data, da.Array) and np.isnan(np.asarray(att.data[2])[:3]).all()  # shown as the others
    assert "baseline:laplacian" in widget.last_result()


# 6 ------------------------------------------------------------------ which slice the numbers are for


def metric_box(widget) -> QGroupBox:
    return widget.table.parentWidget()


def test_the_metric_title_names_the_slice_and_says_when_the_view_shows_another_plane(
    lightfusion, stack_pair, colour_pair, fuse_now, role, wait_idle
):
    viewer, widget = lightfusion
    viewer.add_image(stack_pair[0], name="mri stack")
    viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    viewer.dims.set_current_step(0, 3)
    fuse_now(widget)
    box = metric_box(widget)
    assert box.title() == "Metrics (axial slice 3)" and "axial slice 3" in box.toolTip()
    viewer.dims.order = (1, 0, 2)  # a coronal view of the stack: the table is still of axial slice 3
    assert box.title() == "Metrics (axial slice 3, not the plane on view)" and "not for the plane" in box.toolTip()
    viewer.dims.order = (0, 1, 2)
    assert box.title() == "Metrics (axial slice 3)"
    viewer.dims.ndisplay = 3
    assert "not the plane on view" in box.title()
    viewer.dims.ndisplay = 2
    mri, pet = viewer.add_image(colour_pair[0], name="MRI"), viewer.add_image(colour_pair[1], name="PET")
    widget.set_pair(mri, pet)
    fuse_now(widget)
    assert box.title() == "Metrics (the image)"
    choose_map(widget, "attention: functional")  # a 2D map in a viewer that also holds a stack
    wait_idle(widget)
    assert role(viewer, "attention:1").colorbar.visible


# 7 ------------------------------------------------------------------ names


def _save(path, image) -> str:
    from skimage.io import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, image, check_contrast=False)
    return str(path)


def test_names_put_what_and_which_first_without_repeating_folders(
    lightfusion, colour_pair, tmp_path, fuse_now, role, outputs
):
    viewer, widget = lightfusion
    grey = np.repeat(colour_pair[0][..., None], 3, -1)
    viewer.open(_save(tmp_path / "MRI" / "23.png", grey))  # as the Harvard test set is laid out
    viewer.open(_save(tmp_path / "PET" / "23.png", colour_pair[1]))
    choose_map(widget, "attention: functional")  # so that Fuse computes (and names) the maps
    fuse_now(widget)
    label = "MRI 23 + PET 23 · PET-MRI"
    assert role(viewer, "fused").name == label
    names = {ly.metadata["lightfusion"]["role"]: ly.name for ly in outputs(viewer)}
    assert names["attention:0"] == f"attention · MRI · {label}" and names["attention:1"] == f"attention · PET · {label}"
    assert names["surprise:1"] == f"surprise · PET · {label}" and names["backdrop"] == f"grey · MRI · {label}"
    assert names["weight"] == f"mix weight · MRI 1, PET 0 · {label}"
    starts = [name[:15] for role_, name in names.items() if role_ != "fused"]
    assert len(set(starts)) == len(starts)  # told apart by what the layer list keeps of a long name
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    mri = viewer.open(_save(tmp_path / "PET-MRI" / "MRI.png", grey))[0]  # files named by modality
    pet = viewer.open(_save(tmp_path / "PET-MRI" / "PET.png", colour_pair[1]))[0]
    widget.set_pair(mri, pet)
    fuse_now(widget)
    assert role(viewer, "fused").name == "MRI + PET · PET-MRI"  # not "PET-MRI MRI + PET-MRI PET"


def test_dicom_series_names_give_short_result_names(lightfusion, colour_pair, fuse_now, role):
    viewer, widget = lightfusion
    suv = colour_pair[1].astype(np.float32) @ np.array([0.3, 0.6, 0.1], np.float32) / 25.0
    mr = viewer.add_image(colour_pair[0], name="MR · T1 MPRAGE", metadata={"clinical": {"modality": "MR"}})
    pt = viewer.add_image(
        suv,
        name="PT · PET AC FDG brain (SUV)",
        colormap="inferno",
        metadata={"clinical": {"modality": "PT", "unit": "SUV"}},
    )
    widget.set_pair(mr, pt)
    widget.preset.setCurrentText("PET-MRI")
    choose_map(widget, "attention: functional")
    fuse_now(widget)
    assert role(viewer, "fused").name == "MRI + PET · PET-MRI"
    assert role(viewer, "attention:1").name == "attention · PET · MRI + PET · PET-MRI"
    t2 = Image(colour_pair[0], name="MR · T2 FLAIR", metadata={"clinical": {"modality": "MR"}})
    assert layer_io.display_names(mr, t2) == ("T1 MPRAGE", "T2 FLAIR")  # two series of one modality


def test_compare_and_the_figure_put_the_anatomical_image_first_under_the_same_names(
    lightfusion, grey_pair, qtbot, tmp_path, monkeypatch, wait_idle, role
):
    from napari_lightfusion._qt import figure

    viewer, widget = lightfusion
    ct = viewer.add_image(grey_pair[1], name="CT")  # opened first: below the MRI in the layer list
    mri = viewer.add_image(grey_pair[0], name="MRI")
    assert widget.pair() == (mri, ct)
    widget.baseline.setCurrentText("laplacian")
    widget.compare()
    wait_idle(widget)
    tiles = [ly for ly in viewer.layers if ly.visible]
    assert tiles == [mri, ct, role(viewer, "fused"), role(viewer, "baseline:laplacian")]  # anatomical first
    assert [ly.name for ly in tiles] == ["MRI", "CT", "MRI + CT · CT-MRI", "laplacian · MRI + CT"]
    seen = {}
    monkeypatch.setattr(figure, "export_figure", lambda tiles, table, path, **kw: seen.update(tiles=tiles) or path)
    widget.export_figure(tmp_path / "f.png")
    assert [label for label, _ in seen["tiles"]] == ["MRI", "CT", "LightFusionNet · CT-MRI", "laplacian"]
