"""Lazy fusion: dask results, one slice per chunk, equal to the eager fusion, reading only what is asked."""

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_lightfusion import fuse
from napari_lightfusion.fusion import FusionPlan
from napari_lightfusion.lazy import fuse_lazy, is_lazy


@pytest.fixture
def stacks():
    rng = np.random.default_rng(0)
    grey = (rng.random((6, 40, 52)) * 3000 + 200).astype(np.uint16)
    colour = (rng.random((6, 40, 52, 3)) * 255).astype(np.uint8)
    return grey, colour


def counted(array: np.ndarray, reads: list):
    """A dask array over ``array``, one chunk per slice, that records the slices it reads."""

    def read(block_id=None):
        reads.append(block_id[0])
        return array[block_id[0] : block_id[0] + 1]

    chunks = ((1,) * array.shape[0],) + tuple((n,) for n in array.shape[1:])
    return da.map_blocks(read, chunks=chunks, dtype=array.dtype, meta=np.empty((0,) * array.ndim, array.dtype))


def test_is_lazy(tmp_path):
    plain = np.zeros((2, 4, 4), np.float32)
    np.save(tmp_path / "m.npy", plain)
    assert is_lazy(da.zeros((2, 4, 4)))
    assert is_lazy(zarr.zeros((2, 4, 4), store=str(tmp_path / "z.zarr")))
    assert is_lazy(np.load(tmp_path / "m.npy", mmap_mode="r"))
    assert not is_lazy(plain)
    assert not is_lazy([[1, 2]])


def test_lazy_equals_eager_with_the_whole_volumes_limits(stacks):
    grey, colour = stacks
    lazy = fuse_lazy(
        da.from_array(grey, chunks=(4, 20, 52)), colour, preset="PET-MRI", device="cpu", sample=None, maps=True
    )
    eager = fuse(grey, colour, preset="PET-MRI", device="cpu", maps=True)
    assert isinstance(lazy.fused, da.Array) and lazy.fused.shape == eager.fused.shape == (6, 40, 52, 3)
    assert lazy.fused.chunks[0] == (1,) * 6
    assert lazy.attention.shape == lazy.surprise.shape == (2, 6, 40, 52)
    np.testing.assert_array_equal(lazy.fused.compute(), eager.fused)
    np.testing.assert_array_equal(lazy.attention[:, 3].compute(), eager.attention[:, 3])
    np.testing.assert_array_equal(lazy.surprise.compute(), eager.surprise)


def test_given_limits_are_used_and_inputs_swap_like_fuse(stacks):
    grey, colour = stacks
    limits = (500.0, 2500.0)
    lazy = fuse_lazy(colour, grey, preset="PET-MRI", device="cpu", b_limits=limits, maps=True)
    eager = fuse(colour, grey, preset="PET-MRI", device="cpu", b_limits=limits, maps=True)
    np.testing.assert_array_equal(lazy.fused[2].compute(), eager.fused[2])
    np.testing.assert_array_equal(lazy.attention[:, 2].compute(), eager.attention[:, 2])


def test_only_the_asked_slice_is_read(stacks):
    grey, colour = stacks
    reads_a, reads_b = [], []
    lazy = fuse_lazy(counted(grey, reads_a), counted(colour, reads_b), device="cpu", a_limits=(0, 4000), maps=True)
    assert reads_a == [0] and sorted(set(reads_b)) == [0]  # the check reads slice 0; uint8 needs no scan
    lazy.fused[4].compute()
    assert reads_a == [0, 4] and reads_b[-1] == 4


def test_limits_are_estimated_from_a_few_slices(stacks):
    grey, colour = stacks
    reads = []
    fuse_lazy(counted(grey, reads), colour, device="cpu", sample=3)
    assert sorted(reads[:3]) == [0, 2, 5] and reads[3:] == [0]  # 3 evenly spaced slices, then slice 0 (the check)


def test_a_slice_and_its_maps_cost_one_network_run(stacks, monkeypatch):
    grey, colour = stacks
    runs = []
    original = FusionPlan.run_slice
    monkeypatch.setattr(FusionPlan, "run_slice", lambda self, i: runs.append(i) or original(self, i))
    lazy = fuse_lazy(grey, colour, device="cpu", maps=True)
    lazy.fused[1].compute()
    lazy.attention[:, 1].compute()
    lazy.surprise[:, 1].compute()
    assert len(runs) == 1


def test_zarr_input_and_single_images(tmp_path, stacks):
    grey, colour = stacks
    stored = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=grey.shape, chunks=(1, 40, 52), dtype=grey.dtype)
    stored[:] = grey
    lazy = fuse_lazy(stored, colour[..., 0], preset="CT-MRI", device="cpu", sample=None, maps=False)
    eager = fuse(grey, colour[..., 0], preset="CT-MRI", device="cpu")
    assert lazy.attention is None and lazy.surprise is None
    np.testing.assert_array_equal(lazy.fused.compute(), eager.fused)
    single = fuse_lazy(da.from_array(grey[2]), colour[2], device="cpu", a_limits=(0, 4000), maps=True)
    assert single.fused.shape == (40, 52, 3) and single.attention.shape == (2, 40, 52)
    np.testing.assert_array_equal(
        single.fused.compute(), fuse(grey[2], colour[2], device="cpu", a_limits=(0, 4000)).fused
    )


def test_a_slice_with_nothing_finite_fuses_as_the_low_limit():
    stack = np.random.default_rng(2).random((3, 24, 24)).astype(np.float32) * 5
    stack[1] = np.nan
    lazy = fuse_lazy(stack, stack[::-1].copy(), preset="CT-MRI", device="cpu", sample=None, maps=True)
    out = lazy.fused.compute()
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(
        out[0],
        fuse(
            stack[0],
            stack[2],
            "CT-MRI",
            "cpu",
            a_limits=(float(np.nanmin(stack)), float(np.nanmax(stack))),
            b_limits=(float(np.nanmin(stack)), float(np.nanmax(stack))),
        ).fused,
    )


@pytest.mark.parametrize(
    "a, b, message",
    [
        (np.zeros((3, 8, 8)), np.zeros((3, 8, 9)), "differ in shape"),
        (np.zeros((3, 8, 8)), np.zeros((8, 8)), "dimensionality"),
        (np.zeros((3, 8, 8), complex), np.zeros((3, 8, 8)), "not an image type"),
        (np.zeros((3, 3, 8, 8)), np.zeros((3, 3, 8, 8)), "give one image"),
        (np.full((3, 8, 8), np.nan), np.zeros((3, 8, 8)), "no finite values"),
        ("not an array", np.zeros((3, 8, 8)), "not an array"),
    ],
)
def test_bad_inputs_are_one_line_errors(a, b, message):
    with pytest.raises(ValueError, match=message) as caught:
        fuse_lazy(a, b, device="cpu")
    assert "\n" not in str(caught.value)


def test_bad_preset_is_refused_before_anything_runs(stacks):
    grey, colour = stacks
    with pytest.raises(ValueError, match="unknown preset"):
        fuse_lazy(grey, colour, preset="XX-MRI", device="cpu")


def test_lazy_weight_map_of_a_mix_network_equals_the_eager_one(tmp_path, stacks):
    import torch

    from napari_lightfusion.model import LightFusionNet
    from napari_lightfusion.weights import save_weights

    torch.manual_seed(4)
    path = tmp_path / "mix.pt"
    save_weights(LightFusionNet(output="mix", balance=0.3).eval(), path, {})
    grey, colour = stacks
    lazy = fuse_lazy(da.from_array(grey), colour, weights=path, device="cpu", sample=None, maps=True)
    eager = fuse(grey, colour, weights=path, device="cpu", maps=True)
    assert lazy.weight.shape == grey.shape and lazy.weight.chunks[0] == (1,) * 6
    np.testing.assert_array_equal(lazy.weight[2].compute(), eager.weight[2])
    single = fuse_lazy(da.from_array(grey[1]), colour[1], weights=path, device="cpu", a_limits=(0, 4000), maps=True)
    assert single.weight.shape == (40, 52)
    assert fuse_lazy(grey, colour, weights=path, device="cpu", maps=False).weight is None
    assert fuse_lazy(grey, colour, preset="SPECT-MRI", device="cpu").weight is None  # an intensity head


def test_one_thread_a_slice_leaves_the_process_threads_alone(stacks):
    """A dask task fusing a slice with one thread must not set torch's thread count for the whole process."""
    import torch

    grey, colour = stacks
    before = torch.get_num_threads()
    want = fuse(grey[1], colour[1], preset="PET-MRI", device="cpu", a_limits=(0, 4000)).fused
    lazy = fuse_lazy(grey, colour, preset="PET-MRI", device="cpu", a_limits=(0, 4000), threads=1)
    np.testing.assert_array_equal(lazy.fused[1].compute(), want)
    assert torch.get_num_threads() == before
