"""A radiologist's first minutes, end to end: a DICOM MR and a PET of one patient, on different grids and a few
millimetres apart, opened from their folders, checked, aligned and fused on the MR grid in colour.

The series are written the way scanners write them (tests/dicom_series.py): the MR at 1.5 x 1 x 1 mm, the PET
at 3 x 2 x 2 mm in Bq/ml with a slope per slice, under one frame of reference; the "moved" PET is the same
uptake with the patient 6 mm further left and 3 mm further back.
"""

from __future__ import annotations

import numpy as np
import pytest
from dicom_series import write_mr_series, write_pet_series

from napari_lightfusion import colour
from napari_lightfusion.geometry import Geometry

#: The patient's displacement in the moved PET, world (S, P, L) mm.
MOVED = np.array([0.0, 3.0, 6.0])


def _head(world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MR-like intensity and FDG-like uptake (Bq/ml) at world points ``(..., 3)`` (S, P, L mm, head at 0)."""
    s, p, l_ = world[..., 0], world[..., 1], world[..., 2]
    skull = (s / 16) ** 2 + (p / 26) ** 2 + (l_ / 22) ** 2
    brain = (s / 13) ** 2 + (p / 22) ** 2 + (l_ / 18) ** 2
    ventricle = ((s - 1) / 5) ** 2 + ((p + 2) / 8) ** 2 + (np.abs(l_) - 4) ** 2 / 9
    mr = np.where(skull < 1, 900.0, 40.0) - np.where(brain < 1, 300.0, 0.0) - np.where(ventricle < 1, 450.0, 0.0)
    mr += 120 * np.sin(p / 3.0) * (brain < 1)  # cortical folds, so that mutual information has texture
    uptake = np.where(brain < 1, 6000.0, 0.0) + np.where(skull < 1, 1500.0, 0.0)
    for centre, sigma, peak in (((4, -8, 7), 3.0, 25000.0), ((-3, 9, -6), 4.0, 18000.0)):
        r2 = ((world - np.array(centre, float)) ** 2).sum(-1)
        uptake += peak * np.exp(-r2 / (2 * sigma**2))
    return mr, uptake


def _grid(shape, spacing, origin) -> np.ndarray:
    """World positions (S, P, L) of every voxel of an axial grid."""
    axes = [o + s * np.arange(n) for n, s, o in zip(shape, spacing, origin)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """An MR series and two PET series (in register, and moved) of one patient, as folders."""
    root = tmp_path_factory.mktemp("study")
    mr_shape, mr_spacing, mr_origin = (20, 64, 56), (1.5, 1.0, 1.0), (-15.0, -32.0, -28.0)
    mr, _ = _head(_grid(mr_shape, mr_spacing, mr_origin))
    pet_shape, pet_spacing, pet_origin = (11, 32, 28), (3.0, 2.0, 2.0), (-15.0, -32.0, -28.0)
    points = _grid(pet_shape, pet_spacing, pet_origin)
    _, still = _head(points)
    _, moved = _head(points - MOVED)  # the patient lies MOVED further on: uptake seen there
    frame = "1.2.826.0.1.3680043.8.498.4242"
    study_uid = "1.2.826.0.1.3680043.8.498.4243"

    def series(write, folder, values, spacing, origin, number, **extra):
        """One series of the study; ImagePositionPatient's (x=L, y=P, z=S) of the first slice from ``origin``."""
        return write(
            root / folder,
            values,
            spacing=spacing,
            origin=tuple(origin[::-1]),
            frame_of_reference_uid=frame,
            study_uid=study_uid,
            series_number=number,
            **extra,
        )

    written = {
        "mr": series(write_mr_series, "MR", mr, mr_spacing, mr_origin, 2),
        "pet": series(write_pet_series, "PET", still, pet_spacing, pet_origin, 3),
        "moved": series(write_pet_series, "PET moved", moved, pet_spacing, pet_origin, 4, seed=1),
    }
    return root, written


def _open(viewer, folder):
    layers = viewer.open(str(folder), plugin="napari-lightfusion")
    assert len(layers) == 1
    return layers[0]


def _luma(layer) -> np.ndarray:
    return colour.luminance(np.asarray(layer.data, dtype=np.float64))


def test_dicom_pet_and_mr_fuse_on_the_mr_grid_in_colour_after_align(
    lightfusion, study, qtbot, role, wait_idle, fingerprint, fuse_now
):
    from napari.utils.notifications import notification_manager

    viewer, widget = lightfusion
    root, written = study
    mr = _open(viewer, root / "MR")
    pet = _open(viewer, root / "PET moved")
    assert mr.metadata["clinical"]["modality"] == "MR" and pet.metadata["clinical"]["unit"] == "SUV"
    np.testing.assert_allclose(mr.scale, (1.5, 1.0, 1.0))
    np.testing.assert_allclose(pet.scale, (3.0, 2.0, 2.0))
    assert widget.pair() == (mr, pet) and widget.preset.currentText() == "PET-MRI"
    assert "Fuse resamples it onto the grid" in widget.status.text()
    before = fingerprint(pet)

    # Fuse: on the MR grid, placed like the MR, in colour (the PET's colour table), and the shift is caught
    seen = len(notification_manager.records)
    fuse_now(widget)
    fused = role(viewer, "fused")
    assert fused.rgb and fused.data.shape == (*mr.data.shape, 3)
    np.testing.assert_allclose(fused.scale, mr.scale)
    np.testing.assert_allclose(fused.translate, mr.translate)
    hot = np.ptp(np.asarray(fused.data), axis=-1) > 0.2  # saturated colour: uptake shows through
    assert hot.mean() > 0.01
    news = [str(n.message) for n in notification_manager.records[seen:]]
    shifted = [m for m in news if "shifted by" in m]
    assert shifted and widget.align_panel.isVisibleTo(widget), news
    offer = next(n for n in notification_manager.records[seen:] if "shifted by" in str(n.message))
    assert offer.actions and offer.source == "napari-lightfusion"  # its card's "Source:" line names the plugin
    distance = float(shifted[0].split("shifted by ~")[1].split(" mm")[0])
    assert abs(distance - np.linalg.norm(MOVED)) < 2.0
    assert "SUVmax" in widget.uptake.text()

    # Align: a transform on the PET layer (its data untouched), then the fusion matches the unmoved PET's
    widget.align_panel.align()
    qtbot.waitUntil(lambda: not widget.align_panel.busy, timeout=60_000)
    assert fingerprint(pet) == before
    moved_by = Geometry(pet.affine.affine_matrix).origin
    np.testing.assert_allclose(moved_by, -MOVED, atol=1.0)
    fuse_now(widget)
    aligned = _luma(role(viewer, "fused"))
    assert role(viewer, "fused").metadata["lightfusion"]["alignment"]["method"].startswith("rigid")

    still = _open(viewer, root / "PET")
    widget.set_pair(mr, still)
    fuse_now(widget)
    reference = _luma(role(viewer, "fused"))
    assert np.corrcoef(aligned.ravel(), reference.ravel())[0, 1] > 0.98
    assert np.abs(aligned - reference).mean() < 0.02

    # Undo puts the PET back where it was
    widget.align_panel.undo()
    np.testing.assert_allclose(pet.affine.affine_matrix, np.eye(4))
    wait_idle(widget)


def test_the_cursor_readout_gives_each_input_in_its_unit(lightfusion, study):
    viewer, widget = lightfusion
    root, written = study
    mr = _open(viewer, root / "MR")
    pet = _open(viewer, root / "PET")
    widget.set_pair(mr, pet)
    k, r, c = 5, 16, 14  # a PET voxel, and the world point at its centre
    point = written["pet"].world(k, r, c)
    viewer.cursor.position = tuple(point)
    text = widget.readout.text()
    suv = written["pet"].values[k, r, c] * written["pet"].suv_factor
    assert f"{suv:.3g} SUV" in text and "MR" in text and "PET" in text, text


def test_fuse_volume_takes_dicom_folders_warns_aligns_and_writes_nifti(study, tmp_path, capsys):
    from napari_lightfusion.cli import main
    from napari_lightfusion.ome_zarr_output import OmeZarrOutput
    from napari_lightfusion.volume_reader import open_volume

    root, written = study
    mr = open_volume(root / "MR")
    argv = ["fuse-volume", str(root / "MR"), str(root / "PET moved"), "--device", "cpu"]
    out = tmp_path / "fused.nii.gz"
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "shifted by" in err and "--align" in err and "PET colour table" in err and "another grid" in err, err
    back = open_volume(out)
    assert back.rgb and back.data.shape[:3] == mr.data.shape
    np.testing.assert_allclose(back.geometry.affine, mr.geometry.affine, atol=1e-4)

    aligned = tmp_path / "aligned.zarr"
    assert main([*argv, "--out", str(aligned), "--align"]) == 0
    err = capsys.readouterr().err
    assert "aligned PET moved" in err and "shifted by" not in err, err
    record = OmeZarrOutput(aligned).read_sidecar()
    transform = np.array(record["alignment"]["world_transform"])
    np.testing.assert_allclose(transform[:3, 3], -MOVED, atol=1.0)
    assert record["settings"]["aligned"] and record["settings"]["colormap"] == "pet"


def test_lazy_layers_on_other_grids_fuse_lazily_on_the_anatomical_grid(lightfusion, fuse_now, role):
    import dask.array as da

    from napari_lightfusion.resample import resample

    viewer, widget = lightfusion
    rng = np.random.default_rng(3)
    mr, pet = rng.random((8, 32, 32)), rng.random((4, 16, 16)) * 5
    a = viewer.add_image(da.from_array(mr, chunks=(1, 32, 32)), name="MRI", scale=(1.0, 1.0, 1.0))
    b = viewer.add_image(
        da.from_array(pet, chunks=(1, 16, 16)),
        name="PET",
        scale=(2.0, 2.0, 2.0),
        colormap="inferno",
        contrast_limits=(0.0, 5.0),
    )
    widget.set_pair(a, b)
    fuse_now(widget)
    fused = role(viewer, "fused")
    assert isinstance(fused.data, da.Array) and fused.data.shape == (8, 32, 32, 3)
    on_grid = resample(pet, np.diag([2.0, 2.0, 2.0, 1.0]), mr.shape, np.eye(4))
    table = np.asarray(b.colormap.map(np.linspace(0, 1, 256)), np.float32)[:, :3]
    from napari_lightfusion import fuse

    want = fuse(
        mr[3], colour.colourise(on_grid[3], (0.0, 5.0), table), "PET-MRI", a_limits=tuple(a.contrast_limits)
    ).fused
    np.testing.assert_allclose(np.asarray(fused.data[3]), want, atol=1e-4)


def test_the_readout_shows_a_grey_rgb_image_as_one_value_and_colour_as_rgb():
    from types import SimpleNamespace

    from napari_lightfusion.session.readouts import value_at

    def layer(data, rgb):
        return SimpleNamespace(
            data=data, rgb=rgb, multiscale=False, metadata={}, world_to_data=lambda world: np.asarray(world, float)
        )

    grey = np.full((4, 4, 3), 80, np.uint8)
    colour = grey.copy()
    colour[1, 2] = (200, 10, 0)
    assert value_at(layer(grey, True), (1, 2)) == "80"
    assert value_at(layer(colour, True), (1, 2)) == "RGB 200 10 0"
    assert value_at(layer(grey, True), (9, 2)) == "outside"
