"""Fused volumes back out: NIfTI files, DICOM derived series, OME-Zarr that napari opens in place and in colour."""

import errno
import gzip
import json
from types import SimpleNamespace

import nibabel
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import zarr
from pydicom.dataset import validate_file_meta

import napari_lightfusion
from napari_lightfusion.cli import main
from napari_lightfusion.clinical_export import output_format
from napari_lightfusion.dicom_series_writer import read_dicom_source, write_dicom_series
from napari_lightfusion.geometry import Geometry, canonical, slice_offsets, uniform_spacing
from napari_lightfusion.nifti_writer import NiftiWriter, write_nifti
from napari_lightfusion.ome_zarr_output import OmeZarrOutput
from napari_lightfusion.volume_reader import open_volume
from napari_lightfusion.volumes import fuse_volume
from napari_lightfusion.zarr_reader import get_reader

WAIT_MS = 60_000

#: Axial slices 3 mm apart, 0.9 x 0.8 mm pixels, voxel (0, 0, 0) at S -40, P -100, L 20.
AXIAL = Geometry(np.array([[3.0, 0, 0, -40], [0, 0.9, 0, -100], [0, 0, 0.8, 20], [0, 0, 0, 1]]))

#: The same spacing turned 20 degrees about the head-foot axis (an oblique acquisition).
_t = np.deg2rad(20)
OBLIQUE = Geometry(
    np.array([[1, 0, 0, 0], [0, np.cos(_t), -np.sin(_t), 0], [0, np.sin(_t), np.cos(_t), 0], [0, 0, 0, 1.0]])
    @ AXIAL.affine
)

#: What the project's DICOM reader keeps of an anatomical series (layer.metadata["clinical"]["dicom"]).
SOURCE = {
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1001",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.1002",
    "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.1003",
    "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4",
    "Modality": "MR",
    "SeriesDescription": "T1 MPRAGE",
    "SeriesNumber": "7",
    "PatientName": "Müller^Anna",
    "PatientID": "P123",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "StudyID": "S1",
    "StudyDate": "20240102",
    "StudyTime": "101500",
    "AccessionNumber": "ACC9",
    "ReferringPhysicianName": "House^G",
    "Manufacturer": "Scanner Co",
}

#: Secondary Capture IOD attributes of type 1 (a value) and 2 (present), and those a viewer places slices by.
REQUIRED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "Manufacturer",
    "ConversionType",
    "InstanceNumber",
    "PatientOrientation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelData",
    "SOPClassUID",
    "SOPInstanceUID",
    "SpecificCharacterSet",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelSpacing",
    "SliceThickness",
    "FrameOfReferenceUID",
)
TYPE_1 = (
    "StudyInstanceUID",
    "Modality",
    "SeriesInstanceUID",
    "ConversionType",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "PixelData",
    "SOPClassUID",
    "SOPInstanceUID",
)


@pytest.fixture(scope="module")
def grey():
    return np.random.default_rng(0).random((6, 32, 30)).astype(np.float32)


@pytest.fixture(scope="module")
def colour():
    return np.random.default_rng(1).random((6, 32, 30, 3)).astype(np.float32)


def as_uint8(volume):
    return np.rint(volume * 255).astype(np.uint8)


def assert_same_geometry(a: Geometry, b: Geometry):
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)


# NIfTI ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fused.nii.gz", "fused.nii"])
@pytest.mark.parametrize("rgb", [False, True])
def test_nifti_round_trip_gives_the_geometry_and_the_voxels(tmp_path, grey, colour, name, rgb):
    volume = colour if rgb else grey
    write_nifti(tmp_path / name, volume, AXIAL, description="LightFusion PET-MRI")
    back = open_volume(tmp_path / name)
    assert_same_geometry(Geometry.from_ras(back.space.affine), AXIAL)
    assert back.rgb == rgb and back.voxel_size == pytest.approx((3.0, 0.9, 0.8)) and back.unit == "millimeter"
    np.testing.assert_array_equal(back.data.compute(), as_uint8(volume) if rgb else volume)
    header = nibabel.load(tmp_path / name).header
    assert (int(header["sform_code"]), int(header["qform_code"])) == (1, 1)
    assert header.get_xyzt_units()[0] == "mm" and header["descrip"].tobytes().startswith(b"LightFusion PET-MRI")
    assert header.get_data_shape() == (30, 32, 6)  # i = x, j = y, k = z
    assert header.get_data_dtype() == (np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]) if rgb else np.float32)
    itk = sitk.ReadImage(str(tmp_path / name))  # ITK (ITK-SNAP, 3D Slicer): colour as 3 components, LPS origin
    assert itk.GetNumberOfComponentsPerPixel() == (3 if rgb else 1)
    np.testing.assert_allclose(itk.GetOrigin(), AXIAL.slice_position(0), atol=1e-4)
    np.testing.assert_allclose(itk.GetSpacing(), (0.8, 0.9, 3.0), atol=1e-6)


@pytest.mark.parametrize(
    "geometry", [OBLIQUE, Geometry(AXIAL.affine @ np.diag([1.0, 1, -1, 1]))], ids=["oblique", "rows to the right"]
)
def test_nifti_keeps_the_place_in_the_patient_of_any_geometry(tmp_path, grey, geometry):
    write_nifti(tmp_path / "f.nii.gz", grey, geometry)
    back = open_volume(tmp_path / "f.nii.gz")  # read in canonical orientation, as every NIfTI input
    want, where = canonical(grey, geometry)
    assert_same_geometry(Geometry.from_ras(back.space.affine), where)
    np.testing.assert_array_equal(back.data.compute(), want)


# DICOM ------------------------------------------------------------------------------------------------------------


def read_series(folder):
    files = sorted(folder.iterdir())
    return files, [pydicom.dcmread(f) for f in files]


def geometry_of(datasets) -> Geometry:
    """The series' geometry as a DICOM reader finds it: slices sorted along the normal, spacing from positions."""
    orientation = [float(v) for v in datasets[0].ImageOrientationPatient]
    order, offsets = slice_offsets(orientation, [[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    first = datasets[order[0]]
    return Geometry.from_dicom(orientation, first.ImagePositionPatient, first.PixelSpacing, uniform_spacing(offsets))


@pytest.mark.parametrize("rgb", [False, True])
def test_a_dicom_series_joins_the_source_study_and_reads_back_in_place(tmp_path, grey, colour, rgb):
    volume = colour if rgb else grey
    write_dicom_series(tmp_path / "series", volume, OBLIQUE, source=SOURCE)
    files, datasets = read_series(tmp_path / "series")
    assert [f.name for f in files] == [f"IM{i:05d}.dcm" for i in range(1, 7)]
    for z, ds in enumerate(datasets):
        validate_file_meta(ds.file_meta, enforce_standard=True)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert [k for k in REQUIRED if k not in ds] == [] and [k for k in TYPE_1 if not ds[k].value] == []
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert (ds.ConversionType, ds.BurnedInAnnotation, ds.InstanceNumber) == ("WSD", "NO", z + 1)
        assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (8, 8, 0)
        if rgb:
            assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.PlanarConfiguration) == ("RGB", 3, 0)
        else:
            assert (ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("MONOCHROME2", 1)
        np.testing.assert_array_equal(ds.pixel_array, as_uint8(volume[z]))
        for key in (
            "StudyInstanceUID",
            "FrameOfReferenceUID",
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "PatientSex",
            "StudyID",
            "StudyDate",
            "AccessionNumber",
            "ReferringPhysicianName",
        ):
            assert str(ds[key].value) == SOURCE[key], key
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == SOURCE["SeriesInstanceUID"]
        assert SOURCE["SeriesInstanceUID"] in ds.DerivationDescription
        assert (ds.Manufacturer, ds.SoftwareVersions) == ("napari-lightfusion", napari_lightfusion.__version__)
        assert ds.SeriesNumber == 1007 and ds.Modality == "OT"
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1 and datasets[0].SeriesInstanceUID not in SOURCE.values()
    assert len({ds.SOPInstanceUID for ds in datasets}) == 6
    assert_same_geometry(geometry_of(datasets), OBLIQUE)
    reader = sitk.ImageSeriesReader()  # GDCM's series reader, as ITK-based viewers stack it
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "series")))
    image = reader.Execute()
    assert image.GetSize() == (30, 32, 6) and image.GetNumberOfComponentsPerPixel() == (3 if rgb else 1)
    np.testing.assert_allclose(image.GetOrigin(), OBLIQUE.slice_position(0), atol=1e-4)


def test_without_a_source_the_series_is_a_new_study_of_an_anonymous_patient(tmp_path):
    odd = np.random.default_rng(2).random((3, 5, 7)).astype(np.float32)  # odd pixel data: padded to even
    for name in ("a", "b"):
        write_dicom_series(tmp_path / name, odd, AXIAL)
    (_, a), (_, b) = read_series(tmp_path / "a"), read_series(tmp_path / "b")
    assert a[0].PatientName == "ANONYMOUS" and a[0].PatientID.startswith("ANON-")
    assert a[0].PatientID != b[0].PatientID and a[0].StudyInstanceUID != b[0].StudyInstanceUID
    assert a[0].StudyDate and "ReferencedSeriesSequence" not in a[0] and a[0].SeriesNumber == 1000
    assert list(a[0].PatientOrientation) == ["L", "P"]
    np.testing.assert_array_equal(np.stack([ds.pixel_array for ds in a]), as_uint8(odd))
    assert_same_geometry(geometry_of(a), AXIAL)
    assert read_dicom_source(tmp_path / "a")["PatientName"] == "ANONYMOUS"


# what cannot be written -------------------------------------------------------------------------------------------


def test_bad_targets_and_volumes_are_refused_in_one_line(tmp_path, grey):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x.dcm").write_bytes(b"mine")
    sheared = Geometry(AXIAL.affine @ np.array([[1, 0, 0, 0], [0, 1, 0.3, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    cases = [
        (lambda: write_dicom_series(taken, grey, AXIAL), "not an empty folder"),
        (lambda: write_dicom_series(taken / "x.dcm", grey, AXIAL), "not an empty folder"),
        (lambda: write_dicom_series(tmp_path / "s", grey, sheared), "not perpendicular"),
        (lambda: write_dicom_series(tmp_path / "s", grey[..., None].repeat(2, -1), AXIAL), r"\(Z, Y, X, 3\)"),
        (lambda: write_nifti(tmp_path / "a.nii", grey[0], AXIAL), r"not shape \(32, 30\)"),
        (lambda: write_nifti(tmp_path / "a.tif", grey, AXIAL), "ends with .nii"),
        (lambda: write_dicom_series(tmp_path / "s", (grey * 100).astype(np.int16), AXIAL), "float in"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as caught:
            call()
        assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no half series, no temporary folder
    assert [p.name for p in taken.iterdir()] == ["x.dcm"]


def test_a_full_disk_leaves_no_half_series(tmp_path, grey, monkeypatch):
    real, calls = pydicom.dcmwrite, []

    def full(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmwrite", full)
    with pytest.raises(ValueError, match=r"^disk full after 2 of 6 slices in .*series$"):
        write_dicom_series(tmp_path / "series", grey, AXIAL)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_or_an_interruption_leaves_the_nifti_as_it_was(tmp_path, grey, monkeypatch):
    target = tmp_path / "f.nii.gz"
    target.write_bytes(b"the previous export")
    real, calls = gzip.GzipFile.write, []

    def full(self, data):
        calls.append(len(data))
        if calls.count(grey[0].nbytes) == 3:  # the header, two slices, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(gzip.GzipFile, "write", full)
    with pytest.raises(ValueError, match=r"^disk full after 2 of 6 slices in .*f\.nii\.gz$"):
        write_nifti(target, grey, AXIAL)
    monkeypatch.undo()
    with pytest.raises(KeyboardInterrupt), NiftiWriter(target, grey.shape, False, AXIAL) as writer:
        writer.write(grey[0])
        raise KeyboardInterrupt
    with pytest.raises(ValueError, match="only 1 of 6 slices"), NiftiWriter(target, grey.shape, False, AXIAL) as writer:
        writer.write(grey[0])
    assert [p.name for p in tmp_path.iterdir()] == ["f.nii.gz"] and target.read_bytes() == b"the previous export"


def test_the_format_follows_the_name_unless_asked():
    assert [output_format(n) for n in ("a.zarr", "a.ome.zarr", "a", "a.NII.GZ", "a.nii")] == [
        "ome-zarr",
        "ome-zarr",
        "ome-zarr",
        "nifti",
        "nifti",
    ]
    assert output_format("series", "dicom") == "dicom" and output_format("a.nii.gz", "nifti") == "nifti"
    for name, fmt, message in [
        ("a.zarr", "nifti", "ends with .nii"),
        ("a.nii", "dicom", "NIfTI file name"),
        ("a.zarr", "dicom", "OME-Zarr name"),
        ("a", "png", "unknown format"),
    ]:
        with pytest.raises(ValueError, match=message):
            output_format(name, fmt)


# OME-Zarr in napari -----------------------------------------------------------------------------------------------


def written_zarr(path, volume, geometry: Geometry | None, voxel=(3.0, 0.9, 0.8)):
    """An OME-Zarr output as fuse-volume writes it (the record with the geometry when one is given)."""
    rgb = volume.ndim == 4
    output = OmeZarrOutput.create(
        path,
        volume.shape[:3],
        rgb,
        voxel,
        "millimeter",
        name="fused pair",
        translation=geometry.origin if geometry else None,
    )
    for z, image in enumerate(volume):
        output.write(z, image)
    output.write_sidecar({"settings": {}, **({"geometry": {"affine": geometry.affine.tolist()}} if geometry else {})})
    return path


def test_the_reader_claims_only_lightfusion_outputs_and_places_them(tmp_path, grey, colour):
    import dask.array as da
    import npe2

    npe2.PluginManager.instance().discover()  # as napari does at start
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=2).create_array(
        "0", shape=(2, 4, 4), dtype="f4"
    )
    assert get_reader(str(tmp_path / "other.zarr")) is None and get_reader(str(tmp_path)) is None
    [(data, kwargs, kind)] = npe2.read(
        [str(written_zarr(tmp_path / "c.zarr", colour, AXIAL))], stack=False, plugin_name="napari-lightfusion"
    )
    assert kind == "image" and kwargs["rgb"] and kwargs["name"] == "fused pair" and isinstance(data, da.Array)
    assert data.shape == (6, 32, 30, 3) and data.chunksize == (1, 32, 30, 3)
    assert kwargs["scale"] == pytest.approx((3.0, 0.9, 0.8)) and kwargs["translate"] == pytest.approx(AXIAL.origin)
    np.testing.assert_array_equal(data.compute(), colour)
    [(data, kwargs, _)] = npe2.read(
        [str(written_zarr(tmp_path / "g.zarr", grey, OBLIQUE))], stack=False, plugin_name="napari-lightfusion"
    )
    assert not kwargs["rgb"] and kwargs["contrast_limits"] == (0.0, 1.0) and kwargs["colormap"] == "gray"
    np.testing.assert_allclose(kwargs["affine"], OBLIQUE.affine)
    [(_, kwargs, _)] = npe2.read(
        [str(written_zarr(tmp_path / "n.zarr", grey, None))], stack=False, plugin_name="napari-lightfusion"
    )  # no geometry: the OME-NGFF scale
    assert kwargs["scale"] == pytest.approx((3.0, 0.9, 0.8)) and "translate" not in kwargs


def test_fuse_volume_records_the_geometry_and_napari_opens_it_in_place(make_napari_viewer, tmp_path, grey, colour):
    write_nifti(tmp_path / "mr.nii.gz", grey, AXIAL)
    write_nifti(tmp_path / "pet.nii.gz", colour, AXIAL)
    fuse_volume(
        tmp_path / "mr.nii.gz",
        tmp_path / "pet.nii.gz",
        tmp_path / "out.zarr",
        device="cpu",
        scheduler_name="synchronous",
    )
    transforms = zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs["multiscales"][0]["datasets"][0][
        "coordinateTransformations"
    ]
    assert transforms[1] == {"type": "translation", "translation": pytest.approx([0.0, *AXIAL.origin])}
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tmp_path / "out.zarr"), plugin="napari-lightfusion")
    assert layer.rgb and layer.data.shape == (6, 32, 30, 3) and layer.name == "out"
    np.testing.assert_allclose(layer.scale, (3.0, 0.9, 0.8), rtol=1e-6)
    np.testing.assert_allclose(layer.translate, AXIAL.origin, atol=1e-4)


# the command line -------------------------------------------------------------------------------------------------


def test_cli_writes_nifti_and_dicom_where_the_anatomy_lies(tmp_path, grey, colour, capsys):
    write_nifti(tmp_path / "mr.nii.gz", grey, AXIAL)
    write_nifti(tmp_path / "pet.nii.gz", colour, AXIAL)
    write_dicom_series(tmp_path / "mr_dicom", grey[:2], AXIAL, source=SOURCE)  # the anatomical series' files
    inputs = [
        str(tmp_path / "mr.nii.gz"),
        str(tmp_path / "pet.nii.gz"),
        "--device",
        "cpu",
        "--scheduler",
        "synchronous",
    ]
    assert main(["fuse-volume", *inputs, "--out", str(tmp_path / "ref.zarr")]) == 0
    fused = np.moveaxis(zarr.open_group(str(tmp_path / "ref.zarr"), mode="r")["0"][:], 0, -1)
    assert main(["fuse-volume", *inputs, "--out", str(tmp_path / "fused.nii.gz")]) == 0
    back = open_volume(tmp_path / "fused.nii.gz")
    np.testing.assert_array_equal(back.data.compute(), as_uint8(fused))
    assert_same_geometry(Geometry.from_ras(back.space.affine), AXIAL)
    assert (
        main(
            [
                "fuse-volume",
                *inputs,
                "--out",
                str(tmp_path / "fused_dicom"),
                "--format",
                "dicom",
                "--dicom-source",
                str(tmp_path / "mr_dicom"),
            ]
        )
        == 0
    )
    _, datasets = read_series(tmp_path / "fused_dicom")
    assert datasets[0].StudyInstanceUID == SOURCE["StudyInstanceUID"] and datasets[0].PatientID == "P123"
    assert_same_geometry(geometry_of(datasets), AXIAL)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # the working copies went
    side = json.loads((tmp_path / "fused_dicom.json").read_text())
    assert side["format"] == "dicom" and side["settings"]["preset"] == "PET-MRI"
    assert "fused.nii.gz:" in capsys.readouterr().out
    assert main(["fuse-volume", *inputs, "--out", str(tmp_path / "fused_dicom"), "--format", "dicom"]) == 2
    assert main(["fuse-volume", *inputs, "--out", str(tmp_path / "x.zarr"), "--format", "nifti"]) == 2
    assert main(["fuse-volume", *inputs, "--out", str(tmp_path / "y.nii"), "--dicom-source", "mr_dicom"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "not an empty folder" in err[0] and ".nii" in err[1] and "--format dicom" in err[2]
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "y.nii").exists()


# the widget's export ----------------------------------------------------------------------------------------------


def wait(qtbot, worker):
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        pass


def test_the_widget_exports_nifti_and_dicom_placed_and_filed_like_the_anatomy(
    make_napari_viewer, qtbot, tmp_path, grey, colour, monkeypatch
):
    import dask.array as da

    from napari_lightfusion._qt import volume_export
    from napari_lightfusion._qt.exports import ExportActions

    viewer = make_napari_viewer()
    anatomical = viewer.add_image(grey, name="mr", metadata={"clinical": {"dicom": SOURCE}}, **OBLIQUE.layer_kwargs())
    fused = viewer.add_image(
        da.from_array(colour, chunks=(1, 32, 30, 3)), rgb=True, name="fused", affine=OBLIQUE.affine
    )
    wait(qtbot, volume_export.export_fused(viewer, fused, tmp_path / "f.nii.gz", anatomical=anatomical))
    back = open_volume(tmp_path / "f.nii.gz")
    want, where = canonical(as_uint8(colour), OBLIQUE, rgb=True)
    assert_same_geometry(Geometry.from_ras(back.space.affine), where)
    np.testing.assert_array_equal(back.data.compute(), want)
    monkeypatch.setattr(
        volume_export.QFileDialog,
        "getSaveFileName",
        lambda *a, **k: (str(tmp_path / "series"), "DICOM series folder (*)"),
    )
    wait(qtbot, volume_export.ask_and_export(None, viewer, fused, anatomical))
    _, datasets = read_series(tmp_path / "series")
    assert (
        datasets[0].StudyInstanceUID == SOURCE["StudyInstanceUID"]
        and datasets[0].SeriesDescription == "LightFusion fused"
    )
    assert_same_geometry(geometry_of(datasets), OBLIQUE)

    notes, errors = [], []
    monkeypatch.setattr(
        volume_export.QFileDialog,
        "getSaveFileName",  # a NIfTI asked for under a zarr name
        lambda *a, **k: (str(tmp_path / "x.zarr"), "NIfTI file (*.nii.gz *.nii)"),
    )
    session = SimpleNamespace(
        result=SimpleNamespace(layers={"fused": fused}),
        pair=(anatomical, None),
        say=lambda kind, message: notes.append(message),
    )
    ExportActions(viewer, session, None, None).ask_volume()
    assert len(notes) == 1 and "ends with .nii" in notes[0] and not (tmp_path / "x.zarr").exists()
    other = viewer.add_image(grey[:, :16], name="other grid")
    with pytest.raises(ValueError, match="is not on the grid of other grid"):
        volume_export.export_fused(viewer, fused, tmp_path / "x.nii", anatomical=other)

    monkeypatch.setattr(volume_export, "show_error", errors.append)
    monkeypatch.setattr(pydicom, "dcmwrite", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    wait(qtbot, volume_export.export_fused(viewer, fused, tmp_path / "full", fmt="dicom", anatomical=anatomical))
    assert len(errors) == 1 and "disk full after 0 of 6 slices" in errors[0] and not (tmp_path / "full").exists()


def test_a_stopped_dicom_export_leaves_nothing_and_a_zarr_export_reopens_in_place(
    make_napari_viewer, qtbot, tmp_path, colour, gate
):
    import dask.array as da

    from napari_lightfusion._qt.volume_export import export_fused
    from napari_lightfusion.dicom_series_writer import DicomSeriesWriter

    viewer = make_napari_viewer()
    lazy = da.from_array(colour, chunks=(1, 32, 30, 3))  # float32, as a lazy fused result is
    fused = viewer.add_image(lazy, rgb=True, name="fused", scale=(3.0, 0.9, 0.8), translate=(-40, -100, 20))
    held = gate(DicomSeriesWriter, "write")  # slice 0 is written; slice 1 waits until the export is stopped
    worker = export_fused(viewer, fused, tmp_path / "series", fmt="dicom")
    qtbot.waitUntil(lambda: held.held, timeout=WAIT_MS)
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        worker.quit()
        held.open()
    qtbot.waitUntil(lambda: list(tmp_path.iterdir()) == [], timeout=WAIT_MS)
    wait(qtbot, export_fused(viewer, fused, tmp_path / "fused.zarr"))
    [layer] = viewer.open(str(tmp_path / "fused.zarr"), plugin="napari-lightfusion")
    assert layer.rgb and layer.data.shape == (6, 32, 30, 3)
    np.testing.assert_allclose(layer.scale, (3.0, 0.9, 0.8))
    np.testing.assert_allclose(layer.translate, (-40, -100, 20))


def test_the_project_dicom_reader_opens_the_series_where_it_was_written(tmp_path, grey, colour):
    from napari_lightfusion.dicom_reader import read_dicom

    for name, volume in (("grey", grey), ("colour", colour)):
        write_dicom_series(tmp_path / name, volume, OBLIQUE, source=SOURCE)
        [image], notes = read_dicom([str(tmp_path / name)])
        assert notes == [] and image.rgb == (volume.ndim == 4)
        assert image.clinical["dicom"]["StudyInstanceUID"] == SOURCE["StudyInstanceUID"]
        assert_same_geometry(image.geometry, OBLIQUE)
        np.testing.assert_array_equal(np.asarray(image.data), as_uint8(volume))
