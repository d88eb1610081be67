"""Reading DICOM series (napari_lightfusion.dicom_reader): order, placement in the patient, HU and SUV, bad input.

The series are written by ``tests/dicom_series.py`` the way scanners write
them (shuffled files, meaningless names, per-slice PET slopes); pydicom's
bundled CT_small.dcm / MR_small.dcm / rtdose.dcm give real-world headers.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime

import dask.array as da
import numpy as np
import pydicom
import pytest
from dicom_series import (
    CORONAL,
    PATIENT,
    SAGITTAL,
    write_ct_series,
    write_enhanced_mr,
    write_mr_series,
    write_pet_series,
)
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset

from napari_lightfusion.dicom_files import is_dicom
from napari_lightfusion.dicom_reader import read_dicom
from napari_lightfusion.suv import suv_factor

RNG = np.random.default_rng(7)


def _activity(shape=(12, 24, 28)):
    """Bq/ml: a warm background and a hot sphere, so that each slice has its own maximum (and slope)."""
    z, y, x = np.indices(shape)
    hot = np.exp(-((z - 6) ** 2 + (y - 12) ** 2 + (x - 14) ** 2) / 18.0)
    return 2000.0 + 30000.0 * hot + RNG.uniform(0, 500, shape)


def _one(path):
    images, problems = read_dicom(path)
    assert len(images) == 1 and not problems, problems
    return images[0]


def _voxel_at(image, world) -> tuple[int, ...]:
    """The index of the layer's voxel at ``world`` (S, P, L mm), through the layer's own geometry."""
    index = np.linalg.solve(image.geometry.affine, np.r_[world, 1.0])[:3]
    assert np.allclose(index, np.round(index), atol=1e-4), index
    return tuple(int(round(v)) for v in index)


def test_pet_with_per_slice_slopes_is_in_suv_within_one_percent(tmp_path):
    activity = _activity()
    written = write_pet_series(
        tmp_path / "pet",
        activity,
        weight_kg=82.0,
        dose_bq=350e6,
        injection_time=datetime(2024, 1, 2, 9, 0),
        series_time=datetime(2024, 1, 2, 10, 5),
    )
    slopes = {float(pydicom.dcmread(f, stop_before_pixels=True).RescaleSlope) for f in written.files}
    assert len(slopes) == len(written.files)  # a slope per slice, as PET scanners write
    by_hand = 82.0 * 1000 / (350e6 * 2 ** (-(65 * 60) / 6586.2))  # weight [g] / decayed dose [Bq]
    image = _one(written.folder)
    suv = np.asarray(image.data)
    assert image.clinical["unit"] == "SUV" and image.name == "PT \u00b7 PET AC (SUV)"
    np.testing.assert_allclose(suv, activity * by_hand, rtol=0.01)  # the Bq/ml written, in SUV
    np.testing.assert_allclose(suv, written.values * by_hand, rtol=1e-5)  # each slice's own slope applied
    record = image.clinical["suv"]
    assert record["factor"] == pytest.approx(by_hand, rel=1e-6)
    assert (record["weight_kg"], record["dose_bq"], record["half_life_s"]) == (82.0, 350e6, 6586.2)
    assert record["decay_s"] == 3900.0 and record["decay_correction"] == "START"
    assert image.notes == ()


def test_decay_across_midnight_without_start_datetime(tmp_path):
    written = write_pet_series(
        tmp_path / "pet",
        _activity((4, 8, 8)),
        start_datetime=False,
        injection_time=datetime(2024, 1, 1, 23, 30),
        series_time=datetime(2024, 1, 2, 0, 30),
    )
    record = _one(written.folder).clinical["suv"]
    assert record["decay_s"] == 3600.0
    assert record["factor"] == pytest.approx(written.suv_factor, rel=1e-9)


def test_admin_decay_correction_has_no_decay_factor(tmp_path):
    written = write_pet_series(tmp_path / "pet", _activity((4, 8, 8)), decay_correction="ADMIN", weight_kg=60)
    record = _one(written.folder).clinical["suv"]
    assert record["decay_s"] == 0.0 and record["factor"] == pytest.approx(60_000 / 370e6)


def test_series_time_after_the_acquisition_counts_decay_from_the_earliest_slice(tmp_path):
    # a series re-made after the scan: SeriesTime 11:00, slices acquired from 10:30:30 (QIBA's rule)
    written = write_pet_series(tmp_path / "pet", _activity((4, 8, 8)), tags={"SeriesTime": "110000"})
    assert _one(written.folder).clinical["suv"]["decay_s"] == 3630.0


@pytest.mark.parametrize(
    ("omit", "tags", "tag", "unit"),
    [
        (("PatientWeight",), None, "PatientWeight", "Bq/ml"),
        (("RadionuclideTotalDose",), None, "RadionuclideTotalDose", "Bq/ml"),
        (
            ("RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime"),
            None,
            "RadiopharmaceuticalStartTime",
            "Bq/ml",
        ),
        ((), {"Units": "CNTS"}, "Units", "counts"),
        ((), {"PatientWeight": "0"}, "PatientWeight", "Bq/ml"),
    ],
)
def test_suv_falls_back_to_the_stored_unit_naming_the_tag(tmp_path, omit, tags, tag, unit):
    written = write_pet_series(tmp_path / "pet", _activity((4, 8, 8)), omit=omit, tags=tags)
    image = _one(written.folder)
    assert image.clinical["suv"]["missing"] == tag and image.clinical["unit"] == unit
    assert tag in image.notes[0] and unit in image.notes[0]
    assert image.name == f"PT \u00b7 PET AC ({unit})"
    np.testing.assert_allclose(np.asarray(image.data), written.values, rtol=1e-6)


def test_suv_factor_needs_bqml():
    ds = Dataset()
    ds.Units = "GML"
    assert suv_factor(ds)["factor"] == 1.0  # SUV already
    ds.Units = "MGMINML"
    assert suv_factor(ds)["missing"] == "Units"


def test_ct_is_in_hu_exactly_and_named_after_its_series(tmp_path):
    hu = RNG.integers(-1024, 2000, (10, 20, 22)).astype(float)
    written = write_ct_series(tmp_path / "ct", hu)
    image = _one(written.folder)
    assert image.name == "CT \u00b7 Head soft tissue (HU)" and image.clinical["unit"] == "HU"
    np.testing.assert_array_equal(np.asarray(image.data), hu.astype(np.float32))
    assert image.data.dtype == np.float32


def test_shuffled_files_are_ordered_by_position_not_name_or_instance_number(tmp_path):
    volume = RNG.integers(0, 4000, (16, 12, 10)).astype(float)
    written = write_mr_series(tmp_path / "mr", volume, spacing=(1.5, 0.9, 0.8), origin=(-5.0, 10.0, 40.0))
    image = _one(written.folder)
    assert image.clinical["files"] == [str(f) for f in written.files]
    assert sorted(image.clinical["files"]) != image.clinical["files"]  # names say nothing of the order
    np.testing.assert_array_equal(np.asarray(image.data), volume.astype(np.float32))
    place = image.layer_kwargs()
    np.testing.assert_allclose(place["scale"], (1.5, 0.9, 0.8))
    np.testing.assert_allclose(place["translate"], (40.0, 10.0, -5.0))  # (S, P, L) of the first voxel
    assert place["units"] == ("mm",) * 3 and image.name == "MR \u00b7 T1 MPRAGE"
    assert isinstance(image.data, da.Array) and image.data.chunks[0] == (1,) * 16  # one chunk per slice


@pytest.mark.parametrize("orientation", [SAGITTAL, CORONAL])
def test_sagittal_and_coronal_series_are_laid_out_axially_where_the_dicom_puts_them(tmp_path, orientation):
    volume = RNG.integers(0, 4000, (8, 14, 12)).astype(float)
    written = write_mr_series(tmp_path / "mr", volume, orientation=orientation, spacing=(2.0, 1.0, 0.5))
    image = _one(written.folder)
    assert "affine" not in image.layer_kwargs() and not image.geometry.oblique
    data = np.asarray(image.data)
    for voxel in [(0, 0, 0), (3, 5, 7), (7, 13, 11), (5, 0, 11)]:
        assert data[_voxel_at(image, written.world(*voxel))] == volume[voxel]
    world = image.geometry.affine @ np.array([[0, 0, 0, 1], [data.shape[0] - 1, 0, 0, 1]]).T
    assert world[0, 1] > world[0, 0]  # the layer's first axis runs toward the head


def test_an_oblique_series_gets_an_affine(tmp_path):
    t = np.radians(20)
    orientation = (np.cos(t), np.sin(t), 0.0, -np.sin(t), np.cos(t), 0.0)
    volume = RNG.integers(0, 4000, (6, 10, 10)).astype(float)
    written = write_mr_series(tmp_path / "mr", volume, orientation=orientation)
    image = _one(written.folder)
    place = image.layer_kwargs()
    assert "affine" in place and "scale" not in place
    data = np.asarray(image.data)
    for voxel in [(0, 0, 0), (2, 9, 3), (5, 4, 9)]:
        world = written.world(*voxel)
        np.testing.assert_allclose(place["affine"] @ np.r_[voxel, 1], np.r_[world, 1], atol=1e-6)
        assert data[voxel] == volume[voxel]


def test_an_enhanced_multiframe_file_is_stacked_by_its_plane_positions(tmp_path):
    volume = RNG.integers(0, 1000, (9, 10, 12)).astype(float)
    written = write_enhanced_mr(tmp_path / "enhanced.dcm", volume, slope=0.5, intercept=10.0)
    image = _one(written.files[0])
    np.testing.assert_allclose(np.asarray(image.data), written.values)
    np.testing.assert_allclose(image.layer_kwargs()["scale"], written.spacing)
    np.testing.assert_allclose(image.layer_kwargs()["translate"], written.world(0, 0, 0))
    assert image.name == "MR \u00b7 Enhanced T2" and image.clinical["files"] == [str(written.files[0])]


def _dicomdir(path) -> None:
    """A file that is DICOM but no image (the index of a CD), as a study folder often holds."""
    ds = Dataset()
    ds.FileSetID, ds.SOPClassUID = "STUDY", "1.2.840.10008.1.3.10"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, "1.2.3"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _study(root):
    """A study folder: a PET/CT pair in two frames of reference, in sub-folders, with a DICOMDIR and a text file."""
    pet = write_pet_series(root / "A" / "1", _activity((6, 12, 12)), series_number=3)
    ct = write_ct_series(root / "A" / "2" / "deeper", RNG.integers(-500, 500, (8, 16, 16)), series_number=2)
    _dicomdir(root / "DICOMDIR")
    (root / "A" / "notes.txt").write_text("exported by the scanner\n")
    return pet, ct


def test_a_study_folder_gives_one_image_per_series_and_skips_what_is_not_an_image(tmp_path):
    pet, ct = _study(tmp_path)
    images, problems = read_dicom(tmp_path)
    assert problems == []
    assert [i.clinical["modality"] for i in images] == ["CT", "PT"]  # SeriesNumber order
    assert {i.clinical["dicom"]["FrameOfReferenceUID"] for i in images} == {
        pet.frame_of_reference_uid,
        ct.frame_of_reference_uid,
    }
    assert len({pet.frame_of_reference_uid, ct.frame_of_reference_uid}) == 2


def test_the_clinical_record_has_the_agreed_shape_and_no_name_shows_the_patient(tmp_path):
    pet, _ = _study(tmp_path)
    images, _ = read_dicom(tmp_path)
    for image in images:
        record = image.clinical
        json.dumps(record)  # plain JSON
        expected = {"modality", "unit", "source", "files", "geometry", "dicom"} | (
            {"suv"} if record["modality"] == "PT" else set()
        )
        assert set(record) == expected and record["source"] == "dicom"
        np.testing.assert_allclose(record["geometry"], image.geometry.affine)
        assert record["dicom"]["PatientID"] == PATIENT["PatientID"]
        assert record["dicom"]["PatientName"] == PATIENT["PatientName"]
        assert all(isinstance(v, str) for v in record["dicom"].values())
        assert record["dicom"]["SOPClassUID"] and record["dicom"]["StudyInstanceUID"]
        assert not any(p in image.name for p in ("Doe", "Jane", PATIENT["PatientID"], PATIENT["PatientBirthDate"]))
    assert images[1].clinical["dicom"]["SeriesInstanceUID"] == pet.series_uid


def test_a_series_without_description_is_named_by_its_number(tmp_path):
    written = write_mr_series(tmp_path / "mr", RNG.integers(0, 99, (3, 8, 8)), description="", series_number=7)
    assert _one(written.folder).name == "MR \u00b7 series 7"


def _bad(path, *words):
    with pytest.raises(ValueError) as caught:
        read_dicom(path)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert str(word) in message, message
    return message


def test_a_truncated_slice_is_refused_naming_the_file(tmp_path):
    written = write_mr_series(tmp_path / "mr", RNG.integers(0, 99, (6, 16, 16)))
    cut = written.files[2]
    cut.write_bytes(cut.read_bytes()[:-100])
    _bad(written.folder, cut, "cut short")


def test_a_missing_slice_is_refused_naming_the_gap(tmp_path):
    written = write_mr_series(tmp_path / "mr", RNG.integers(0, 99, (8, 8, 8)))
    written.files[4].unlink()
    _bad(written.folder, "missing slice", written.files[3], written.files[5])


def test_uneven_spacing_is_refused(tmp_path):
    offsets = np.array([0, 2, 4, 6, 7, 9, 11.0])
    positions = np.array([[0.0, 0.0, z] for z in offsets])
    written = write_mr_series(tmp_path / "mr", RNG.integers(0, 99, (7, 8, 8)), positions=positions)
    _bad(written.folder, "uneven spacing", written.files[3])


def test_mixed_image_sizes_in_one_series_are_refused(tmp_path):
    first = write_mr_series(tmp_path / "mr", RNG.integers(0, 99, (4, 16, 16)))
    write_mr_series(
        tmp_path / "mr",
        RNG.integers(0, 99, (2, 8, 8)),
        series_uid=first.series_uid,
        origin=(-32.0, -32.0, 20.0),
        seed=1,
    )
    _bad(first.folder, "differ in size")


def test_an_undecodable_transfer_syntax_is_refused_naming_it(tmp_path):
    shutil.copy(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), tmp_path / "IM0001")
    _bad(tmp_path, tmp_path / "IM0001", "JPEG-LS", "no decoder")


def test_gantry_tilt_is_refused(tmp_path):
    written = write_ct_series(tmp_path / "ct", RNG.integers(-99, 99, (6, 8, 8)), tilt_deg=12.0)
    _bad(written.folder, "gantry tilt of 12.0\u00b0 is not supported: resample the series first")


def test_in_a_study_a_bad_series_is_reported_and_the_others_open(tmp_path):
    _, ct = _study(tmp_path)
    ct.files[3].write_bytes(ct.files[3].read_bytes()[:-10])
    images, problems = read_dicom(tmp_path)
    assert [i.clinical["modality"] for i in images] == ["PT"]
    assert len(problems) == 1 and "CT series 2 'Head soft tissue'" in problems[0] and str(ct.files[3]) in problems[0]
    ct.files[5].write_bytes(ct.files[5].read_bytes()[:400])  # cut in its header: that file is reported too
    images, problems = read_dicom(tmp_path)
    assert len(images) == 1 and any(p.startswith(f"cannot read {ct.files[5]}: ") for p in problems)


def test_nothing_readable_is_one_valueerror(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    _bad(tmp_path, "no DICOM image series found")


def test_bundled_ct_and_mr_files_open_with_their_modality_unit_and_spacing():
    ct = _one(get_testdata_file("CT_small.dcm"))
    raw = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array
    assert ct.clinical["modality"] == "CT" and ct.clinical["unit"] == "HU" and ct.data.shape == (128, 128)
    np.testing.assert_array_equal(np.asarray(ct.data), raw.astype(np.float32) - 1024)
    np.testing.assert_allclose(ct.layer_kwargs()["scale"], (0.661468, 0.661468))
    mr = _one(get_testdata_file("MR_small.dcm"))
    assert mr.clinical["modality"] == "MR" and mr.clinical["unit"] == "" and mr.data.ndim == 2
    np.testing.assert_allclose(mr.layer_kwargs()["scale"], (0.3125, 0.3125))
    np.testing.assert_allclose(mr.layer_kwargs()["translate"], (-91.2, -83.9063))
    seg = _one(get_testdata_file("liver_1frame.dcm"))  # an enhanced header: spacing from PixelMeasuresSequence
    assert seg.data.shape == (512, 512) and seg.clinical["modality"] == "SEG"
    np.testing.assert_allclose(seg.layer_kwargs()["scale"], (0.810547, 0.810547))
    dose = _one(get_testdata_file("rtdose.dcm"))  # a multi-frame volume placed by GridFrameOffsetVector
    raw = pydicom.dcmread(get_testdata_file("rtdose.dcm")).pixel_array
    assert dose.data.shape == (15, 10, 10) and dose.clinical["unit"] == ""  # DoseUnits RELATIVE
    np.testing.assert_allclose(np.asarray(dose.data), raw * 1e-6, rtol=1e-6)  # x DoseGridScaling


def test_dicom_is_found_by_its_magic_not_its_name(tmp_path):
    written = write_mr_series(tmp_path / "mr", RNG.integers(0, 99, (2, 4, 4)))
    assert all(is_dicom(f) and not f.suffix for f in written.files)
    assert is_dicom(get_testdata_file("ExplVR_LitEndNoMeta.dcm"))  # no preamble: the fallback
    (tmp_path / "x.dcm").write_text("not really DICOM")
    assert not is_dicom(tmp_path / "x.dcm") and not is_dicom(tmp_path / "nothing-here")
