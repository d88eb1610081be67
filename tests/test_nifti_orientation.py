"""NIfTI volumes are read where they lie in the patient: canonical orientation, grid checks, per-slice reads.

The files here are written by hand (numpy transposes and flips, affines
built from them), not with nibabel's orientation helpers that the reader
uses, so the tests check the reader against an independent construction.
"""

import json
import tracemalloc

import nibabel
import numpy as np
import pytest
import zarr

from napari_lightfusion import fuse, nifti_reader
from napari_lightfusion.batch import fuse_batch
from napari_lightfusion.cli import main
from napari_lightfusion.displayed import same_grid
from napari_lightfusion.ome_zarr_output import OmeZarrOutput
from napari_lightfusion.volume_reader import open_volume
from napari_lightfusion.volumes import fuse_volume

ZOOMS = (0.8, 0.9, 2.5)  # x, y, z in mm
ORIGIN = (12.0, -30.0, 40.0)

#: Voxel orders a scanner or a converter may write (LPS axes permuted, then flipped):
#: LPS itself, RAS (x and y flipped), axial axis first with x flipped (S, R, A), sagittal-like.
ORDERS = [((0, 1, 2), ()), ((0, 1, 2), (0, 1)), ((2, 0, 1), (1, 2)), ((1, 2, 0), (0, 2))]


def lps_affine(zooms=ZOOMS, origin=ORIGIN) -> np.ndarray:
    """Voxel (x, y, z) -> RAS+ mm for a volume whose x runs to the patient's left, y posterior, z superior."""
    affine = np.diag([-zooms[0], -zooms[1], zooms[2], 1.0])
    affine[:3, 3] = origin
    return affine


def store(path, volume, perm=(0, 1, 2), flip=(), affine=None):
    """Write ``volume`` (Z, Y, X: superior, posterior, left) as NIfTI in another voxel order.

    File axis ``m`` is the LPS axis ``perm[m]`` (0 x, 1 y, 2 z), reversed when
    ``m`` is in ``flip``; the affine is adjusted so the file describes the
    same place in the patient as the LPS one (``affine``, default
    :func:`lps_affine`).
    """
    lps = volume.T  # (X, Y, Z)
    data = np.transpose(lps, perm)
    to_lps = np.zeros((4, 4))
    to_lps[3, 3] = 1.0
    for m, axis in enumerate(perm):
        if m in flip:
            data = np.flip(data, m)
            to_lps[axis, m], to_lps[axis, 3] = -1.0, data.shape[m] - 1
        else:
            to_lps[axis, m] = 1.0
    image = nibabel.Nifti1Image(np.ascontiguousarray(data), (lps_affine() if affine is None else affine) @ to_lps)
    image.header.set_xyzt_units("mm")
    nibabel.save(image, str(path))
    return path


@pytest.fixture(scope="module")
def pair():
    """An anatomical and a functional grey volume, 4 x 24 x 32 (Z, Y, X)."""
    rng = np.random.default_rng(1)
    zz, yy, xx = np.mgrid[:4, :24, :32]
    a = (900 + 600 * np.sin(xx / 5.0 + zz) * np.cos(yy / 4.0) + rng.normal(0, 30, xx.shape)).astype(np.int16)
    b = (200 * np.exp(-((xx - 20) ** 2 + (yy - 8) ** 2) / 60.0) * (1 + zz) + rng.normal(0, 5, xx.shape)).astype(
        np.float32
    )
    return a, b


def fused_of(out) -> np.ndarray:
    import zarr

    return zarr.open_group(str(out), mode="r")["0"][:]


def fuse_ct_mri(folder, a, b, out) -> None:
    """fuse-volume of ``folder / a`` and ``folder / b`` into ``folder / out``: CT-MRI, on the CPU, slice by slice."""
    fuse_volume(folder / a, folder / b, folder / out, preset="CT-MRI", device="cpu", scheduler_name="synchronous")


def test_slices_are_axial_with_anterior_up_and_the_right_on_the_left(tmp_path):
    data = np.zeros((8, 6, 4), np.int16)  # RAS: i to the right, j anterior, k superior
    data[7, 5, 3] = 1  # right, anterior, superior corner
    data[0, 0, 0] = 2  # left, posterior, inferior corner
    data[7, 0, 1] = 3  # right, posterior
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), str(tmp_path / "ras.nii"))
    volume = open_volume(tmp_path / "ras.nii")
    read = volume.data.compute()
    assert read.shape == (4, 6, 8)
    assert read[3, 0, 0] == 1 and read[0, 5, 7] == 2 and read[1, 5, 0] == 3
    assert volume.space.input_axcodes == "RAS"
    world = np.array(volume.space.affine) @ [3, 0, 0, 1]  # the marked voxel's place in mm
    np.testing.assert_allclose(world[:3], [7, 5, 3])


@pytest.mark.parametrize("perm, flip", ORDERS)
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_any_voxel_order_reads_as_the_same_volume(tmp_path, pair, perm, flip, suffix):
    a, _ = pair
    reference = open_volume(store(tmp_path / "lps.nii", a))
    other = open_volume(store(tmp_path / f"other{suffix}", a, perm, flip))
    np.testing.assert_array_equal(other.data.compute(), a)
    assert other.data.chunks[0] == (1,) * 4
    assert other.voxel_size == pytest.approx((2.5, 0.9, 0.8)) and other.unit == "millimeter"
    np.testing.assert_allclose(other.space.affine, reference.space.affine, atol=1e-4)
    assert same_grid(reference.data.shape, reference.matrix(), other.data.shape, other.matrix())


def test_two_voxel_orders_of_a_pair_fuse_to_the_same_output(tmp_path, pair):
    a, b = pair
    store(tmp_path / "a_lps.nii", a)
    store(tmp_path / "b_lps.nii.gz", b)
    store(tmp_path / "a_sra.nii", a, (2, 0, 1), (1, 2))  # axial axis first, x flipped
    store(tmp_path / "b_ras.nii.gz", b, (0, 1, 2), (0, 1))
    fuse_ct_mri(tmp_path, "a_lps.nii", "b_lps.nii.gz", "one.zarr")
    fuse_ct_mri(tmp_path, "a_sra.nii", "b_ras.nii.gz", "two.zarr")
    one = fused_of(tmp_path / "one.zarr")
    np.testing.assert_array_equal(one, fused_of(tmp_path / "two.zarr"))
    np.testing.assert_array_equal(one, fuse(a, b, "CT-MRI", "cpu").fused)


def test_the_sidecar_records_the_orientation_and_leads_back_to_the_file(tmp_path, pair):
    a, b = pair
    store(tmp_path / "a.nii", a, (2, 0, 1), (1, 2))
    store(tmp_path / "b.nii", b, (0, 1, 2), (0, 1))
    fuse_ct_mri(tmp_path, "a.nii", "b.nii", "o.zarr")
    record = json.loads((tmp_path / "o.zarr.json").read_text())["orientation"]
    assert record["canonical"] == "RAS+" and record["axes"] == {"z": "S", "y": "P", "x": "L"}
    assert record["from"] == "anatomical" and record["input_axcodes"] == "SRA"
    image = nibabel.load(str(tmp_path / "a.nii"))
    np.testing.assert_allclose(record["input_affine"], image.affine)
    # Going back: output index (z, y, x) -> mm -> the file's voxel (i, j, k) holds the value read there.
    back = np.linalg.inv(record["input_affine"]) @ np.array(record["zyx_to_ras"])
    file_data = np.asarray(image.dataobj)
    for z, y, x in [(0, 0, 0), (3, 23, 31), (1, 5, 17), (2, 20, 3)]:
        i, j, k = np.rint(back @ [z, y, x, 1])[:3].astype(int)
        assert file_data[i, j, k] == a[z, y, x]


@pytest.mark.parametrize(
    "other",
    [
        dict(origin=(12.0, -28.0, 40.0)),  # shifted 2 mm
        dict(zooms=(0.81, 0.9, 2.5)),  # another voxel size: 0.3 mm apart at the far side
        dict(shape=20),
    ],
)
def test_a_pair_on_different_grids_is_fused_on_the_anatomical_grid(tmp_path, pair, other):
    a, b = pair
    store(tmp_path / "a.nii", a)
    b = b[:, : other.pop("shape")] if "shape" in other else b
    store(tmp_path / "b.nii", b, (0, 1, 2), (0, 1), affine=lps_affine(**other))
    said = []
    fuse_volume(tmp_path / "a.nii", tmp_path / "b.nii", tmp_path / "o.zarr", device="cpu", say=said.append)
    fused = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")["0"]
    assert fused.shape[-3:] == open_volume(tmp_path / "a.nii").data.shape[:3]
    assert any("resampled onto the grid of a.nii" in line for line in said), said
    record = OmeZarrOutput(tmp_path / "o.zarr").read_sidecar()
    assert record["settings"]["resampled"] is True


def test_grids_equal_within_float_precision_are_the_same(tmp_path, pair):
    a, b = pair
    store(tmp_path / "a.nii", a)
    store(tmp_path / "b.nii", b, affine=lps_affine(origin=(12.0 + 1e-4, -30.0, 40.0 - 1e-4)))
    va, vb = open_volume(tmp_path / "a.nii"), open_volume(tmp_path / "b.nii")
    assert same_grid(va.data.shape, va.matrix(), vb.data.shape, vb.matrix())


def test_volumes_that_do_not_overlap_are_a_one_line_error_in_the_cli_and_in_a_batch(tmp_path, pair, capsys):
    a, b = pair
    store(tmp_path / "a.nii", a)
    store(tmp_path / "b.nii", b)
    store(tmp_path / "moved.nii", b, affine=lps_affine(origin=(500.0, 0.0, 0.0)))
    assert (
        main(
            [
                "fuse-volume",
                str(tmp_path / "a.nii"),
                str(tmp_path / "moved.nii"),
                "--out",
                str(tmp_path / "x.zarr"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()  # what it read, then the one-line error
    assert "do not overlap" in err[-1] and sum("error" in line for line in err) == 1
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("anatomical,functional,preset,output\na.nii,b.nii,CT-MRI,good\na.nii,moved.nii,CT-MRI,bad\n")
    rows = fuse_batch(manifest, tmp_path / "cohort", device="cpu", scheduler_name="synchronous")
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert "do not overlap" in rows[1]["error"] and "register" in rows[1]["error"]


def test_a_degenerate_affine_is_a_one_line_error(tmp_path, pair):
    a, b = pair
    store(tmp_path / "b.nii", b)
    header = nibabel.Nifti1Header()
    header.set_data_shape(a.T.shape)
    header.set_data_dtype(np.int16)
    header.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)  # every slice at the same height
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(a.T), None, header), str(tmp_path / "flat.nii"))
    with pytest.raises(ValueError, match="degenerate") as caught:
        fuse_volume(tmp_path / "flat.nii", tmp_path / "b.nii", tmp_path / "o.zarr", device="cpu")
    assert "\n" not in str(caught.value)


def peak_of_reading(volume, z) -> tuple[np.ndarray, int]:
    """Slice ``z`` of ``volume`` and the peak of Python-traced memory (numpy included) while reading it."""
    tracemalloc.start()
    try:
        image = volume.data[z].compute(scheduler="synchronous")
        return image, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("perm, flip", [((0, 1, 2), ()), ((2, 0, 1), (1,))])
def test_a_slice_read_does_not_load_the_volume(tmp_path, monkeypatch, perm, flip):
    """A 32 MiB uncompressed file: one 0.5 MiB slice is read with a few MiB, axial axis last or first."""
    monkeypatch.setattr(nifti_reader, "SLAB_BYTES", 2**20)  # the axial-first file is read in 1 MiB slabs
    big = np.random.default_rng(2).integers(0, 4000, (64, 512, 512), dtype=np.int16)
    path = store(tmp_path / "big.nii", big, perm, flip)
    del big
    volume = open_volume(path)
    expected = np.asarray(nibabel.load(str(path)).dataobj)  # the whole file, to check the slice against
    expected = np.transpose(np.flip(expected, flip) if flip else expected, np.argsort(perm)).T
    for z in (0, 37):
        image, peak = peak_of_reading(volume, z)
        np.testing.assert_array_equal(image, expected[z])
        assert peak < 4 * 2**20, f"reading one slice peaked at {peak / 2**20:.1f} MiB"
