"""fuse-volume and batch: the readers, the OME-Zarr output, resuming, and the one-line errors."""

import csv
import json

import imageio.v3 as iio
import nibabel
import numpy as np
import pytest
import tifffile
import zarr

from napari_lightfusion import fuse
from napari_lightfusion.batch import fuse_batch, read_manifest
from napari_lightfusion.cli import main
from napari_lightfusion.ome_zarr_output import OmeZarrOutput
from napari_lightfusion.volume_reader import open_volume
from napari_lightfusion.volumes import fuse_volume
from napari_lightfusion.weights import preset_path, sha256


@pytest.fixture(scope="module")
def volumes():
    """A grey uint16 volume and an RGB uint8 one, 5 x 40 x 48."""
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:5, :40, :48]
    grey = (1000 + 800 * np.sin(xx / 6.0 + zz) * np.cos(yy / 5.0) + rng.normal(0, 40, xx.shape)).astype(np.uint16)
    colour = np.stack([(xx * 5) % 256, (yy * 6) % 256, ((xx + yy + zz) * 3) % 256], -1).astype(np.uint8)
    return grey, colour


def write_nifti(path, volume, zooms=(0.8, 0.9, 2.5)):
    """``volume`` (Z, Y, X) as NIfTI (X, Y, Z) with voxel size (x, y, z) in mm.

    The voxel axes run to the patient's left, posterior and superior (LPS),
    the layout NIfTI volumes are read in, so the file reads back as ``volume``.
    """
    image = nibabel.Nifti1Image(np.ascontiguousarray(volume.T), np.diag([-zooms[0], -zooms[1], zooms[2], 1.0]))
    image.header.set_zooms(zooms)
    image.header.set_xyzt_units("mm")
    nibabel.save(image, str(path))
    return path


def write_png_folder(path, volume):
    path.mkdir()
    for z, image in enumerate(volume):
        iio.imwrite(path / f"slice{z}.png", image)  # slice10 after slice9: natural order
    return path


def fused_of(out) -> np.ndarray:
    """The fused volume in the layout fuse returns: (Z, Y, X) or (Z, Y, X, 3)."""
    data = zarr.open_group(str(out), mode="r")["0"][:]
    return np.moveaxis(data, 0, -1) if data.ndim == 4 else data


def test_readers_give_slices_and_voxel_sizes(tmp_path, volumes):
    grey, colour = volumes
    tifffile.imwrite(
        tmp_path / "g.tif", grey, imagej=True, resolution=(2.0, 2.0), metadata={"spacing": 3.0, "unit": "micron"}
    )
    tifffile.imwrite(tmp_path / "c.tif", colour, photometric="rgb")
    write_nifti(tmp_path / "g.nii", grey)
    write_nifti(tmp_path / "g.nii.gz", grey)
    write_png_folder(tmp_path / "pngs", colour)
    zarr.save_array(str(tmp_path / "plain.zarr"), grey, zarr_format=2)

    g = open_volume(tmp_path / "g.tif")
    assert g.voxel_size == (3.0, 0.5, 0.5) and g.unit == "micrometer" and not g.rgb
    assert g.data.chunks[0] == (1,) * 5
    np.testing.assert_array_equal(g.data[3].compute(), grey[3])
    c = open_volume(tmp_path / "c.tif")
    assert c.rgb and c.voxel_size is None
    np.testing.assert_array_equal(c.data.compute(), colour)
    for name in ("g.nii", "g.nii.gz"):
        n = open_volume(tmp_path / name)
        assert n.voxel_size == pytest.approx((2.5, 0.9, 0.8)) and n.unit == "millimeter"
        np.testing.assert_array_equal(n.data.compute(), grey)
    p = open_volume(tmp_path / "pngs")
    assert p.rgb and p.data.shape == colour.shape
    np.testing.assert_array_equal(p.data[2].compute(), colour[2])
    z = open_volume(tmp_path / "plain.zarr")
    np.testing.assert_array_equal(z.data.compute(), grey)


def test_fuse_volume_equals_fuse_and_writes_ome_zarr(tmp_path, volumes):
    grey, colour = volumes
    write_nifti(tmp_path / "a.nii.gz", grey)
    write_png_folder(tmp_path / "b", colour)
    seen = []
    report = fuse_volume(
        tmp_path / "a.nii.gz",
        tmp_path / "b",
        tmp_path / "out.zarr",
        preset="PET-MRI",
        device="cpu",
        progress=lambda done, total: seen.append((done, total)),
        command="a command",
    )
    assert (report.slices, report.fused, report.skipped) == (5, 5, 0)
    assert seen[-1] == (5, 5)
    np.testing.assert_array_equal(fused_of(tmp_path / "out.zarr"), fuse(grey, colour, "PET-MRI", "cpu").fused)

    attrs = dict(zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs)
    scales = attrs["multiscales"][0]
    assert [a["name"] for a in scales["axes"]] == ["c", "z", "y", "x"]
    assert scales["axes"][1]["unit"] == "millimeter"
    assert scales["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx([1.0, 2.5, 0.9, 0.8])
    side = json.loads((tmp_path / "out.zarr.json").read_text())
    assert attrs["lightfusion"] == side
    assert side["settings"]["preset"] == "PET-MRI" and side["command"] == "a command"
    assert side["settings"]["sha256"] == sha256(preset_path("PET-MRI")) and side["status"] == "complete"
    assert zarr.open_array(str(tmp_path / "out.zarr" / "0"), mode="r").chunks == (3, 1, 40, 48)
    again = open_volume(tmp_path / "out.zarr")  # an OME-Zarr input: channels last, its scale as voxel size
    assert again.rgb and again.unit == "millimeter" and again.voxel_size == pytest.approx((2.5, 0.9, 0.8))
    np.testing.assert_array_equal(again.data.compute(), fused_of(tmp_path / "out.zarr"))


def test_windows_and_a_grey_pair(tmp_path, volumes):
    grey, colour = volumes
    tifffile.imwrite(tmp_path / "a.tif", grey)
    zarr.save_array(str(tmp_path / "b.zarr"), colour[..., 1], zarr_format=3)
    fuse_volume(
        tmp_path / "a.tif",
        tmp_path / "b.zarr",
        tmp_path / "o.zarr",
        preset="CT-MRI",
        device="cpu",
        a_window=(600, 1400),
        b_window=(20, 200),
    )
    expected = fuse(grey, colour[..., 1], "CT-MRI", "cpu", a_limits=(600, 1400), b_limits=(20, 200)).fused
    np.testing.assert_array_equal(fused_of(tmp_path / "o.zarr"), expected)


def test_a_rerun_fuses_only_the_missing_slices(tmp_path, volumes):
    grey, colour = volumes
    tifffile.imwrite(tmp_path / "a.tif", grey)
    tifffile.imwrite(tmp_path / "b.tif", colour[..., 0])
    out = tmp_path / "o.zarr"
    fuse_volume(tmp_path / "a.tif", tmp_path / "b.tif", out, preset="CT-MRI", device="cpu")
    complete = fused_of(out)
    for z in (1, 3):
        (out / "0" / str(z) / "0" / "0").unlink()
    (out / "0" / "7.abc.partial").write_bytes(b"half a chunk")  # what a killed write leaves
    assert OmeZarrOutput(out).missing() == [1, 3] and not (out / "0" / "7.abc.partial").exists()
    again = fuse_volume(
        tmp_path / "a.tif", tmp_path / "b.tif", out, preset="CT-MRI", device="cpu", scheduler_name="synchronous"
    )
    assert (again.fused, again.skipped) == (2, 3)
    np.testing.assert_array_equal(fused_of(out), complete)
    done = fuse_volume(tmp_path / "a.tif", tmp_path / "b.tif", out, preset="CT-MRI", device="cpu")
    assert done.fused == 0
    with pytest.raises(ValueError, match="other inputs or settings"):
        fuse_volume(tmp_path / "a.tif", tmp_path / "b.tif", out, preset="PET-MRI", device="cpu")


def test_the_processes_scheduler_gives_the_same_volume(tmp_path, volumes):
    grey, colour = volumes
    tifffile.imwrite(tmp_path / "a.tif", grey[:3], photometric="minisblack")
    tifffile.imwrite(tmp_path / "b.tif", colour[:3])
    fuse_volume(tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "t.zarr", device="cpu")
    fuse_volume(tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "p.zarr", device="cpu", scheduler_name="processes")
    np.testing.assert_array_equal(fused_of(tmp_path / "t.zarr"), fused_of(tmp_path / "p.zarr"))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (d / "a.tif", d / "short.tif", d / "o.zarr"), "differ in shape"),
        (lambda d: (d / "a.tif", d / "nope.tif", d / "o.zarr"), "does not exist"),
        (lambda d: (d / "a.tif", d / "junk.tif", d / "o.zarr"), "cannot read"),
        (lambda d: (d / "a.tif", d / "b.tif", d / "a.tif"), "choose another --out"),
        (lambda d: (d / "a.tif", d / "b.tif", d), "choose another --out"),
        (lambda d: (d / "a.tif", d / "b.tif", d / "other"), "not a lightfusion output"),
        (lambda d: (d / "a.tif", d / "notes.txt", d / "o.zarr"), "give a TIFF stack"),
    ],
)
def test_bad_volumes_are_one_line_errors(tmp_path, volumes, make, message):
    grey, _ = volumes
    tifffile.imwrite(tmp_path / "a.tif", grey)
    tifffile.imwrite(tmp_path / "b.tif", grey[::-1])
    tifffile.imwrite(tmp_path / "short.tif", grey[:3], photometric="minisblack")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other").mkdir()
    before = (tmp_path / "a.tif").read_bytes()
    with pytest.raises(ValueError, match=message) as caught:
        fuse_volume(*make(tmp_path), device="cpu")
    assert "\n" not in str(caught.value)
    assert (tmp_path / "a.tif").read_bytes() == before


def test_cli_fuse_volume_and_its_errors(tmp_path, volumes, capsys):
    grey, colour = volumes
    tifffile.imwrite(tmp_path / "a.tif", grey)
    tifffile.imwrite(tmp_path / "b.tif", colour)
    out = tmp_path / "o.zarr"

    def cli(out, *options) -> int:
        return main(["fuse-volume", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "--out", str(out), *options])

    assert cli(out, "--device", "cpu", "--a-window=500,1500", "--scheduler", "synchronous") == 0
    assert "5 slices fused" in capsys.readouterr().out
    side = json.loads((tmp_path / "o.zarr.json").read_text())
    assert side["command"].startswith("lightfusion fuse-volume") and side["limits"][0] == [500.0, 1500.0]
    assert cli(tmp_path / "x.zarr", "--a-window", "1,2,3") == 2
    assert cli(tmp_path / "y.zarr", "--scheduler", "carrier-pigeon") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "LO,HI" in err[0] and "unknown scheduler" in err[1]


def test_batch_reports_each_pair_and_goes_on_after_a_failure(tmp_path, volumes, capsys):
    grey, colour = volumes
    tifffile.imwrite(tmp_path / "a.tif", grey[:2])
    tifffile.imwrite(tmp_path / "b.tif", colour[:2])
    tifffile.imwrite(tmp_path / "c.tif", grey[:2, :20])
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(
        "anatomical,functional,preset,output\n"
        "a.tif,b.tif,PET-MRI,one\n"
        "a.tif,c.tif,CT-MRI,two\n"
        "a.tif,missing.tif,,three\n"
        "a.tif,b.tif,SPECT-MRI,four.zarr\n"
    )
    assert main(["batch", str(manifest), "--out", str(tmp_path / "cohort"), "--device", "cpu"]) == 2
    assert "2 of 4 pairs failed" in capsys.readouterr().err
    with (tmp_path / "cohort" / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["done", "failed", "failed", "done"]
    assert "differ in shape" in rows[1]["error"] and "does not exist" in rows[2]["error"]
    assert rows[2]["preset"] == "auto" and float(rows[0]["seconds"]) > 0  # guessed, but its file is missing
    assert rows[0]["preset"] == "PET-MRI" and rows[0]["preset_reason"] == "as given"
    np.testing.assert_array_equal(
        fused_of(tmp_path / "cohort" / "four.zarr"), fuse(grey[:2], colour[:2], "SPECT-MRI", "cpu").fused
    )
    again = fuse_batch(manifest, tmp_path / "cohort", device="cpu")
    assert [r["slices_fused"] for r in again if r["status"] == "done"] == [0, 0]


def test_manifest_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("anatomical,output\nx,y\n")
    with pytest.raises(ValueError, match="lacks the column"):
        read_manifest(bad)
    twice = tmp_path / "twice.csv"
    twice.write_text("anatomical,functional,output\na,b,o\nc,d,o\n")
    with pytest.raises(ValueError, match="more than once"):
        read_manifest(twice)
    with pytest.raises(ValueError, match="cannot read the manifest"):
        read_manifest(tmp_path / "none.csv")


def test_the_volume_benchmark_measures_a_fresh_process(tmp_path):
    from napari_lightfusion.research.volume_bench import bench_volume, table

    [row] = bench_volume(tmp_path, size=32, depths=[3], scheduler="synchronous")
    assert row["fuse-volume s"] > 0 and row["peak RSS MiB"] > 50 and row["slices/s"] > 0
    assert table([row]).startswith("| pair |")


def test_ome_tiff_physical_sizes_give_the_voxel_size(tmp_path, volumes):
    grey, _ = volumes
    tifffile.imwrite(
        tmp_path / "a.ome.tif",
        grey,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.25,
            "PhysicalSizeY": 0.3,
            "PhysicalSizeZ": 2.0,
            "PhysicalSizeZUnit": "mm",
        },
    )
    a = open_volume(tmp_path / "a.ome.tif")  # X and Y in OME's default unit, micrometres; Z in mm
    assert a.unit == "micrometer" and a.voxel_size == pytest.approx((2000.0, 0.3, 0.25))
    np.testing.assert_array_equal(a.data[4].compute(), grey[4])
    tifffile.imwrite(
        tmp_path / "b.ome.tif",
        grey[0],
        ome=True,
        metadata={
            "axes": "YX",
            "PhysicalSizeX": 0.5,
            "PhysicalSizeY": 0.5,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeYUnit": "nm",
        },
    )
    b = open_volume(tmp_path / "b.ome.tif")
    assert b.unit == "nanometer" and b.voxel_size == pytest.approx((1.0, 0.5, 0.5))
    tifffile.imwrite(tmp_path / "c.ome.tif", grey, ome=True, metadata={"axes": "ZYX"})
    assert open_volume(tmp_path / "c.ome.tif").voxel_size is None
