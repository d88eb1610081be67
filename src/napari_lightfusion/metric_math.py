"""What every fusion metric reads its images through: grey 2-D arrays of one shape, grey levels, entropy, correlation.

The conventions are :mod:`napari_lightfusion.metrics`': an RGB(A) image is
reduced to its BT.601 luminance (:func:`napari_lightfusion.colour.grey`),
integer grey levels are clipped to 0..255 and rounded, and a Pearson
correlation involving a constant image (range below :data:`FLAT`) is 0.0.
"""

from __future__ import annotations

import math

import numpy as np

from .colour import grey


def grey_image(img) -> np.ndarray:
    """``img`` as a 2-D float64 array (:func:`napari_lightfusion.colour.grey`: RGB(A) reduced to BT.601 luma)."""
    arr = grey(img)
    if arr.ndim != 2:
        raise ValueError(f"expected a grey (H, W) or RGB (H, W, 3) image, got shape {np.shape(img)}")
    return arr


def three_images(f, a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fused image and the two sources as grey 2-D arrays (:func:`grey_image`); ``ValueError`` unless one shape."""
    f, a, b = grey_image(f), grey_image(a), grey_image(b)
    if not (f.shape == a.shape == b.shape):
        raise ValueError(f"fused and source images must have the same shape, got {f.shape}, {a.shape}, {b.shape}")
    return f, a, b


def grey_levels(img: np.ndarray) -> np.ndarray:
    """Integer grey levels 0..255: clip, then round half to even (``np.round``)."""
    return np.round(np.clip(img, 0.0, 255.0)).astype(np.intp).ravel()


def entropy(counts: np.ndarray, log) -> float:
    """Entropy of a histogram of counts, with ``0 log 0 = 0``."""
    p = counts[counts > 0] / counts.sum()
    h = float(-(p * log(p)).sum())
    return h if h > 0.0 else 0.0  # no -0.0 for a single level


#: Grey-level range below which an image counts as constant in a correlation:
#: differences such as ``(A + 0.1) - A`` are constant up to rounding noise
#: (~1e-14 on a 0..255 scale), whose correlation would be meaningless.
FLAT = 1e-9


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0.0 (by convention) if either input is constant.

    "Constant" means a range (max - min) below ``FLAT`` = 1e-9 grey levels.
    """
    if x.size == 0 or np.ptp(x) < FLAT or np.ptp(y) < FLAT:
        return 0.0
    xm = x - x.mean()
    ym = y - y.mean()
    den = math.sqrt(float((xm * xm).sum()) * float((ym * ym).sum()))
    if not den > 0.0 or not math.isfinite(den):
        return 0.0
    return float((xm * ym).sum() / den)
