"""Tests of napari_lightfusion.baselines: hand-worked values, layout and colour.

Expected numbers are worked out in the comments from the definitions in the
module docstring, not taken from the implementation.
"""

from __future__ import annotations

import numpy as np
import pytest
from yuv import rgb_to_yuv

from napari_lightfusion import baselines as bl
from napari_lightfusion.colour import luminance

A = np.array([[0.0, 0.2], [0.4, 1.0]])
B = np.array([[1.0, 0.6], [0.4, 0.0]])


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- API -------------------------------------------------------------------


def test_names_and_alpha_constant():
    assert bl.BASELINES == ("average", "max", "laplacian", "alpha")
    assert np.isclose(bl.ALPHA, 0.4)


@pytest.mark.parametrize("call", [lambda: bl.fuse_grey("median", A, B), lambda: bl.fuse_baseline("median", A, B)])
def test_unknown_name_lists_choices(call):
    with pytest.raises(ValueError, match="median") as info:
        call()
    for name in bl.BASELINES:
        assert name in str(info.value)


def test_fuse_grey_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        bl.fuse_grey("average", np.zeros((2, 2)), np.zeros((2, 3)))


def test_fuse_baseline_passes_on_prepare_pair_errors():
    with pytest.raises(ValueError, match="shape"):
        bl.fuse_baseline("max", np.zeros((4, 4)), np.zeros((4, 5)))


# --- hand-worked values ------------------------------------------------------


@pytest.mark.parametrize("fuse", [bl.fuse_grey, bl.fuse_baseline])
def test_average_and_max_of_2x2(fuse):
    # (0+1)/2, (0.2+0.6)/2, (0.4+0.4)/2, (1+0)/2
    np.testing.assert_allclose(fuse("average", A, B), [[0.5, 0.4], [0.4, 0.5]], atol=1e-7)
    np.testing.assert_allclose(fuse("max", A, B), [[1.0, 0.6], [0.4, 1.0]], atol=1e-7)


@pytest.mark.parametrize("fuse", [bl.fuse_grey, bl.fuse_baseline])
def test_alpha_of_grey_pair(fuse):
    # 0.6 a + 0.4 b: 0.6*0 + 0.4*1 = 0.4, 0.12 + 0.24 = 0.36, 0.24 + 0.16 = 0.4, 0.6 + 0 = 0.6
    np.testing.assert_allclose(fuse("alpha", A, B), [[0.4, 0.36], [0.4, 0.6]], atol=1e-7)
    # the first grey image is the anatomical one: swapping changes the blend
    np.testing.assert_allclose(fuse("alpha", B, A), [[0.6, 0.44], [0.4, 0.4]], atol=1e-7)


def test_alpha_of_colour_pair_is_an_rgb_overlay():
    anatomical = np.array([[255, 0]], dtype=np.uint8)  # -> 1.0, 0.0
    functional = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # red, blue
    # pixel 0: 0.6 * (1, 1, 1) + 0.4 * (1, 0, 0) = (1.0, 0.6, 0.6)
    # pixel 1: 0.6 * (0, 0, 0) + 0.4 * (0, 0, 1) = (0.0, 0.0, 0.4)
    expected = [[[1.0, 0.6, 0.6], [0.0, 0.0, 0.4]]]
    for a, b in ((anatomical, functional), (functional, anatomical)):
        out = bl.fuse_baseline("alpha", a, b)
        assert out.shape == (1, 2, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=1e-6)


def test_constant_inputs():
    a = np.full((17, 17), 0.3)
    b = np.full((17, 17), 0.7)
    # average 0.5; max 0.7; laplacian: no detail anywhere, bases averaged -> 0.5;
    # alpha 0.6*0.3 + 0.4*0.7 = 0.46
    expected = {"average": 0.5, "max": 0.7, "laplacian": 0.5, "alpha": 0.46}
    for name, value in expected.items():
        np.testing.assert_allclose(bl.fuse_grey(name, a, b), value, atol=1e-6)
        np.testing.assert_allclose(bl.fuse_baseline(name, a, b), value, atol=1e-6)


# --- Laplacian pyramid ---------------------------------------------------------


def test_laplacian_levels():
    # halve while the coarsest level keeps >= 2 pixels on its short side, at most 4 times
    assert [bl.laplacian_levels((s, s)) for s in (1, 2, 3, 4, 5, 8, 9, 16, 17, 512)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert bl.laplacian_levels((1, 300)) == 0
    assert bl.laplacian_levels((300, 40)) == 4


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (2, 2), (3, 5), (7, 11), (33, 17), (40, 40)])
def test_laplacian_of_identical_inputs_returns_the_input(shape):
    # every detail coefficient ties with itself and the base average is the base
    x = rng(1).random(shape)
    out = bl.fuse_grey("laplacian", x, x)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, x, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (3, 3), (9, 4), (13, 21)])
def test_laplacian_odd_and_tiny_sizes(shape):
    x, y = rng(2).random(shape), rng(3).random(shape)
    out = bl.fuse_grey("laplacian", x, y)
    assert out.shape == shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    out = bl.fuse_baseline("laplacian", x, y)
    assert out.shape == shape


def test_laplacian_of_1x1_is_the_average():
    # no room for a detail level: only the base, which is averaged
    np.testing.assert_allclose(bl.fuse_grey("laplacian", [[0.2]], [[0.6]]), [[0.4]], atol=1e-7)
    np.testing.assert_allclose(bl.fuse_baseline("laplacian", np.array([[0.2]]), np.array([[0.6]])), [[0.4]], atol=1e-7)


@pytest.mark.parametrize("first", [True, False])
def test_laplacian_keeps_a_bright_point_from_either_input(first):
    point = np.zeros((32, 32))
    point[10, 12] = 1.0
    dark = np.zeros((32, 32))
    a, b = (point, dark) if first else (dark, point)
    out = bl.fuse_grey("laplacian", a, b)
    # the average halves the point (0.5); the pyramid keeps its details, losing
    # only half of its tiny share of the base level
    assert out[10, 12] > 0.95
    assert np.unravel_index(out.argmax(), out.shape) == (10, 12)
    assert bl.fuse_grey("average", a, b)[10, 12] == pytest.approx(0.5)


def test_laplacian_keeps_fine_texture_of_both_inputs():
    # a +-0.25 checkerboard on grey 0.5, in the left half of one image and the
    # right half of the other: the pyramid takes each half's details from the
    # image that has them and the common base 0.5, so the fused image is the
    # full-contrast checkerboard everywhere, where the average halves it
    yy, xx = np.mgrid[:32, :32]
    texture = 0.25 * np.where((yy + xx) % 2 == 0, 1.0, -1.0)
    a = np.full((32, 32), 0.5)
    a[:, :16] += texture[:, :16]
    b = np.full((32, 32), 0.5)
    b[:, 16:] += texture[:, 16:]
    np.testing.assert_allclose(bl.fuse_grey("laplacian", a, b), 0.5 + texture, atol=0.01)
    np.testing.assert_allclose(bl.fuse_grey("average", a, b), 0.5 + 0.5 * texture, atol=1e-6)


def test_laplacian_is_symmetric_for_grey_pairs():
    x, y = rng(4).random((20, 23)), rng(5).random((20, 23))
    np.testing.assert_array_equal(bl.fuse_grey("laplacian", x, y), bl.fuse_grey("laplacian", y, x))


def test_laplacian_output_is_clipped():
    x, y = rng(6).random((24, 24)), rng(7).random((24, 24)) ** 4
    out = bl.fuse_grey("laplacian", x, y)
    assert out.min() >= 0.0 and out.max() <= 1.0


# --- layout and colour ----------------------------------------------------------


def colour_pair(shape=(6, 7), seed=8):
    """A grey anatomical and an RGB functional image in [0.4, 0.6] (no clipping on recolouring)."""
    g = rng(seed)
    return 0.4 + 0.2 * g.random(shape), 0.4 + 0.2 * g.random(shape + (3,))


@pytest.mark.parametrize("name", bl.BASELINES)
def test_colour_functional_gives_colour_and_order_does_not_matter(name):
    grey, rgb = colour_pair()
    out = bl.fuse_baseline(name, grey, rgb)
    assert out.shape == (6, 7, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out, bl.fuse_baseline(name, rgb, grey))


def test_colour_average_luminance_is_mean_of_luminances_and_chroma_is_kept():
    grey, rgb = colour_pair()
    out = bl.fuse_baseline("average", grey, rgb)
    np.testing.assert_allclose(luminance(out), 0.5 * (grey + luminance(rgb)), atol=1e-6)
    # U and V of the functional image survive (the network's colour handling)
    np.testing.assert_allclose(rgb_to_yuv(out)[..., 1:], rgb_to_yuv(rgb)[..., 1:], atol=1e-6)


@pytest.mark.parametrize("name", ["max", "laplacian"])
def test_colour_luminance_is_the_grey_fusion(name):
    grey, rgb = colour_pair()
    out = bl.fuse_baseline(name, grey, rgb)
    np.testing.assert_allclose(luminance(out), bl.fuse_grey(name, grey, luminance(rgb)), atol=1e-6)


def test_rgba_alpha_channel_is_dropped():
    grey, rgb = colour_pair()
    rgba = np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 0.25)], axis=-1)
    for name in bl.BASELINES:
        np.testing.assert_array_equal(bl.fuse_baseline(name, grey, rgba), bl.fuse_baseline(name, grey, rgb))


def test_two_colour_images_keep_the_second_ones_colour():
    _, rgb_a = colour_pair(seed=9)
    _, rgb_b = colour_pair(seed=10)
    out = bl.fuse_baseline("average", rgb_a, rgb_b)
    assert out.shape == (6, 7, 3)
    np.testing.assert_allclose(luminance(out), 0.5 * (luminance(rgb_a) + luminance(rgb_b)), atol=1e-6)
    np.testing.assert_allclose(rgb_to_yuv(out)[..., 1:], rgb_to_yuv(rgb_b)[..., 1:], atol=1e-6)


@pytest.mark.parametrize("name", bl.BASELINES)
def test_grey_stack_is_fused_slice_by_slice(name):
    g = rng(11)
    a, b = g.random((3, 9, 10)), g.random((3, 9, 10))
    out = bl.fuse_baseline(name, a, b)
    assert out.shape == (3, 9, 10) and out.dtype == np.float32
    for z in range(3):
        np.testing.assert_array_equal(out[z], bl.fuse_baseline(name, a[z], b[z]))
    # fuse_grey on the float64 stack: equal up to float32 rounding of the inputs
    np.testing.assert_allclose(bl.fuse_grey(name, a, b), out, atol=1e-6)


@pytest.mark.parametrize("name", bl.BASELINES)
def test_colour_stack(name):
    grey, rgb = colour_pair(shape=(2, 5, 6))
    out = bl.fuse_baseline(name, rgb, grey)
    assert out.shape == (2, 5, 6, 3) and out.dtype == np.float32
    for z in range(2):
        np.testing.assert_allclose(out[z], bl.fuse_baseline(name, grey[z], rgb[z]), atol=1e-7)


def test_normalisation_is_prepare_pairs():
    # uint16 is stretched min..max, uint8 divided by 255, limits override both
    a = np.array([[100, 300], [500, 100]], dtype=np.uint16)  # -> 0, 0.5, 1, 0
    b = np.array([[0, 51], [255, 255]], dtype=np.uint8)  # -> 0, 0.2, 1, 1
    np.testing.assert_allclose(bl.fuse_baseline("average", a, b), [[0.0, 0.35], [1.0, 0.5]], atol=1e-6)
    # a_limits=(0, 1000): 0.1, 0.3, 0.5, 0.1; max with b
    out = bl.fuse_baseline("max", a, b, a_limits=(0, 1000))
    np.testing.assert_allclose(out, [[0.1, 0.3], [1.0, 1.0]], atol=1e-6)


@pytest.mark.parametrize("name", bl.BASELINES)
def test_inputs_are_not_modified(name):
    g = rng(12)
    inputs = [
        (g.random((8, 9)), g.random((8, 9))),
        ((g.random((8, 9)) * 4000).astype(np.uint16), (g.random((8, 9, 4)) * 255).astype(np.uint8)),
        (g.random((2, 8, 9, 3)), g.random((2, 8, 9)) * 7.0 - 3.0),
    ]
    for a, b in inputs:
        a0, b0 = a.copy(), b.copy()
        out = bl.fuse_baseline(name, a, b)
        out[...] = 0.5  # the result does not share memory with the inputs
        np.testing.assert_array_equal(a, a0)
        np.testing.assert_array_equal(b, b0)
    x, y = g.random((8, 9)), g.random((8, 9))
    x0, y0 = x.copy(), y.copy()
    bl.fuse_grey(name, x, y)[...] = 0.5
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("name", bl.BASELINES)
def test_outputs_in_unit_range_for_any_dtype(name):
    g = rng(13)
    a = (g.random((10, 12)) * 2000 - 1000).astype(np.int16)
    b = g.random((10, 12)).astype(np.float32) * 5.0
    b[0, 0] = np.nan
    out = bl.fuse_baseline(name, a, b)
    assert out.dtype == np.float32 and out.shape == (10, 12)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
