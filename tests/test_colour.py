"""BT.601 YUV: round trip and the luminance the metrics use."""

import numpy as np

from napari_lightfusion.colour import grey, luminance, recolour, rgb_to_yuv, yuv_to_rgb


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


def test_recolour_clips_to_range():
    rgb = np.zeros((1, 1, 3))
    rgb[..., 0] = 1.0  # saturated red; a luminance of 1 cannot keep its chrominance
    out = recolour(np.ones((1, 1)), rgb)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_grey_is_luminance_of_colour_and_the_image_itself_otherwise():
    rng = np.random.default_rng(2)
    rgb = rng.random((5, 6, 3))
    np.testing.assert_array_equal(grey(rgb), luminance(rgb))
    np.testing.assert_array_equal(grey(np.concatenate([rgb, rng.random((5, 6, 1))], axis=-1)), luminance(rgb))
    plane = rng.random((5, 6)).astype(np.float32)
    assert grey(plane).dtype == np.float64 and np.array_equal(grey(plane), plane)
    stack = rng.random((3, 5, 6))  # a grey stack is not reduced
    assert grey(stack).shape == (3, 5, 6)
