"""Synthetic head slices whose names say nothing: a CT in HU, an MR, and either as a PNG export (0..255).

Shared by tests/test_roles.py and tests/test_widget_newcomer.py (issue 23, item 1).
"""

from __future__ import annotations

import numpy as np


def _head(size: int):
    """Row and column coordinates in [-1, 1] and the elliptic radius of a head filling the slice."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    return yy, xx, np.hypot(yy / 0.9, xx / 0.75)


def ct_like(size: int = 96, seed: int = 0) -> np.ndarray:
    """A CT slice in HU: air at -1000, a skull at 700..1500, a brain at 20..60."""
    rng = np.random.default_rng(seed)
    _, _, r = _head(size)
    image = -1000 + rng.normal(0, 5, r.shape)
    image[r < 1.0] = rng.uniform(700, 1500, (r < 1.0).sum())
    image[r < 0.88] = rng.uniform(20, 60, (r < 0.88).sum())
    return image.astype(np.int16)


def mr_like(size: int = 96, seed: int = 0) -> np.ndarray:
    """An MR slice: smooth tissue contrast over a dark background, no negative minima."""
    rng = np.random.default_rng(seed)
    yy, xx, r = _head(size)
    image = np.abs(rng.normal(0, 3, r.shape))
    inside = r < 1.0
    image[inside] = (400 + 150 * np.sin(3 * xx) * np.cos(2 * yy) + 100 * np.exp(-4 * r**2))[inside]
    return image.astype(np.float32)


def as_png(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """``image`` windowed to ``[low, high]`` and saved as 0..255 (a PNG export)."""
    return (np.clip((image.astype(np.float64) - low) / (high - low), 0, 1) * 255).round().astype(np.uint8)
