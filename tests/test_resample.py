"""Resampling in world coordinates (issue 9, finding 8)."""

from __future__ import annotations

from types import SimpleNamespace

import dask.array as da
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from napari_lightfusion.generators import Steps, run_to_end
from napari_lightfusion.resample import data_to_world, full_resolution, iter_resample, iter_resample_layer, resample

rng = np.random.default_rng(1)


def affine(scale=(1, 1), translate=None) -> np.ndarray:
    n = len(scale)
    m = np.eye(n + 1)
    m[:n, :n] = np.diag(scale)
    m[:n, n] = 0 if translate is None else translate
    return m


def test_identity_gives_the_image_back():
    img = rng.random((20, 30)).astype(np.float32)
    out = resample(img, np.eye(3), img.shape, np.eye(3))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_twice_the_pixel_size_lands_on_every_other_pixel():
    pet = rng.random((16, 16))
    out = resample(pet, affine((2, 2)), (32, 32), affine((1, 1)))
    np.testing.assert_allclose(out[:31:2, :31:2], pet, atol=1e-12)
    # between two functional pixels: their mean (linear interpolation)
    np.testing.assert_allclose(out[1:30:2, 0], 0.5 * (pet[:-1, 0] + pet[1:, 0]), atol=1e-12)
    assert np.all(out[31, :] == 0) and np.all(out[:, 31] == 0)  # beyond the last centre: outside


def test_translate_moves_and_zero_fills():
    img = rng.integers(1, 255, (12, 12)).astype(np.uint8)
    out = resample(img, affine(translate=(3, -2)), img.shape, np.eye(3))
    np.testing.assert_array_equal(out[3:, :10], img[:9, 2:])
    assert np.all(out[:3] == 0) and np.all(out[:, 10:] == 0)


def test_anatomical_transform_counts_too():
    img = rng.random((10, 10))
    # anatomical grid of half the pixel size starting at world (1, 1): its pixel 2k is functional pixel k + 1
    out = resample(img, np.eye(3), (16, 16), affine((0.5, 0.5), (1, 1)))
    np.testing.assert_allclose(out[::2, ::2], img[1:9, 1:9], atol=1e-12)


def test_rgb_is_resampled_per_channel_and_keeps_its_dtype():
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = resample(rgb, affine((2, 2)), (32, 32), np.eye(3), rgb=True)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:31:2, :31:2], rgb)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], resample(rgb[..., c], affine((2, 2)), (32, 32), np.eye(3)))


def test_stack_with_anisotropic_slices():
    vol = rng.random((5, 8, 8))
    # functional slices 3 units apart, anatomical 1: anatomical slice 3k is functional slice k
    out = resample(vol, affine((3, 1, 1)), (13, 8, 8), np.eye(4))
    np.testing.assert_allclose(out[::3], vol, atol=1e-12)
    np.testing.assert_allclose(out[1], (2 * vol[0] + vol[1]) / 3, atol=1e-12)


def test_chunks_report_progress_and_match_one_pass():
    img = rng.random((40, 50))
    matrix = affine((1.3, 0.7), (2.5, -4))
    steps = Steps(iter_resample(img, matrix, (64, 64), np.eye(3), chunk_pixels=64 * 5))
    progress = list(steps)
    chunked = steps.value
    assert progress[-1] == (64, 64) and len(progress) == 13
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    whole = resample(img, matrix, (64, 64), np.eye(3))
    np.testing.assert_allclose(chunked, whole, atol=1e-12)
    vol_steps = list(iter_resample(rng.random((4, 6, 6)), np.eye(4), (4, 6, 6), np.eye(4)))
    assert vol_steps == [(1, 4), (2, 4), (3, 4), (4, 4)]  # a stack: one slice per step


def test_lazy_volume_gives_the_same_result():
    vol = rng.random((6, 20, 20))
    lazy = da.from_array(vol, chunks=(1, 20, 20))
    matrix = affine((2, 1.5, 1.5), (1, -3, 2))
    np.testing.assert_allclose(
        resample(lazy, matrix, (10, 24, 24), np.eye(4)), resample(vol, matrix, (10, 24, 24), np.eye(4))
    )


def test_inputs_are_never_modified():
    img = rng.integers(0, 4000, (16, 16, 3)).astype(np.uint16)
    ma, fa = affine((2, 2), (1, 1)), affine((0.5, 0.5))
    copies = img.copy(), ma.copy(), fa.copy()
    out = resample(img, ma, (20, 20), fa, rgb=True)
    out[:] = 0
    for before, after in zip(copies, (img, ma, fa)):
        np.testing.assert_array_equal(before, after)


def test_bad_input_is_a_one_line_value_error():
    img = np.zeros((8, 8))
    with pytest.raises(ValueError, match="2D image .* 3D grid"):
        resample(img, np.eye(3), (4, 8, 8), np.eye(4))
    with pytest.raises(ValueError, match="not invertible"):
        resample(img, np.zeros((3, 3)), (8, 8), np.eye(3))
    with pytest.raises(ValueError, match="3x3"):
        resample(img, np.eye(4), (8, 8), np.eye(3))
    with pytest.raises(ValueError, match="type"):
        resample(np.zeros((8, 8), complex), np.eye(3), (8, 8), np.eye(3))


# ---------------------------------------------------------------- napari layers


def _layers():
    from napari.layers import Image

    anat = Image(rng.random((40, 40)), scale=(0.9, 1.1), translate=(2, -1), rotate=20, name="MRI")
    func = Image(
        rng.random((14, 12)),
        scale=(3, 3.5),
        translate=(-1, 4),
        shear=[0.1],
        affine=np.array([[1, 0, 0.5], [0.05, 1, 0], [0, 0, 1]]),
        name="PET",
    )
    return anat, func


def test_data_to_world_matches_napari():
    anat, func = _layers()
    for layer in (anat, func):
        m = data_to_world(layer)
        for point in rng.random((5, 2)) * 10:
            np.testing.assert_allclose(m[:2, :2] @ point + m[:2, 2], layer.data_to_world(point), atol=1e-9)


def test_resampled_layer_shows_the_functional_value_at_every_world_point():
    from napari.layers import Image

    anat, func = _layers()
    before = func.data.copy(), tuple(func.scale), anat.data.copy()
    data, kwargs = run_to_end(iter_resample_layer(func, anat))
    new = Image(data, **kwargs)
    assert data.shape == anat.data.shape
    np.testing.assert_allclose(new.scale, anat.scale)
    np.testing.assert_allclose(new.affine.affine_matrix, anat.affine.affine_matrix)
    inside = 0
    for index in np.ndindex(*data.shape):
        world = new.data_to_world(index)
        where = np.asarray(func.world_to_data(world))
        if np.all(where >= 0) and np.all(where <= np.array(func.data.shape) - 1):
            inside += 1
            expected = map_coordinates(func.data, where[:, None], order=1)[0]
            assert data[index] == pytest.approx(expected, abs=1e-9)
    assert inside > 200  # the check covered the overlap, not just zeros
    np.testing.assert_array_equal(func.data, before[0])
    assert tuple(func.scale) == before[1]
    np.testing.assert_array_equal(anat.data, before[2])


def test_layer_generator_reports_progress_and_returns_kwargs():
    from napari.layers import Image

    anat = Image(np.zeros((3, 10, 10)), scale=(2, 1, 1))
    func = Image(rng.integers(0, 255, (3, 5, 5, 3), dtype=np.uint8), rgb=True, scale=(2, 2, 2))
    steps = iter_resample_layer(func, anat)
    assert next(steps) == (1, 3)
    rest = list(steps)
    assert rest == [(2, 3), (3, 3)]
    seen = []
    data, kwargs = run_to_end(iter_resample_layer(func, anat), seen.append)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert data.shape == (3, 10, 10, 3) and kwargs["rgb"] is True
    np.testing.assert_array_equal(data[:, ::2, ::2], func.data)


def test_a_multiscale_layer_is_read_at_full_resolution():
    from napari.layers import Image

    pyramid = [rng.random((16, 16)), rng.random((8, 8))]
    np.testing.assert_array_equal(full_resolution(Image(pyramid, multiscale=True)), pyramid[0])
    plain = rng.random((16, 16))
    assert full_resolution(SimpleNamespace(data=plain, multiscale=False)) is plain
    assert full_resolution(SimpleNamespace(data=plain)) is plain  # duck-typed: no multiscale attribute


def test_masks_stay_masks():
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:6] = True
    out = resample(mask, affine((2, 2)), (16, 16), np.eye(3))
    assert out.dtype == bool
    np.testing.assert_array_equal(out[::2, ::2], mask)


def test_runtime_module_needs_neither_napari_nor_qt():
    import subprocess
    import sys

    code = (
        "import sys, napari_lightfusion.resample; "
        "assert not {m.split('.')[0] for m in sys.modules} & {'napari', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6'}"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
