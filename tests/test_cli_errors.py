"""Every way ``lightfusion fuse``, ``fuse-volume`` and ``batch`` can be given bad input or fail to write: one line
on stderr, exit status 2, no traceback, nothing half written; and a full disk leaves a volume a rerun finishes."""

from __future__ import annotations

import csv
import errno
import hashlib
import json

import nibabel
import numpy as np
import pytest
import tifffile
import zarr
from skimage.io import imsave

from napari_lightfusion._sample_data import phantom_mri, phantom_pet
from napari_lightfusion.cli import main
from napari_lightfusion.ome_zarr_output import OmeZarrOutput


def status(args) -> int:
    """The exit status of ``lightfusion ARGS``: what main returns, or argparse's exit for a bad option."""
    try:
        return main(args)
    except SystemExit as stop:
        return stop.code


def one_line(capsys, command: str) -> str:
    """The error a failed command printed, checked to be its only line on stderr (no traceback)."""
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lightfusion {command}: error:") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def files(tmp_path):
    """A PNG pair, a file that is not a weight file (with a sidecar that matches it), a plain file, two volumes."""
    imsave(tmp_path / "mri.png", np.round(phantom_mri(32) * 255).astype(np.uint8), check_contrast=False)
    imsave(tmp_path / "pet.png", phantom_pet(32), check_contrast=False)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    junk.with_suffix(".json").write_text(
        json.dumps({"sha256": hashlib.sha256(junk.read_bytes()).hexdigest(), "model": {}})
    )
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "folder.png").mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "a.tif", rng.integers(0, 4000, (5, 24, 20)).astype(np.uint16), photometric="minisblack")
    tifffile.imwrite(tmp_path / "b.tif", rng.integers(0, 255, (5, 24, 20, 3)).astype(np.uint8), photometric="rgb")
    return tmp_path


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--out", "{d}/noext"], "give an image file name ending in .png"),
        (["--out", "{d}/x.xyz"], "give an image file name ending in .png"),
        (["--out", "{d}/x.nii.gz"], "fuse-volume"),
        (["--out", "{d}/afile/x.png"], "afile is a file, not a folder"),
        (["--out", "{d}/folder.png"], "it is a folder"),
        (["--out", "{d}/mri.png"], "would overwrite an input"),
        (["--out", "{d}/x.png", "--maps", "{d}/afile"], "--maps"),
        (["--out", "{d}/x.png", "--balance", "abc"], "give a number in [0, 1] or auto, not 'abc'"),
        (["--out", "{d}/x.png", "--balance", "1.5"], "balance"),
        (["--out", "{d}/x.png", "--device", "tpu"], "tpu"),
        (["--out", "{d}/x.png", "--preset", "XRAY"], "XRAY"),
        (["--out", "{d}/x.png", "--weights", "{d}/junk.pt"], "not a LightFusion weight file"),
        (["--out", "{d}/x.png", "--weights", "{d}/none.pt"], "none.pt"),
        (["--out", "{d}/x.png", "--unknown"], "unrecognized arguments: --unknown"),
        ([], "required: --out"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_fuse_options_and_outputs_are_one_line(files, capsys, extra, message):
    args = ["fuse", str(files / "mri.png"), str(files / "pet.png"), *(a.format(d=files) for a in extra)]
    before = sorted(p.name for p in files.iterdir())
    assert status(args) == 2
    assert message in one_line(capsys, "fuse")
    assert sorted(p.name for p in files.iterdir()) == before


def test_a_file_named_as_dicom_that_is_not_says_so_in_one_line(files, capsys):
    (files / "ct.dcm").write_text("exported notes, not an image")
    assert status(["fuse", str(files / "mri.png"), str(files / "ct.dcm"), "--out", str(files / "x.png")]) == 2
    err = one_line(capsys, "fuse")
    assert "ct.dcm: named as DICOM, but it is not a DICOM file" in err and "SimpleITK" not in err
    assert not (files / "x.png").exists()


@pytest.mark.parametrize(
    "out, extra, message",
    [
        ("x.png", [], "names an image file: fuse-volume writes OME-Zarr"),
        ("afile/x.zarr", [], "afile is a file, not a folder"),
        ("afile", [], "not a lightfusion output"),
        ("x.zarr", ["--format", "nifti"], "ends with .nii"),
        ("x.zarr", ["--balance", "2"], "balance"),
        ("x.zarr", ["--device", "tpu"], "tpu"),
        ("x.zarr", ["--preset", "XRAY"], "XRAY"),
        ("x.zarr", ["--weights", "{d}/junk.pt"], "not a LightFusion weight file"),
        ("x.zarr", ["--a-window", "1,2,3"], "LO,HI"),
        ("x.zarr", ["--colormap", "jet"], "invalid choice: 'jet'"),
    ],
)
def test_bad_fuse_volume_options_and_outputs_are_one_line(files, capsys, out, extra, message):
    args = [
        "fuse-volume",
        str(files / "a.tif"),
        str(files / "b.tif"),
        "--out",
        str(files / out),
        *(a.format(d=files) for a in extra),
    ]
    before = sorted(p.name for p in files.iterdir())
    assert status(args) == 2
    assert message in one_line(capsys, "fuse-volume")
    assert sorted(p.name for p in files.iterdir()) == before


def test_an_unwritable_folder_is_one_line(files, capsys, monkeypatch):
    """Root writes anywhere, so the permission check is shown with ``os.access`` saying no."""
    import os

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main(["fuse", str(files / "mri.png"), str(files / "pet.png"), "--out", str(files / "x.png")]) == 2
    assert "no permission to write in" in one_line(capsys, "fuse")


def test_an_os_error_of_the_work_is_one_line(files, capsys, monkeypatch):
    from napari_lightfusion import image_files

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/x.png")

    monkeypatch.setattr(image_files, "fuse_files", refuse)
    assert main(["fuse", str(files / "mri.png"), str(files / "pet.png"), "--out", str(files / "x.png")]) == 2
    assert one_line(capsys, "fuse").endswith("error: Permission denied: /somewhere/x.png")


def test_a_colour_nifti_fuses_and_three_volumes_are_refused_saying_how_to_convert(files, capsys):
    """RGB24 (what the project writes for colour) is read as colour; a 4D NIfTI of 3 volumes is one line."""
    from napari_lightfusion.nifti_writer import RGB24
    from napari_lightfusion.volume_reader import open_volume

    rng = np.random.default_rng(2)
    colour = rng.integers(0, 255, (20, 24, 5, 3)).astype(np.uint8)  # x, y, z, RGB
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    nibabel.save(nibabel.Nifti1Image(colour.copy().view(RGB24)[..., 0], affine), str(files / "rgb24.nii.gz"))
    nibabel.save(nibabel.Nifti1Image(colour, affine), str(files / "three.nii.gz"))
    nibabel.save(
        nibabel.Nifti1Image(rng.integers(0, 900, (20, 24, 5)).astype(np.int16), affine), str(files / "t1.nii.gz")
    )
    out = files / "fused.zarr"
    assert (
        main(
            ["fuse-volume", str(files / "t1.nii.gz"), str(files / "rgb24.nii.gz"), "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    assert "preset PET-MRI ('rgb24' is a colour image)" in capsys.readouterr().err
    assert open_volume(out).rgb
    assert (
        main(
            [
                "fuse-volume",
                str(files / "t1.nii.gz"),
                str(files / "three.nii.gz"),
                "--out",
                str(files / "no.zarr"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = one_line(capsys, "fuse-volume")
    assert "4D NIfTI of 3 volumes" in err and "RGB24" in err and not (files / "no.zarr").exists()
    from napari_lightfusion.cli import build_parser

    parser = build_parser()
    text = parser._subparsers._group_actions[0].choices["fuse-volume"].format_help()
    assert "RGB24 NIfTI" in " ".join(text.split())


def _failing_after(monkeypatch, target, name: str, good: int):
    """Make ``target.name`` raise OSError(ENOSPC) once it has run ``good`` times (a disk that fills up)."""
    calls, original = [0], getattr(target, name)

    def write(*args, **kwargs):
        calls[0] += 1
        if calls[0] > good:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, write)


def _fused(path) -> np.ndarray:
    return zarr.open_group(str(path), mode="r")["0"][:]


def test_a_full_disk_stops_fuse_volume_in_one_line_and_a_rerun_resumes(files, capsys, monkeypatch):
    command = [
        "fuse-volume",
        str(files / "a.tif"),
        str(files / "b.tif"),
        "--device",
        "cpu",
        "--scheduler",
        "synchronous",
        "--out",
    ]
    assert main([*command, str(files / "whole.zarr")]) == 0
    capsys.readouterr()
    out = files / "o.zarr"
    with monkeypatch.context() as patch:
        _failing_after(patch, OmeZarrOutput, "write", 2)
        assert main([*command, str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1] == (
        f"lightfusion fuse-volume: error: disk full after 2 of 5 slices in {out}; free space and run again to resume"
    )
    assert len(OmeZarrOutput(out).missing()) == 3
    assert main([*command, str(out)]) == 0
    assert "3 slices fused, 2 already there" in capsys.readouterr().out
    np.testing.assert_array_equal(_fused(out), _fused(files / "whole.zarr"))


def test_a_full_disk_while_writing_nifti_is_one_line_and_a_rerun_finishes(files, capsys, monkeypatch):
    from napari_lightfusion.nifti_writer import NiftiWriter

    out = files / "o.nii.gz"
    command = ["fuse-volume", str(files / "a.tif"), str(files / "b.tif"), "--device", "cpu", "--out", str(out)]
    with monkeypatch.context() as patch:
        _failing_after(patch, NiftiWriter, "_write", 3)
        assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f"lightfusion fuse-volume: error: disk full after 3 of 5 slices in {out}; free space and run again to resume"
    )
    assert not out.exists() and not [p for p in files.iterdir() if ".partial-" in p.name]
    assert main(command) == 0
    assert "0 slices fused, 5 already there" in capsys.readouterr().out  # the working copy was kept
    written = nibabel.load(str(out))
    assert written.shape == (20, 24, 5) and written.get_data_dtype().names == ("R", "G", "B")  # RGB24


def test_a_full_disk_stops_a_batch_and_a_rerun_resumes(files, capsys, monkeypatch):
    manifest = files / "m.csv"
    manifest.write_text(
        "anatomical,functional,preset,output\na.tif,b.tif,,one\na.tif,b.tif,SPECT-MRI,two\na.tif,b.tif,CT-MRI,three\n"
    )
    command = ["batch", str(manifest), "--out", str(files / "cohort"), "--device", "cpu", "--scheduler", "synchronous"]
    with monkeypatch.context() as patch:
        _failing_after(patch, OmeZarrOutput, "write", 7)  # the first pair, and 2 slices of the second
        assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"lightfusion batch: error: disk full after 2 of 5 slices in {files / 'cohort' / 'two.zarr'}; "
        "free space and run again to resume"
    )
    with (files / "cohort" / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["done", "failed", "not run"]
    assert main(command) == 0
    with (files / "cohort" / "summary.csv").open() as f:
        assert [r["slices_fused"] for r in csv.DictReader(f)] == ["0", "3", "5"]


def test_a_full_disk_while_writing_a_fused_image_leaves_no_file(files, capsys, monkeypatch):
    import skimage.io

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(skimage.io, "imsave", full)
    out = files / "x.png"
    assert main(["fuse", str(files / "mri.png"), str(files / "pet.png"), "--out", str(out), "--device", "cpu"]) == 2
    assert one_line(capsys, "fuse").endswith(f"disk full while writing {out}; free space and run again")
    assert not [p for p in files.iterdir() if p.name.startswith((".x", "x."))]


def test_batch_options_and_manifests_are_one_line(files, capsys):
    assert main(["batch", str(files / "none.csv"), "--out", str(files / "c")]) == 2
    assert "cannot read the manifest" in one_line(capsys, "batch")
    (files / "m.csv").write_text("anatomical,functional,output\na.tif,b.tif,one\n")
    assert main(["batch", str(files / "m.csv"), "--out", str(files / "c"), "--device", "tpu"]) == 2
    assert "tpu" in one_line(capsys, "batch")
    assert main(["batch", str(files / "m.csv"), "--out", str(files / "afile" / "c")]) == 2
    assert "afile is a file, not a folder" in one_line(capsys, "batch")
    assert not (files / "c").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 160 KiB tmpfs (needs root; skipped elsewhere) and a way to give it more room."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (root only)")

    def grow():
        subprocess.run(["mount", "-o", "remount,size=8m", str(mount)], check=True)

    yield mount, grow
    subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk_stops_fuse_volume_and_a_rerun_after_freeing_space_resumes(tmp_path, small_disk, capsys):
    mount, grow = small_disk
    rng = np.random.default_rng(4)
    tifffile.imwrite(tmp_path / "a.tif", rng.integers(0, 4000, (8, 64, 64)).astype(np.uint16), photometric="minisblack")
    tifffile.imwrite(tmp_path / "b.tif", rng.integers(0, 255, (8, 64, 64, 3)).astype(np.uint8), photometric="rgb")
    command = ["fuse-volume", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "--device", "cpu", "--out"]
    assert main([*command, str(tmp_path / "whole.zarr")]) == 0
    capsys.readouterr()
    out = mount / "o.zarr"
    assert main([*command, str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "disk full" in err.splitlines()[-1], err
    assert err.splitlines()[-1].endswith("free space and run again to resume")
    grow()
    assert main([*command, str(out)]) == 0
    np.testing.assert_array_equal(_fused(out), _fused(tmp_path / "whole.zarr"))
