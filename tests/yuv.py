"""BT.601 analogue YUV for the tests: checking that a fusion keeps the functional image's U and V.

``Y = 0.299 R + 0.587 G + 0.114 B``, ``U = 0.492 (B - Y)``,
``V = 0.877 (R - Y)`` (:mod:`napari_lightfusion.colour`), with its exact
inverse. The plugin itself needs only Y (``colour.luminance``).
"""

from __future__ import annotations

import numpy as np

from napari_lightfusion.colour import LUMA_WEIGHTS, luminance

U_SCALE = 0.492
V_SCALE = 0.877


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """Split ``(..., 3)`` RGB into BT.601 Y, U, V on the last axis."""
    rgb = np.asarray(rgb, dtype=np.float64)
    y = luminance(rgb)
    u = U_SCALE * (rgb[..., 2] - y)
    v = V_SCALE * (rgb[..., 0] - y)
    return np.stack([y, u, v], axis=-1)


def yuv_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_yuv`; the result is not clipped."""
    yuv = np.asarray(yuv, dtype=np.float64)
    y, u, v = yuv[..., 0], yuv[..., 1], yuv[..., 2]
    r = y + v / V_SCALE
    b = y + u / U_SCALE
    g = (y - LUMA_WEIGHTS[0] * r - LUMA_WEIGHTS[2] * b) / LUMA_WEIGHTS[1]
    return np.stack([r, g, b], axis=-1)
