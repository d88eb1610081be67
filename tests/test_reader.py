"""File > Open of DICOM and NIfTI (napari_lightfusion._reader): npe2, a real viewer, display, notifications."""

from __future__ import annotations

import shutil
import time

import nibabel
import npe2
import numpy as np
import pytest
from dicom_series import write_ct_series, write_mr_series, write_pet_series
from pydicom.data import get_testdata_file

from napari_lightfusion._reader import SOFT_TISSUE, display, get_reader, guess_modality, read_dicom_layers
from napari_lightfusion.geometry import Geometry

PLUGIN = "napari-lightfusion"
RNG = np.random.default_rng(3)


def _pet(shape=(12, 20, 20)):
    z, y, x = np.indices(shape)
    return 1500.0 + 40000.0 * np.exp(-((z - 6) ** 2 + (y - 10) ** 2 + (x - 10) ** 2) / 8.0)


@pytest.fixture(autouse=True)
def discovered():
    """npe2's plugin manager knows the installed plugins (napari discovers them when it starts)."""
    npe2.PluginManager.instance().discover()


@pytest.fixture
def shown(monkeypatch):
    """The notifications the reader shows: ``{"warning": [...], "info": [...]}``."""
    from napari.utils import notifications

    seen = {"warning": [], "info": []}
    monkeypatch.setattr(notifications, "show_warning", seen["warning"].append)
    monkeypatch.setattr(notifications, "show_info", seen["info"].append)
    return seen


def _nifti(path, data, affine):
    nibabel.save(nibabel.Nifti1Image(data, affine), path)
    return path


def test_get_reader_says_none_quickly_for_what_is_not_dicom_or_nifti(tmp_path):
    (tmp_path / "pngs").mkdir()
    for i in range(300):
        (tmp_path / "pngs" / f"slice{i:03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "a.zarr").mkdir()
    start = time.process_time()  # CPU time: the work done, not how busy the machine is
    assert get_reader(str(tmp_path / "pngs")) is None
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "a.zarr")) is None
    assert get_reader(str(tmp_path / "missing.nii.gz")) is None
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "k3f9")  # a name napari's patterns do not offer
    assert get_reader(str(tmp_path / "k3f9")) is read_dicom_layers
    assert time.process_time() - start < 1.0


def test_npe2_reads_a_folder_a_file_and_a_nifti(tmp_path):
    written = write_mr_series(tmp_path / "mr", RNG.integers(0, 3000, (10, 16, 16)), spacing=(1.5, 0.9, 0.9))
    [(data, kwargs, kind)] = npe2.read([str(written.folder)], stack=False, plugin_name=PLUGIN)
    assert kind == "image" and data.shape == (10, 16, 16) and kwargs["name"] == "MR \u00b7 T1 MPRAGE"
    np.testing.assert_allclose(kwargs["scale"], (1.5, 0.9, 0.9))
    one = written.files[0]  # extension-less (digits, as IM0001): napari offers it to the plugin, which checks "DICM"
    [(data, kwargs, _)] = npe2.read([str(one)], stack=False, plugin_name=PLUGIN)
    assert data.ndim == 2 and len(kwargs["scale"]) == 2 and kwargs["metadata"]["clinical"]["files"] == [str(one)]
    affine = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -120], [0, 0, 3.0, -60], [0, 0, 0, 1]])
    path = _nifti(tmp_path / "sub-01_pet.nii.gz", RNG.uniform(0, 9, (8, 7, 6)).astype(np.float32), affine)
    [(data, kwargs, _)] = npe2.read([str(path)], stack=False, plugin_name=PLUGIN)
    clinical = kwargs["metadata"]["clinical"]
    assert data.shape == (6, 7, 8) and kwargs["name"] == "sub-01_pet"
    assert clinical["modality"] == "PT" and clinical["source"] == "nifti" and clinical["unit"] == ""
    expected = Geometry.from_ras(clinical["nifti"]["affine_ras"])
    np.testing.assert_allclose(clinical["geometry"], expected.affine)
    np.testing.assert_allclose(kwargs["scale"], expected.spacing)
    # voxel (i, j, k) of the file lies at affine @ (i, j, k) in RAS: (S, P, L) = (z, -y, -x)
    ras = affine @ np.array([7, 0, 5, 1.0])
    index = np.linalg.solve(expected.affine, np.r_[ras[2], -ras[1], -ras[0], 1.0])[:3]
    assert np.asarray(data)[tuple(np.round(index).astype(int))] == pytest.approx(
        np.asarray(nibabel.load(path).dataobj)[7, 0, 5]
    )


def test_the_manifest_offers_extension_less_dicom_names_to_the_plugin_alone(tmp_path):
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "IM0001")
    readers = {r.plugin_name for r in npe2.PluginManager.instance().iter_compatible_readers([str(tmp_path / "IM0001")])}
    assert readers == {PLUGIN}  # so napari opens it without asking which reader
    [(data, kwargs, _)] = npe2.read([str(tmp_path / "IM0001")], stack=False)
    assert kwargs["metadata"]["clinical"]["modality"] == "CT" and data.shape == (128, 128)


def test_nifti_in_colour_and_with_several_volumes(tmp_path):
    rgb = np.zeros((6, 5, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["G"] = 200
    [(data, kwargs, _)] = npe2.read([str(_nifti(tmp_path / "c.nii", rgb, np.eye(4)))], stack=False, plugin_name=PLUGIN)
    assert kwargs["rgb"] and data.shape == (4, 5, 6, 3) and np.asarray(data)[0, 0, 0].tolist() == [0, 200, 0]
    path = _nifti(tmp_path / "dynamic.nii.gz", np.zeros((4, 4, 4, 3), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="dynamic.nii.gz: a 3D NIfTI volume is needed"):
        npe2.read([str(path)], stack=False, plugin_name=PLUGIN)


def test_modality_is_guessed_from_the_words_of_a_nifti_name():
    assert [guess_modality(n) for n in ("PET_suv.nii.gz", "ct-head.nii", "sub-1_T1w.nii.gz", "brain.nii")] == [
        "PT",
        "CT",
        "MR",
        "",
    ]


def test_display_ct_window_pet_from_zero_mr_percentiles():
    assert display("CT", "HU", np.zeros((3, 4, 4)))["contrast_limits"] == SOFT_TISSUE
    pet = display("PT", "SUV", np.full((40, 8, 8), 0.5))
    assert pet["contrast_limits"] == (0.0, 3.0) and pet["blending"] == "additive"
    assert pet["colormap"].name == "PET (black-red-yellow)"
    values = RNG.uniform(0, 1000, (20, 30, 30))
    low, high = display("MR", "", values)["contrast_limits"]
    assert low == pytest.approx(5, abs=3) and high == pytest.approx(995, abs=3)


def test_a_study_opens_in_a_viewer_with_a_clinical_display(make_napari_viewer, tmp_path, shown):
    pet = write_pet_series(tmp_path / "study" / "pet", _pet(), series_number=4)
    ct = write_ct_series(
        tmp_path / "study" / "ct",
        RNG.integers(-900, 900, (10, 24, 24)),
        series_number=2,
        study_uid=pet.study_uid,
        frame_of_reference_uid=pet.frame_of_reference_uid,
    )
    (tmp_path / "study" / "DICOMDIR.txt").write_text("index")
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "study"), plugin=PLUGIN)
    assert [layer.name for layer in viewer.layers] == ["CT \u00b7 Head soft tissue (HU)", "PT \u00b7 PET AC (SUV)"]
    ct_layer, pet_layer = layers
    np.testing.assert_allclose(ct_layer.scale, ct.spacing)
    np.testing.assert_allclose(pet_layer.scale, pet.spacing)
    np.testing.assert_allclose(pet_layer.translate, pet.world(0, 0, 0))
    assert tuple(ct_layer.contrast_limits) == SOFT_TISSUE and ct_layer.colormap.name == "gray"
    assert pet_layer.colormap.name == "PET (black-red-yellow)" and pet_layer.blending == "additive"
    low, high = pet_layer.contrast_limits
    assert low == 0 and high >= 3.0
    assert pet_layer.metadata["clinical"]["suv"]["factor"] == pytest.approx(pet.suv_factor)
    assert shown == {"warning": [], "info": []}


def test_notifications_name_a_bad_series_and_a_missing_suv_tag(tmp_path, shown):
    write_pet_series(tmp_path / "pet", _pet((4, 8, 8)), omit=("PatientWeight",))
    bad = write_mr_series(tmp_path / "mr", RNG.integers(0, 99, (5, 8, 8)))
    bad.files[2].unlink()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "IM0001")
    layers = read_dicom_layers(str(tmp_path))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["CT \u00b7 series 1 (HU)", "PT \u00b7 PET AC (Bq/ml)"]
    [warning] = shown["warning"]
    assert "MR series 1 'T1 MPRAGE'" in warning and "missing slice" in warning and str(bad.files[1]) in warning
    assert any("PatientWeight" in note and "PT \u00b7 PET AC" in note for note in shown["info"])


def test_no_readable_series_raises_one_line(tmp_path, shown):
    written = write_mr_series(tmp_path / "mr", RNG.integers(0, 99, (5, 8, 8)))
    written.files[0].write_bytes(written.files[0].read_bytes()[:-50])
    with pytest.raises(ValueError, match="cut short") as caught:
        npe2.read([str(written.folder)], stack=False, plugin_name=PLUGIN)
    assert "\n" not in str(caught.value) and shown["warning"] == []
