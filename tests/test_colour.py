"""BT.601 YUV: round trip and the luminance the metrics use."""

import numpy as np
from yuv import rgb_to_yuv, yuv_to_rgb

from napari_lightfusion.colour import grey, luminance, with_luma


def recolour(fused_y, rgb):
    """The colour step of a fusion: ``rgb``'s colour under the luminance ``fused_y``."""
    return with_luma(rgb, luminance(rgb), fused_y)


def test_round_trip_is_exact():
    rgb = np.random.default_rng(0).random((20, 30, 3))
    assert np.allclose(yuv_to_rgb(rgb_to_yuv(rgb)), rgb, atol=1e-12)


def test_known_values():
    # pure red: Y = 0.299, U = 0.492 * (0 - 0.299), V = 0.877 * (1 - 0.299)
    y, u, v = rgb_to_yuv(np.array([1.0, 0.0, 0.0]))
    assert np.isclose(y, 0.299) and np.isclose(u, -0.492 * 0.299) and np.isclose(v, 0.877 * 0.701)
    # grey has no chrominance
    assert np.allclose(rgb_to_yuv(np.array([0.5, 0.5, 0.5])), [0.5, 0.0, 0.0])
    assert np.isclose(luminance(np.array([0.2, 0.4, 0.6])), 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6)


def test_recolour_keeps_chrominance_and_sets_luminance():
    rgb = np.random.default_rng(1).random((8, 8, 3)) * 0.5 + 0.25
    y = np.full((8, 8), 0.5)
    out = recolour(y, rgb)
    assert np.allclose(rgb_to_yuv(out)[..., 1:], rgb_to_yuv(rgb)[..., 1:], atol=1e-9)
    assert np.allclose(luminance(out), 0.5)


def test_recolour_desaturates_a_colour_that_cannot_take_the_luminance_and_keeps_the_luminance():
    red = np.array([[[1.0, 0.0, 0.0]]])
    out = recolour(np.full((1, 1), 0.8), red)  # clipping R, G, B would give a luma of 0.65 here
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.isclose(luminance(out)[0, 0], 0.8)
    np.testing.assert_allclose(out[0, 0], [1.0, 0.71469, 0.71469], atol=1e-5)  # still red: G = B < R
    assert np.allclose(recolour(np.ones((1, 1)), red), 1.0) and np.allclose(recolour(np.zeros((1, 1)), red), 0.0)


def test_with_luma_keeps_any_luma_and_the_hue_on_random_colours():
    rng = np.random.default_rng(3)
    rgb = rng.random((40, 40, 3)).astype(np.float32)
    new = rng.random((40, 40)).astype(np.float32) * 1.4 - 0.2  # also outside [0, 1]: clipped first
    out = with_luma(rgb, luminance(rgb).astype(np.float32), new)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(luminance(out), np.clip(new, 0, 1), atol=1e-5)
    chroma, before = out - luminance(out)[..., None], rgb - luminance(rgb)[..., None]
    scale = (chroma * before).sum(-1) / np.maximum((before * before).sum(-1), 1e-12)
    np.testing.assert_allclose(chroma, scale[..., None] * before, atol=1e-4)  # same direction: same hue
    assert scale.min() >= -1e-6 and scale.max() <= 1 + 1e-5


def test_grey_is_luminance_of_colour_and_the_image_itself_otherwise():
    rng = np.random.default_rng(2)
    rgb = rng.random((5, 6, 3))
    np.testing.assert_array_equal(grey(rgb), luminance(rgb))
    np.testing.assert_array_equal(grey(np.concatenate([rgb, rng.random((5, 6, 1))], axis=-1)), luminance(rgb))
    plane = rng.random((5, 6)).astype(np.float32)
    assert grey(plane).dtype == np.float64 and np.array_equal(grey(plane), plane)
    stack = rng.random((3, 5, 6))  # a grey stack is not reduced
    assert grey(stack).shape == (3, 5, 6)
