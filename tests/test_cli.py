"""Tests of the ``lightfusion`` command line: each subcommand runs, and user errors are one line.

The research commands (``lightfusion-research``) are tested in ``test_cli_research.py``.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
from skimage.io import imread, imsave

from napari_lightfusion._sample_data import phantom_mri, phantom_pet
from napari_lightfusion.cli import main


@pytest.fixture
def pair_files(tmp_path):
    """The sample MRI-like and PET-like images written as PNG files."""
    mri, pet = tmp_path / "mri.png", tmp_path / "pet.png"
    imsave(mri, np.round(phantom_mri(64) * 255).astype(np.uint8), check_contrast=False)
    imsave(pet, phantom_pet(64), check_contrast=False)
    return mri, pet


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fuse_writes_a_colour_image_and_the_maps_and_leaves_inputs_alone(pair_files, tmp_path, capsys):
    before = [_digest(p) for p in pair_files]
    out, maps = tmp_path / "fused.png", tmp_path / "maps"
    assert main(["fuse", *map(str, pair_files), "--out", str(out), "--maps", str(maps), "--device", "cpu"]) == 0
    fused = imread(out)
    assert fused.shape == (64, 64, 3) and fused.dtype == np.uint8 and fused.max() > 0
    assert sorted(p.name for p in maps.iterdir()) == [
        "attention_anatomical.tif",
        "attention_functional.tif",
        "mix_weight.tif",  # PET-MRI is a mix network
        "surprise_anatomical.tif",
        "surprise_functional.tif",
    ]
    weight = imread(maps / "mix_weight.tif")
    assert weight.shape == (64, 64) and 0 <= weight.min() <= weight.max() <= 1
    assert [_digest(p) for p in pair_files] == before
    assert "wrote" in capsys.readouterr().out


def test_fuse_takes_a_balance_and_refuses_one_out_of_range(pair_files, tmp_path, capsys):
    default, moved = tmp_path / "default.png", tmp_path / "moved.png"
    assert main(["fuse", *map(str, pair_files), "--out", str(default), "--device", "cpu"]) == 0
    assert main(["fuse", *map(str, pair_files), "--out", str(moved), "--device", "cpu", "--balance", "1"]) == 0
    assert not np.array_equal(imread(default), imread(moved))
    capsys.readouterr()
    assert main(["fuse", *map(str, pair_files), "--out", str(tmp_path / "x.png"), "--balance", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "balance" in err and len(err.splitlines()) == 1 and not (tmp_path / "x.png").exists()


def test_fuse_with_balance_auto_says_the_b_it_chose(pair_files, tmp_path, capsys):
    from napari_lightfusion import fuse

    out = tmp_path / "auto.png"
    assert main(["fuse", *map(str, pair_files), "--out", str(out), "--device", "cpu", "--balance", "AUTO"]) == 0
    line = [t for t in capsys.readouterr().err.splitlines() if t.startswith("balance ")]
    assert len(line) == 1 and "(auto: hot spot vs pixel average, anatomy " in line[0]
    b = float(line[0].split()[1])
    chosen = fuse(imread(pair_files[0]), imread(pair_files[1]), "PET-MRI", "cpu", balance=b).fused
    assert np.array_equal(imread(out), (np.clip(chosen, 0, 1) * 255).round().astype(np.uint8))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, b, tmp: [str(a), str(tmp / "missing.png")], "missing.png"),
        (lambda a, b, tmp: [str(a), str(b), "--preset", "XRAY"], "XRAY"),
        (lambda a, b, tmp: [str(a), str(b), "--device", "tpu"], "tpu"),
    ],
    ids=["missing file", "unknown preset", "unknown device"],
)
def test_fuse_errors_are_one_line(pair_files, tmp_path, capsys, change, message):
    args = change(*pair_files, tmp_path)
    if "--out" not in args:
        args = ["fuse", *args[:2], "--out", str(tmp_path / "f.png"), *args[2:]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightfusion fuse: error:") and message in err and "\n" not in err
    assert not (tmp_path / "f.png").exists()


def test_mismatched_shapes_are_refused(pair_files, tmp_path, capsys):
    small = tmp_path / "small.png"
    imsave(small, np.zeros((32, 48), np.uint8), check_contrast=False)
    assert main(["fuse", str(pair_files[0]), str(small), "--out", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "shape" in err and "\n" not in err


def test_commands_that_open_napari_prefer_pyqt6(monkeypatch):
    """With both bindings installed qtpy would pick PyQt5 and napari would show its deprecation toast."""
    import importlib.util

    from napari_lightfusion import cli

    monkeypatch.delenv("QT_API", raising=False)
    cli.prefer_pyqt6()
    import os

    expected = "pyqt6" if importlib.util.find_spec("PyQt6") else None
    assert os.environ.get("QT_API") == expected
    monkeypatch.setenv("QT_API", "pyside6")
    cli.prefer_pyqt6()
    assert os.environ["QT_API"] == "pyside6"  # a binding the user asked for is kept


@pytest.mark.parametrize("argv", [["view"], ["screenshot", "--out", "x.png"]])
def test_commands_that_open_napari_say_in_one_line_that_there_is_no_display(monkeypatch, capsys, argv):
    """Without a display Qt would abort the process (status 134) with a page about platform plugins."""
    from napari_lightfusion import cli
    from napari_lightfusion.research import cli as research_cli

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    main = cli.main if argv[0] == "view" else research_cli.main
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "needs a display" in err and "xvfb-run -a" in err and "\n" not in err


def _harvard_pair(root, dataset, modality, size=48):
    """A pair laid out as the Harvard test set is, ``root/DATASET/MRI/1.png`` and ``root/DATASET/<modality>/1.png``."""
    mri, other = root / dataset / "MRI" / "1.png", root / dataset / modality / "1.png"
    for path in (mri, other):
        path.parent.mkdir(parents=True)
    imsave(mri, np.round(phantom_mri(size) * 255).astype(np.uint8), check_contrast=False)
    functional = phantom_pet(size) if modality != "CT" else np.round(phantom_mri(size)[::-1] * 255).astype(np.uint8)
    imsave(other, functional, check_contrast=False)
    return mri, other


def _fused_uint8(a, b, preset):
    from napari_lightfusion import fuse

    return (np.clip(fuse(a, b, preset, "cpu").fused, 0, 1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("dataset, modality, preset", [("SPECT-MRI", "SPECT", "SPECT-MRI"), ("CT-MRI", "CT", "CT-MRI")])
def test_fuse_guesses_the_preset_from_the_files_and_says_why(tmp_path, capsys, dataset, modality, preset):
    """``--preset`` defaults to ``auto``: a SPECT pair is fused with SPECT-MRI, a CT pair with CT-MRI; it says so."""
    mri, other = _harvard_pair(tmp_path, dataset, modality)
    out = tmp_path / "fused.png"
    assert main(["fuse", str(mri), str(other), "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"preset {preset} (folder name says {modality})" in err
    np.testing.assert_array_equal(imread(out), _fused_uint8(imread(mri), imread(other), preset))
    assert main(["fuse", str(mri), str(other), "--out", str(out), "--device", "cpu", "--preset", "PET-MRI"]) == 0
    assert "preset PET-MRI (as given)" in capsys.readouterr().err


@pytest.fixture
def ct_slice():
    """pydicom's bundled CT image (one slice, 128 x 128) and its pixels in HU."""
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    return path, (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.float32)


def test_fuse_reads_a_dicom_image_in_hu(ct_slice, tmp_path, capsys):
    path, hu = ct_slice
    mri = tmp_path / "t1.png"
    imsave(mri, np.round(phantom_mri(128) * 255).astype(np.uint8), check_contrast=False)
    out = tmp_path / "fused.tif"
    assert main(["fuse", str(mri), path, "--out", str(out), "--device", "cpu"]) == 0
    assert "preset CT-MRI (DICOM Modality says CT)" in capsys.readouterr().err
    np.testing.assert_array_equal(imread(out), _fused_uint8(imread(mri), hu, "CT-MRI"))


def test_fuse_warns_of_a_shifted_dicom_image_and_aligns_it(ct_slice, tmp_path, capsys):
    """Two DICOM images are placed in the patient: a shift is reported, and ``--align`` registers it away."""
    import pydicom

    path, _ = ct_slice
    moved = tmp_path / "moved.dcm"
    ds = pydicom.dcmread(path)
    ds.PixelData = np.roll(ds.pixel_array, (4, 6), axis=(0, 1)).tobytes()  # 2.6 mm back, 4 mm left
    ds.save_as(moved)
    plain, aligned = tmp_path / "plain.png", tmp_path / "aligned.png"
    assert main(["fuse", path, str(moved), "--out", str(plain), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "moved.dcm looks shifted by ~5 mm" in err and "4.0 mm left" in err and "--align" in err, err
    assert main(["fuse", path, str(moved), "--out", str(aligned), "--device", "cpu", "--align"]) == 0
    err = capsys.readouterr().err
    assert "aligned moved.dcm: moved 4.8 mm" in err and "shifted" not in err, err
    itself = tmp_path / "itself.png"
    assert main(["fuse", path, path, "--out", str(itself), "--device", "cpu"]) == 0
    inner = (slice(8, -8), slice(8, -8))  # the rolled-in border differs
    assert (
        np.abs(imread(aligned)[inner].astype(int) - imread(itself)[inner]).mean()
        < np.abs(imread(plain)[inner].astype(int) - imread(itself)[inner]).mean() / 3
    )


def test_fuse_says_align_does_not_apply_to_images_not_placed_in_the_patient(pair_files, tmp_path, capsys):
    assert main(["fuse", *map(str, pair_files), "--out", str(tmp_path / "f.png"), "--device", "cpu", "--align"]) == 0
    assert "--align does not apply" in capsys.readouterr().err


@pytest.fixture
def dicom_study(tmp_path):
    """A small MR series and a PET series (Bq/ml) of one frame of reference, on different grids, as folders."""
    from dicom_series import write_mr_series, write_pet_series

    zz, yy, xx = np.mgrid[:6, :32, :32]
    head = ((yy - 16) / 12.0) ** 2 + ((xx - 16) / 10.0) ** 2 < 1
    mr = np.where(head, 600.0 + 200 * np.sin(yy / 2.0), 20.0)
    uptake = (
        np.where(head, 5000.0, 0.0)[::1, ::2, ::2]
        + 20000 * np.exp(-((yy - 12) ** 2 + (xx - 20) ** 2) / 8.0)[:, ::2, ::2]
    )
    frame = "1.2.826.0.1.3680043.8.498.777"
    return (
        write_mr_series(
            tmp_path / "MR", mr, spacing=(2.0, 1.0, 1.0), origin=(-16.0, -16.0, -6.0), frame_of_reference_uid=frame
        ),
        write_pet_series(
            tmp_path / "PET", uptake, spacing=(2.0, 2.0, 2.0), origin=(-16.0, -16.0, -6.0), frame_of_reference_uid=frame
        ),
    )


def test_fuse_volume_guesses_pet_mri_from_the_dicom_modality(dicom_study, tmp_path, capsys):
    from napari_lightfusion.volume_reader import open_volume

    mr, pet = (written.folder for written in dicom_study)
    out = tmp_path / "fused.nii.gz"
    assert main(["fuse-volume", str(mr), str(pet), "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "preset PET-MRI (DICOM Modality says PT)" in err and "PET colour table" in err, err
    fused = open_volume(out)
    assert fused.rgb and fused.data.shape[:3] == (6, 32, 32)


def test_fuse_volume_with_balance_auto_records_the_b_it_chose(dicom_study, tmp_path, capsys):
    import json

    from napari_lightfusion.volume_reader import open_volume

    mr, pet = (written.folder for written in dicom_study)
    auto, fixed = tmp_path / "auto.nii.gz", tmp_path / "fixed.nii.gz"
    assert main(["fuse-volume", str(mr), str(pet), "--out", str(auto), "--device", "cpu", "--balance", "auto"]) == 0
    said = [t for t in capsys.readouterr().err.splitlines() if t.startswith("balance ")]
    record = json.loads(auto.with_name(auto.name + ".json").read_text())
    chosen = record["balance_chosen"]
    assert record["settings"]["balance"] == "auto" and said == [f"balance {chosen['balance']:.2f}" + said[0][12:]]
    assert chosen["slices"] and all(0 <= k < 6 for k in chosen["slices"])
    b = str(chosen["balance"])
    assert main(["fuse-volume", str(mr), str(pet), "--out", str(fixed), "--device", "cpu", "--balance", b]) == 0
    np.testing.assert_array_equal(open_volume(auto).data.compute(), open_volume(fixed).data.compute())


def test_fuse_reads_one_dicom_image_of_a_series_and_refuses_the_folder(dicom_study, tmp_path, capsys):
    """A file of the PET series is a 2D image placed in the patient (SUV, through the PET table); the folder is a
    volume, for fuse-volume."""
    mr, pet = dicom_study
    out = tmp_path / "slice.png"
    assert main(["fuse", str(mr.files[2]), str(pet.files[2]), "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "preset PET-MRI (DICOM Modality says PT)" in err and "PET colour table" in err, err
    assert "from the plane" not in err and "shifted" not in err and "warning" not in err, err  # in register
    fused = imread(out)
    assert fused.shape == (32, 32, 3)  # on the MR grid, in colour
    assert main(["fuse", str(mr.folder), str(pet.folder), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a DICOM series folder" in err and "fuse-volume" in err and "\n" not in err


def test_batch_fuses_2d_pairs_and_volumes_under_the_names_given(tmp_path, capsys):
    """PNG pairs are fused as ``fuse`` fuses them, into the format their output names; presets are guessed per row."""
    import csv

    import nibabel

    from napari_lightfusion.volume_reader import open_volume

    spect = _harvard_pair(tmp_path, "SPECT-MRI", "SPECT")
    ct = _harvard_pair(tmp_path, "CT-MRI", "CT")
    rng = np.random.default_rng(1)
    volume = rng.integers(0, 4000, (3, 24, 20)).astype(np.int16)
    for name, data in (("a.nii.gz", volume), ("b.nii.gz", volume[:, ::-1].copy())):
        nibabel.save(
            nibabel.Nifti1Image(np.ascontiguousarray(data.T), np.diag([-1.0, -1.0, 2.0, 1.0])), str(tmp_path / name)
        )
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(
        "anatomical,functional,preset,output\n"
        f"{spect[0]},{spect[1]},,pet11.png\n"  # absolute paths
        "CT-MRI/MRI/1.png,CT-MRI/CT/1.png,auto,ct1.tif\n"
        "CT-MRI/MRI/1.png,CT-MRI/CT/1.png,PET-MRI,forced.jpg\n"
        "a.nii.gz,b.nii.gz,,volume.nii.gz\n"
        "a.nii.gz,b.nii.gz,CT-MRI,volume\n"
    )
    out = tmp_path / "cohort"
    assert main(["batch", str(manifest), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "pet11.png" in printed and "preset SPECT-MRI (folder name says SPECT)" in printed, printed
    assert sorted(p.name for p in out.iterdir()) == [
        "ct1.tif",
        "forced.jpg",
        "pet11.png",
        "summary.csv",
        "volume.nii.gz",
        "volume.nii.gz.json",
        "volume.zarr",
        "volume.zarr.json",
    ]
    np.testing.assert_array_equal(
        imread(out / "pet11.png"), _fused_uint8(imread(spect[0]), imread(spect[1]), "SPECT-MRI")
    )
    np.testing.assert_array_equal(imread(out / "ct1.tif"), _fused_uint8(imread(ct[0]), imread(ct[1]), "CT-MRI"))
    assert imread(out / "forced.jpg").shape == (48, 48)  # PET-MRI as given, on a grey pair
    assert open_volume(out / "volume.nii.gz").data.shape == (3, 24, 20)
    with (out / "summary.csv").open() as f:
        rows = {row["output"]: row for row in csv.DictReader(f)}
    assert [rows[n]["preset"] for n in ("pet11.png", "ct1.tif", "forced.jpg", "volume.nii.gz", "volume.zarr")] == [
        "SPECT-MRI",
        "CT-MRI",
        "PET-MRI",
        "CT-MRI",
        "CT-MRI",
    ]
    assert rows["ct1.tif"]["preset_reason"] == "folder name says CT"
    assert rows["volume.nii.gz"]["preset_reason"] == "'b' is grey (it is grey)"  # no names, grey: CT-MRI
    assert "expects a colour" in rows["forced.jpg"]["notes"]  # PET-MRI on a grey pair is questioned
    assert rows["pet11.png"]["slices_fused"] == "1" and rows["volume.zarr"]["slices_fused"] == "3"


def test_batch_with_balance_auto_says_each_pairs_b_in_its_notes(dicom_study, tmp_path, capsys):
    import csv

    from napari_lightfusion import fuse

    pet = _harvard_pair(tmp_path, "PET-MRI", "PET")
    mr, pt = (written.folder for written in dicom_study)
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"anatomical,functional,preset,output\n{pet[0]},{pet[1]},,pet1.png\n{mr},{pt},,study.nii.gz\n")
    out = tmp_path / "cohort"
    assert main(["batch", str(manifest), "--out", str(out), "--device", "cpu", "--balance", "auto"]) == 0
    with (out / "summary.csv").open() as f:
        rows = {row["output"]: row for row in csv.DictReader(f)}
    for name in ("pet1.png", "study.nii.gz"):
        assert rows[name]["status"] == "done" and "(auto: hot spot vs pixel average" in rows[name]["notes"], rows[name]
    said = next(n for n in rows["pet1.png"]["notes"].split(" | ") if n.startswith("balance "))
    chosen = fuse(imread(pet[0]), imread(pet[1]), "PET-MRI", "cpu", balance=float(said.split()[1])).fused
    assert np.array_equal(imread(out / "pet1.png"), (np.clip(chosen, 0, 1) * 255).round().astype(np.uint8))
    assert "balance_chosen" in (out / "study.nii.gz.json").read_text()


def test_batch_refuses_png_inputs_for_a_volume_output_in_one_line(pair_files, tmp_path):
    from napari_lightfusion.batch import fuse_batch

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"anatomical,functional,output\n{pair_files[0]},{pair_files[1]},fused\n")
    [row] = fuse_batch(manifest, tmp_path / "out", device="cpu")
    assert row["status"] == "failed" and "mri.png is a 2D image: name the output .png or .tif" in row["error"]


def test_batch_reports_each_rows_misregistration_and_aligns_with_align(tmp_path, capsys):
    """Volumes placed in the patient, a few voxels apart: a note per row, and ``--align`` registers each."""
    import csv

    import nibabel

    zz, yy, xx = np.mgrid[:12, :40, :40]
    blob = ((yy - 20) / 12.0) ** 2 + ((xx - 18) / 9.0) ** 2 + ((zz - 6) / 5.0) ** 2 < 1
    mr = (np.where(blob, 800.0, 50.0) + 150 * np.sin(yy / 2.5) * blob).astype(np.float32)
    pet = np.roll(
        np.where(blob, 4.0, 0.2) + 8 * np.exp(-((yy - 16) ** 2 + (xx - 22) ** 2) / 10.0), (3, 4), axis=(1, 2)
    ).astype(np.float32)
    for name, data in (("mr.nii.gz", mr), ("pet.nii.gz", pet)):
        nibabel.save(
            nibabel.Nifti1Image(np.ascontiguousarray(data.T), np.diag([-2.0, -2.0, 2.0, 1.0])), str(tmp_path / name)
        )
    manifest = tmp_path / "m.csv"
    manifest.write_text("anatomical,functional,preset,output\nmr.nii.gz,pet.nii.gz,,one\n")
    assert main(["batch", str(manifest), "--out", str(tmp_path / "plain"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "preset PET-MRI (file name says pet)" in printed and "pet.nii.gz looks shifted by" in printed, printed
    assert main(["batch", str(manifest), "--out", str(tmp_path / "aligned"), "--device", "cpu", "--align"]) == 0
    printed = capsys.readouterr().out
    assert "aligned pet.nii.gz: moved" in printed and "shifted" not in printed, printed
    with (tmp_path / "aligned" / "summary.csv").open() as f:
        [row] = list(csv.DictReader(f))
    assert "aligned pet.nii.gz" in row["notes"]


def test_batch_writes_a_dicom_series_for_a_format_column_of_dicom(tmp_path):
    import tifffile

    from napari_lightfusion.batch import fuse_batch
    from napari_lightfusion.volume_reader import open_volume

    rng = np.random.default_rng(3)
    tifffile.imwrite(tmp_path / "a.tif", rng.integers(0, 4000, (3, 16, 20)).astype(np.uint16), photometric="minisblack")
    tifffile.imwrite(tmp_path / "b.tif", rng.integers(0, 255, (3, 16, 20, 3)).astype(np.uint8), photometric="rgb")
    manifest = tmp_path / "m.csv"
    manifest.write_text("anatomical,functional,preset,output,format\na.tif,b.tif,,series,dicom\na.tif,b.tif,,z,\n")
    rows = fuse_batch(manifest, tmp_path / "out", device="cpu", scheduler_name="synchronous")
    assert [(r["output"], r["status"], r["preset"]) for r in rows] == [
        ("series", "done", "PET-MRI"),
        ("z.zarr", "done", "PET-MRI"),
    ]
    assert sorted(p.name for p in (tmp_path / "out" / "series").iterdir()) == [
        "IM00001.dcm",
        "IM00002.dcm",
        "IM00003.dcm",
    ]
    assert open_volume(tmp_path / "out" / "series").data.shape == (3, 16, 20, 3)
